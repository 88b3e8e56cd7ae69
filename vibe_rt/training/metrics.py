"""The encoding metrics of the THINGS-EEG2 encoding work (Gifford et al. 2022, ``correlation.py``).

All functions here are pure numpy and take arrays; :mod:`vibe_rt.training.evaluate` applies them to models. The
statistics (Pearson r, the random half splits, the noise ceilings) are :mod:`vibe_rt.stats`.

Protocol (see ``docs/training.md``):

- **Encoding r map** (the headline is its mean): for each channel and time point, Pearson r across the test
  images between the prediction and the measured response averaged over a random half of the repetitions;
  repeated over ``n_splits`` random splits (seeded) and averaged.
- **Noise ceiling** on the same splits (half A predicted, half B held out): lower = r(A, B); upper =
  r(all-repetition average, B). Identical splits and formulas to :func:`vibe_rt.data.ceiling.noise_ceiling`
  for the same seed.
- **Per-image r**: for each test image, Pearson r over channels x time between the prediction and the same
  half-average (after scaling each channel by ``scale``, so that channels weigh equally), averaged over splits.

An undefined r (a prediction or a half average constant across the images, e.g. a flat channel; see
:mod:`vibe_rt.stats`) counts as 0 in every average here (:func:`encoding_r`): it carries no information, and
the headline mean stays finite.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..stats import pearson, random_halves, repetition_mean, split_ceilings

__all__ = ["EncodingScores", "encoding_r", "encoding_scores", "reconstruction_scores"]


def encoding_r(a: np.ndarray, b: np.ndarray, axis: int | tuple[int, ...] = 0) -> np.ndarray:
    """:func:`vibe_rt.stats.pearson` along ``axis`` with an undefined r (constant or NaN input) counted as 0.

    The evaluation's policy for every r that is averaged into a score (maps, per-image r, validation r).
    """
    return np.nan_to_num(np.asarray(pearson(a, b, axis=axis)), nan=0.0)


@dataclass
class EncodingScores:
    """Scores of one set of predictions on a test set.

    Attributes
    ----------
    r_map : ndarray, shape (C, T)
        Encoding r per channel and time point (mean over splits).
    r_per_image : ndarray, shape (N,)
        r over channels x time per test image (mean over splits).
    ceiling_lower, ceiling_upper : ndarray, shape (C, T)
        Split-half noise ceiling maps.
    ceiling_lower_per_image, ceiling_upper_per_image : ndarray, shape (N,)
        The same two ceilings per image over channels x time.
    n_splits : int
        Number of random half splits.
    """

    r_map: np.ndarray
    r_per_image: np.ndarray
    ceiling_lower: np.ndarray
    ceiling_upper: np.ndarray
    ceiling_lower_per_image: np.ndarray
    ceiling_upper_per_image: np.ndarray
    n_splits: int
    extra: dict = field(default_factory=dict)

    @property
    def r(self) -> float:
        """The headline: mean of the channel x time encoding r map."""
        return float(self.r_map.mean())

    def summary(self) -> dict[str, float]:
        """Scalar summary (JSON-ready)."""
        return {
            "r": self.r,
            "r_per_image": float(self.r_per_image.mean()),
            "noise_ceiling_lower": float(self.ceiling_lower.mean()),
            "noise_ceiling_upper": float(self.ceiling_upper.mean()),
            "noise_ceiling_lower_per_image": float(self.ceiling_lower_per_image.mean()),
            "noise_ceiling_upper_per_image": float(self.ceiling_upper_per_image.mean()),
            "r_over_upper_ceiling": float(self.r / max(self.ceiling_upper.mean(), 1e-12)),
            "n_splits": int(self.n_splits),
        }


def encoding_scores(
    pred: np.ndarray | None,
    test_epochs: np.ndarray,
    *,
    n_splits: int = 100,
    seed: int = 0,
    scale: np.ndarray | None = None,
) -> EncodingScores:
    """Encoding r and noise ceiling with the split-half protocol.

    Parameters
    ----------
    pred : ndarray, shape (N, C, T) | None
        Predicted responses to the N test images (any unit; r is per channel/time across images).
        None computes only the noise ceiling (``r_map`` is then zeros).
    test_epochs : ndarray, shape (N, R, C, T)
        Measured single-repetition test epochs (R >= 2 repetitions per image; NaN = missing repetition).
    n_splits : int
        Random half splits of the repetitions (100 in the protocol).
    seed : int
        Seed of the splits (the same seed gives the same halves for every model compared).
    scale : ndarray, shape (C,) | None
        Per-channel scale (e.g. the training std) divided out before the per-image r, so that channels with
        large units do not dominate. Does not affect the channel x time map.

    Returns
    -------
    EncodingScores
    """
    test = np.asarray(test_epochs, dtype=np.float32)
    if test.ndim != 4:
        raise ValueError(f"test_epochs must be (N, R, C, T); got shape {test.shape}")
    n, reps, c, t = test.shape
    if reps < 2:
        raise ValueError("the noise ceiling and split-half protocol need at least 2 repetitions per image")
    if pred is not None:
        pred = np.asarray(pred, dtype=np.float32)
        if pred.shape != (n, c, t):
            raise ValueError(f"pred must have shape {(n, c, t)}; got {pred.shape}")
    inv = np.ones((1, c, 1), np.float32) if scale is None else (1.0 / np.asarray(scale, np.float32))[None, :, None]
    full = repetition_mean(test)
    img = (1, 2)  # per image: r over channels x time
    r_map = np.zeros((c, t))
    lo = np.zeros((c, t))
    up = np.zeros((c, t))
    r_img = np.zeros(n)
    lo_img = np.zeros(n)
    up_img = np.zeros(n)
    for a, b in random_halves(test, n_splits, seed):
        if pred is not None:
            r_map += encoding_r(pred, a, axis=0)
            r_img += encoding_r(pred * inv, a * inv, axis=img)
        lower, upper = split_ceilings(a, b, full, axis=0, nan_as=0.0)
        lo += lower
        up += upper
        lower, upper = split_ceilings(a * inv, b * inv, full * inv, axis=img, nan_as=0.0)
        lo_img += lower
        up_img += upper
    k = float(n_splits)
    return EncodingScores(
        r_map=r_map / k,
        r_per_image=r_img / k,
        ceiling_lower=lo / k,
        ceiling_upper=up / k,
        ceiling_lower_per_image=lo_img / k,
        ceiling_upper_per_image=up_img / k,
        n_splits=n_splits,
    )


def reconstruction_scores(recon: np.ndarray, target: np.ndarray, *, scale: np.ndarray | None = None) -> dict:
    """Stage-1 reconstruction r between reconstructed and input epochs.

    Parameters
    ----------
    recon, target : ndarray, shape (N, C, T)
        Reconstructions and the epochs that were encoded (e.g. repetition-averaged test epochs).
    scale : ndarray, shape (C,) | None
        Per-channel scale divided out before the per-epoch r.

    Returns
    -------
    dict
        ``r`` (headline: mean over channels x time of r across epochs), ``r_per_epoch`` (mean over epochs of
        r over channels x time), ``r_map`` (C, T) as a nested list.
    """
    recon = np.asarray(recon, np.float32)
    target = np.asarray(target, np.float32)
    inv = 1.0 if scale is None else (1.0 / np.asarray(scale, np.float32))[None, :, None]
    r_map = encoding_r(recon, target, axis=0)
    r_epoch = encoding_r(recon * inv, target * inv, axis=(1, 2))
    return {"r": float(r_map.mean()), "r_per_epoch": float(r_epoch.mean()), "r_map": r_map}
