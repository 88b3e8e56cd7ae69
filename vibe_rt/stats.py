"""Correlation statistics shared by the dataset tools, the evaluation and the comparator (a leaf: numpy only).

Constant-input policy
---------------------
The Pearson r of an input that is constant along the correlated axes (zero variance), or that holds a NaN, is
undefined: :func:`pearson` returns ``nan`` there, never 0 and never a division warning. Every other function here
keeps that ``nan``. A caller that averages r over a map and needs a finite number says how an undefined r counts,
explicitly (e.g. the evaluation counts it as 0, ``np.nan_to_num(r, nan=0.0)``; the comparator skips it,
``np.nanmean``).

Split-half protocol (THINGS-EEG2, Gifford et al. 2022, ``gifale95/eeg_encoding`` ``correlation.py``)
---------------------------------------------------------------------------------------------------
Test epochs ``(n_images, n_reps, ...)``: the repetitions are split at random into two halves A and B,
``n_splits`` times (:func:`random_halves`); for each split, with r across the images:

* noise ceiling, lower bound: r(mean of half A, mean of half B);
* noise ceiling, upper bound: r(mean of all repetitions, mean of half B);
* encoding accuracy of a prediction: r(prediction, mean of half A);

and each is averaged over the splits (:func:`noise_ceiling`). Repetitions that are NaN (ragged recordings) are
left out of the means.

The other split-half measure, for two fixed halves (odd and even repetitions), is :func:`split_half_reliability`:
r between the halves, its Spearman-Brown correction (:func:`spearman_brown`) and the ceiling ``sqrt`` of that.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

__all__ = [
    "pearson",
    "spearman_brown",
    "SplitHalf",
    "split_half_reliability",
    "repetition_mean",
    "random_halves",
    "split_ceilings",
    "NoiseCeiling",
    "noise_ceiling",
]

Axis = int | tuple[int, ...] | None


def pearson(a: np.ndarray, b: np.ndarray, axis: Axis = 0) -> np.ndarray | float:
    """Pearson r between ``a`` and ``b`` along ``axis``, elementwise over the other axes.

    Parameters
    ----------
    a, b : ndarray
        Arrays of the same shape (any unit; computed in float64).
    axis : int | tuple of int | None
        The axis (or axes) the correlation runs over: 0 (default) correlates across a leading axis (e.g.
        across test images, for every channel and time), ``-1`` along time, ``(1, 2)`` over channels x time
        per image, ``None`` over all elements.

    Returns
    -------
    r : ndarray | float
        Shape of the inputs without ``axis`` (a float when nothing is left); ``nan`` where ``a`` or ``b`` is
        constant along ``axis`` or holds a NaN.

    Raises
    ------
    ValueError
        When the shapes differ.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot correlate arrays of shapes {a.shape} and {b.shape}")
    am = a - a.mean(axis=axis, keepdims=True)
    bm = b - b.mean(axis=axis, keepdims=True)
    num = (am * bm).sum(axis=axis)
    den = np.sqrt((am * am).sum(axis=axis) * (bm * bm).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return float(r) if r.ndim == 0 else r


def spearman_brown(r: np.ndarray | float, factor: float = 2.0) -> np.ndarray | float:
    """Spearman-Brown prophecy: reliability of a measure ``factor`` times longer than one with reliability ``r``.

    With ``factor=2`` it turns a split-half correlation into the reliability of the average of both halves.
    ``nan`` stays ``nan``.
    """
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = factor * r / (1.0 + (factor - 1.0) * r)
    return float(out) if out.ndim == 0 else out


class SplitHalf(NamedTuple):
    """Split-half reliability of two halves of the repetitions (floats, or arrays over the kept axes)."""

    r: np.ndarray | float
    """Pearson r between the two half averages."""
    reliability: np.ndarray | float
    """Spearman-Brown corrected ``r``: the reliability of the all-repetition average."""
    ceiling: np.ndarray | float
    """``sqrt(reliability)``: the highest r that a noise-free prediction can reach against the all-repetition
    average; ``nan`` where the reliability is negative or undefined."""


def split_half_reliability(half_a: np.ndarray, half_b: np.ndarray, axis: Axis = None) -> SplitHalf:
    """Split-half reliability and noise ceiling from the averages of two halves of the repetitions.

    Parameters
    ----------
    half_a, half_b : ndarray
        Averages of two disjoint halves (e.g. odd and even repetitions) of each image, same shape.
    axis : int | tuple of int | None
        Axes the correlation runs over (default all: one pooled value; e.g. ``(0, 2)`` for one value per
        channel of ``(n_images, C, T)``).

    Returns
    -------
    SplitHalf
    """
    r = pearson(half_a, half_b, axis=axis)
    reliability = spearman_brown(r)
    rel = np.asarray(reliability)
    with np.errstate(invalid="ignore"):
        ceiling = np.where(rel >= 0, np.sqrt(np.clip(rel, 0.0, None)), np.nan)
    return SplitHalf(r, reliability, float(ceiling) if ceiling.ndim == 0 else ceiling)


def repetition_mean(epochs: np.ndarray) -> np.ndarray:
    """Average over the repetitions (axis 1) of ``(n_images, n_reps, ...)``; NaN repetitions are left out."""
    x = np.asarray(epochs)
    return np.nanmean(x, axis=1) if np.isnan(x).any() else x.mean(axis=1)


def random_halves(epochs: np.ndarray, n_splits: int = 100, seed: int | None = 0
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The averages of two random halves of the repetitions, for each of ``n_splits`` seeded splits.

    Parameters
    ----------
    epochs : ndarray, shape (n_images, n_reps, ...)
        Single-repetition epochs, ``n_reps >= 2``; NaN marks a missing repetition.
    n_splits : int
        Number of random splits.
    seed : int | None
        Seed of the splits: the same seed gives the same halves (and so comparable scores) for every caller.

    Yields
    ------
    half_a, half_b : ndarray, shape (n_images, ...)
        Averages over ``n_reps // 2`` repetitions each, disjoint (with an odd ``n_reps`` one repetition is left
        out), in the dtype of ``epochs``.
    """
    x = np.asarray(epochs)
    reps = x.shape[1]
    if reps < 2:
        raise ValueError(f"a split into two halves needs at least 2 repetitions per image, got {reps}")
    if n_splits < 1:
        raise ValueError(f"the number of random splits must be at least 1, got {n_splits}")
    rng = np.random.default_rng(seed)
    ragged = bool(np.isnan(x).any())
    total = None if ragged else x.sum(axis=1, dtype=np.float64)
    half = reps // 2
    for _ in range(n_splits):
        perm = rng.permutation(reps)
        if ragged or reps % 2:
            yield np.nanmean(x[:, perm[:half]], axis=1), np.nanmean(x[:, perm[half : 2 * half]], axis=1)
        else:  # B from the total: one pass over the repetitions instead of two
            sum_a = x[:, perm[:half]].sum(axis=1, dtype=np.float64)
            yield (sum_a / half).astype(x.dtype), ((total - sum_a) / half).astype(x.dtype)


def split_ceilings(half_a: np.ndarray, half_b: np.ndarray, full: np.ndarray, axis: Axis = 0, *,
                   nan_as: float | None) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Noise ceiling of one split along ``axis``: lower r(half A, half B), upper r(all repetitions, half B).

    ``nan_as``: the value an undefined r takes (e.g. 0.0), or None to keep ``nan``; no default: the caller
    decides (see the module docstring).
    """
    lower, upper = pearson(half_a, half_b, axis=axis), pearson(full, half_b, axis=axis)
    if nan_as is None:
        return lower, upper
    return _nan_as(lower, nan_as), _nan_as(upper, nan_as)


def _nan_as(r: np.ndarray | float, value: float) -> np.ndarray | float:
    out = np.where(np.isnan(r), value, r)
    return float(out) if out.ndim == 0 else out


class NoiseCeiling(NamedTuple):
    """Split-half noise ceiling maps, averaged over the splits."""

    lower: np.ndarray
    """r(mean of half A, mean of half B)."""
    upper: np.ndarray
    """r(mean of all repetitions, mean of half B)."""


def noise_ceiling(epochs: np.ndarray, n_splits: int = 100, seed: int | None = 0, *, axis: Axis = 0,
                  nan_as: float | None) -> NoiseCeiling:
    """Split-half noise ceiling of test epochs with the THINGS-EEG2 protocol (see the module docstring).

    Parameters
    ----------
    epochs : ndarray, shape (n_images, n_reps, ...)
        Single-repetition test epochs (NaN = missing repetition).
    n_splits : int
        Random half splits (100 in the protocol).
    seed : int | None
        Seed of the splits (:func:`random_halves`).
    axis : int | tuple of int | None
        Axes of the half averages ``(n_images, ...)`` the r runs over (default 0: across images, one value
        per remaining index).
    nan_as : float | None
        How an undefined r of one split (a half constant along ``axis``, or all its repetitions missing) counts
        in the average over splits: a number (e.g. 0.0) or None to keep ``nan`` (the map is then ``nan``
        there). No default: the caller decides.

    Returns
    -------
    NoiseCeiling
        ``lower`` and ``upper``, shape of the half averages without ``axis``.
    """
    full = repetition_mean(epochs)
    lower: np.ndarray | float = 0.0
    upper: np.ndarray | float = 0.0
    for a, b in random_halves(epochs, n_splits, seed):
        lo, up = split_ceilings(a, b, full, axis, nan_as=nan_as)
        lower, upper = lower + lo, upper + up
    return NoiseCeiling(np.asarray(lower) / n_splits, np.asarray(upper) / n_splits)
