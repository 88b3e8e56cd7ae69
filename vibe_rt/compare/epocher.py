"""Epoching of a continuous stream around markers, on the LSL timeline (pure, no threads).

:class:`EpochExtractor` keeps a ring buffer of recent chunks (timestamps + data mapped to model channels
in SI units) and a list of pending markers. An epoch is complete when data past ``onset + tmax`` (plus the
anti-alias filter's half length) has arrived; it is then low-pass filtered (when the device rate is above
the model rate) and resampled at ``onset + montage.times`` by cubic-spline interpolation, so onsets need not
fall on a sample. Epochs whose window overlaps a gap in the data, or that start before the oldest buffered
sample, are reported as lost with a reason, never silently shifted or zero-filled.

With ``margin_s`` the epochs are *wide*: ``margin`` more model samples on each side of the window, so that a
later fit can align them by a latency of up to the margin without inventing samples at the window's edges
(the synthesized side of a comparison, :mod:`vibe_rt.compare.calibrate`).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import signal
from scipy.interpolate import CubicSpline

from ..data.recordings import split_description
from ..montage import Montage
from .channels import ChannelMatch

__all__ = ["Marker", "parse_marker", "EpochExtractor"]


@dataclass
class Marker:
    """One stimulus event.

    Attributes
    ----------
    time : float
        Onset on the LSL clock of the comparator's machine (time correction applied), seconds.
    key : str
        Image / condition identifier: ERPs are averaged per key.
    payload : dict
        The decoded marker (``image``, ``frame_id``, ``source`` for vibe-rt markers).
    seq : int
        Sequence number assigned on arrival (unique per comparator session).
    """

    time: float
    key: str
    payload: dict[str, Any] = field(default_factory=dict)
    seq: int = -1


def parse_marker(value: Any, channel_names: Sequence[str] | None = None) -> tuple[str, dict[str, Any]] | None:
    """Decode one marker sample into ``(key, payload)``; ``None`` for samples that are not events.

    Accepts vibe-rt's JSON string markers (key = ``image``, else ``image_id``/``id``/``frame_id``), BrainVision
    descriptions that name their image (``Stimulus/S  3: a.png``: key ``a.png``, code 3), plain strings (the
    string is the key), MNE-LSL's one-hot annotation samples (the label of the non-zero channel,
    itself JSON-decoded where possible) and numeric codes (``str(int(code))``).
    """
    if isinstance(value, (list, tuple, np.ndarray)):
        vals = list(value)
        if len(vals) == 1:
            value = vals[0]
        else:  # one-hot: one channel per description
            nz = [i for i, v in enumerate(vals) if isinstance(v, (int, float)) and v != 0]
            if not nz or channel_names is None:
                return None
            value = channel_names[nz[0]]
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.startswith("{"):
            try:
                payload = json.loads(text)
            except json.JSONDecodeError:
                payload = None
            if isinstance(payload, dict):
                for k in ("image", "image_id", "id", "frame_id"):
                    if payload.get(k) is not None:
                        return str(payload[k]), payload
                return text, payload
        named = split_description(text)  # BrainVision "Stimulus/S  3: a.png" (vibe-rt's recordings)
        if named is not None:
            return named[1], {"image": named[1], "code": named[0], "description": text}
        return text, {"description": text}
    if isinstance(value, (int, float, np.integer, np.floating)):
        if not np.isfinite(value) or value == 0:
            return None
        return str(int(value)), {"code": int(value)}
    return None


class EpochExtractor:
    """Ring buffer + pending markers -> complete epochs at the model rate.

    Parameters
    ----------
    montage : Montage
        Output channels, model rate and epoch window.
    sfreq : float
        Nominal rate of the incoming stream (Hz).
    match : ChannelMatch
        Live -> model channel mapping.
    scale : ndarray, shape (n_live,) | float
        Factor from the stream's units to SI, per live channel.
    buffer_s : float
        Seconds of data kept.
    gap_tol_s : float | None
        A jump between consecutive timestamps larger than this is a gap (default ``max(5 / sfreq, 0.05)``).
    lowpass : bool
        Anti-alias low-pass (FIR, cut-off 0.45 x model rate) before resampling when ``sfreq`` is more than
        1.25 x the model rate.
    margin_s : float
        Widen every epoch by ``margin = ceil(margin_s * montage.sfreq)`` model samples on each side (0: the
        montage window).
    """

    def __init__(
        self,
        montage: Montage,
        sfreq: float,
        match: ChannelMatch,
        scale: np.ndarray | float = 1.0,
        *,
        buffer_s: float = 30.0,
        gap_tol_s: float | None = None,
        lowpass: bool = True,
        margin_s: float = 0.0,
    ) -> None:
        self.montage = montage
        self.margin = int(np.ceil(margin_s * montage.sfreq - 1e-9)) if margin_s > 0 else 0
        #: Epoch times (s from onset) at the model rate, the margins included.
        self.times = montage.tmin + (np.arange(montage.n_times + 2 * self.margin) - self.margin) / montage.sfreq
        self.sfreq = float(sfreq)
        self.match = match
        self._w = match.weights * np.broadcast_to(np.asarray(scale, dtype=np.float64), (match.weights.shape[1],))
        self.buffer_s = float(buffer_s)
        self.gap_tol_s = float(gap_tol_s) if gap_tol_s is not None else max(5.0 / self.sfreq, 0.05)
        self._fir: np.ndarray | None = None
        if lowpass and self.sfreq > 1.25 * montage.sfreq:
            trans = 0.1 * montage.sfreq
            numtaps = int(np.ceil(3.3 * self.sfreq / trans)) | 1
            self._fir = signal.firwin(numtaps, 0.45 * montage.sfreq, fs=self.sfreq, window="hamming")
        half = 0 if self._fir is None else (self._fir.size - 1) // 2
        self.pad_s = half / self.sfreq + 3.0 / self.sfreq  # filter half-length + spline margin
        self._chunks: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self._pending: list[Marker] = []
        self.gaps: list[tuple[float, float]] = []
        self.last_time: float | None = None

    # ----------------------------------------------------------------------------------------- input
    def push(self, timestamps: np.ndarray, data: np.ndarray) -> None:
        """Append a chunk: ``timestamps (N,)`` seconds and ``data (N, n_live)`` in stream units."""
        ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        if ts.size == 0:
            return
        x = np.asarray(data, dtype=np.float64).reshape(ts.size, -1) @ self._w.T
        if self.last_time is not None and ts[0] <= self.last_time:  # overlapping / repeated samples
            keep = ts > self.last_time
            ts, x = ts[keep], x[keep]
            if ts.size == 0:
                return
        prev = self.last_time
        if prev is not None and ts[0] - prev > self.gap_tol_s:
            self.gaps.append((prev, float(ts[0])))
        if ts.size > 1:
            d = np.diff(ts)
            for i in np.flatnonzero(d > self.gap_tol_s):
                self.gaps.append((float(ts[i]), float(ts[i + 1])))
        self._chunks.append((ts, x))
        self.last_time = float(ts[-1])
        while self._chunks and self._chunks[0][0][-1] < self.last_time - self.buffer_s:
            self._chunks.popleft()

    def add_marker(self, marker: Marker) -> None:
        """Queue an event; its epoch is produced by :meth:`pop_ready` once the data has arrived."""
        self._pending.append(marker)

    @property
    def n_pending(self) -> int:
        """Markers waiting for data."""
        return len(self._pending)

    # ---------------------------------------------------------------------------------------- output
    def pop_ready(self) -> tuple[list[tuple[Marker, np.ndarray]], list[tuple[Marker, str]]]:
        """Epochs whose data is complete, and events that can no longer be epoched.

        Returns
        -------
        ready : list of (Marker, ndarray (C, T + 2 * margin))
            Epochs at the model rate, SI units, model channel order (no baseline correction), at :attr:`times`.
        lost : list of (Marker, str)
            Events with the reason: ``"gap"`` (data missing inside the window) or ``"before buffer"``.
        """
        ready: list[tuple[Marker, np.ndarray]] = []
        lost: list[tuple[Marker, str]] = []
        if self.last_time is None:
            return ready, lost
        keep: list[Marker] = []
        tmin, tmax = self.times[0], self.times[-1]
        for m in self._pending:
            t0, t1 = m.time + tmin - self.pad_s, m.time + tmax + self.pad_s
            if t1 > self.last_time:
                if self._gap_overlaps(t0, t1):  # data resumed after a gap that swallowed part of the window
                    lost.append((m, "gap"))
                else:
                    keep.append(m)
                continue
            seg = self._segment(t0, t1)
            if seg is None:
                lost.append((m, "before buffer"))
                continue
            ts, x = seg
            if ts.size < 4 or np.max(np.diff(ts)) > self.gap_tol_s or self._gap_overlaps(t0, t1):
                lost.append((m, "gap"))
                continue
            ready.append((m, self._resample(ts, x, m.time)))
        self._pending = keep
        return ready, lost

    def flush(self) -> list[tuple[Marker, str]]:
        """Drop the pending events (at stop) and return them as lost (``"incomplete at stop"``)."""
        lost = [(m, "incomplete at stop") for m in self._pending]
        self._pending = []
        return lost

    # -------------------------------------------------------------------------------------- internal
    def _gap_overlaps(self, t0: float, t1: float) -> bool:
        return any(g0 < t1 and g1 > t0 for g0, g1 in self.gaps)

    def _segment(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray] | None:
        if not self._chunks or self._chunks[0][0][0] > t0:
            return None
        parts = []
        for ts, x in reversed(self._chunks):
            if ts[-1] < t0:
                break
            if ts[0] <= t1:
                parts.append((ts, x))
        if not parts:  # the window lies wholly inside a gap between chunks
            return np.zeros(0), np.zeros((0, self._chunks[0][1].shape[1]))
        parts.reverse()
        ts = np.concatenate([p[0] for p in parts])
        x = np.concatenate([p[1] for p in parts])
        i0 = max(int(np.searchsorted(ts, t0, side="right")) - 1, 0)
        i1 = int(np.searchsorted(ts, t1, side="left")) + 1
        return ts[i0:i1], x[i0:i1]

    def _resample(self, ts: np.ndarray, x: np.ndarray, onset: float) -> np.ndarray:
        if self._fir is not None and x.shape[0] > self._fir.size:
            x = signal.fftconvolve(x, self._fir[:, None], mode="same", axes=0)
        return CubicSpline(ts, x, axis=0)(onset + self.times).T.astype(np.float64)
