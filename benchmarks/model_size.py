"""Question: how big is each ViBE network, and how long does its CPU forward pass take?

For the tiny default (``ViBE.tiny``: vibe-tiny-vit + tiny Q-Former + tiny TSC-VAE) and the ViT-B-32 configuration
(``ViBE.base``), per montage, report the parameter count and fp32 size of every network (image encoder,
Q-Former, TSC-VAE encoder, TSC-VAE decoder) and the batch-1 CPU latency of each export stage (encoder,
qformer, decoder) and of the whole chain: torch eager, no autograd, median (and p95) of ``--repeats`` calls
after ``--warmup`` calls. Weights are random (latency does not depend on them). Results go to
``benchmarks/results/model_size-<machine>.json``.

Usage::

    python benchmarks/model_size.py                       # both sizes, things-eeg2 and things-meg, 1 thread
    python benchmarks/model_size.py --montages things-eeg2 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a checkout without `pip install -e .`
from vibe_rt.bench.common import percentiles, write_result  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"


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

    from vibe_rt.models import ViBE

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
            latency[name] = _latency(lambda: stage(inputs[name]), warmup, repeats)
        latency["chain"] = _latency(lambda: model(inputs["encoder"]), warmup, repeats)
    return {"size": size, "montage": montage, "encoder": model.cfg.encoder.name, "image_size": model.encoder.image_size,
            "n_tokens": model.encoder.n_tokens, "latent": [model.cfg.vae.latent_tokens, model.cfg.vae.latent_dim],
            "config": model.cfg.to_dict() | {"montage": montage}, "networks": sizes, "latency_ms": latency}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"], choices=["tiny", "base"])
    parser.add_argument("--montages", nargs="+", default=["things-eeg2", "things-meg"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    results = []
    for size in args.sizes:
        for montage in args.montages:
            r = measure(size, montage, args.warmup, args.repeats)
            results.append(r)
            lat = ", ".join(f"{k} {v['p50']:.2f}" for k, v in r["latency_ms"].items())
            print(f"{size:4s} {montage:11s} params {r['networks']['inference_total']['parameters']:>10,d} "
                  f"({r['networks']['inference_total']['megabytes_fp32']:.1f} MB) | p50 ms: {lat}")
    path = write_result("model_size", {"threads": args.threads, "warmup": args.warmup, "repeats": args.repeats,
                                       "results": results}, out_dir=RESULTS_DIR)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
