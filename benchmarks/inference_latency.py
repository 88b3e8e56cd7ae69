"""Question: how fast does each backend run the ViBE chain, per stage and end to end?

For the tiny default model (``ViBE.tiny``) and the ViT-B-32 configuration (``ViBE.base``), on every backend and
precision available on the chosen device (CPU: torch eager fp32, ONNX Runtime fp32 staged and fused; CUDA: torch
fp32/fp16 (+ CUDA graphs), ONNX Runtime CUDA, TensorRT fp32/fp16 (+ CUDA graphs) when installed), measure:

* batch-1 latency per stage (encoder, Q-Former, decoder) and for the whole chain: p50/p95/p99/max (ms);
* throughput (images/s) for a sweep of batch sizes, and the best batch with its latency.

Each measurement warms up first; every backend returns host arrays, so each timed call includes device
synchronisation. Weights are random (latency does not depend on them). Results go to
``benchmarks/results/inference_latency-<machine>.json``.

Usage::

    python benchmarks/inference_latency.py                 # CPU, tiny + base, ~2-3 min on 2 cores
    python benchmarks/inference_latency.py --device cuda   # GPU: torch CUDA, ORT CUDA, TensorRT if present
    python benchmarks/inference_latency.py --models tiny --seconds 1
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
if importlib.util.find_spec("vibe_rt") is None:  # running from a checkout without `pip install -e .`
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from _common import machine_name, percentiles, write_result  # noqa: E402


def make_model(name: str, montage: str):
    from vibe_rt.montage import get_montage
    from vibe_rt.models.vibe import ViBE

    factory = getattr(ViBE, name)
    return factory(get_montage(montage)).eval()


def variants(device: str) -> list[dict[str, Any]]:
    """(label, backend, precision, fused, options) to measure on this device, skipping what cannot run."""
    from vibe_rt._imports import import_optional_dependency

    ort = import_optional_dependency("onnxruntime", raise_error=False)
    out: list[dict[str, Any]] = [dict(label="torch-fp32", backend="torch", precision="fp32", fused=False)]
    if device == "cpu":
        if ort is not None:
            out += [dict(label="onnxruntime-fp32", backend="onnxruntime", precision="fp32", fused=False),
                    dict(label="onnxruntime-fp32-fused", backend="onnxruntime", precision="fp32", fused=True)]
        return out
    out += [dict(label="torch-fp16", backend="torch", precision="fp16", fused=False),
            dict(label="torch-fp16-cudagraph", backend="torch", precision="fp16", fused=False, cuda_graph=True)]
    if ort is not None and "CUDAExecutionProvider" in ort.get_available_providers():
        out += [dict(label="onnxruntime-cuda-fp32", backend="onnxruntime", precision="fp32", fused=False),
                dict(label="onnxruntime-cuda-fp32-fused", backend="onnxruntime", precision="fp32", fused=True)]
    if import_optional_dependency("tensorrt", raise_error=False) is not None:
        out += [dict(label="tensorrt-fp32", backend="tensorrt", precision="fp32", fused=False),
                dict(label="tensorrt-fp16", backend="tensorrt", precision="fp16", fused=False),
                dict(label="tensorrt-fp16-fused", backend="tensorrt", precision="fp16", fused=True),
                dict(label="tensorrt-fp16-fused-cudagraph", backend="tensorrt", precision="fp16", fused=True,
                     cuda_graph=True)]
    return out


def _summary(batch: int, samples: dict[str, list[float]]) -> dict:
    total = percentiles(samples["total"], 1e3)
    return {"batch": batch, "iterations": len(samples["total"]),
            "stages_ms": {k: percentiles(v, 1e3) for k, v in samples.items() if k != "total"},
            "total_ms": total, "throughput_per_s": batch / (total["mean"] / 1e3)}


def measure_interleaved(predictors: dict, batch: int, seconds: float, min_iters: int, max_iters: int,
                        warmup: int) -> dict[str, dict]:
    """Time ``predict`` of every predictor on the same random pixels, round-robin: one call of each per round,
    so that load from other processes (a shared machine) hits all variants alike. Per-stage and total
    percentiles in ms."""
    rng = np.random.default_rng(0)
    pixels = {}
    for label, pred in predictors.items():
        s = pred.image_size
        pixels[label] = rng.standard_normal((batch, 3, s, s)).astype(np.float32)
        for _ in range(warmup):
            pred.predict(pixels[label])
    samples: dict[str, dict[str, list[float]]] = {label: {} for label in predictors}
    t_end = time.perf_counter() + seconds * len(predictors)
    n = 0
    while n < max_iters and (n < min_iters or time.perf_counter() < t_end):
        for label, pred in predictors.items():
            _, timings = pred.predict(pixels[label])
            for k, v in timings.items():
                samples[label].setdefault(k, []).append(v)
        n += 1
    return {label: _summary(batch, smp) for label, smp in samples.items()}


def make_predictor(model, var: dict, args, engines_dir: Path):
    from vibe_rt.runtime.predictor import create_predictor

    kw = {k: v for k, v in var.items() if k in ("cuda_graph",)}
    device = "cpu" if args.device == "cpu" else "cuda"
    predictor = create_predictor(model, var["backend"], engines_dir=engines_dir, precision=var["precision"],
                                 device=device, fused=var["fused"], intra_op_threads=args.threads,
                                 warmup=False, **kw)
    predictor.warmup(batch=1)  # CUDA graphs are captured here, for batch 1
    return predictor


def bench_model(model, args, engines_dir: Path, batches: list[int], seconds: float, min_iters: int,
                warmup: int) -> dict[str, Any]:
    """Every variant of one model: setup, batch-1 latency, batch sweep, best batch."""
    out: dict[str, Any] = {}
    predictors: dict[str, Any] = {}
    for var in variants(args.device):
        t0 = time.perf_counter()
        try:
            predictors[var["label"]] = make_predictor(model, var, args, engines_dir)
        except Exception as err:  # record and go on: one missing backend must not lose the others
            out[var["label"]] = {"error": f"{type(err).__name__}: {err}"}
            print(f"  {var['label']}: error {err}")
            continue
        out[var["label"]] = {"backend": var["backend"], "precision": var["precision"], "fused": var["fused"],
                             "device": predictors[var["label"]].device, "cuda_graph": bool(var.get("cuda_graph")),
                             "setup_s": round(time.perf_counter() - t0, 2), "batches": {}}
    for batch in batches:
        preds = {k: p for k, p in predictors.items() if batch == 1 or not out[k]["cuda_graph"]}
        res = measure_interleaved(preds, batch, seconds if batch == 1 else seconds / 2,
                                  min_iters if batch == 1 else max(3, min_iters // 4), args.max_iters,
                                  warmup if batch == 1 else max(1, warmup // 4))
        for label, r in res.items():
            if batch == 1:
                out[label]["batch1"] = r
            out[label]["batches"][str(batch)] = {"total_ms": r["total_ms"], "throughput_per_s": r["throughput_per_s"]}
    for label in predictors:
        best_b, best = max(out[label]["batches"].items(), key=lambda kv: kv[1]["throughput_per_s"])
        out[label].update(best_batch=int(best_b), best_throughput_per_s=best["throughput_per_s"],
                          best_batch_total_ms=best["total_ms"])
    return out


def summarise(variants_: dict[str, Any]) -> dict[str, Any]:
    """Batch-1 latency (p50 and min) of each variant and its speed-up over torch eager fp32; fused vs staged.

    The minimum is reported beside the median because on a shared machine the median includes time the
    process spent descheduled; the minimum is what the backend itself can do.
    """
    out: dict[str, Any] = {}
    for stat in ("p50", "min"):
        ms = {k: r["batch1"]["total_ms"][stat] for k, r in variants_.items() if "batch1" in r}
        ref = ms.get("torch-fp32")
        out[f"batch1_{stat}_ms"] = ms
        out[f"speedup_vs_torch_fp32_{stat}"] = {k: ref / m for k, m in ms.items()} if ref else {}
        for staged, fused in (("onnxruntime-fp32", "onnxruntime-fp32-fused"),
                              ("onnxruntime-cuda-fp32", "onnxruntime-cuda-fp32-fused")):
            if staged in ms and fused in ms:
                out[f"fused_speedup_{staged}_{stat}"] = ms[staged] / ms[fused]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--models", default="tiny,base", help="comma list of ViBE presets (tiny, base)")
    parser.add_argument("--montage", default="things-eeg2")
    parser.add_argument("--seconds", type=float, default=None, help="time per batch-1 measurement")
    parser.add_argument("--min-iters", type=int, default=20)
    parser.add_argument("--max-iters", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    parser.add_argument("--engines-dir", type=Path, default=None, help="engine cache (default: a temporary one)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not write results/")
    args = parser.parse_args(argv)

    import torch

    from vibe_rt._logs import set_log_level
    from vibe_rt.runtime.backends import physical_cores

    set_log_level("WARNING")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA GPU")
    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    args.threads = threads
    load_before = list(os.getloadavg())  # other processes on a shared machine skew the tails: recorded
    tmp = tempfile.TemporaryDirectory(prefix="vibe-rt-bench-engines-")
    engines_dir = args.engines_dir or Path(tmp.name)
    results: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for model_name in [m.strip() for m in args.models.split(",") if m.strip()]:
        try:
            model = make_model(model_name, args.montage)
        except Exception as err:  # a preset that cannot be built here is reported, not fatal
            results[model_name] = {"error": f"{type(err).__name__}: {err}"}
            print(f"{model_name}: skipped ({err})")
            continue
        n_params = sum(p.numel() for p in model.parameters())
        small = n_params < 20e6
        seconds = args.seconds if args.seconds is not None else (1.5 if small else 2.0)
        if args.device == "cpu":
            batches = [1, 4, 16] if small else [1, 4]
        else:
            batches = [1, 8, 32, 64]
        per_model: dict[str, Any] = {"parameters": int(n_params), "image_size": int(model.encoder.image_size),
                                     "montage": args.montage, "batches": batches}
        per_model["variants"] = bench_model(model, args, engines_dir, batches, seconds,
                                            args.min_iters if small else max(5, args.min_iters // 4),
                                            args.warmup if small else 2)
        for label, res in per_model["variants"].items():
            if "batch1" not in res:
                continue
            st = res["batch1"]["stages_ms"]
            stage_txt = " ".join(f"{k} {v['p50']:.3f}" for k, v in st.items())
            print(f"{model_name:5s} {label:30s} b1 min {res['batch1']['total_ms']['min']:8.3f} "
                  f"p50 {res['batch1']['total_ms']['p50']:8.3f} ms "
                  f"p99 {res['batch1']['total_ms']['p99']:8.3f} ms [{stage_txt}] best b{res['best_batch']} "
                  f"{res['best_throughput_per_s']:8.1f}/s")
        results[model_name] = per_model
        summary[model_name] = summarise(per_model["variants"])
    payload = {"device": args.device, "threads": threads, "loadavg_before": load_before,
               "loadavg_after": list(os.getloadavg()), "results": results, "summary": summary}
    for name, s in summary.items():
        for stat in ("p50", "min"):
            print(f"{name}: speed-up vs torch fp32 (batch-1 {stat}): "
                  + ", ".join(f"{k} {x:.2f}x" for k, x in s[f"speedup_vs_torch_fp32_{stat}"].items()))
    if not args.no_write:
        # a CPU run on a GPU machine is named after the machine's CPU side
        gpu_machine = torch.cuda.is_available()
        name = machine_name() + ("-cpu" if gpu_machine and args.device == "cpu" else "")
        path = write_result("inference_latency", payload, machine=name)
        print(f"wrote {path}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
