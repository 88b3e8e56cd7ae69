"""vibe_rt.stats: Pearson r (known values, axes, constant and NaN inputs), Spearman-Brown, split halves and the
THINGS-EEG2 noise ceilings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from vibe_rt import stats


def test_pearson_known_values_and_axes():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 3, 5))
    b = a + rng.standard_normal(a.shape)
    r0 = stats.pearson(a, b, axis=0)  # across the leading axis, per remaining index
    assert r0.shape == (3, 5)
    assert r0[1, 2] == pytest.approx(sps.pearsonr(a[:, 1, 2], b[:, 1, 2])[0], abs=1e-12)
    r_last = stats.pearson(a, b, axis=-1)
    assert r_last.shape == (7, 3) and r_last[4, 0] == pytest.approx(sps.pearsonr(a[4, 0], b[4, 0])[0], abs=1e-12)
    r_img = stats.pearson(a, b, axis=(1, 2))  # per item over the other axes: the same as flattening them
    np.testing.assert_allclose(r_img, stats.pearson(a.reshape(7, -1), b.reshape(7, -1), axis=1), atol=1e-12)
    pooled = stats.pearson(a, b, axis=None)
    assert isinstance(pooled, float)
    assert pooled == pytest.approx(sps.pearsonr(a.ravel(), b.ravel())[0], abs=1e-12)
    # invariant to gain and offset, sign follows the gain
    assert stats.pearson(a, 3 * a - 2, axis=None) == pytest.approx(1.0)
    assert stats.pearson(a, -0.5 * a, axis=None) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="shapes"):
        stats.pearson(a, b[:, :2], axis=0)


def test_pearson_constant_and_nan_inputs_give_nan_without_warnings():
    x = np.arange(12.0).reshape(4, 3)
    flat = x.copy()
    flat[:, 1] = 5.0  # constant across the leading axis in column 1 only
    with np.errstate(all="raise"):  # no division warning either
        r = stats.pearson(flat, x, axis=0)
        assert np.isnan(r[1]) and r[0] == pytest.approx(1.0) and r[2] == pytest.approx(1.0)
        assert np.isnan(stats.pearson(np.ones(5), np.arange(5.0), axis=None))
        assert np.isnan(stats.pearson(np.zeros(5), np.zeros(5), axis=None))
    holed = x.copy()
    holed[2, 0] = np.nan
    r = stats.pearson(holed, x, axis=0)
    assert np.isnan(r[0]) and np.isfinite(r[1:]).all()


def test_spearman_brown():
    assert stats.spearman_brown(0.5) == pytest.approx(2 / 3)
    assert stats.spearman_brown(0.5, factor=3) == pytest.approx(0.75)
    np.testing.assert_allclose(stats.spearman_brown(np.array([0.0, 1.0, -0.2])), [0.0, 1.0, -0.4 / 0.8])
    assert np.isnan(stats.spearman_brown(float("nan")))


def test_split_half_reliability_pooled_and_per_channel():
    rng = np.random.default_rng(1)
    signal = rng.standard_normal((40, 4, 50))
    odd = signal + 0.5 * rng.standard_normal(signal.shape)
    even = signal + 0.5 * rng.standard_normal(signal.shape)
    sh = stats.split_half_reliability(odd, even)
    r = stats.pearson(odd, even, axis=None)
    assert sh.r == pytest.approx(r) and sh.reliability == pytest.approx(2 * r / (1 + r))
    assert sh.ceiling == pytest.approx(np.sqrt(sh.reliability))
    assert sh.r == pytest.approx(1 / 1.25, abs=0.03)  # var_s / (var_s + var_n)
    per = stats.split_half_reliability(odd, even, axis=(0, 2))
    assert per.r.shape == per.reliability.shape == per.ceiling.shape == (4,)
    # a channel whose halves anti-correlate has no ceiling; a flat one has no r
    odd[:, 1], even[:, 2] = -even[:, 1], 0.0
    per = stats.split_half_reliability(odd, even, axis=(0, 2))
    assert per.reliability[1] < 0 and np.isnan(per.ceiling[1])
    assert np.isnan(per.r[2]) and np.isnan(per.reliability[2]) and np.isnan(per.ceiling[2])
    assert np.all(np.isfinite(per.ceiling[[0, 3]]))


def test_random_halves_are_disjoint_seeded_and_cover_ragged_data():
    n, reps = 5, 6
    # each repetition is its index, so a half average reveals which repetitions it holds
    x = np.broadcast_to(np.arange(reps, dtype=np.float64)[None, :, None], (n, reps, 2)).copy()
    halves = list(stats.random_halves(x, n_splits=8, seed=3))
    assert len(halves) == 8
    for a, b in halves:
        assert a.shape == b.shape == (n, 2) and a.dtype == x.dtype
        assert a[0, 0] + b[0, 0] == pytest.approx(np.mean(np.arange(reps)) * 2)  # disjoint, together all
    again = list(stats.random_halves(x, n_splits=8, seed=3))
    assert all(np.array_equal(a, a2) for (a, _), (a2, _) in zip(halves, again))
    assert len({round(float(a[0, 0]), 6) for a, _ in halves}) > 1  # the splits differ
    # odd repetition count: one repetition left out; NaN repetitions skipped in the means
    odd = x[:, :5].copy()
    odd[0, 4] = np.nan
    for a, b in stats.random_halves(odd, n_splits=5, seed=0):
        assert np.isfinite(a).all() and np.isfinite(b).all()
    with pytest.raises(ValueError, match="2 repetitions"):
        next(stats.random_halves(x[:, :1], 1))
    with pytest.raises(ValueError, match="at least 1"):
        stats.noise_ceiling(x, n_splits=0, nan_as=None)


def _toy(n=60, reps=8, c=3, t=10, sigma=1.0, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal((n, c, t))
    return signal, signal[:, None] + sigma * rng.standard_normal((n, reps, c, t))


def test_noise_ceiling_known_value_and_same_splits_as_by_hand():
    _, test = _toy(n=200, reps=8, sigma=1.0)
    nc = stats.noise_ceiling(test, n_splits=20, seed=2, nan_as=None)
    assert nc.lower.shape == nc.upper.shape == (3, 10)
    # half averages of 4 repetitions: noise variance 1/4, lower = r(A, B) = 1 / (1 + 1/4)
    assert nc.lower.mean() == pytest.approx(1 / 1.25, abs=0.03)
    assert np.all(nc.upper > nc.lower)
    full = stats.repetition_mean(test)
    lo = np.mean([stats.pearson(a, b, axis=0) for a, b in stats.random_halves(test, 20, 2)], axis=0)
    up = np.mean([stats.pearson(full, b, axis=0) for _, b in stats.random_halves(test, 20, 2)], axis=0)
    np.testing.assert_allclose(nc.lower, lo, atol=1e-12)
    np.testing.assert_allclose(nc.upper, up, atol=1e-12)
    per_image = stats.noise_ceiling(test, n_splits=5, seed=2, axis=(1, 2), nan_as=None)
    assert per_image.lower.shape == (200,)


def test_noise_ceiling_nan_policy_is_the_callers():
    _, test = _toy(n=30, reps=4)
    test[:, :, 1, 3] = 2.0  # channel 1 is flat at one time point
    kept = stats.noise_ceiling(test, n_splits=6, seed=0, nan_as=None)
    zero = stats.noise_ceiling(test, n_splits=6, seed=0, nan_as=0.0)
    assert np.isnan(kept.lower[1, 3]) and np.isnan(kept.upper[1, 3])
    assert zero.lower[1, 3] == 0.0 and zero.upper[1, 3] == 0.0
    mask = np.ones((3, 10), bool)
    mask[1, 3] = False
    np.testing.assert_array_equal(kept.lower[mask], zero.lower[mask])
    with pytest.raises(TypeError):
        stats.noise_ceiling(test, n_splits=2)  # no default: the caller says how NaN counts
    lower, upper = stats.split_ceilings(test[:, 0], test[:, 1], stats.repetition_mean(test), nan_as=-1.0)
    assert lower[1, 3] == -1.0 and upper[1, 3] == -1.0 and np.isfinite(lower).all()


def test_repetition_mean_skips_nan_repetitions():
    x = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_allclose(stats.repetition_mean(x), x.mean(1))
    x[0, 2] = np.nan
    np.testing.assert_allclose(stats.repetition_mean(x)[0], x[0, :2].mean(0))
