"""Live comparison: LSL inlets in one worker thread feeding the pure :class:`~vibe_rt.compare.session.Session`.

Streams are resolved by name, type or source_id. Inlets use ``proc_clocksync | proc_dejitter`` (signal) and
``proc_clocksync`` (markers), so every timestamp is on this machine's ``local_clock()``; the time correction
measured at connection is kept for the report.

Loss and reconnection: pylsl raises ``LostError`` when an outlet goes away, but a non-blocking pull on a dead
outlet may also just return nothing. So a stream that delivers nothing for ``stall_s`` seconds is checked by
resolving its source_id again: if the outlet behind it has changed (new uid) or is gone, the inlet is dropped
and re-resolved with exponential backoff until a stream with the same source_id returns. Every outage is
recorded (stream, wall/LSL time range, events lost); events whose window overlaps missing data are reported as
lost, never compared against filled-in data.
"""

from __future__ import annotations

import threading
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._imports import import_optional_dependency
from .._logs import logger
from ..devices import DeviceProfile
from ..errors import StreamError
from ..montage import Montage
from .comparator import Comparator
from .epocher import EpochExtractor, parse_marker
from .offline import make_extractor
from .session import Session, SynthSource

__all__ = ["LiveComparator", "resolve_stream", "stream_channels"]


def _pylsl() -> Any:
    return import_optional_dependency("pylsl")


def _kind_ok(info: Any, signal: bool) -> bool:
    """True when a resolved stream is of the wanted kind (signal: rate > 0; markers: irregular rate)."""
    return (info.nominal_srate() > 0) == signal


def _wait_for(resolver: Any, accept: Callable[[Any], bool], timeout: float) -> list[Any]:
    """Poll a ``pylsl.ContinuousResolver`` until a stream passes ``accept`` or ``timeout`` seconds pass.

    A one-shot ``resolve_bypred(pred, 1, timeout)`` returns as soon as *any* stream answers, and a short one may
    return before the first answer arrives at all (under ``ResolveScope = machine`` liblsl's first answer comes
    after its multicast round-trip time, about 0.5 s): both made streams look absent that were there.
    """
    deadline = _time.monotonic() + timeout
    while True:
        found = [s for s in resolver.results() if accept(s)]
        if found or _time.monotonic() >= deadline:
            return found
        _time.sleep(0.02)


def _resolver(pred: str) -> Any:
    """A background resolver for ``pred`` that forgets a stream 2 s after its outlet stops answering."""
    return _pylsl().ContinuousResolver(pred=pred, forget_after=_FORGET_AFTER_S)


_FORGET_AFTER_S = 2.0


def resolve_stream(query: str | None, *, signal: bool, timeout: float = 5.0,
                   exclude_uids: Sequence[str] = ()) -> Any | None:
    """Find one LSL stream whose name, type or source_id equals ``query`` (signal: rate > 0; else markers).

    ``query=None`` for markers finds a stream of type ``Markers`` or ``annotations``. Where several match,
    string-format marker streams are preferred (vibe-rt's JSON markers) over numeric ones. Streams whose uid
    is in ``exclude_uids`` are never returned (the live query ``EEG`` must not find the synthesized EEG stream
    being compared with it). Waits up to ``timeout`` seconds for a stream that passes every condition.
    """
    pylsl = _pylsl()
    if query is None:
        pred = "(type='Markers' or type='markers' or type='annotations')"
    else:
        q = query.replace("'", "")
        pred = f"(name='{q}' or type='{q}' or source_id='{q}')"
    excluded = set(exclude_uids)
    found = _wait_for(_resolver(pred), lambda s: _kind_ok(s, signal) and s.uid() not in excluded, timeout)
    if not found:
        return None
    if not signal:
        found.sort(key=lambda s: 0 if s.channel_format() == pylsl.cf_string else 1)
    return found[0]


