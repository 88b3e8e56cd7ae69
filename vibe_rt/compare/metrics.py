"""Comparison metrics between live and synthesized epochs: pure functions of arrays.

Conventions
-----------
* Arrays are ``(..., n_channels, n_times)`` in SI units (V or T); time is the last axis.
* A positive latency means the **live** response arrives later than the synthesized one:
  ``live(t) ~ gain * synth(t - latency)``.
* Pearson r, Spearman-Brown and split-half reliability are :mod:`vibe_rt.stats` (r of constant inputs is
  ``nan``, never a division warning).
* Latency and gain are fitted jointly on wide synthesized ERPs (:func:`fit_latency_gain`), which are aligned by
  cutting them at ``onset - latency`` (:func:`align`) rather than by shifting a window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..calibration import SplineSignal
from ..stats import pearson

__all__ = [
    "LatencyGainFit",
    "align",
    "bootstrap_latency_gain",
    "channel_r",
    "erp_metrics",
    "fit_latency_gain",
    "overall_r",
    "rmse",
]


def channel_r(live: np.ndarray, synth: np.ndarray) -> np.ndarray:
    """Per-channel Pearson r over time (and over leading axes, e.g. images), shape ``(n_channels,)``.

    ``live`` and ``synth`` are ``(C, T)`` or ``(n, C, T)``; for the latter the images are concatenated
    in time before correlating each channel.
    """
    live = np.asarray(live, dtype=np.float64)
    synth = np.asarray(synth, dtype=np.float64)
    if live.ndim == 3:
        live = np.moveaxis(live, 1, 0).reshape(live.shape[1], -1)
        synth = np.moveaxis(synth, 1, 0).reshape(synth.shape[1], -1)
    return np.asarray(pearson(live, synth, axis=-1))


def overall_r(live: np.ndarray, synth: np.ndarray) -> float:
    """Pearson r over all channels and time points (and images) pooled."""
    return float(pearson(np.ravel(live), np.ravel(synth), axis=None))


def rmse(live: np.ndarray, synth: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray | float:
    """Root-mean-square error (in the inputs' unit) over ``axis`` (``None``: all elements)."""
    d = np.asarray(live, dtype=np.float64) - np.asarray(synth, dtype=np.float64)
    out = np.sqrt(np.mean(d * d, axis=axis))
    return float(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class LatencyGainFit:
    """The joint fit of ``live(t) = gain[c] * synth(t - latency) + intercept`` (see :func:`fit_latency_gain`).

    Attributes
    ----------
    latency_samples : float | ndarray, shape (C,)
        At the ERPs' rate; one overall, or one per channel.
    gain : ndarray, shape (C,)
        Least-squares gain per channel at that latency (``nan`` where the synthesized ERP is flat).
    sfreq : float
        Rate of the ERPs (Hz).
    r, r_at_zero : float
        Pearson r of the demeaned live rows with the fitted ones (gain times the aligned synthesized rows), pooled,
        at the latency and at zero lag (``sqrt(1 - rss / total)``; nan for flat live ERPs).
    rss : float
        Residual sum of squares (SI units squared) at the latency, summed over channels.
    refined : bool
        Sub-sample latency from a cubic-spline search (True) or a parabola through the best integer lags.
    """

    latency_samples: float | np.ndarray
    gain: np.ndarray
    sfreq: float
    r: float
    r_at_zero: float
    rss: float
    refined: bool

    @property
    def latency_s(self) -> float | np.ndarray:
        """The latency in seconds (> 0: live later)."""
        return self.latency_samples / self.sfreq if np.ndim(self.latency_samples) else \
            float(self.latency_samples) / self.sfreq

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable details (a calibration profile's ``latency_fit``)."""
        lat = self.latency_s
        return {"method": "joint least squares: gain per channel, intercept per image and channel, latency "
                          + ("by cubic-spline search" if self.refined else "by a parabola through integer lags"),
                "latency_s": float(lat) if np.ndim(lat) == 0 else np.asarray(lat).round(7).tolist(),
                "latency_samples": float(self.latency_samples) if np.ndim(self.latency_samples) == 0
                else np.asarray(self.latency_samples).round(5).tolist(),
                "r": self.r, "r_at_zero": self.r_at_zero, "rss": self.rss}


def _demeaned(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=-1, keepdims=True)


def align(synth_wide: np.ndarray | SplineSignal, margin: int, lag_samples: float | np.ndarray,
          n_times: int) -> np.ndarray:
    """The window of ``n_times`` samples of ``synth(t - lag)`` from wide epochs ``(..., C, n_times + 2 * margin)``
    (the window starts ``margin`` samples in); ``lag_samples`` is one lag or one per channel, ``|lag| <= margin -
    2`` for a fractional lag. Whole-sample lags are exact slices, fractional ones cubic B-spline interpolation of
    the wide epochs (:class:`vibe_rt.calibration.SplineSignal`, which may be passed instead of the array to align
    it many times): no sample comes from outside the data."""
    lag = np.asarray(lag_samples, dtype=np.float64)
    if isinstance(synth_wide, SplineSignal):
        return synth_wide.shifted(lag, margin, margin + n_times).astype(np.float64)
    x = np.asarray(synth_wide, dtype=np.float64)
    if np.all(lag == np.round(lag)):
        if lag.ndim == 0:
            k = int(lag)
            return x[..., margin - k:margin - k + n_times].copy()
        out = np.empty(x.shape[:-1] + (n_times,))
        for c, k in enumerate(lag.astype(int)):
            out[..., c, :] = x[..., c, margin - k:margin - k + n_times]
        return out
    return SplineSignal(x).shifted(lag, margin, margin + n_times)


def _sums(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel: sum of y * x and of x * x over images and time, x demeaned per row (y already is, so that
    the first sum needs no demeaning of x)."""
    n_t = x.shape[-1]
    row = x.sum(axis=-1)
    return np.einsum("kct,kct->c", y, x), np.einsum("kct,kct->c", x, x) - (row * row).sum(axis=0) / n_t


def _parabola(y: np.ndarray, i: int) -> float:
    """Sub-sample offset of a minimum at index ``i`` from a parabola through ``y[i-1:i+2]`` (0 at the edges)."""
    if i <= 0 or i >= y.size - 1 or not np.all(np.isfinite(y[i - 1:i + 2])):
        return 0.0
    ym, y0, yp = y[i - 1], y[i], y[i + 1]
    den = ym - 2.0 * y0 + yp
    return float(np.clip(0.5 * (ym - yp) / den, -0.5, 0.5)) if den > 0 else 0.0


def fit_latency_gain(live: np.ndarray, synth_wide: np.ndarray, margin: int, sfreq: float, *,
                     max_lag_s: float = 0.1, per_channel: bool = False, refine: bool = True) -> LatencyGainFit:
    """Fit ``live(t) = gain[c] * synth(t - latency) + a[k, c]`` by least squares, jointly.

    Both sides are demeaned per image and channel (the intercept ``a``: it absorbs any baseline correction, which
    is then irrelevant), the gain is profiled out per channel, and the latency minimises the summed residual
    (one for all channels, or one per channel): first over whole samples of the wide synthesized ERPs, then to a
    fraction of a sample by a golden-section search on their cubic-spline interpolation (``refine``) or a
    parabola through the best three lags. Because the synthesized ERPs extend ``margin`` samples beyond the
    window, aligning them cuts the synthesized signal at ``onset - latency`` instead of shifting a window (whose
    edges would be invented and whose baseline would move): no bias from the baseline or the window.

    Parameters
    ----------
    live : ndarray, shape (K, C, T)
        Live ERPs per image (any baseline).
    synth_wide : ndarray, shape (K, C, T + 2 * margin)
        Synthesized ERPs of the same images, ``margin`` samples wider on each side (unbaselined). With
        ``margin`` 0 (a window only) the edges are repeated, which biases the fit where responses reach them.
    margin : int
    sfreq : float
        Rate of the ERPs (Hz).
    max_lag_s : float
        Largest latency searched (s), at most ``margin - 3`` samples.
    per_channel : bool
        One latency per channel instead of one overall.
    refine : bool
        Spline search (exact to rounding) instead of the parabola, whose gain is interpolated between the whole
        lags around it (cheaper: the bootstrap and the running snapshots use it).
    """
    y = _demeaned(np.asarray(live, dtype=np.float64))
    xw = np.asarray(synth_wide, dtype=np.float64)
    k_imgs, n_ch, n_times = y.shape
    max_lag = max(1, int(np.ceil(max_lag_s * sfreq - 1e-9)))
    if margin < max_lag + 3:  # too narrow: repeat the edges (what a shift inside the window does)
        extra = max_lag + 3 - margin
        xw = np.pad(xw, [(0, 0)] * (xw.ndim - 1) + [(extra, extra)], mode="edge")
        margin += extra
    if xw.shape != (k_imgs, n_ch, n_times + 2 * margin):
        raise ValueError(f"wide synthesized ERPs {xw.shape} do not fit live ERPs {y.shape} with margin {margin}")
    yy = np.einsum("kct,kct->c", y, y)
    lags = np.arange(-max_lag, max_lag + 1)
    num = np.empty((lags.size, n_ch))
    # sums of x and x^2 over every window of the wide ERPs (one cumulative sum, not one pass per lag)
    cs = np.concatenate([np.zeros(xw.shape[:-1] + (1,)), np.cumsum(xw, axis=-1)], axis=-1)
    cs2 = np.concatenate([np.zeros(xw.shape[:-1] + (1,)), np.cumsum(xw * xw, axis=-1)], axis=-1)
    starts = margin - lags
    row = cs[..., starts + n_times] - cs[..., starts]  # (K, C, lags)
    den = ((cs2[..., starts + n_times] - cs2[..., starts]).sum(axis=0) - (row * row).sum(axis=0) / n_times).T
    for i, k in enumerate(lags):
        num[i] = np.einsum("kct,kct->c", y, xw[..., margin - k:margin - k + n_times])
    with np.errstate(invalid="ignore", divide="ignore"):
        rss = yy - np.where(den > 0, num * num / np.where(den > 0, den, 1.0), 0.0)  # (lags, C)

    spline = SplineSignal(xw) if refine else None

    def residual(lag: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if spline is not None:
            n, d = _sums(y, align(spline, margin, lag, n_times))
        else:  # the parabola's lag: the sums interpolated linearly between the whole lags around it
            pos = np.broadcast_to(np.asarray(lag, float) + max_lag, (n_ch,))
            i0 = np.clip(np.floor(pos).astype(int), 0, lags.size - 2)
            w = pos - i0
            c = np.arange(n_ch)
            n = (1 - w) * num[i0, c] + w * num[i0 + 1, c]
            d = (1 - w) * den[i0, c] + w * den[i0 + 1, c]
        with np.errstate(invalid="ignore", divide="ignore"):
            return yy - np.where(d > 0, n * n / np.where(d > 0, d, 1.0), 0.0), n, d

    lag: np.ndarray | float
    if per_channel:
        best = np.argmin(rss, axis=0)
        lag0 = lags[best].astype(float)
        if refine:
            lag = _golden(lambda v: residual(v)[0], lag0 - 1.0, lag0 + 1.0)
        else:
            lag = lag0 + np.array([_parabola(rss[:, c], best[c]) for c in range(n_ch)])
    else:
        total = rss.sum(axis=1)
        best = int(np.argmin(total))
        if refine:
            lag = float(_golden(lambda v: np.atleast_1d(residual(float(v[0]))[0].sum()),
                                np.array([lags[best] - 1.0]), np.array([lags[best] + 1.0]))[0])
        else:
            lag = float(lags[best] + _parabola(total, best))
    res, n, d = residual(lag)
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.where(d > 0, n / np.where(d > 0, d, 1.0), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):  # r of live with the fitted synthesized rows, pooled
        r = float(np.sqrt(max(0.0, 1.0 - res.sum() / yy.sum())))
        r0 = float(np.sqrt(max(0.0, 1.0 - rss[lags.size // 2].sum() / yy.sum())))
    return LatencyGainFit(lag, gain, float(sfreq), r, r0, float(res.sum()), refine)


def _golden(f, lo: np.ndarray, hi: np.ndarray, iterations: int = 30) -> np.ndarray:
    """Minimise ``f`` (vector in, vector out, element-wise independent) on ``[lo, hi]`` by golden sections."""
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = np.array(lo, float), np.array(hi, float)
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iterations):
        left = fc < fd  # the minimum lies in [a, d]
        b = np.where(left, d, b)
        a = np.where(left, a, c)
        c_new, d_new = b - ratio * (b - a), a + ratio * (b - a)
        # one new evaluation per element: the kept interior point moves to the other side
        probe = np.where(left, c_new, d_new)
        fp = f(probe)
        fd, d, fc, c = (np.where(left, fc, fp), np.where(left, c, d_new), np.where(left, fp, fd),
                        np.where(left, c_new, d))
    return (a + b) / 2.0


def bootstrap_latency_gain(live: np.ndarray, synth_wide: np.ndarray, key_index: np.ndarray, margin: int,
                           sfreq: float, *, times: np.ndarray | None = None, span_s: float = 0.0,
                           n_total: int | None = None, n_boot: int = 200, seed: int = 0, max_lag_s: float = 0.1,
                           per_channel: bool = False) -> dict[str, Any]:
    """Standard errors of :func:`fit_latency_gain` by a bootstrap over events.

    Each replicate draws the events with replacement, averages them per image (images drawn no time are left
    out) and refits (with the parabola, which has the spline search's spread at a fraction of its cost). Events
    whose epochs overlap share their noise (and 1/f noise is correlated beyond that), so the events are drawn in
    blocks of consecutive ones (a circular block bootstrap, in time order): a block spans at least ``span_s``
    (the epoch and its margins), so that neighbours that share data are drawn together.

    Parameters
    ----------
    live, synth_wide : ndarray, shape (n, C, T) and (n, C, T + 2 * margin)
        The events' live epochs and wide synthesized epochs.
    key_index : ndarray of int, shape (n,)
        Each event's image.
    times : ndarray, shape (n,) | None
        The events' onsets (s): their order, and the block length with ``span_s`` (None: single events).
    span_s : float
        Duration that one epoch's data spans (s).
    n_total : int | None
        Events of the session when ``live`` holds a random subset of them: the errors are scaled by
        ``sqrt(n / n_total)``.

    Returns
    -------
    dict
        ``method``, ``n_boot``, ``block`` (events per block), ``n_events`` (resampled), ``n_total``, ``gain_se``
        (per channel), ``latency_se_s`` (one or per channel).
    """
    live = np.asarray(live)
    n = live.shape[0]
    in_time = np.argsort(times, kind="stable") if times is not None else np.arange(n)
    block = 1
    if times is not None and n > 1 and span_s > 0:
        soa = float(np.median(np.diff(np.sort(np.asarray(times, float)))))
        block = int(min(n, max(1, np.ceil(span_s / soa)))) if soa > 0 else 1
    order = np.argsort(key_index, kind="stable")
    keys = np.asarray(key_index)[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    y_sorted, x_sorted = live[order].astype(np.float64), np.asarray(synth_wide)[order].astype(np.float64)
    position = np.empty(n, int)
    position[in_time] = np.arange(n)  # each event's place in time
    rng = np.random.default_rng(seed)
    n_blocks = int(np.ceil(n / block))
    gains, lats = [], []
    for _ in range(int(n_boot)):
        first = rng.integers(0, n, n_blocks)
        drawn = ((first[:, None] + np.arange(block)) % n).ravel()[:n]  # places in time, blocks wrap around
        w = np.bincount(drawn, minlength=n)[position][order].astype(np.float64)
        totals = np.add.reduceat(w, starts)
        keep = totals > 0
        y = np.add.reduceat(w[:, None, None] * y_sorted, starts)[keep] / totals[keep, None, None]
        x = np.add.reduceat(w[:, None, None] * x_sorted, starts)[keep] / totals[keep, None, None]
        fit = fit_latency_gain(y, x, margin, sfreq, max_lag_s=max_lag_s, per_channel=per_channel, refine=False)
        gains.append(fit.gain)
        lats.append(np.atleast_1d(fit.latency_s))
    scale = np.sqrt(n / n_total) if n_total and n_total > n else 1.0
    gain_se = np.nanstd(np.array(gains), axis=0, ddof=1) * scale
    lat_se = np.std(np.array(lats), axis=0, ddof=1) * scale
    return {"method": "block bootstrap over events", "n_boot": int(n_boot), "block": block, "n_events": int(n),
            "n_total": int(n_total or n), "gain_se": np.round(gain_se, 6).tolist(),
            "latency_se_s": float(lat_se[0]) if not per_channel else np.round(lat_se, 7).tolist()}


def erp_metrics(live: np.ndarray, synth: np.ndarray) -> dict[str, Any]:
    """r (pooled), r per channel, RMSE (SI) and RMSE per channel between ERPs ``(n_keys, C, T)``."""
    return {
        "erp_r": overall_r(live, synth),
        "erp_r_per_channel": channel_r(live, synth).tolist(),
        "erp_rmse": rmse(live, synth),
        "erp_rmse_per_channel": np.asarray(rmse(live, synth, axis=(0, 2))).tolist(),
    }
