"""Comparison metrics between live and synthesized epochs: pure functions of arrays.

Conventions
-----------
* Arrays are ``(..., n_channels, n_times)`` in SI units (V or T); time is the last axis.
* A positive latency means the **live** response arrives later than the synthesized one:
  ``live(t) ~ gain * synth(t - latency)``.
* Pearson r, Spearman-Brown and split-half reliability are :mod:`vibe_rt.stats` (r of constant inputs is
  ``nan``, never a division warning).
* Signals are delayed by :func:`vibe_rt.calibration.shift_signal` (the latency shift of a calibration).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..stats import pearson

__all__ = [
    "channel_r",
    "overall_r",
    "rmse",
    "lagged_r",
    "estimate_latency",
    "fit_gain",
    "erp_metrics",
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


def _rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(-1, x.shape[-1])


def lagged_r(live: np.ndarray, synth: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised cross-correlation at integer lags, pooled over all leading axes.

    For each lag ``k`` in ``[-max_lag, max_lag]`` it correlates ``live[..., t + k]`` with ``synth[..., t]``
    over the overlapping samples, each row (channel/image) demeaned over that overlap and scaled to unit
    norm so that every row weighs the same whatever its amplitude or gain.

    Returns
    -------
    lags : ndarray of int, shape (2 * max_lag + 1,)
    r : ndarray, shape (2 * max_lag + 1,)
        Mean over rows of the per-row correlation at each lag (``nan`` rows ignored).
    """
    a, b = _rows(live), _rows(synth)
    n_t = a.shape[-1]
    max_lag = int(min(max_lag, n_t - 3))
    lags = np.arange(-max_lag, max_lag + 1)
    out = np.full(lags.size, np.nan)
    for i, k in enumerate(lags):
        if k >= 0:
            x, y = a[:, k:], b[:, : n_t - k]
        else:
            x, y = a[:, : n_t + k], b[:, -k:]
        r = pearson(x, y, axis=-1)
        if np.any(np.isfinite(r)):
            out[i] = np.nanmean(r)
    return lags, out


def _parabolic_peak(y: np.ndarray, i: int) -> float:
    """Sub-sample offset of a peak at index ``i`` by fitting a parabola through ``y[i-1:i+2]``."""
    if i <= 0 or i >= y.size - 1 or not np.all(np.isfinite(y[i - 1 : i + 2])):
        return 0.0
    ym, y0, yp = y[i - 1], y[i], y[i + 1]
    den = ym - 2.0 * y0 + yp
    if den >= 0:  # not a maximum
        return 0.0
    return float(np.clip(0.5 * (ym - yp) / den, -0.5, 0.5))


def estimate_latency(
    live: np.ndarray, synth: np.ndarray, sfreq: float, *, max_lag_s: float = 0.1
) -> dict[str, float]:
    """Latency of ``live`` relative to ``synth`` by cross-correlation, sub-sample by parabolic interpolation.

    Parameters
    ----------
    live, synth : ndarray, shape (..., T)
        ERPs at the same rate ``sfreq`` (e.g. ``(C, T)`` or ``(n_images, C, T)``).
    sfreq : float
        Sampling rate in Hz.
    max_lag_s : float
        Largest lag searched, in seconds (both directions).

    Returns
    -------
    result : dict
        ``latency_s`` (positive: live later), ``latency_samples`` (at ``sfreq``), ``peak_r`` (correlation at
        the best integer lag) and ``r_at_zero``. ``nan`` when no lag gives a finite correlation.
    """
    max_lag = max(1, int(np.ceil(max_lag_s * sfreq)))
    lags, r = lagged_r(live, synth, max_lag)
    if not np.any(np.isfinite(r)):
        nan = float("nan")
        return {"latency_s": nan, "latency_samples": nan, "peak_r": nan, "r_at_zero": nan}
    i = int(np.nanargmax(r))
    frac = _parabolic_peak(r, i)
    lag = float(lags[i] + frac)
    return {
        "latency_s": lag / sfreq,
        "latency_samples": lag,
        "peak_r": float(r[i]),
        "r_at_zero": float(r[lags.size // 2]),
    }


def fit_gain(live: np.ndarray, synth: np.ndarray) -> np.ndarray:
    """Per-channel least-squares gain ``g`` minimising ``||live - g * synth||^2`` (no intercept).

    Parameters
    ----------
    live, synth : ndarray, shape (C, T) or (n_images, C, T)
        Baseline-corrected ERPs; images are pooled.

    Returns
    -------
    gain : ndarray, shape (C,)
        ``nan`` for channels where ``synth`` is all zero.
    """
    live = np.asarray(live, dtype=np.float64)
    synth = np.asarray(synth, dtype=np.float64)
    axes = (0, 2) if live.ndim == 3 else (1,)
    num = (live * synth).sum(axis=axes)
    den = (synth * synth).sum(axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def erp_metrics(live: np.ndarray, synth: np.ndarray) -> dict[str, Any]:
    """r (pooled), r per channel, RMSE (SI) and RMSE per channel between ERPs ``(n_keys, C, T)``."""
    return {
        "erp_r": overall_r(live, synth),
        "erp_r_per_channel": channel_r(live, synth).tolist(),
        "erp_rmse": rmse(live, synth),
        "erp_rmse_per_channel": np.asarray(rmse(live, synth, axis=(0, 2))).tolist(),
    }
