"""Artifacts as a consumer sees them: 5 s of a 64-channel stream with every artifact, received by an LSL inlet.

A thin entry point: the benchmark is :mod:`vibe_rt.bench.artifacts`, also run by ``vibe-rt bench artifacts``.
Writes ``results/artifacts-<machine>.json`` and the README's picture ``results/artifacts-<machine>.png``.

Usage::

    python benchmarks/artifacts.py
"""

from _entry import run

if __name__ == "__main__":
    raise SystemExit(run("artifacts"))
