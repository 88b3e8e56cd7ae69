"""Inference latency: how fast does each backend run the ViBE chain, per stage and end to end?

A thin entry point: the benchmark is :mod:`vibe_rt.bench.inference`, also run by ``vibe-rt bench inference`` (this
script takes the same options). Writes ``results/inference_latency-<machine>.json``.

Usage::

    python benchmarks/inference_latency.py                 # CPU, embedded model + ViT-B-32, ~2-3 min on 2 cores
    python benchmarks/inference_latency.py --device cuda   # GPU: torch CUDA, ORT CUDA, TensorRT if present
    python benchmarks/inference_latency.py --model tiny --seconds 1
"""

from _entry import run

if __name__ == "__main__":
    raise SystemExit(run("inference"))
