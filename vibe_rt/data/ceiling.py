"""Split-half noise ceiling and encoding correlation, following the THINGS-EEG2 encoding protocol.

Protocol (Gifford et al. 2022, ``gifale95/eeg_encoding`` ``correlation.py``): for
each channel and time point, Pearson r across the test images; the repetitions are split at random into two
halves, 100 times, and the correlations are averaged over splits.

* noise ceiling, lower bound: r(mean of half A, mean of half B);
* noise ceiling, upper bound: r(mean of all repetitions, mean of half B);
* encoding accuracy of a prediction: r(prediction, mean of half A).

Repetitions that are NaN (ragged recordings) are ignored in the means. The statistics are :mod:`vibe_rt.stats`
(the evaluation, :func:`vibe_rt.training.metrics.encoding_scores`, uses the same splits and formulas); this module
keeps the dataset-facing checks and result dictionaries. As in the evaluation, an r that is undefined in a split
(a half constant across the images, e.g. a flat channel) counts as 0 in the averages over splits.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..stats import noise_ceiling as split_half_ceiling
from ..stats import pearson, random_halves, repetition_mean


def _check(test_epochs: np.ndarray) -> np.ndarray:
    x = np.asarray(test_epochs)
    if x.ndim != 4:
        raise DataError(f"test epochs must have shape (n_images, n_reps, n_channels, n_times), got {x.shape}")
    if x.shape[1] < 2:
        raise DataError(f"a split-half noise ceiling needs at least 2 repetitions per image, got {x.shape[1]}")
    if x.shape[0] < 3:
        raise DataError(f"correlation across images needs at least 3 test images, got {x.shape[0]}")
    return x


def noise_ceiling(test_epochs: np.ndarray, n_splits: int = 100, seed: int | None = 0) -> dict:
    """Split-half noise ceiling of test data.

    Parameters
    ----------
    test_epochs : ndarray, shape (n_images, n_reps, n_channels, n_times)
        Single-trial test responses (NaN for missing repetitions).
    n_splits : int
        Number of random splits of the repetitions into two halves.
    seed : int | None
        Seed of the splits.

    Returns
    -------
    dict
        ``lower`` and ``upper``: (n_channels, n_times) maps of Pearson r averaged over splits;
        ``lower_mean`` and ``upper_mean``: their means (floats); ``n_splits``, ``n_reps``.
    """
    x = _check(test_epochs).astype(np.float32, copy=False)
    lower, upper = split_half_ceiling(x, int(n_splits), seed, nan_as=0.0)
    return {"lower": lower, "upper": upper, "lower_mean": float(lower.mean()), "upper_mean": float(upper.mean()),
            "n_splits": int(n_splits), "n_reps": int(x.shape[1])}


def encoding_correlation(prediction: np.ndarray, test_epochs: np.ndarray, n_splits: int = 100,
                         seed: int | None = 0) -> dict:
    """Correlation of predicted responses with measured ones averaged over random halves of the repetitions.

    Parameters
    ----------
    prediction : ndarray, shape (n_images, n_channels, n_times)
        Predicted responses, images in the order of ``test_epochs``.
    test_epochs : ndarray, shape (n_images, n_reps, n_channels, n_times)
        Single-trial test responses.
    n_splits : int
        Number of random halves.
    seed : int | None
        Seed of the splits (use the same seed as :func:`noise_ceiling` to pair them).

    Returns
    -------
    dict
        ``map``: (n_channels, n_times) r averaged over splits (an undefined r counted as 0); ``mean``: its
        mean; ``per_image``: (n_images,) r between prediction and the all-repetition average over channels x
        time, per image (``nan`` where either is constant).
    """
    x = _check(test_epochs).astype(np.float32, copy=False)
    pred = np.asarray(prediction, dtype=np.float64)
    if pred.shape != (x.shape[0],) + x.shape[2:]:
        raise DataError(f"prediction of shape {pred.shape} does not match test epochs {x.shape} "
                        "(expected (n_images, n_channels, n_times))")
    n = int(n_splits)
    acc = sum(np.nan_to_num(pearson(pred, a, axis=0), nan=0.0) for a, _ in random_halves(x, n, seed)) / n
    per_image = pearson(pred, repetition_mean(x), axis=tuple(range(1, pred.ndim)))
    return {"map": acc, "mean": float(acc.mean()), "per_image": per_image, "n_splits": n}
