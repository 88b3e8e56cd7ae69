"""Stream timing: vibe-rt's outlet loop vs MNE-LSL's PlayerLSL, received by an LSL inlet in another process.

A thin entry point: the benchmark is :mod:`vibe_rt.bench.stream`, also run by ``vibe-rt bench stream`` (this
script takes the same options). See ``benchmarks/README.md`` for what each number means.

Usage::

    python benchmarks/stream_timing.py --duration 600        # 10 minutes, 64 channels at 1000 Hz
    python benchmarks/stream_timing.py --quick --no-peer
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("vibe_rt") is None:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vibe_rt.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["bench", "stream", *sys.argv[1:]]))
