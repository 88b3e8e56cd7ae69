"""Throughput: how many events per second can each backend sustain, and at which batch size, before the latency
target breaks?

For each backend variant (torch eager as the peer, ONNX Runtime staged and fused; TensorRT on a GPU) the
predictor runs camera-sized uint8 frames through ``preprocess`` and ``predict`` at growing batch sizes
(1, 2, 4, 8, ...), variants interleaved round-robin. A batch size meets the target while the p99 latency of one
call stays below ``target_ms`` (default: half the lookahead, so that an onset waiting for the batch in flight
plus its own batch still lands within the output delay). The sustained rate of a batch size is
``batch / mean latency`` (events/s with the inference thread always busy); ``max_events_per_s`` is the best
rate among the batch sizes that meet the target. The sweep of a variant stops once its median latency exceeds
the target (a single stall of a shared machine does not end it) or at ``max_batch``.

This is a predictor-level measurement: the pipeline adds a few ms per onset (capture, queue, synthesizer), see
:mod:`vibe_rt.bench.latency`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._logs import logger
from ..errors import ConfigError
from .common import load_average, result_path, write_result
from .inference import check_device, make_predictors, measure_interleaved, parse_variants, resolve_model

NAME = "throughput"


def plot(path: Path, results: dict[str, Any], target_ms: float) -> Path:
    """p99 latency and sustained events/s against batch size, per variant."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (label, r) in enumerate(results.items()):
        if "sweep" not in r:
            continue
        b = [s["batch"] for s in r["sweep"]]
        ax1.plot(b, [s["total_ms"]["p99"] for s in r["sweep"]], "o-", color=f"C{i}", label=label)
        ax2.plot(b, [s["events_per_s"] for s in r["sweep"]], "o-", color=f"C{i}", label=label)
    ax1.axhline(target_ms, color="k", ls="--", lw=1, label=f"target {target_ms:g} ms")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.legend(fontsize=7)
    ax1.set_ylabel("p99 latency per call (ms)")
    ax2.set_ylabel("sustained events/s")
    fig.suptitle("Throughput per backend and batch size")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(*, backend: str | None = None, model: str | Path | None = None, device: str = "cpu",
        lookahead: float = 0.25, target_ms: float | None = None, max_batch: int = 512, seconds: float = 1.5,
        min_iters: int = 10, warmup: int = 3, threads: int | None = None, engines_dir: str | Path | None = None,
        out_dir: str | Path | None = None, write: bool = True, plot_png: bool = True
        ) -> tuple[dict[str, Any], Path | None]:
    """Run the throughput sweep.

    Parameters
    ----------
    backend : str | None
        Variants (see :func:`~vibe_rt.bench.inference.parse_variants`); None: all available on ``device``.
    model : str | Path | None
        Checkpoint, ``"tiny"``/``"base"``, or None for the embedded default (tiny preset when missing).
    device : {"cpu", "cuda"}
    lookahead : float
        Output delay (s); the default target is half of it.
    target_ms : float | None
        p99 latency target per call (ms).
    max_batch : int
        Largest batch size tried.
    seconds, min_iters, warmup : float, int, int
        Time budget per variant and batch size, minimum timed rounds, untimed calls first.
    """
    import torch

    from ..runtime.backends import physical_cores

    check_device(device)
    target = float(target_ms) if target_ms is not None else lookahead * 1e3 / 2
    if target <= 0 or max_batch < 1:
        raise ConfigError("the latency target and --max-batch must be positive")
    variants = parse_variants(backend, device)
    torch.set_num_threads(threads or physical_cores())  # ONNX Runtime keeps its own default unless --threads
    mdl, desc = resolve_model(model)
    load_before = load_average()
    predictors, results = make_predictors(mdl, variants, device=device, threads=threads, engines_dir=engines_dir)
    for label in predictors:
        results[label]["sweep"] = []
    batches = [1]
    while batches[-1] * 2 <= max_batch:
        batches.append(batches[-1] * 2)
    active = {k: p for k, p in predictors.items() if not results[k]["cuda_graph"]}
    graphs = {k: p for k, p in predictors.items() if results[k]["cuda_graph"]}  # captured for batch 1 only
    for batch in batches:
        preds = dict(active, **(graphs if batch == 1 else {}))
        if not preds:
            break
        logger.info("throughput: batch %d, %s", batch, ", ".join(preds))
        summ, raw = measure_interleaved(preds, batch, seconds, min_iters, 100_000, warmup, frames=True)
        for label, s in summ.items():
            ok = s["total_ms"]["p99"] < target
            results[label]["sweep"].append({
                "batch": batch, "total_ms": s["total_ms"],
                "stages_ms": {k: {q: v.get(q) for q in ("p50", "p99")} for k, v in s["stages_ms"].items()},
                "events_per_s": s["throughput_per_s"], "meets_target": ok,
                "raw_total_ms": np.round(np.asarray(raw[label]["total"]) * 1e3, 4)})
            if s["total_ms"]["p50"] >= target:  # typical calls too slow: larger batches only get slower
                active.pop(label, None)
    for r in results.values():
        if "sweep" not in r:
            continue
        good = [s for s in r["sweep"] if s["meets_target"]]
        best = max(good, key=lambda s: s["events_per_s"]) if good else None
        r["max_events_per_s"] = best["events_per_s"] if best else 0.0
        r["best_batch"] = best["batch"] if best else None
        r["best_batch_p99_ms"] = best["total_ms"]["p99"] if best else None
        r["batch1_p99_ms"] = r["sweep"][0]["total_ms"]["p99"]
    payload = {
        "question": "Events per second sustained per backend and batch size while the p99 latency of a call "
                    "stays below the target.",
        "model": desc,
        "config": {"backend": backend, "device": device, "lookahead_s": lookahead, "target_p99_ms": target,
                   "max_batch": max_batch, "seconds": seconds, "threads": threads,
                   "torch_threads": torch.get_num_threads(), "frames": "uint8 240x320 RGB",
                   "montage": mdl.montage.name},
        "loadavg_before": load_before,
        "loadavg_after": load_average(),
        "results": results,
        "summary": {label: {"max_events_per_s": r["max_events_per_s"], "best_batch": r["best_batch"],
                            "batch1_p99_ms": r["batch1_p99_ms"]}
                    for label, r in results.items() if "sweep" in r},
    }
    path = None
    if write:
        if plot_png and predictors:
            payload["plot"] = plot(result_path(NAME, out_dir=out_dir, suffix=".png"), results, target).name
        path = write_result(NAME, payload, out_dir=out_dir)
    return payload, path
