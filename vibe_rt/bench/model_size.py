"""Question: how big is each ViBE network, and how long does its CPU forward pass take?

For the tiny default (``ViBE.tiny``: vibe-tiny-vit + tiny Q-Former + tiny TSC-VAE) and the ViT-B-32 configuration
(``ViBE.base``), per montage, report the parameter count and fp32 size of every network (image encoder,
Q-Former, TSC-VAE encoder, TSC-VAE decoder) and the batch-1 CPU latency of each export stage (encoder,
qformer, decoder) and of the whole chain: torch eager, no autograd, median (and p95) of ``repeats`` calls
after ``warmup`` calls. Weights are random (latency does not depend on them). Writes
``<out>/model_size-<machine>.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from .._logs import logger
from ..errors import ConfigError
from .common import percentiles, write_result

NAME = "model_size"
SIZES = ("tiny", "base")
MONTAGES = ("things-eeg2", "things-meg")


def _params(module) -> dict[str, float]:
    n = sum(p.numel() for p in module.parameters())
    return {"parameters": n, "megabytes_fp32": round(4 * n / 1e6, 3)}


def _latency(fn: Callable[[], Any], warmup: int, repeats: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return percentiles(samples, scale=1e3)


def measure(size: str, montage: str, warmup: int, repeats: int) -> dict[str, Any]:
    """Sizes and batch-1 latencies (ms) of one configuration."""
    import torch

    from ..models import ViBE

    model = getattr(ViBE, size)(montage).eval()
    networks = {"image_encoder": model.encoder, "qformer": model.qformer, "vae_encoder": model.vae.encoder,
                "vae_decoder": model.vae.decoder}
    sizes = {name: _params(net) for name, net in networks.items()}
    inference = {k: v for k, v in sizes.items() if k != "vae_encoder"}
    sizes["inference_total"] = {key: round(sum(v[key] for v in inference.values()), 3)
                                for key in ("parameters", "megabytes_fp32")}
    inputs = model.example_inputs(batch=1)
    latency = {}
    with torch.inference_mode():
        for name, stage in model.stages().items():
            latency[name] = _latency(partial(stage, inputs[name]), warmup, repeats)
        latency["chain"] = _latency(lambda: model(inputs["encoder"]), warmup, repeats)
    return {"size": size, "montage": montage, "encoder": model.cfg.encoder.name, "image_size": model.encoder.image_size,
            "n_tokens": model.encoder.n_tokens, "latent": [model.cfg.vae.latent_tokens, model.cfg.vae.latent_dim],
            "config": model.cfg.to_dict() | {"montage": montage}, "networks": sizes, "latency_ms": latency}


def run(*, sizes: Sequence[str] = SIZES, montages: Sequence[str] = MONTAGES, threads: int = 1, warmup: int = 10,
        repeats: int = 50, out_dir: str | Path | None = None, write: bool = True
        ) -> tuple[dict[str, Any], Path | None]:
    """Sizes and batch-1 CPU latencies of every configuration ``sizes`` x ``montages``.

    Parameters
    ----------
    sizes : sequence of {"tiny", "base"}
        ViBE presets (``ViBE.tiny``, ``ViBE.base``).
    montages : sequence of str
        Montage names (:func:`vibe_rt.montage.get_montage`).
    threads : int
        torch intra-op threads.
    warmup, repeats : int
        Untimed and timed calls per stage.
    """
    import torch

    unknown = sorted(set(sizes) - set(SIZES))
    if unknown:
        raise ConfigError(f"model size {unknown[0]!r} is not a preset; use {' or '.join(SIZES)}")
    torch.set_num_threads(threads)
    results = []
    for size in sizes:
        for montage in montages:
            r = measure(size, montage, warmup, repeats)
            results.append(r)
            logger.info("%s %s: %s parameters (%.1f MB); p50 ms: %s", size, montage,
                        f"{r['networks']['inference_total']['parameters']:,d}",
                        r["networks"]["inference_total"]["megabytes_fp32"],
                        ", ".join(f"{k} {v['p50']:.2f}" for k, v in r["latency_ms"].items()))
    payload = {"threads": threads, "warmup": warmup, "repeats": repeats, "results": results,
               "summary": {f"{r['size']} {r['montage']}": {
                   "parameters": r["networks"]["inference_total"]["parameters"],
                   "chain_p50_ms": r["latency_ms"]["chain"]["p50"]} for r in results}}
    path = write_result(NAME, payload, out_dir=out_dir) if write else None
    return payload, path