def _time_correction(inlet: Any) -> float | None:
    """The inlet's current clock offset estimate (s), or None while liblsl has none yet (never blocks)."""
    try:
        return float(inlet.time_correction(0.0))
    except Exception:  # noqa: BLE001 - pylsl raises TimeoutError (or LostError) before a first estimate
        return None


def stream_channels(info: Any) -> tuple[list[str], list[str], list[str | None], np.ndarray]:
    """Labels, types, units and positions (metres, ``nan`` unknown) from an LSL ``desc/channels`` tree."""
    n = info.channel_count()
    names, types = [f"ch{i}" for i in range(n)], [info.type().lower()] * n
    units: list[str | None] = [None] * n
    pos = np.full((n, 3), np.nan)
    ch = info.desc().child("channels").child("channel")
    i = 0
    while not ch.empty() and i < n:
        names[i] = ch.child_value("label") or names[i]
        t = (ch.child_value("type") or types[i]).lower()
        types[i] = t
        units[i] = ch.child_value("unit") or None
        loc = ch.child("location")
        if not loc.empty():
            try:
                pos[i] = [float(loc.child_value(a)) / 1000.0 for a in ("X", "Y", "Z")]
            except ValueError:
                pass
        ch = ch.next_sibling()
        i += 1
    types = [t if t in ("eeg", "mag", "grad") else ("mag" if t == "meg" else "eeg") for t in types]
    return names, types, units, pos


@dataclass
class _Handle:
    role: str  # "live" | "markers" | "synth"
    query: str | None
    signal: bool
    inlet: Any = None
    source_id: str = ""
    uid: str = ""
    name: str = ""
    ch_labels: list[str] | None = None
    last_data_wall: float = 0.0
    last_ts: float | None = None
    next_try: float = 0.0
    backoff: float = 0.1
    down_since: float | None = None
    down_last_ts: float | None = None
    n_reconnects: int = 0
    time_correction: float | None = None
    pending_outage: bool = False
    finder: Any = None  # a ContinuousResolver on this stream's source_id and name, for stall checks and reconnects
    finder_since: float = 0.0
    dead_uid: str = ""  # the outlet that went away: never reconnected to
    outages: list[dict[str, Any]] = field(default_factory=list)


