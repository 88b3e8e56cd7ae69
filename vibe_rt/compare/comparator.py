"""The comparator: online metrics from (live, synthesized) epoch pairs. Pure, no threads, no clock.

Every mode feeds the same :class:`Comparator`: live LSL streams (:class:`~vibe_rt.compare.live.LiveComparator`),
recordings on disk (:func:`~vibe_rt.compare.offline.compare_offline`) and tests. It keeps

* per-event metrics: Pearson r per channel (over time) and overall, RMSE;
* running ERPs: the average live and synthesized epoch per image key, and the odd/even-repetition
  averages of the live epochs (split-half noise ceiling); the synthesized ones also *wide* (``margin`` samples
  beyond the window on each side, unbaselined), from which latency and gain are fitted without window or
  baseline bias (:func:`~vibe_rt.compare.metrics.fit_latency_gain`);
* the events' own epochs (live and wide synthesized, float32; a uniform random subset once they exceed
  ``event_budget_mb``), which the calibration resamples for its uncertainties;
* a history of snapshots (metrics over time) for the live view and the report.
"""

from __future__ import annotations

import copy
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..montage import Montage
from ..stats import pearson, split_half_reliability
from . import metrics as M
from .epocher import Marker

__all__ = ["Comparator", "ErpSet", "EventEpochs", "baseline_mask"]


def baseline_mask(times: np.ndarray, baseline: tuple[float | None, float | None] | None) -> np.ndarray | None:
    """The samples of ``times`` inside the baseline window (``None`` ends: the epoch's edges); None without a
    baseline or when the window holds no sample."""
    if baseline is None:
        return None
    b0 = times[0] if baseline[0] is None else baseline[0]
    b1 = times[-1] if baseline[1] is None else baseline[1]
    mask = (times >= b0 - 1e-9) & (times <= b1 + 1e-9)
    return mask if mask.any() else None


@dataclass
class EventEpochs:
    """The epochs of single events, for resampling (float32, SI units, model channel order).

    Attributes
    ----------
    key_index : ndarray of int, shape (n,)
        Each event's key (index into :attr:`ErpSet.keys`).
    live : ndarray, shape (n, C, T)
        Live epochs as compared (baseline-corrected when the comparison is).
    synth_wide : ndarray, shape (n, C, T + 2 * margin)
        Wide synthesized epochs (unbaselined).
    n_total : int
        Events of the session (``n`` is smaller when a random subset was kept).
    times : ndarray, shape (n,)
        Onsets (s; the order of the events in time, which the block bootstrap keeps).
    """

    key_index: np.ndarray
    live: np.ndarray
    synth_wide: np.ndarray
    n_total: int
    times: np.ndarray


