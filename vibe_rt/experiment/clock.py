"""Clock conversion between PsychoPy's timebase and the LSL clock.

PsychoPy stamps a flip with ``psychopy.core.getTime()`` (the value that ``win.flip()`` returns and that
``win.callOnFlip`` callbacks see as ``win._frameTime``); vibe-rt stamps everything with ``pylsl.local_clock()``.
The offset between the two is measured by bracketing: read the LSL clock, the PsychoPy clock, the LSL clock
again, and take the bracket midpoint; of many such reads keep the narrowest bracket (its half-width bounds the
error of that estimate).

What this finds on Linux (measured on the development machines, see ``tests/test_experiment.py``):

- ``pylsl.local_clock()`` is liblsl's ``std::chrono::steady_clock``, i.e. ``CLOCK_MONOTONIC``, the same clock
  as Python's ``time.monotonic()`` / ``time.perf_counter()``.
- PsychoPy's raw timer is ``psychtoolbox.GetSecs`` when psychtoolbox imports, otherwise
  ``timeit.default_timer`` (= ``time.perf_counter``, ``CLOCK_MONOTONIC``).
- ``psychopy.core.getTime()`` subtracts the raw time at which ``psychopy.clock`` was imported
  (``psychopy.core.monotonicClock.getLastResetTime()``), so it starts near 0 s.

Hence on Linux the offset is just that reset time and the two clocks do not drift apart; the bracketing
measurement makes no such assumption (it also covers Windows' QueryPerformanceCounter and macOS'
``mach_absolute_time``), and :func:`measure_offset` is repeated at the end of a run to check for drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError

Clock = Callable[[], float]


@dataclass(frozen=True)
class ClockOffset:
    """Offset that converts times of a source clock to a destination clock: ``t_dst = t_src + offset``.

    Parameters
    ----------
    offset : float
        Seconds to add to a source-clock time.
    uncertainty : float
        Half-width of the narrowest bracket (seconds): a bound on the error of ``offset``.
    n_reads : int
        Number of bracketing reads the estimate was chosen from.
    """

    offset: float
    uncertainty: float
    n_reads: int = 1

    def to_dst(self, t_src: float) -> float:
        """Convert a source-clock time to the destination clock (seconds)."""
        return float(t_src) + self.offset

    def to_src(self, t_dst: float) -> float:
        """Convert a destination-clock time back to the source clock (seconds)."""
        return float(t_dst) - self.offset


def measure_offset(src: Clock, dst: Clock, n_reads: int = 100) -> ClockOffset:
    """Measure ``dst - src`` by bracketing reads (``dst``, ``src``, ``dst``), keeping the narrowest bracket.

    Parameters
    ----------
    src : callable
        Source clock, e.g. ``psychopy.core.getTime``.
    dst : callable
        Destination clock, e.g. ``pylsl.local_clock``.
    n_reads : int
        Number of brackets to try (each takes a few microseconds).

    Returns
    -------
    ClockOffset
        ``offset`` such that ``dst ~= src + offset`` and the half-width of the bracket used.
    """
    if n_reads < 1:
        raise ConfigError(f"n_reads must be >= 1, got {n_reads}")
    best: tuple[float, float] | None = None
    for _ in range(int(n_reads)):
        a = dst()
        b = src()
        c = dst()
        width = c - a
        if width < 0:
            continue
        if best is None or width < best[0]:
            best = (width, 0.5 * (a + c) - b)
    if best is None:
        raise ConfigError("the destination clock ran backwards in every bracket: it is not a steady clock")
    return ClockOffset(offset=best[1], uncertainty=0.5 * best[0], n_reads=int(n_reads))


def lsl_clock() -> float:
    """``pylsl.local_clock()`` in seconds."""
    import pylsl

    return pylsl.local_clock()


def psychopy_clock() -> Clock:
    """PsychoPy's ``core.getTime`` (the clock of ``win.flip()``'s return value); imports PsychoPy lazily."""
    from .._imports import import_optional_dependency

    import_optional_dependency("psychopy")
    from psychopy import core  # noqa: PLC0415

    return core.getTime


def psychopy_to_lsl(n_reads: int = 200) -> ClockOffset:
    """Measure the offset from PsychoPy's ``core.getTime()`` to ``pylsl.local_clock()``.

    ``t_lsl = t_psychopy + result.offset``. Needs no window or display (only ``psychopy.core``).
    """
    return measure_offset(psychopy_clock(), lsl_clock, n_reads=n_reads)
