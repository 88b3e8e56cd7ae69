"""Device and transport faults for testing LSL consumers (``--faults``), in the spirit of OpenViBE's Simulated
Deviator driver (a sampling rate that drifts by a random walk, and Poisson-timed freezes).

========================  ===========================================================================================
item                      effect (what a receiver sees)
========================  ===========================================================================================
``drift:50ppm``           the device clock runs fast (negative: slow): samples are produced at
                          ``srate * (1 + ppm * 1e-6)`` while stamped at the nominal rate (``t0 + n / srate``), so the
                          arrival rate on the receiver's clock is off by ``ppm`` and the stamps fall behind (or run
                          ahead of) true time by ``ppm`` us per second; a response is placed at the sample the
                          device takes at its true time
``jitter:0.5ms``          Gaussian noise of that sd added to every sample's timestamp (``ms``, ``us`` or ``s``)
``freeze:2s@30s``         no data for 2 s from stream time 30 s, then the backlog arrives at once (no sample lost)
``drop:100ms@20s``        the samples of 100 ms are never sent: a gap in the data and in the timestamps
``restart:1s@40s``        the signal outlet is destroyed and, 1 s later (default), recreated with the same
                          ``source_id`` (``restart@40s``); the samples of the down time are lost, a recovering inlet
                          reconnects
========================  ===========================================================================================

``@T`` is a stream time (``30s``, ``1.5min``: seconds after the first sample); ``@R/min`` (or ``/s``) instead
repeats the fault at Poisson times of that mean rate (as the Simulated Deviator's freeze frequency), seeded by
``--seed``. Freezes, drops and restarts may be given several times; drift and jitter once.

Every fault is announced on the marker stream (``{"kind": "fault", "fault": "freeze", "status": "start", ...}``
and ``"end"``, stamped at the stream time where it starts and ends; drift and jitter at the first sample and when
the stream stops) and counted in the status (``faults``). The recording (``--record``) holds every sample the
device produced, with the fault markers: faults concern the transmission. Faults never put NaN in the stream and
never stop it: a freeze ends, a restarted outlet comes back (a failed re-creation is retried).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import numpy as np

from .._logs import logger
from ..errors import ConfigError
from .itemlist import RATES, SECONDS, Item, in_range, quantity, split_items

FLAG = "--faults"
#: Largest clock error (ppm): 1 %, far beyond any crystal (tens of ppm).
MAX_PPM = 10_000.0
MAX_JITTER_S = 0.1
MAX_FAULT_S = 600.0
MAX_RATE_PER_MIN = 60.0


@dataclass(frozen=True)
class ClockDrift:
    """Samples produced at ``srate * (1 + ppm * 1e-6)``, stamped at ``srate``."""

    ppm: float


@dataclass(frozen=True)
class Jitter:
    """Gaussian timestamp jitter of ``sd_s`` seconds."""

    sd_s: float


@dataclass(frozen=True)
class Episode:
    """A fault with a duration: ``kind`` (``freeze``, ``drop`` or ``restart``) for ``duration_s`` seconds, at stream
    time ``at_s`` or at Poisson times of ``rate_per_min``."""

    kind: str
    duration_s: float
    at_s: float | None = None
    rate_per_min: float | None = None


FaultSpec: TypeAlias = ClockDrift | Jitter | Episode
FAULT_NAMES = ("drift", "jitter", "freeze", "drop", "restart")
_EPISODES = ("freeze", "drop", "restart")
_RESTART_DOWN_S = 1.0


def parse_faults(text: str | None) -> tuple[FaultSpec, ...]:
    """``--faults`` text -> fault specs (None or ``"none"``: none); see the module docstring for the grammar."""
    if text is None or text.strip().lower() == "none":
        return ()
    out: list[FaultSpec] = []
    for item in split_items(text, FLAG):
        out.append(_parse_item(item))
    for kind in (ClockDrift, Jitter):
        if sum(isinstance(f, kind) for f in out) > 1:
            name = "drift" if kind is ClockDrift else "jitter"
            raise ConfigError(f"{FLAG} gives {name} more than once; give it once")
    return tuple(out)


def _parse_item(item: Item) -> FaultSpec:
    name = item.name
    if name not in FAULT_NAMES:
        raise ConfigError(f"{FLAG}: unknown fault {name!r}; use {', '.join(FAULT_NAMES)} (e.g. drift:50ppm,"
                          "jitter:0.5ms,freeze:2s@30s,drop:100ms@20s,restart@40s)")
    if name in ("drift", "jitter"):
        if item.value is None or item.when is not None:
            example = "drift:50ppm" if name == "drift" else "jitter:0.5ms"
            raise ConfigError(f"{FLAG} {item.raw!r}: write {example} (a value, no @)")
        if name == "drift":
            ppm = quantity(item.value, {"ppm": 1.0}, flag=FLAG, item=item.raw, what="the clock error")
            if ppm == 0 or abs(ppm) > MAX_PPM:
                raise ConfigError(f"{FLAG} {item.raw!r}: the clock error is out of range; use a non-zero value "
                                  f"within +-{MAX_PPM:g}ppm")
            return ClockDrift(ppm)
        sd = quantity(item.value, SECONDS, flag=FLAG, item=item.raw, what="the jitter sd")
        return Jitter(in_range(sd, 0.0, MAX_JITTER_S, flag=FLAG, item=item.raw, what="the jitter sd",
                               shown=f"above 0 and at most {MAX_JITTER_S * 1e3:g}ms"))
    if item.when is None:
        raise ConfigError(f"{FLAG} {item.raw!r}: say when, e.g. {name}:{'1s' if name == 'restart' else '2s'}@30s "
                          "(stream time) or @2/min (Poisson rate)")
    if item.value is None and name != "restart":
        raise ConfigError(f"{FLAG} {item.raw!r}: say how long, e.g. {name}:2s@{item.when}")
    duration = _RESTART_DOWN_S if item.value is None else quantity(item.value, SECONDS, flag=FLAG, item=item.raw,
                                                                     what="the duration")
    in_range(duration, 0.0, MAX_FAULT_S, flag=FLAG, item=item.raw, what="the duration",
             shown=f"above 0 and at most {MAX_FAULT_S:g}s")
    if "/" in item.when:
        per_s = quantity(item.when, RATES, flag=FLAG, item=item.raw, what="the rate")
        rate = in_range(per_s * 60, 0.0, MAX_RATE_PER_MIN, flag=FLAG, item=item.raw, what="the rate",
                        shown=f"above 0 and at most {MAX_RATE_PER_MIN:g}/min")
        return Episode(name, duration, rate_per_min=rate)
    at = quantity(item.when, SECONDS, flag=FLAG, item=item.raw, what="the start time")
    if not 0 <= at <= 1e7:
        raise ConfigError(f"{FLAG} {item.raw!r}: the start time must be a stream time >= 0 s")
    return Episode(name, duration, at_s=at)


def format_faults(specs: Sequence[FaultSpec]) -> str:
    """The ``--faults`` text of ``specs`` (parses back to the same specs; ``"none"`` when empty)."""
    items = []
    for f in specs:
        if isinstance(f, ClockDrift):
            items.append(f"drift:{f.ppm:g}ppm")
        elif isinstance(f, Jitter):
            items.append(f"jitter:{f.sd_s * 1e3:g}ms")
        else:
            when = f"{f.at_s:g}s" if f.at_s is not None else f"{f.rate_per_min:g}/min"
            items.append(f"{f.kind}:{f.duration_s:g}s@{when}")
    return ",".join(items) or "none"


@dataclass(frozen=True)
class FaultNotice:
    """A fault starting or ending at output sample ``index``; ``marker`` is its JSON content (the pipeline adds
    the timestamp of ``index`` as ``onset``)."""

    index: int
    marker: dict[str, Any]


class _Windows:
    """The sample windows ``[a, b)`` of one episode fault, in order: one at a stream time, or Poisson times."""

    def __init__(self, spec: Episode, srate: float, rng: np.random.Generator) -> None:
        self.spec, self.srate, self.rng = spec, srate, rng
        self.length = max(1, int(round(spec.duration_s * srate)))
        self._next: tuple[int, int] | None
        if spec.at_s is not None:
            a = int(round(spec.at_s * srate))
            self._next = (a, a + self.length)
        else:
            self._next = self._after(0)

    def _after(self, index: int) -> tuple[int, int]:
        assert self.spec.rate_per_min is not None
        a = index + int(round(self.rng.exponential(60.0 / self.spec.rate_per_min) * self.srate))
        return a, a + self.length

    def peek(self) -> tuple[int, int] | None:
        return self._next

    def pop(self) -> None:
        assert self._next is not None
        self._next = self._after(self._next[1]) if self.spec.rate_per_min is not None else None


class ChunkPlan(NamedTuple):
    """What to do with the next samples: how many (``n``; 0 while frozen), whether to send them and whether the
    signal outlet should exist."""

    n: int
    send: bool
    outlet_up: bool


class FaultInjector:
    """Applies ``specs`` to the outlet loop of a pipeline (one thread).

    The loop asks :meth:`plan` before each push (``n`` may come back smaller: chunks are cut at fault edges, so
    that each lies wholly inside or outside every fault), stamps with :meth:`stamps`, and pushes the notices of
    :meth:`take_notices` on the marker stream.

    Parameters
    ----------
    specs : sequence of FaultSpec
        :func:`parse_faults`.
    srate : float
        Nominal output rate (Hz).
    seed : int | None
        Seeds the jitter and the Poisson times.
    """

    def __init__(self, specs: Sequence[FaultSpec], srate: float, seed: int | None = None) -> None:
        self.specs = tuple(specs)
        self.srate = float(srate)
        seq = np.random.SeedSequence(seed, spawn_key=(0xFA17,))
        jitter_seq, *episode_seqs = seq.spawn(1 + len(self.specs))
        self._jitter_rng = np.random.default_rng(jitter_seq)
        drift = next((f for f in self.specs if isinstance(f, ClockDrift)), None)
        jitter = next((f for f in self.specs if isinstance(f, Jitter)), None)
        #: Samples are produced at ``srate * pace_factor``.
        self.pace_factor = 1.0 + (drift.ppm * 1e-6 if drift else 0.0)
        self.jitter_sd = jitter.sd_s if jitter else 0.0
        self._windows = {k: [_Windows(f, self.srate, np.random.default_rng(s))
                             for f, s in zip(self.specs, episode_seqs) if isinstance(f, Episode) and f.kind == k]
                         for k in _EPISODES}
        self._inside: dict[str, tuple[int, int] | None] = {k: None for k in _EPISODES}
        self._notices: list[FaultNotice] = []
        self.counts: dict[str, int] = {k: 0 for k in _EPISODES}
        self.samples_not_sent = 0
        self._started = False
        if drift:
            self._continuous = [{"fault": "drift", "ppm": drift.ppm}]
        else:
            self._continuous = []
        if jitter:
            self._continuous.append({"fault": "jitter", "sd_ms": round(jitter.sd_s * 1e3, 6)})

    # the outlet loop's calls ---------------------------------------------------------------------------------
    def plan(self, start: int, n: int, frozen_until: Callable[[int], bool]) -> ChunkPlan:
        """How to handle the ``n`` samples due from ``start``.

        ``frozen_until(b)`` tells whether sample ``b`` is not yet due (the wall clock is still before its push
        time): a freeze holds every sample until the one where it ends is due, then releases the backlog.
        """
        if not self._started:
            self._started = True
            for marker in self._continuous:
                self._notice(start, "start", marker)
        for kind in _EPISODES:
            n = self._advance(kind, start, n)
        freeze = self._inside["freeze"]
        if freeze is not None and frozen_until(freeze[1]):
            return ChunkPlan(0, False, self._inside["restart"] is None)
        drop, restart = self._inside["drop"], self._inside["restart"]
        send = drop is None and restart is None
        if not send:
            self.samples_not_sent += n
        return ChunkPlan(n, send, restart is None)

    def sent(self, start: int, n: int) -> None:
        """The samples ``start .. start + n - 1`` were handled: close the faults that end there."""
        end = start + n
        for kind in _EPISODES:
            window = self._inside[kind]
            if window is not None and end >= window[1]:
                self._inside[kind] = None
                self._notice(window[1], "end", {"fault": kind})

    def stamps(self, stamps: list[float]) -> list[float]:
        """Timestamps with the jitter added (unchanged without jitter)."""
        if not self.jitter_sd:
            return stamps
        return (np.asarray(stamps) + self._jitter_rng.normal(0.0, self.jitter_sd, len(stamps))).tolist()

    def stop(self, index: int) -> None:
        """The stream stops at sample ``index``: the faults still under way end there."""
        for kind in _EPISODES:
            window = self._inside[kind]
            if window is not None:
                self._inside[kind] = None
                self._notice(index, "end", {"fault": kind, "cut_short": True})
        for marker in self._continuous:
            self._notice(index, "end", marker)

    def take_notices(self) -> list[FaultNotice]:
        """The fault starts and ends since the last call, in order."""
        notices, self._notices = self._notices, []
        return notices

    def status(self) -> dict[str, Any]:
        """Counts for :meth:`StreamPipeline.status` (``freeze``/``drop``/``restart``: started so far)."""
        out: dict[str, Any] = {k: v for k, v in self.counts.items() if self._windows[k]}
        if self.pace_factor != 1.0:
            out["drift_ppm"] = round((self.pace_factor - 1.0) * 1e6, 6)
        if self.jitter_sd:
            out["jitter_sd_ms"] = self.jitter_sd * 1e3
        out["samples_not_sent"] = self.samples_not_sent
        out["active"] = [k for k in _EPISODES if self._inside[k] is not None]
        return out

    # internals -----------------------------------------------------------------------------------------------
    def _advance(self, kind: str, start: int, n: int) -> int:
        """Enter the window of ``kind`` that starts at ``start``; cut ``n`` at the next window edge."""
        inside = self._inside[kind]
        if inside is not None:
            return min(n, inside[1] - start)
        nxt = self._next_window(kind, start)
        if nxt is None:
            return n
        a, b = nxt
        if a > start:
            return min(n, a - start)
        self._pop_window(kind, nxt)
        self._inside[kind] = (start, b)  # a window that began before ``start`` (e.g. during a freeze) starts now
        self.counts[kind] += 1
        self._notice(start, "start", {"fault": kind, "duration_s": round((b - start) / self.srate, 6)})
        if kind == "restart":
            logger.warning("fault: the signal outlet goes down for %.3g s", (b - start) / self.srate)
        return min(n, b - start)

    def _next_window(self, kind: str, start: int) -> tuple[int, int] | None:
        """The earliest window of ``kind`` that has not ended before ``start`` (windows wholly in the past, e.g.
        skipped during a freeze of another fault, are dropped)."""
        best = None
        for windows in self._windows[kind]:
            w = windows.peek()
            while w is not None and w[1] <= start:
                windows.pop()
                w = windows.peek()
            if w is not None and (best is None or w[0] < best[0]):
                best = w
        return best

    def _pop_window(self, kind: str, window: tuple[int, int]) -> None:
        for windows in self._windows[kind]:
            if windows.peek() == window:
                windows.pop()
                return

    def _notice(self, index: int, status: str, marker: dict[str, Any]) -> None:
        self._notices.append(FaultNotice(index, {"kind": "fault", **marker, "status": status}))


__all__ = ["ChunkPlan", "ClockDrift", "Episode", "FAULT_NAMES", "FaultInjector", "FaultNotice", "FaultSpec",
           "Jitter", "format_faults", "parse_faults"]