@dataclass
class ErpSet:
    """Running ERPs per image key (arrays in SI units, model channel order).

    Attributes
    ----------
    keys : list of str
    live, synth : ndarray, shape (n_keys, C, T)
        Average live and synthesized epoch per key (baseline-corrected when the comparison is).
    counts : ndarray of int, shape (n_keys,)
    odd, even : ndarray, shape (n_keys, C, T)
        Averages of odd and even repetitions (1st, 3rd ... and 2nd, 4th ...); ``nan`` where a half is empty.
    synth_wide : ndarray, shape (n_keys, C, T + 2 * margin) | None
        Average synthesized epoch per key, ``margin`` samples wider on each side and unbaselined (what latency
        and gain are fitted on); None where only the window is known (ERPs made by hand or by an earlier
        vibe-rt: the fit then repeats the window's edges).
    margin : int
    baseline : tuple | None
        The comparison's baseline window (s; ``None`` ends: the epoch's edges), None without one.
    events : EventEpochs | None
        The single events, when kept.
    """

    keys: list[str]
    live: np.ndarray
    synth: np.ndarray
    counts: np.ndarray
    odd: np.ndarray
    even: np.ndarray
    synth_wide: np.ndarray | None = None
    margin: int = 0
    baseline: tuple[float | None, float | None] | None = (None, 0.0)
    events: EventEpochs | None = None

    @property
    def wide(self) -> tuple[np.ndarray, int]:
        """The synthesized ERPs to fit on and their margin (the window itself, margin 0, without wide ones)."""
        return (self.synth_wide, self.margin) if self.synth_wide is not None else (self.synth, 0)

    def save(self, path: str, *, events: bool = True) -> None:
        """Write an ``.npz`` (no pickle): arrays plus the keys as a unicode array (``events``: also the single
        events, when kept)."""
        arrays: dict[str, Any] = {"keys": np.array(self.keys, dtype=str), "live": self.live, "synth": self.synth,
                                  "counts": self.counts, "odd": self.odd, "even": self.even,
                                  "margin": np.array(self.margin),
                                  "baseline": np.array([np.nan, np.nan] if self.baseline is None else
                                                       [np.nan if b is None else b for b in self.baseline]),
                                  "has_baseline": np.array(self.baseline is not None)}
        if self.synth_wide is not None:
            arrays["synth_wide"] = self.synth_wide
        if events and self.events is not None:
            arrays.update(event_key=self.events.key_index, event_live=self.events.live,
                          event_synth_wide=self.events.synth_wide, event_total=np.array(self.events.n_total),
                          event_time=self.events.times)
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str) -> ErpSet:
        """Read what :meth:`save` wrote (also the ERPs of an earlier vibe-rt, without the wide ones)."""
        with np.load(path, allow_pickle=False) as z:
            baseline: tuple[float | None, float | None] | None = (None, 0.0)
            if "has_baseline" in z:
                baseline = (tuple(None if np.isnan(b) else float(b) for b in z["baseline"])
                            if bool(z["has_baseline"]) else None)  # type: ignore[assignment]
            events = (EventEpochs(z["event_key"], z["event_live"], z["event_synth_wide"], int(z["event_total"]),
                                  z["event_time"]) if "event_key" in z else None)
            return cls([str(k) for k in z["keys"]], z["live"], z["synth"], z["counts"], z["odd"], z["even"],
                       z["synth_wide"] if "synth_wide" in z else None, int(z["margin"]) if "margin" in z else 0,
                       baseline, events)


@dataclass
class _Acc:
    live: np.ndarray
    synth: np.ndarray
    synth_wide: np.ndarray
    odd: np.ndarray
    even: np.ndarray
    n: int = 0
    n_odd: int = 0
    n_even: int = 0


@dataclass
class _State:
    events: list[dict[str, Any]] = field(default_factory=list)
    lost: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    r_ch_sum: np.ndarray | None = None
    r_ch_n: np.ndarray | None = None
    r_sum: float = 0.0
    r_n: int = 0
    since_snapshot: int = 0
    key_index: dict[str, int] = field(default_factory=dict)


KEYS_PER_SNAPSHOT = 20


