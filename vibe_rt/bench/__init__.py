"""Benchmarks of vibe-rt, one module per question, behind ``vibe-rt bench``.

- :mod:`~vibe_rt.bench.latency`: per-stage and glass-to-LSL latency inside the real streaming pipeline;
- :mod:`~vibe_rt.bench.stream`: output stream timing received by an LSL inlet, vs MNE-LSL's ``PlayerLSL``;
- :mod:`~vibe_rt.bench.inference`: per-stage latency of each backend (torch eager, ONNX Runtime, TensorRT);
- :mod:`~vibe_rt.bench.throughput`: sustained events/s per backend and batch size within the latency target;
- :mod:`~vibe_rt.bench.quality`: encoding r of a model vs the ridge baseline and the noise ceiling.

Each writes ``<out>/<name>-<machine>.json`` (see :mod:`~vibe_rt.bench.common`).
"""

from __future__ import annotations

BENCHMARKS = ("latency", "stream", "throughput", "quality")
