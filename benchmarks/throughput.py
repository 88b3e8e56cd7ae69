"""Sustained events per second per inference backend, batch sizes swept until the latency target breaks.

A thin entry point: the benchmark is :mod:`vibe_rt.bench.throughput`, also run by ``vibe-rt bench throughput``
(this script takes the same options). Writes ``results/throughput-<machine>.json`` and a PNG.

Usage::

    python benchmarks/throughput.py
    python benchmarks/throughput.py --quick
"""

from _entry import run

if __name__ == "__main__":
    raise SystemExit(run("throughput"))
