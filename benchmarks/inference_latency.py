"""Question: how fast does each backend run the ViBE chain, per stage and end to end?

A thin entry point: the benchmark is :mod:`vibe_rt.bench.inference` (torch eager vs ONNX Runtime staged/fused,
and on a GPU torch fp16 + CUDA graphs, ONNX Runtime CUDA and TensorRT; tiny and ViT-B-32 models; batch-1 latency
per stage and a batch sweep). Results go to ``benchmarks/results/inference_latency-<machine>.json``.

Usage::

    python benchmarks/inference_latency.py                 # CPU, tiny + base, ~2-3 min on 2 cores
    python benchmarks/inference_latency.py --device cuda   # GPU: torch CUDA, ORT CUDA, TensorRT if present
    python benchmarks/inference_latency.py --models tiny --seconds 1
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("vibe_rt") is None:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vibe_rt.bench.inference import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
