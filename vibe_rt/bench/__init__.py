"""Benchmarks of vibe-rt, one module per question, behind ``vibe-rt bench <name>``.

- :mod:`~vibe_rt.bench.latency`: per-stage and glass-to-LSL latency inside the real streaming pipeline;
- :mod:`~vibe_rt.bench.stream`: output stream timing received by an LSL inlet, vs MNE-LSL's ``PlayerLSL``;
- :mod:`~vibe_rt.bench.throughput`: sustained events/s per backend and batch size within the latency target;
- :mod:`~vibe_rt.bench.quality`: encoding r of a model vs the ridge baseline and the noise ceiling;
- :mod:`~vibe_rt.bench.inference`: per-stage latency of each backend (torch eager, ONNX Runtime, TensorRT);
- :mod:`~vibe_rt.bench.comparator`: latency and gain recovered from ground truth, calibration, cost per event;
- :mod:`~vibe_rt.bench.model_size`: parameters, size and CPU latency of each network;
- :mod:`~vibe_rt.bench.simulate`: time, memory and quality of the default simulated dataset;
- :mod:`~vibe_rt.bench.experiment_timing`: PsychoPy RSVP onset and marker timing.

Each has ``run(**options) -> (result, path)`` and writes ``<out>/<name>-<machine>.json`` (see
:mod:`~vibe_rt.bench.common`); :mod:`~vibe_rt.bench.suite` holds the names, one configuration for all
(:class:`~vibe_rt.bench.suite.BenchConfig`) and the call that runs one; :mod:`~vibe_rt.bench.tables` rebuilds the
README tables from the results.

Importing this package keeps LSL on this machine for the benchmark's outlets and inlets
(:func:`~vibe_rt.lsl_config.confine_lsl_to_machine`, unless ``LSLAPICFG`` is already set): a benchmark never
announces its streams on the network.
"""

from __future__ import annotations

from ..lsl_config import confine_lsl_to_machine

confine_lsl_to_machine()
