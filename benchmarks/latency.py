"""Glass-to-LSL latency inside the real pipeline, per stage, per inference backend.

A thin entry point: the benchmark is :mod:`vibe_rt.bench.latency`, also run by ``vibe-rt bench latency`` (this
script takes the same options). Writes ``results/latency-<machine>.json`` and a PNG.

Usage::

    python benchmarks/latency.py                 # 30 s per backend on the embedded model
    python benchmarks/latency.py --quick
"""

from _entry import run

if __name__ == "__main__":
    raise SystemExit(run("latency"))