class Comparator:
    """Online comparison of live and synthesized epochs.

    Parameters
    ----------
    montage : Montage
        Model channels, rate and window of the epochs passed to :meth:`update`.
    baseline : tuple of (float | None, float | None) | None
        Baseline window in seconds (``None`` = epoch edge) subtracted from both live and synthesized
        epochs per channel; ``None`` disables it.
    max_lag_s : float
        Largest latency searched by cross-correlation, seconds.
    history_every : int
        Take a metrics snapshot (ERP r, latency, noise ceiling ...) every this many events, at least; with many
        images it is taken every ``n_images // KEYS_PER_SNAPSHOT`` events instead, because a snapshot costs time
        in proportion to the number of images (0.6 s at 1000 images on one core): the cost per event stays
        constant, and a live comparison keeps up with a 5 Hz RSVP over thousands of images.
    event_budget_mb : float
        Memory for the single events' epochs (:class:`EventEpochs`); beyond it a uniform random subset is kept
        (reservoir sampling, seeded).
    """

    def __init__(
        self,
        montage: Montage,
        *,
        baseline: tuple[float | None, float | None] | None = (None, 0.0),
        max_lag_s: float = 0.1,
        history_every: int = 1,
        event_budget_mb: float = 256.0,
    ) -> None:
        self.montage = montage
        self.max_lag_s = float(max_lag_s)
        self.history_every = max(1, int(history_every))
        #: Samples (model rate) the synthesized epochs extend beyond the window on each side: the largest lag
        #: searched plus room for the sub-sample fit.
        self.margin = int(np.ceil(self.max_lag_s * montage.sfreq - 1e-9)) + 3
        self.baseline = baseline
        self._bmask = baseline_mask(montage.times, baseline)
        per_event = 4 * montage.n_channels * (2 * montage.n_times + 2 * self.margin)
        self._max_kept = max(1, int(event_budget_mb * 2**20 // per_event))
        self._kept: list[tuple[int, np.ndarray, np.ndarray, float]] = []  # (key index, live, wide synth, onset)
        self._reservoir = np.random.default_rng(0)
        self._acc: dict[str, _Acc] = {}
        self._s = _State()

    @property
    def margin_s(self) -> float:
        """:attr:`margin` in seconds (what a synthesized stream's extractor is given)."""
        return self.margin / self.montage.sfreq

    # ------------------------------------------------------------------------------------------ input
    def _prep(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        shape = (self.montage.n_channels, self.montage.n_times)
        if x.shape != shape:
            raise ConfigError(f"{what} epoch has shape {x.shape}, expected {shape} (montage {self.montage.name!r})")
        return self.baselined(x)

    def baselined(self, x: np.ndarray) -> np.ndarray:
        """``x (..., C, T)`` minus its mean over the baseline window (unchanged without a baseline)."""
        if self._bmask is None:
            return x
        return x - x[..., self._bmask].mean(axis=-1, keepdims=True)

    def _keep(self, key_index: int, live: np.ndarray, wide: np.ndarray, time: float) -> None:
        """Keep this event's epochs (reservoir sampling once :attr:`_max_kept` are kept)."""
        n_seen = len(self._s.events)  # events before this one
        entry = (key_index, live.astype(np.float32), wide.astype(np.float32), time)
        if len(self._kept) < self._max_kept:
            self._kept.append(entry)
            return
        j = int(self._reservoir.integers(0, n_seen + 1))
        if j < self._max_kept:
            self._kept[j] = entry

    def update(
        self,
        live: np.ndarray,
        synth: np.ndarray,
        key: str,
        *,
        synth_wide: np.ndarray | None = None,
        time: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Add one event.

        Parameters
        ----------
        live, synth : ndarray, shape (C, T)
            Live and synthesized epochs, SI units, model channel order, at the model rate.
        synth_wide : ndarray, shape (C, T + 2 * margin) | None
            The synthesized epoch with :attr:`margin` samples more on each side (unbaselined; ``synth`` is its
            window); None repeats the window's edges (latency fits then see invented samples at the edges).
        key : str
            Image / condition identifier (running ERPs are per key).
        time : float | None
            Onset (LSL seconds), for the report.
        meta : dict | None
            Extra fields stored with the event record.

        Returns
        -------
        record : dict
            ``key``, ``time``, ``r`` (overall), ``r_per_channel``, ``rmse``, ``rep`` (repetition index of
            this key, from 0).
        """
        a = self._prep(live, "live")
        b = self._prep(synth, "synthesized")
        m = self.margin
        if synth_wide is None:
            wide = np.pad(np.asarray(synth, dtype=np.float64), ((0, 0), (m, m)), mode="edge")
        else:
            wide = np.asarray(synth_wide, dtype=np.float64)
            if wide.shape != (b.shape[0], b.shape[1] + 2 * m):
                raise ConfigError(f"wide synthesized epoch has shape {wide.shape}, expected "
                                  f"{(b.shape[0], b.shape[1] + 2 * m)} (margin {m})")
        acc = self._acc.get(key)
        if acc is None:
            z = np.zeros_like(a)
            acc = self._acc[key] = _Acc(z.copy(), z.copy(), np.zeros_like(wide), z.copy(), z.copy())
        rep = acc.n
        acc.live += a
        acc.synth += b
        acc.synth_wide += wide
        acc.n += 1
        self._keep(self._key_index(key), a, wide, float(len(self._s.events)) if time is None else float(time))
        if rep % 2 == 0:
            acc.odd += a  # 1st, 3rd, ... repetition
            acc.n_odd += 1
        else:
            acc.even += a
            acc.n_even += 1
        r_ch = np.asarray(pearson(a, b, axis=-1))
        rec = {
            "index": len(self._s.events),
            "key": key,
            "time": None if time is None else float(time),
            "rep": rep,
            "r": M.overall_r(a, b),
            "r_per_channel": r_ch.tolist(),
            "rmse": M.rmse(a, b),
        }
        if meta:
            rec["meta"] = meta
        s = self._s
        if s.r_ch_sum is None or s.r_ch_n is None:
            s.r_ch_sum = np.zeros(r_ch.size)
            s.r_ch_n = np.zeros(r_ch.size)
        ok = np.isfinite(r_ch)
        s.r_ch_sum[ok] += r_ch[ok]
        s.r_ch_n[ok] += 1
        s.events.append(rec)
        if rec["r"] == rec["r"]:  # not NaN
            s.r_sum += rec["r"]
            s.r_n += 1
        s.since_snapshot += 1
        if s.since_snapshot >= max(self.history_every, len(self._acc) // KEYS_PER_SNAPSHOT):
            s.since_snapshot = 0
            snap = self._erp_metrics(compact=True)
            snap.update(n_events=len(s.events), time=rec["time"], event_r=rec["r"],
                        mean_event_r=self._mean_event_r(), wall=_time.time())
            s.history.append(snap)
        return rec

    def record_lost(self, marker: Marker | None, reason: str, *, time: float | None = None, key: str | None = None,
                    stream: str = "live") -> None:
        """Count an event that could not be compared (data gap, buffer overrun, stop ...)."""
        self._s.lost.append({
            "key": marker.key if marker is not None else key,
            "time": marker.time if marker is not None else time,
            "seq": marker.seq if marker is not None else None,
            "reason": reason,
            "stream": stream,
        })

    # ----------------------------------------------------------------------------------------- output
    @property
    def n_events(self) -> int:
        """Events compared so far."""
        return len(self._s.events)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Per-event records (see :meth:`update`)."""
        return self._s.events

    @property
    def lost(self) -> list[dict[str, Any]]:
        """Events that could not be compared, with reasons."""
        return self._s.lost

    @property
    def history(self) -> list[dict[str, Any]]:
        """Metric snapshots over time."""
        return self._s.history

    def copy(self, events: bool = True) -> Comparator:
        """An independent copy (``events=False``: without the kept single events, which are large: what a live view
        draws from)."""
        kept = self._kept
        if not events:
            self._kept = []
        try:
            return copy.deepcopy(self)
        finally:
            self._kept = kept

    def _key_index(self, key: str) -> int:
        """Position of ``key`` among the keys (in order of first appearance)."""
        index = self._s.key_index
        if len(index) != len(self._acc):
            index.update({k: i for i, k in enumerate(self._acc)})
        return index[key]

    def erps(self, events: bool = True) -> ErpSet:
        """The running ERPs per key (``events``: with the kept single events)."""
        keys = list(self._acc)
        c, t = self.montage.n_channels, self.montage.n_times
        live = np.zeros((len(keys), c, t))
        synth = np.zeros_like(live)
        wide = np.zeros((len(keys), c, t + 2 * self.margin))
        odd = np.full_like(live, np.nan)
        even = np.full_like(live, np.nan)
        counts = np.zeros(len(keys), dtype=int)
        for i, k in enumerate(keys):
            a = self._acc[k]
            live[i] = a.live / a.n
            synth[i] = a.synth / a.n
            wide[i] = a.synth_wide / a.n
            counts[i] = a.n
            if a.n_odd:
                odd[i] = a.odd / a.n_odd
            if a.n_even:
                even[i] = a.even / a.n_even
        kept = None
        if events and self._kept:
            kept = EventEpochs(np.array([e[0] for e in self._kept]), np.stack([e[1] for e in self._kept]),
                               np.stack([e[2] for e in self._kept]), len(self._s.events),
                               np.array([e[3] for e in self._kept]))
        return ErpSet(keys, live, synth, counts, odd, even, wide, self.margin, self.baseline, kept)

    def _mean_event_r(self) -> float:
        s = self._s
        return s.r_sum / s.r_n if s.r_n else float("nan")

    def _erp_metrics(self, compact: bool = False) -> dict[str, Any]:
        e = self.erps(events=False)
        nan = float("nan")
        out: dict[str, Any] = {"erp_r": nan, "erp_rmse": nan, "latency_s": nan, "noise_ceiling": nan,
                               "split_half_r": nan, "reliability": nan}
        if not e.keys:
            return out
        out["erp_r"] = M.overall_r(e.live, e.synth)
        out["erp_rmse"] = M.rmse(e.live, e.synth)
        wide, margin = e.wide  # the ERPs of this comparator always have their wide synthesized epochs
        fit = M.fit_latency_gain(e.live, wide, margin, self.montage.sfreq, max_lag_s=self.max_lag_s,
                                 refine=not compact)
        out["latency_s"] = fit.latency_s if np.isfinite(fit.r) else nan
        two = e.counts >= 2
        if two.any():
            odd, even = e.odd[two], e.even[two]
            sh = split_half_reliability(odd, even, axis=None)
            out.update(split_half_r=sh.r, reliability=sh.reliability, noise_ceiling=sh.ceiling)
            if not compact:
                per_channel = split_half_reliability(odd, even, axis=(0, 2))
                out["noise_ceiling_per_channel"] = np.asarray(per_channel.ceiling).tolist()
                out["reliability_per_channel"] = np.asarray(per_channel.reliability).tolist()
        if not compact:
            out.update(M.erp_metrics(e.live, e.synth))
            out["latency"] = fit.to_dict()
            aligned = self.baselined(M.align(wide, margin, fit.latency_samples, self.montage.n_times))
            out["gain_per_channel"] = fit.gain.tolist()
            out["erp_r_aligned"] = M.overall_r(e.live, aligned)
        return out

    def summary(self) -> dict[str, Any]:
        """All current metrics (JSON-serialisable).

        Keys: ``n_events``, ``n_keys``, ``n_lost``, ``lost_by_reason``, ``mean_event_r``,
        ``mean_event_r_per_channel``, ``mean_event_rmse``, ``erp_r`` (running-ERP r over all keys, channels,
        times), ``erp_r_per_channel``, ``erp_rmse``, ``latency_s`` (positive: live later), ``latency``
        (details), ``gain_per_channel`` (fitted jointly with the latency, :func:`~vibe_rt.compare.metrics.
        fit_latency_gain`), ``erp_r_aligned`` (r with the synthesized ERPs cut at onset - latency),
        ``split_half_r``, ``reliability`` (Spearman-Brown), ``noise_ceiling`` (sqrt of reliability), ``channels``.
        """
        s = self._s
        out: dict[str, Any] = {
            "n_events": len(s.events),
            "n_keys": len(self._acc),
            "n_lost": len(s.lost),
            "lost_by_reason": _count([x["reason"] for x in s.lost]),
            "mean_event_r": self._mean_event_r(),
            "mean_event_rmse": float(np.mean([x["rmse"] for x in s.events])) if s.events else float("nan"),
            "channels": list(self.montage.ch_names),
        }
        if s.r_ch_sum is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                out["mean_event_r_per_channel"] = (s.r_ch_sum / s.r_ch_n).tolist()
        out.update(self._erp_metrics(compact=False))
        return out

    def status_line(self) -> str:
        """One compact line for the live view."""
        h = self._s.history[-1] if self._s.history else self._erp_metrics(compact=True)
        return (f"events {len(self._s.events):5d} lost {len(self._s.lost):3d} | r(event) "
                f"{self._mean_event_r():+.3f} r(ERP) {h['erp_r']:+.3f} ceil {h['noise_ceiling']:.3f} | "
                f"lat {1e3 * h['latency_s']:+6.1f} ms")


def _count(items: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out
