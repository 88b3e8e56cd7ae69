"""Time, memory and quality of the default simulated dataset; cost of the background noise; figures.

A thin entry point: the benchmark is :mod:`vibe_rt.bench.simulate`, also run by ``vibe-rt bench simulate`` (this
script takes the same options). Writes ``results/simulate-<machine>.json`` and two PNGs.

Usage::

    python benchmarks/simulate_dataset.py                                  # things-eeg2 into a temporary folder
    python benchmarks/simulate_dataset.py --montage things-meg --data data/sim-meg
"""

from _entry import run

if __name__ == "__main__":
    raise SystemExit(run("simulate"))
