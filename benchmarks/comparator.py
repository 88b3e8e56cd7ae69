"""Comparator on ground truth: recovered latency and gain, calibration in and out of sample, cost per event.

A thin entry point: the benchmark is :mod:`vibe_rt.bench.comparator`, also run by ``vibe-rt bench comparator``
(this script takes the same options). Writes ``results/comparator-<machine>.json``.

Usage::

    python benchmarks/comparator.py              # the full grid, about 70 s on 2 cores
    python benchmarks/comparator.py --quick      # one session: a smoke check
"""

from _entry import run

if __name__ == "__main__":
    raise SystemExit(run("comparator"))
