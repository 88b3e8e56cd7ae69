"""Pipeline counters and per-stage timings (rolling percentiles), and the one-line live status.

Thread-safe: the capture, inference and outlet threads record here; the CLI reads :meth:`PipelineStats.snapshot`
about once per second.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

#: Timing names (seconds) recorded by the pipeline, in pipeline order.
#: ``capture_to_dispatch``: frame stamp -> onset queued (the source's frame queue and the event policy);
#: ``capture_to_dequeue``: frame stamp -> taken by the inference thread (``capture_to_dispatch`` + ``queue_wait``);
#: ``onset_to_ready``: onset (capture) -> response added to the synthesizer; ``onset_to_emitted``: onset -> end
#: of the push of the first output sample that holds the response (the glass-to-LSL latency, which includes the
#: output delay by design).
STAGES = ("capture_to_dispatch", "capture_to_dequeue", "queue_wait", "preprocess", "encoder", "qformer", "decoder",
          "inference", "synth_add", "onset_to_ready", "onset_to_emitted", "push", "push_lag")


class RollingWindow:
    """The last ``size`` values of a quantity, with percentiles."""

    def __init__(self, size: int = 1000) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self.count = 0

    def add(self, value: float) -> None:
        """Record one value."""
        self._values.append(float(value))
        self.count += 1

    def values(self) -> np.ndarray:
        """The values in the window, oldest first (float64 copy)."""
        return np.fromiter(self._values, float, len(self._values))


class RateMeter:
    """Events per second over a sliding time window (by event timestamps)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def add(self, t: float, n: int = 1) -> None:
        """Record ``n`` events at time ``t``."""
        self._times.extend([t] * n)

    def rate(self, now: float) -> float:
        """Events per second in the last ``window_s`` seconds."""
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()
        return len(self._times) / self.window_s


class PipelineStats:
    """Counters, rolling timings and rates of a running pipeline.

    Parameters
    ----------
    clock : callable
        Time source (LSL clock seconds).
    window : int
        Values kept per timing (benchmarks raise it to keep every value of a run).
    """

    COUNTERS = ("frames", "events", "responses", "late", "late_dropped", "late_clipped", "overload_dropped",
                "nonfinite_dropped", "nonfinite_samples", "source_drops", "source_reconnects", "samples_pushed",
                "markers_pushed", "batches")

    def __init__(self, clock: Callable[[], float], window: int = 1000) -> None:
        self.clock = clock
        self.window = int(window)
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {k: 0 for k in self.COUNTERS}
        self.timings: dict[str, RollingWindow] = {k: RollingWindow(window) for k in STAGES}
        self._events = RateMeter()
        self._push_first: tuple[float, int] | None = None
        self._push_last: tuple[float, int] | None = None
        self.outlet_cpu_s = 0.0
        self.queue_depth = 0
        self.started = clock()
        self.error: BaseException | None = None

    def incr(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a counter."""
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n
            if name == "events":
                self._events.add(self.clock(), n)

    def set_counter(self, name: str, value: int) -> None:
        """Set a counter (used for counts owned by another object, e.g. source reconnects)."""
        with self._lock:
            self.counters[name] = int(value)

    def time(self, name: str, seconds: float) -> None:
        """Record one timing in seconds."""
        with self._lock:
            if name not in self.timings:
                self.timings[name] = RollingWindow(self.window)
            self.timings[name].add(seconds)

    def samples(self, name: str) -> np.ndarray:
        """Every kept value of one timing in seconds, oldest first (empty when never recorded)."""
        with self._lock:
            window = self.timings.get(name)
            return window.values() if window is not None else np.zeros(0)

    def pushed(self, now: float, n_total: int) -> None:
        """Record that ``n_total`` samples have been pushed by wall time ``now``."""
        with self._lock:
            if self._push_first is None:
                self._push_first = (now, n_total)
            self._push_last = (now, n_total)
            self.counters["samples_pushed"] = n_total

    def effective_srate(self) -> float:
        """Samples pushed per second of wall time since the first push (NaN before two pushes)."""
        with self._lock:
            if self._push_first is None or self._push_last is None:
                return float("nan")
            (t1, n1), (t2, n2) = self._push_first, self._push_last
        return (n2 - n1) / (t2 - t1) if t2 > t1 else float("nan")

    def snapshot(self) -> dict[str, Any]:
        """A plain dict of all counters, timing percentiles (ms) and rates."""
        now = self.clock()
        with self._lock:  # copies only: the recording threads wait on this lock
            snap: dict[str, Any] = dict(self.counters)
            snap["events_per_s"] = self._events.rate(now)
            windows = {k: (w.values(), w.count) for k, w in self.timings.items()}
            snap["queue_depth"] = self.queue_depth
            snap["outlet_cpu_s"] = self.outlet_cpu_s
            snap["uptime_s"] = now - self.started
            snap["error"] = repr(self.error) if self.error is not None else None
        for k, (values, count) in windows.items():
            p50, p99, top = np.percentile(values, (50, 99, 100)) if values.size else (np.nan,) * 3
            snap[f"{k}_ms"] = {"p50": p50 * 1e3, "p99": p99 * 1e3, "max": top * 1e3, "n": count}
        snap["effective_srate"] = self.effective_srate()
        return snap


def _num(value: float | None, fmt: str) -> str:
    """``value`` formatted, or ``n/a`` before it is known (NaN: nothing measured yet)."""
    return "n/a" if value is None or value != value else format(value, fmt)


def format_status(snap: dict[str, Any]) -> str:
    """One status line, e.g. for the CLI: events/s, inference p50/p99, late events, queue depth, rate."""
    inf = snap.get("inference_ms", {})
    lag = snap.get("push_lag_ms", {})
    parts = [
        f"t={snap.get('uptime_s', 0):7.1f}s",
        f"ev/s={snap.get('events_per_s', 0):4.1f}",
        f"events={snap.get('events', 0)}",
        f"infer p50/p99={_num(inf.get('p50'), '.1f')}/{_num(inf.get('p99'), '.1f')}ms",
        f"late={snap.get('late', 0)}",
        f"dropped={snap.get('overload_dropped', 0) + snap.get('nonfinite_dropped', 0)}",
        f"queue={snap.get('queue_depth', 0)}",
        f"rate={_num(snap.get('effective_srate'), '.2f')}Hz",
        f"push lag p99={_num(lag.get('p99'), '.2f')}ms",
    ]
    if snap.get("lookahead_s") is not None:
        parts.append(f"lookahead={1e3 * snap['lookahead_s']:.1f}ms ({snap['lookahead_mode']})")
    if snap.get("source_reconnects"):
        parts.append(f"reconnects={snap['source_reconnects']}")
    if snap.get("source_skipped"):
        parts.append(f"skipped images={snap['source_skipped']}")
    if snap.get("artifacts"):
        parts.append(f"artifacts={sum(snap['artifacts'].values())}")
    faults = snap.get("faults")
    if faults:
        episodes = ", ".join(f"{k} {faults[k]}" for k in ("freeze", "drop", "restart") if k in faults)
        active = f" (now: {', '.join(faults['active'])})" if faults.get("active") else ""
        parts.append(f"faults: {episodes or 'clock'}{active}, not sent {faults.get('samples_not_sent', 0)}")
    if snap.get("recording") not in (None, "ok"):
        parts.append("RECORDING STOPPED")
    if snap.get("error"):
        parts.append(f"ERROR {snap['error']}")
    return " | ".join(parts)
