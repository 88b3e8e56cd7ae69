"""Tests of the scores against the noise-free truth, the shuffled control, the bootstrap CIs and the PCA ridge."""

from __future__ import annotations

import numpy as np
import pytest

from vibe_rt.data.simulate import EvokedModel
from vibe_rt.data.stimuli import make_stimulus
from vibe_rt.training.baselines import PCARidgeEncoder
from vibe_rt.training.metrics import encoding_r, encoding_scores
from vibe_rt.training.truth import (
    _bootstrap_r,
    derangement,
    encoding_r_ci,
    shuffled_control,
    truth_metrics,
)

COMPONENT_NAMES = ("C1", "P1", "N1", "N170")


@pytest.fixture(scope="module")
def sim() -> dict:
    """Noise-free simulator responses (volts) to 60 procedural images (patterns and categories, faces too)."""
    model = EvokedModel("things-eeg2")
    rng = np.random.default_rng(0)
    images = [make_stimulus(rng) for _ in range(60)]
    truth = np.stack([model.evoked(im, category=meta.get("category")) for im, meta in images]).astype(np.float64)
    return {"truth": truth, "times": model.montage.times, "ch_names": list(model.montage.ch_names)}


def _noisy(truth: np.ndarray, reps: int = 8, sigma: float = 2e-6, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (truth[:, None] + sigma * rng.normal(size=(truth.shape[0], reps, *truth.shape[1:]))).astype(np.float32)


def _metrics(pred: np.ndarray, sim: dict, **kw) -> dict:
    return truth_metrics(pred, sim["truth"], times=sim["times"], ch_names=sim["ch_names"], **kw)


def test_truth_against_itself(sim):
    m = _metrics(sim["truth"], sim, std=np.full(len(sim["ch_names"]), 1e-6))
    assert m["rmse_uv"] == 0.0 and m["r2"] == 1.0 and m["r2_scaled"] == 1.0
    assert 0.5 < m["truth_rms_uv"] < 5  # a few µV: the unit conversion
    for name in COMPONENT_NAMES:
        c = m["components"][name]
        assert c["latency_error_ms"] == 0.0 and c["amplitude_error_uv"] == 0.0
        assert c["truth_peak_uv"] > 0.5
    assert m["components"]["N170"]["channels"] == ["P8", "PO8"]


def test_half_amplitude_loses_r2_and_peak_amplitude_but_not_encoding_r(sim):
    truth = sim["truth"]
    m = _metrics(0.5 * truth, sim)
    dev = truth - truth.mean(0)
    assert m["r2"] == pytest.approx(1 - 0.25 * (truth**2).sum() / (dev**2).sum(), rel=1e-9)
    assert m["r2"] < 0.9
    assert m["rmse_uv"] == pytest.approx(0.5 * m["truth_rms_uv"], rel=1e-9)
    for name in COMPONENT_NAMES:
        c = m["components"][name]
        assert c["latency_error_ms"] == 0.0
        assert c["amplitude_error_uv"] == pytest.approx(0.5 * c["truth_peak_uv"], rel=1e-6)
    # r is scale-free: the same against the truth and under the encoding protocol
    assert m["r"] == pytest.approx(_metrics(truth, sim)["r"], abs=1e-9)
    test = _noisy(truth)
    full = encoding_scores(truth, test, n_splits=5, seed=0).r
    assert encoding_scores(0.5 * truth, test, n_splits=5, seed=0).r == pytest.approx(full, abs=1e-5)


def test_one_sample_shift_is_a_10_ms_latency_error(sim):
    truth = sim["truth"]
    late = np.concatenate([truth[:, :, :1], truth[:, :, :-1]], axis=2)  # 1 sample later at 100 Hz
    m = _metrics(late, sim)
    for name in COMPONENT_NAMES:
        assert m["components"][name]["latency_error_ms"] == pytest.approx(10.0)
        assert m["components"][name]["amplitude_error_uv"] == pytest.approx(0.0, abs=1e-9)
    assert m["r2"] < 1.0 and m["rmse_uv"] > 0.0


def test_components_without_channels_are_none():
    times = np.arange(-0.2, 0.8, 0.01)
    # one negative bump of -3 µV at 170 ms on P8 only
    truth = np.zeros((4, 2, times.size))
    truth[:, 1] = -3e-6 * np.exp(-0.5 * ((times - 0.17) / 0.015) ** 2)
    m = truth_metrics(truth, truth, times=times, ch_names=["Cz", "P8"])
    assert m["components"]["C1"] is None and m["components"]["P1"] is None
    assert m["components"]["N1"]["channels"] == ["P8"]
    assert m["components"]["N170"]["truth_peak_uv"] == pytest.approx(3.0)
    with pytest.raises(ValueError):
        truth_metrics(truth, truth[:, :1], times=times, ch_names=["Cz", "P8"])


def test_derangement_has_no_fixed_points():
    for n, seed in [(2, 0), (7, 1), (200, 2)]:
        idx = derangement(n, seed)
        assert sorted(idx) == list(range(n)) and not (idx == np.arange(n)).any()
    assert not np.array_equal(derangement(50, 0), derangement(50, 1))


def test_shuffled_control_near_zero_and_below_the_real_r(sim):
    test = _noisy(sim["truth"])
    real = encoding_scores(sim["truth"], test, n_splits=10, seed=0).r
    shuffled = np.array([shuffled_control(sim["truth"], test, seed=s, n_splits=10) for s in range(5)])
    assert real > 0.2  # the noise-free truth itself, against 4-repetition halves
    assert np.abs(shuffled).max() < 0.06 and abs(shuffled.mean()) < 0.03, shuffled
    assert real - shuffled.max() > 0.15


def test_bootstrap_matches_resampling_directly():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 12)), rng.normal(size=(30, 12))
    b[:, 0] = 1.0  # a constant column: r undefined, counts 0
    assert _bootstrap_r(a, b, np.ones((1, 30)))[0] == pytest.approx(encoding_r(a, b).mean(), abs=1e-12)
    counts = rng.multinomial(30, np.full(30, 1 / 30), size=3).astype(float)
    for row, got in zip(counts, _bootstrap_r(a, b, counts), strict=True):
        idx = np.repeat(np.arange(30), row.astype(int))
        assert got == pytest.approx(encoding_r(a[idx], b[idx]).mean(), abs=1e-10)


