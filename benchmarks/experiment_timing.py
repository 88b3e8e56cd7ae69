"""PsychoPy RSVP timing: flip-to-marker offset, jitter and dropped frames, markers only or with the stream.

A thin entry point: the benchmark is :mod:`vibe_rt.bench.experiment_timing`, also run by ``vibe-rt bench
experiment-timing`` (this script takes the same options). Starts Xvfb when there is no DISPLAY. Writes
``results/experiment_timing-<machine>.json`` (``experiment_timing_synth-...`` with ``--synth``).

Usage::

    python benchmarks/experiment_timing.py [--duration 120] [--pacing auto] [--synth]
"""

from _entry import run

if __name__ == "__main__":
    raise SystemExit(run("experiment-timing"))