class LiveComparator:
    """Compare a live LSL stream with synthesized epochs, in a worker thread.

    Parameters
    ----------
    live : str
        Name, type or source_id of the live signal stream.
    montage : Montage
        Model montage: channels, rate, epoch window.
    synth : SynthSource | str
        A source of synthesized epochs per event (e.g. :class:`~vibe_rt.compare.session.PredictorSynth`), or the
        name/type/source_id of a synthesized signal stream (``vibe-rt stream``) epoched around the same markers.
    markers : str | None
        Name/type/source_id of the marker stream (default: any ``Markers``/``annotations`` stream).
    comparator : Comparator | None
        Comparator to feed (default: a new one built with ``comparator_kw``).
    resolve_timeout : float
        Seconds to wait for the streams at :meth:`start`.
    stall_s : float
        A stream silent for this long is checked for loss.
    max_backoff_s : float
        Longest wait between re-resolution attempts.
    interpolation, unit_override : str | None
        See :func:`~vibe_rt.compare.offline.make_extractor`.
    device : DeviceProfile | None
        The live device's profile (labels, positions; see :func:`~vibe_rt.compare.offline.make_extractor`).
    buffer_s : float
        Seconds of live data kept in the ring buffer.
    on_event : callable | None
        Called (in the worker thread) with each new event record.
    clock : callable | None
        Monotonic clock in seconds (default ``time.monotonic``), injectable for tests.
    """

    def __init__(
        self,
        live: str,
        montage: Montage,
        synth: SynthSource | str,
        *,
        markers: str | None = None,
        comparator: Comparator | None = None,
        resolve_timeout: float = 10.0,
        stall_s: float = 1.0,
        max_backoff_s: float = 2.0,
        interpolation: str = "auto",
        unit_override: str | None = None,
        buffer_s: float = 30.0,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] | None = None,
        device: DeviceProfile | None = None,
        **comparator_kw: Any,
    ) -> None:
        self.montage = montage
        self.comparator = comparator or Comparator(montage, **comparator_kw)
        self._synth_src = synth
        self._handles = {"live": _Handle("live", live, True), "markers": _Handle("markers", markers, False)}
        if isinstance(synth, str):
            self._handles["synth"] = _Handle("synth", synth, True)
        self.resolve_timeout = float(resolve_timeout)
        self.stall_s = float(stall_s)
        self.max_backoff_s = float(max_backoff_s)
        self._interp = interpolation
        self._unit = unit_override
        self._device = device
        self._buffer_s = buffer_s
        self._on_event = on_event
        self._clock = clock or _time.monotonic
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.session: Session | None = None

    # -------------------------------------------------------------------------------------- lifecycle
    def start(self) -> LiveComparator:
        """Resolve the streams (raise :class:`StreamError` if absent), open inlets, start the worker thread."""
        if self._thread is not None:
            return self
        # the synthesized stream first, so that the live query cannot resolve to it
        # markers next: a marker pushed before its inlet connects is lost, a signal sample is not needed until the
        # epoch of the first marker
        for h in sorted(self._handles.values(), key=lambda h: ("synth", "markers", "live").index(h.role)):
            exclude = [self._handles["synth"].uid] if h.role == "live" and "synth" in self._handles else []
            info = resolve_stream(h.query, signal=h.signal, timeout=self.resolve_timeout, exclude_uids=exclude)
            if info is None:
                what = "signal" if h.signal else "marker"
                raise StreamError(
                    f"no LSL {what} stream {h.query!r} found within {self.resolve_timeout:g} s "
                    f"({h.role}); start the stream or check its name/type/source_id (e.g. with "
                    "`python -c 'import pylsl; print([s.name() for s in pylsl.resolve_streams()])'`)"
                )
            self._open(h, info)
        live = self._handles["live"]
        ext = self._make_extractor(live)
        synth: Any = self._make_extractor(self._handles["synth"]) if "synth" in self._handles else self._synth_src
        self.session = Session(self.comparator, ext, synth, on_event=self._on_event)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vibe-rt-compare", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> LiveComparator:
        """Stop the worker, count pending events as lost, close inlets; re-raise a worker failure."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10.0)
            self._thread = None
            with self._lock:
                if self.session is not None:
                    self.session.finish()
                for h in self._handles.values():
                    if h.down_since is not None:
                        h.outages.append(self._outage(h, end=None))
                        h.down_since = None
                    self._close(h)
        if self._error is not None:
            err, self._error = self._error, None
            raise StreamError(f"the live comparator's worker failed: {err!r}") from err
        return self

    def __enter__(self) -> LiveComparator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the worker thread runs."""
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """Snapshot for the live view: events, lost, pending, stream states, latest metrics."""
        with self._lock:
            c = self.comparator
            h = c.history[-1] if c.history else {}
            return {
                "n_events": c.n_events,
                "n_lost": len(c.lost),
                "n_pending": self.session.live.n_pending if self.session else 0,
                "streams": {k: ("down" if v.down_since is not None else "up") for k, v in self._handles.items()},
                "n_reconnects": {k: v.n_reconnects for k, v in self._handles.items()},
                "mean_event_r": h.get("mean_event_r", float("nan")),
                "erp_r": h.get("erp_r", float("nan")),
                "latency_s": h.get("latency_s", float("nan")),
                "noise_ceiling": h.get("noise_ceiling", float("nan")),
                "error": repr(self._error) if self._error else None,
            }

    def snapshot(self) -> Comparator:
        """A copy of the comparator as it is now (without its single events), for a live view drawn while the
        worker goes on."""
        with self._lock:
            return self.comparator.copy(events=False)

    def status_line(self) -> str:
        """Compact one-line status (the CLI prints it in place)."""
        with self._lock:
            line = self.comparator.status_line()
            down = [k for k, v in self._handles.items() if v.down_since is not None]
        return line + (f" | DOWN: {','.join(down)}" if down else "")

    def outages(self) -> list[dict[str, Any]]:
        """What was missed: per stream outage (wall-clock and LSL time range, events lost) and data gaps."""
        with self._lock:
            out = []
            for h in self._handles.values():
                out.extend(h.outages)
                if h.down_since is not None:
                    out.append(self._outage(h, end=None))
            return out

    def data_gaps(self) -> list[dict[str, Any]]:
        """Time ranges (LSL seconds) missing from the signal streams' timelines, with events lost in each."""
        if self.session is None:
            return []
        res = []
        exts = [("live", self.session.live)]
        if isinstance(self.session.synth, EpochExtractor):
            exts.append(("synth", self.session.synth))
        for role, ext in exts:
            for g0, g1 in ext.gaps:
                res.append({"stream": role, "start": g0, "end": g1, "duration_s": g1 - g0,
                            "events_lost": self._n_lost_in(g0, g1)})
        return res

    def _n_lost_in(self, t0: float, t1: float) -> int:
        """Lost events whose epoch window overlaps the LSL time range ``(t0, t1)``."""
        tmin, tmax = self.montage.tmin, self.montage.tmax
        return sum(1 for x in self.comparator.lost
                   if x["time"] is not None and x["time"] + tmin < t1 and x["time"] + tmax > t0)

    def info(self) -> dict[str, Any]:
        """Stream descriptions and clock corrections for the report."""
        with self._lock:
            out: dict[str, dict[str, Any]] = {
                k: {"name": h.name, "source_id": h.source_id, "time_correction_s": h.time_correction,
                    "n_reconnects": h.n_reconnects} for k, h in self._handles.items()}
            if self.session is not None:
                out["live"]["channel_match"] = self.session.live.match.to_dict()
                out["live"]["sfreq"] = self.session.live.sfreq
            return out

    # -------------------------------------------------------------------------------------- internals
    def _make_extractor(self, h: _Handle) -> EpochExtractor:
        info = h.inlet.info(5.0)
        names, types, units, pos = stream_channels(info)
        live = h.role == "live"
        return make_extractor(self.montage, info.nominal_srate(), names, types, units, pos,
                              interpolation=self._interp, unit_override=self._unit if live else None,
                              buffer_s=self._buffer_s, device=self._device if live else None,
                              margin_s=self.comparator.margin_s if h.role == "synth" else 0.0)

    def _open(self, h: _Handle, info: Any) -> None:
        pylsl = _pylsl()
        flags = pylsl.proc_clocksync | (pylsl.proc_dejitter if h.signal else 0)
        inlet = pylsl.StreamInlet(info, max_buflen=max(30, int(self._buffer_s)), recover=False,
                                  processing_flags=flags)
        inlet.open_stream(5.0)
        h.inlet = inlet
        h.source_id = info.source_id()
        h.uid = info.uid()
        h.name = info.name()
        if not h.signal:
            try:
                h.ch_labels = stream_channels(inlet.info(2.0))[0]
            except Exception:  # pragma: no cover
                h.ch_labels = None
        if h.finder is None:  # resolves in the background from now on; it has seen this outlet before any check
            pred = f"source_id='{h.source_id}' and name='{h.name}'" if h.source_id else f"name='{h.name}'"
            h.finder = _resolver(pred)
            h.finder_since = self._clock()
        h.last_data_wall = self._clock()
        h.backoff = 0.1
        logger.info("connected to %s stream %r (source_id %r)", h.role, h.name, h.source_id)

    def _close(self, h: _Handle) -> None:
        if h.inlet is not None:
            try:
                h.inlet.close_stream()
            except Exception:  # pragma: no cover
                pass
            h.inlet = None

    def _outage(self, h: _Handle, end: float | None) -> dict[str, Any]:
        t0 = h.down_last_ts
        n = 0
        if t0 is not None and h.role != "markers":
            t1 = end if end is not None else float("inf")
            n = self._n_lost_in(t0, t1)
        return {"stream": h.role, "name": h.name, "source_id": h.source_id, "down_wall": h.down_since,
                "start": t0, "end": end, "duration_s": None if end is None or t0 is None else end - t0,
                "events_lost": n, "reason": "lost"}

    def _mark_down(self, h: _Handle, now: float) -> None:
        h.dead_uid = h.uid
        self._close(h)
        h.down_since = _time.time()
        h.down_last_ts = h.last_ts
        h.next_try = now
        logger.warning("%s stream %r lost; re-resolving source_id %r", h.role, h.name, h.source_id)

    def _find_again(self, h: _Handle) -> list[Any]:
        """Streams that can stand in for ``h`` now (same source_id and name, or the same name without a source_id),
        from its background resolver: never blocks the worker."""
        return [s for s in h.finder.results() if _kind_ok(s, h.signal) and s.uid() != h.dead_uid]

    def _try_reconnect(self, h: _Handle, now: float) -> None:
        if now < h.next_try:
            return
        found = self._find_again(h)
        if not found:
            h.next_try = now + h.backoff
            h.backoff = min(2 * h.backoff, self.max_backoff_s)
            return
        self._open(h, found[0])
        h.n_reconnects += 1
        h.pending_outage = True  # closed at the first sample (end time on the LSL clock)

    def _check_stalled(self, h: _Handle, now: float) -> None:
        """Silent for stall_s: is the outlet still the one we are connected to?"""
        if now - h.finder_since < _FORGET_AFTER_S:
            return  # its resolver may not have heard from the outlet yet: no verdict
        found = self._find_again(h)
        if not found or all(s.uid() != h.uid for s in found):
            self._mark_down(h, now)
        else:
            h.last_data_wall = now  # alive but quiet (e.g. no markers): check again later

    def _pull(self, h: _Handle, now: float) -> bool:
        pylsl = _pylsl()
        assert self.session is not None
        try:
            samples, ts = h.inlet.pull_chunk(timeout=0.0, max_samples=4096)
        except pylsl.util.LostError:
            self._mark_down(h, now)
            return False
        if not ts:
            if now - h.last_data_wall > self.stall_s:
                self._check_stalled(h, now)
            return False
        h.last_data_wall = now
        if h.time_correction is None:  # for the report; measured once data flows, so that opening never blocks
            h.time_correction = _time_correction(h.inlet)
        if h.pending_outage:
            h.outages.append(self._outage(h, end=float(ts[0])))
            h.pending_outage = False
            h.down_since = None
            logger.info("%s stream %r is back", h.role, h.name)
        h.last_ts = float(ts[-1])
        if h.role == "markers":
            for v, t in zip(samples, ts):
                parsed = parse_marker(v, h.ch_labels)
                if parsed is not None:
                    self.session.add_marker(t, parsed[0], parsed[1])
        elif h.role == "live":
            self.session.push_live(np.asarray(ts), np.asarray(samples, dtype=np.float64))
        else:
            self.session.push_synth(np.asarray(ts), np.asarray(samples, dtype=np.float64))
        return True

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                got = False
                now = self._clock()
                with self._lock:
                    # markers first so that an onset is known before the data that completes its epoch
                    for key in ("markers", "live", "synth"):
                        h = self._handles.get(key)
                        if h is None:
                            continue
                        if h.inlet is None:
                            self._try_reconnect(h, now)
                        else:
                            got |= self._pull(h, now)
                    assert self.session is not None
                    self.session.process()
                if not got:
                    self._stop.wait(0.005)
        except BaseException as err:  # noqa: BLE001 - reported by stop()/status, never only logged
            logger.error("live comparator worker failed: %r", err)
            self._error = err
