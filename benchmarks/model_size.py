"""Network sizes and batch-1 CPU latency of each ViBE network, tiny and ViT-B-32 presets, per montage.

A thin entry point: the benchmark is :mod:`vibe_rt.bench.model_size`, also run by ``vibe-rt bench model-size``
(this script takes the same options). Writes ``results/model_size-<machine>.json``.

Usage::

    python benchmarks/model_size.py                                   # both sizes, things-eeg2 and things-meg
    python benchmarks/model_size.py --montage things-eeg2 --threads 2
"""

from _entry import run

if __name__ == "__main__":
    raise SystemExit(run("model-size"))
