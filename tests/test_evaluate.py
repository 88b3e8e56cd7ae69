"""Tests of the evaluation protocol, noise ceiling, ridge baseline and report writing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vibe_rt.training.baselines import RidgeEncoder, ridge_features
from vibe_rt.training.metrics import encoding_r, encoding_scores, reconstruction_scores


def _toy(n=150, reps=8, c=3, t=20, sigma=2.0, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(n, c, t)).astype(np.float32)
    test = signal[:, None] + sigma * rng.normal(size=(n, reps, c, t)).astype(np.float32)
    return signal, test


def test_known_correlation_and_ceiling():
    sigma, reps = 2.0, 8
    signal, test = _toy(sigma=sigma, reps=reps)
    s = encoding_scores(signal, test, n_splits=20, seed=1)
    noise_var = sigma**2 / (reps // 2)
    expected_r = np.sqrt(1.0 / (1.0 + noise_var))  # r(signal, signal + noise of a half-average)
    expected_lower = 1.0 / (1.0 + noise_var)  # r between two independent half-averages
    assert s.r == pytest.approx(expected_r, abs=0.03)
    assert s.ceiling_lower.mean() == pytest.approx(expected_lower, abs=0.03)
    assert s.r_map.shape == (3, 20) and s.r_per_image.shape == (150,)
    # the all-repetition average sits at the upper ceiling; a perfect model of the signal lies in between
    full = encoding_scores(test.mean(1), test, n_splits=20, seed=1)
    assert full.r == pytest.approx(s.ceiling_upper.mean(), abs=0.03)
    assert s.ceiling_lower.mean() < s.r < s.ceiling_upper.mean()
    # per image over channels x time: same expectation for this i.i.d. toy
    assert s.r_per_image.mean() == pytest.approx(expected_r, abs=0.05)


def test_noise_only_and_shuffled_predictions_score_zero():
    signal, test = _toy(sigma=1.0)
    rng = np.random.default_rng(3)
    s = encoding_scores(signal[rng.permutation(len(signal))], test, n_splits=10)
    assert abs(s.r) < 0.05
    noise = np.random.default_rng(4).normal(size=test.shape).astype(np.float32)
    s0 = encoding_scores(None, noise, n_splits=10)
    assert abs(s0.ceiling_lower.mean()) < 0.05
    assert float(np.abs(s0.r_map).max()) == 0.0


def test_ceiling_matches_data_module():
    ceiling = pytest.importorskip("vibe_rt.data.ceiling")
    _, test = _toy(n=40, reps=6)
    ours = encoding_scores(None, test, n_splits=15, seed=7)
    ref = ceiling.noise_ceiling(test, n_splits=15, seed=7)
    np.testing.assert_allclose(ours.ceiling_lower, ref["lower"], atol=1e-5)
    np.testing.assert_allclose(ours.ceiling_upper, ref["upper"], atol=1e-5)


def test_ragged_repetitions():
    signal, test = _toy(n=60, reps=7)
    test[::3, -1] = np.nan
    s = encoding_scores(signal, test, n_splits=5)
    assert np.isfinite(s.r) and s.r > 0.3


def test_reconstruction_scores():
    signal, _ = _toy(n=50)
    rec = reconstruction_scores(signal, signal)
    assert rec["r"] == pytest.approx(1.0) and rec["r_per_epoch"] == pytest.approx(1.0)
    r = encoding_r(np.ones((5, 2)), np.arange(10.0).reshape(5, 2))
    assert np.all(r == 0.0)  # the evaluation counts an undefined r (constant input) as 0


def test_ridge_picks_sensible_penalty_and_beats_chance():
    rng = np.random.default_rng(0)
    n, d, k = 300, 40, 6
    x = rng.normal(size=(n, d))
    w = rng.normal(size=(d, k))
    y = x @ w + 0.5 * rng.normal(size=(n, k))
    ridge = RidgeEncoder().fit(x[:250], y[:250])
    pred = ridge.predict(x[250:])
    assert encoding_r(pred, y[250:]).mean() > 0.95
    # strong signal -> small penalty; pure noise targets -> a large one
    noise = RidgeEncoder().fit(x[:250], rng.normal(size=(250, k)))
    assert ridge.alpha_ < noise.alpha_
    assert noise.alpha_ >= ridge.alpha_grid_[-1] / 100  # at least the largest squared singular value
    # the fit is the closed-form ridge solution for the chosen penalty (standardised features, intercept)
    xs = (x[:250] - x[:250].mean(0)) / x[:250].std(0)
    coef = np.linalg.solve(xs.T @ xs + ridge.alpha_ * np.eye(d), xs.T @ (y[:250] - y[:250].mean(0)))
    np.testing.assert_allclose(ridge.coef_, coef, atol=1e-8)
    per = RidgeEncoder(per_target=True).fit(x[:250], y[:250])
    assert per.alpha_.shape == (k,)
    tokens = rng.normal(size=(4, 3, 2))
    assert ridge_features(tokens, rng.normal(size=(4, 5)), "both").shape == (4, 11)


def test_write_report(tmp_path):
    from vibe_rt.data.dataset import EpochsDataset
    from vibe_rt.montage import get_montage
    from vibe_rt.training.evaluate import build_report, write_report

    m = get_montage("things-eeg2")
    rng = np.random.default_rng(0)
    sig = rng.normal(size=(30, m.n_channels, m.n_times)).astype(np.float32)
    test = EpochsDataset(sig[:, None] + rng.normal(size=(30, 4, m.n_channels, m.n_times)).astype(np.float32), m,
                         [f"img{i}" for i in range(30)], split="test")
    scores = {"vibe": encoding_scores(sig, test.epochs, n_splits=5),
              "ridge_tokens": encoding_scores(sig * 0.5 + rng.normal(size=sig.shape), test.epochs, n_splits=5)}
    rep = build_report(scores, test=test, reconstruction={"r": 0.9, "r_per_epoch": 0.95, "r_map": None})
    paths = write_report(rep, tmp_path, scores=scores)
    data = json.loads(paths["report"].read_text())
    assert data["headline_r"] == pytest.approx(scores["vibe"].r)
    # the headline text states the splits really used (it said "100 seeded splits" whatever --splits was)
    assert "(5 seeded splits, averaged)" in data["headline"] and "100" not in data["headline"]
    assert data["protocol"]["n_splits"] == 5
    assert len(data["models"]["vibe"]["r_per_channel"]) == m.n_channels
    for key in ("per_channel", "per_time", "map"):
        assert paths[key].stat().st_size > 1000
