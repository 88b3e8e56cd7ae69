"""Stream timing: vibe-rt's outlet loop vs MNE-LSL's PlayerLSL, received by an LSL inlet in another process.

A thin entry point: the benchmark is :mod:`vibe_rt.bench.stream`, also run by ``vibe-rt bench stream`` (this
script takes the same options). Writes ``results/stream-<machine>.json``. See ``benchmarks/README.md`` for what
each number means.

Usage::

    python benchmarks/stream_timing.py --duration 600        # 10 minutes, 64 channels at 1000 Hz
    python benchmarks/stream_timing.py --quick --no-peer
"""

from _entry import run

if __name__ == "__main__":
    raise SystemExit(run("stream"))
