"""Encoding quality of a model (THINGS-EEG2 protocol) next to a ridge baseline on the same image features.

A thin entry point: the benchmark is :mod:`vibe_rt.bench.quality`, also run by ``vibe-rt bench quality`` (this
script takes the same options). Writes ``results/quality-<machine>.json`` and a PNG.

Usage::

    python benchmarks/quality.py                 # the embedded model on the dataset it records
    python benchmarks/quality.py --quick
"""

from _entry import run

if __name__ == "__main__":
    raise SystemExit(run("quality"))
