"""The output sample clock: integer sample counter, absolute emission targets on the LSL clock.

Sample ``n`` of the output stream carries the timestamp ``t0 + n / srate`` (LSL ``local_clock`` seconds) and
is pushed at the wall time ``t0 + n / srate + lookahead``. The fixed output delay ``lookahead`` is what lets a
response computed after its stimulus onset (capture, pre-processing, inference) still land at its true time:
an onset at time ``t`` is on time as long as its epoch reaches the synthesizer before ``t + lookahead``.

Timestamps are computed from the integer sample counter, never accumulated as floats, so there is no drift
however long the stream runs; the pacing loop sleeps until absolute targets on the same clock (as MNE-LSL's
``PlayerLSL`` does), never for fixed periods.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Clock = Callable[[], float]


def lsl_clock() -> float:
    """``pylsl.local_clock()`` (seconds on LSL's steady clock)."""
    import pylsl

    return pylsl.local_clock()


@dataclass(frozen=True)
class SampleClock:
    """Maps sample indices to timestamps and emission times.

    Parameters
    ----------
    srate : float
        Output sampling rate in Hz.
    t0 : float
        Timestamp of sample 0 (LSL clock seconds).
    lookahead : float
        Output delay in seconds: sample ``n`` is emitted at ``timestamp(n) + lookahead``.
    pace_factor : float
        1 for a true clock. A device clock drift fault (:mod:`vibe_rt.stream.faults`) sets ``1 + ppm * 1e-6``:
        samples are then produced (emitted) at ``srate * pace_factor`` while still stamped at ``srate``, and
        sample ``n`` is taken at the true time ``t0 + n / (srate * pace_factor)``.

    The values come checked from :meth:`vibe_rt.stream.config.StreamConfig.validate` (a positive finite rate, a
    lookahead of 0..10 s).
    """

    srate: float
    t0: float
    lookahead: float = 0.25
    pace_factor: float = 1.0

    def timestamp(self, n: int) -> float:
        """Timestamp of sample ``n`` (seconds)."""
        return self.t0 + n / self.srate

    def timestamps(self, start: int, n: int) -> list[float]:
        """Timestamps of samples ``start .. start + n - 1`` (each from the integer index).

        Vectorised, and bit-identical to ``t0 + i / srate`` per sample (integers below 2**53 convert exactly).
        """
        return (self.t0 + np.arange(start, start + n, dtype=np.float64) / self.srate).tolist()

    def emit_time(self, n: int) -> float:
        """Wall time (LSL clock) at which sample ``n`` is due to be pushed."""
        return self.t0 + n / (self.srate * self.pace_factor) + self.lookahead

    def n_due(self, now: float) -> int:
        """Number of samples (from 0) whose emission time is ``<= now``."""
        x = (now - self.t0 - self.lookahead) * self.srate * self.pace_factor + 1e-6  # float rounding (~ns)
        if x < 0:
            return 0
        return int(math.floor(x)) + 1

    def sample_index(self, t: float) -> int:
        """Nearest output sample to time ``t`` (rounding: at most half a sample, ``0.5 / srate``, off)."""
        return int(round((t - self.t0) * self.srate))

    def device_time(self, t: float) -> float:
        """The timestamp the stream gives the sample taken at the true time ``t`` (``t`` itself unless the clock
        drifts: ``t0 + (t - t0) * pace_factor``)."""
        return t if self.pace_factor == 1.0 else self.t0 + (t - self.t0) * self.pace_factor


def chunk_samples(srate: float, chunk_s: float) -> int:
    """Samples per pushed chunk for a target chunk duration (at least 1)."""
    return max(1, int(round(srate * chunk_s)))


class Pacer:
    """Decides how many samples to emit now and when to wake up next, against absolute targets.

    Pure apart from the injected ``clock`` and ``sleep``: the outlet loop calls :meth:`due` then pushes, then
    :meth:`wait`; a test drives it with a fake clock.

    Parameters
    ----------
    sample_clock : SampleClock
        The output clock.
    chunk : int
        Nominal samples per push.
    clock : callable
        Returns the current LSL time.
    sleep : callable
        ``sleep(seconds)``; default :func:`time.sleep`.
    max_chunk : int | None
        Most samples emitted in one push when catching up after a stall (default ``50 * chunk``).
    """

    def __init__(self, sample_clock: SampleClock, chunk: int, clock: Clock,
                 sleep: Callable[[float], None] | None = None, max_chunk: int | None = None) -> None:
        self.sample_clock = sample_clock
        self.chunk = int(chunk)
        self.clock = clock
        self.sleep = sleep or time.sleep
        self.max_chunk = int(max_chunk or 50 * self.chunk)
        self.n_emitted = 0

    def due(self) -> tuple[int, int]:
        """``(start, n)`` of the samples due now (``n`` may be 0); call :meth:`advance` once pushed."""
        n = self.sample_clock.n_due(self.clock()) - self.n_emitted
        return self.n_emitted, max(0, min(n, self.max_chunk))

    def advance(self, n: int) -> None:
        """Mark ``n`` samples as emitted."""
        self.n_emitted += int(n)

    def next_target(self) -> float:
        """Wall time at which the next full chunk is due (absolute)."""
        return self.sample_clock.emit_time(self.n_emitted + self.chunk - 1)

    def wait(self, stop_check: Callable[[], bool] | None = None, max_sleep: float = 0.05) -> None:
        """Sleep until :meth:`next_target` (in slices of at most ``max_sleep`` to stay responsive to stop)."""
        target = self.next_target()
        while True:
            delay = target - self.clock()
            if delay <= 0 or (stop_check is not None and stop_check()):
                return
            self.sleep(min(delay, max_sleep))