def test_encoding_r_ci_contains_the_estimate_and_narrows_with_images():
    def toy(n: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(n)
        signal = rng.normal(size=(n, 3, 10))
        return signal, signal[:, None] + 3.0 * rng.normal(size=(n, 4, 3, 10))

    widths = []
    for n in (40, 320):
        pred, test = toy(n)
        point = encoding_r(pred, test.mean(1)).mean()
        lo, hi = encoding_r_ci(pred, test, n_boot=500, seed=0)
        assert lo < point < hi
        widths.append(hi - lo)
    assert widths[1] < 0.5 * widths[0]  # ~ 1 / sqrt(n): 8x the images, about a third of the width
    assert encoding_r_ci(pred, test, n_boot=200, seed=3) == encoding_r_ci(pred, test, n_boot=200, seed=3)


def test_pca_ridge_fits_a_linear_truth_from_training_pca_only():
    rng = np.random.default_rng(0)
    n, d, k = 300, 80, 10
    latent = rng.normal(size=(n, k))
    x = latent @ rng.normal(size=(k, d)) + 0.05 * rng.normal(size=(n, d))  # features of rank ~k
    y = (latent @ rng.normal(size=(k, 3 * 20))).reshape(n, 3, 20) + 0.1 * rng.normal(size=(n, 3, 20))
    tr, te = slice(0, 240), slice(240, None)
    model = PCARidgeEncoder(n_components=k).fit(x[tr], y[tr])
    pred = model.predict(x[te])
    assert pred.shape == (60, 3, 20)
    assert encoding_r(pred, y[te]).mean() > 0.95
    assert model.explained_variance_ratio_.sum() > 0.95
    # the standardisation and the axes are the training features' own
    z = (x[tr] - x[tr].mean(0)) / x[tr].std(0)
    vt = np.linalg.svd(z, full_matrices=False)[2][:k]
    np.testing.assert_allclose(np.abs((model.components_ * vt).sum(1)), 1.0, atol=1e-8)
    np.testing.assert_allclose(model.x_mean_, x[tr].mean(0))
    # the number of components is capped by the training images
    assert PCARidgeEncoder(n_components=500).fit(x[:20], y[:20]).components_.shape == (19, d)
