"""The output delay ("lookahead") chosen from the real path on this machine, and its one allowed growth.

``--lookahead auto`` (the default) times a warm-up of what every onset goes through before its response can be
emitted (frame preprocessing, every inference stage, channel selection and calibration, the synthesizer's
resampling) and sets::

    lookahead = p99(warm-up) * (1 + AUTO_MARGIN_FRACTION) + AUTO_MARGIN_S + push interval

The percentile covers the path's own spread, the proportional margin the slower runs of a loaded machine
(threads of the capture and outlet loops compete with inference while streaming, not during the warm-up), the
fixed margin what the stream adds to the path that the warm-up does not go through: the hand-offs from the
capture to the dispatch and inference threads, each a wake-up that may wait for a core. On the 2-core benchmark VM
(embedded model, ONNX Runtime, 18,000 every-frame responses) that overhead, ready time minus the warm-up's p99,
was 7 ms at the p99 and 8-9.5 ms at the p99.9 of the responses; with a 5 ms margin 1 to 3 responses per 10
minutes came late at every frame, and 2 of 2,101 at 3.5 onsets/s. The push interval is the time a sample waits for
its chunk.

While streaming the lookahead never shrinks. As soon as more than :data:`GROW_LATE_FRACTION` of the responses so
far came back late, counted over at least :data:`GROW_MIN_RESPONSES` (fewer made so far count as that many: two
late responses among the first 100 already exceed 1 %, one does not), it grows once, to what the responses
measured so far need (the same rule on their onset -> ready times) and at least twice the current value; this is
logged and announced on the marker stream. A path that is slower while streaming than in its warm-up (torch
eager on every core, competing with the capture and outlet threads) is so caught after a few responses, not
after a third of the first hundred came late. Timestamps are untouched: only the wall-clock delay of each push changes.
An explicit number (``--lookahead 0.25``) is a fixed lookahead and never changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Proportional margin on the warm-up's p99.
AUTO_MARGIN_FRACTION = 0.5
#: Fixed margin (s) for the stream's thread hand-offs (see the module docstring).
AUTO_MARGIN_S = 0.010
#: Warm-up runs of the real path.
WARMUP_RUNS = 30
#: The lookahead grows (once) when more than this fraction of the responses were late ...
GROW_LATE_FRACTION = 0.01
#: ... counted over at least this many responses.
GROW_MIN_RESPONSES = 100


@dataclass(frozen=True)
class Lookahead:
    """An output delay and how it was chosen.

    Attributes
    ----------
    seconds : float
        The delay between a sample's timestamp and its push.
    mode : str
        ``"auto"`` or ``"fixed"``.
    rule : str
        How it was chosen, in words (for the log, the status line and ``desc/synchronization``).
    """

    seconds: float
    mode: str
    rule: str

    @classmethod
    def fixed(cls, seconds: float) -> Lookahead:
        """A fixed lookahead (``--lookahead SECONDS``)."""
        return cls(float(seconds), "fixed", f"fixed at {seconds:g} s by --lookahead")


def auto_lookahead(path_times_s: Sequence[float] | np.ndarray, push_interval_s: float, maximum_s: float, *,
                   what: str = "warm-up runs") -> Lookahead:
    """The automatic lookahead for measured path times (see the module docstring), at most ``maximum_s`` (the
    rule then says so); no times: the margins and the push interval alone (a stream without a model)."""
    times = np.asarray(path_times_s, dtype=float)
    p99 = float(np.percentile(times, 99)) if times.size else 0.0
    seconds = p99 * (1 + AUTO_MARGIN_FRACTION) + AUTO_MARGIN_S + push_interval_s
    rule = (f"auto: p99 of {times.size} {what} {1e3 * p99:.1f} ms x {1 + AUTO_MARGIN_FRACTION:g} "
            f"+ {1e3 * AUTO_MARGIN_S:g} ms + push interval {1e3 * push_interval_s:g} ms")
    if seconds > maximum_s:
        seconds, rule = maximum_s, f"{rule}, capped at {maximum_s:g} s"
    return Lookahead(seconds, "auto", rule)


def should_grow(current: Lookahead, n_responses: int, n_late: int, grown: bool) -> bool:
    """True once, when an automatic lookahead proved too short (see the module docstring)."""
    return (current.mode == "auto" and not grown
            and n_late > GROW_LATE_FRACTION * max(n_responses, GROW_MIN_RESPONSES))


def grown_lookahead(current: Lookahead, onset_to_ready_s: Sequence[float] | np.ndarray, push_interval_s: float,
                    maximum_s: float) -> Lookahead:
    """The one growth: what the measured onset -> ready times need, at least twice ``current``, at most
    ``maximum_s``."""
    need = auto_lookahead(onset_to_ready_s, push_interval_s, maximum_s, what="streamed responses")
    seconds = min(max(need.seconds, 2 * current.seconds), maximum_s)
    return Lookahead(seconds, "auto", f"grown once from {1e3 * current.seconds:.1f} ms: {need.rule}")


__all__ = ["AUTO_MARGIN_FRACTION", "AUTO_MARGIN_S", "GROW_LATE_FRACTION", "GROW_MIN_RESPONSES", "Lookahead",
           "WARMUP_RUNS", "auto_lookahead", "grown_lookahead", "should_grow"]
