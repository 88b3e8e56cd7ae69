"""The comparator on sessions whose epochs overlap (SOA shorter than the -0.2..0.79 s window, as in every RSVP):
built like the stream builds them, recorded like a lab would (latency, per-channel gains, another rate, channels
shuffled and extra ones, 1/f noise), compared from the model (marker images) and from the synthesized run, and
calibrated: both modes agree, and recover the latency and every gain."""

from __future__ import annotations

import numpy as np
import pytest

from vibe_rt.compare import DictSynth, compare_offline, fit_calibration
from vibe_rt.compare.groundtruth import make_ground_truth, template_erps
from vibe_rt.compare.predicted import synthesis_rate
from vibe_rt.montage import get_montage

LIVE_RATE, LATENCY = 500.0, 0.03


@pytest.fixture(scope="module")
def montage():
    return get_montage("things-eeg2")


@pytest.mark.parametrize("soa, noise, n_reps", [(1.0, 0.3e-6, 8), (0.6, 3e-6, 24), (0.2, 3e-6, 24)])
def test_both_modes_recover_latency_and_gains(montage, soa, noise, n_reps):
    """12 images, gains 0.6-1.6, 30 ms, 3 uV of 1/f noise (0.3 uV at 1 s SOA: the bias the windowed fit had
    there, 9 %, is gone), responses of 10 uV scale: the latency within one live sample, every gain within 3 %,
    model and recording of the synthesized run giving the same numbers."""
    gt = make_ground_truth(montage, n_images=12, n_reps=n_reps, latency_s=LATENCY, gain=(0.6, 1.6), noise=noise,
                           sfreq=LIVE_RATE, isi=soa, jitter=0.0 if soa < 0.5 else 0.05, shuffle_channels=True,
                           extra_channels=("Fz", "Cz"), erps=template_erps(montage, 12, amplitude=10e-6, seed=0),
                           seed=0)
    assert list(gt.raw.ch_names) != list(montage.ch_names) and {"Fz", "Cz"} <= set(gt.raw.ch_names)
    fits = {}
    for mode, synth in (("model", DictSynth(gt.synth)), ("synth", gt.synth_raw)):
        session = compare_offline(gt.raw, montage, synth)
        summary = session.comparator.summary()
        assert summary["n_events"] == 12 * n_reps and summary["n_lost"] == 0
        profile = fit_calibration(session.comparator.erps(), montage, n_boot=100)
        gain_error = np.abs(np.asarray(profile.gain) / gt.gain - 1)
        assert abs(profile.latency_s - LATENCY) < 1 / LIVE_RATE, mode
        assert gain_error.max() < 0.03, (mode, gain_error.max())
        # the comparator's own summary is the same fit
        assert summary["latency_s"] == pytest.approx(profile.latency_s, abs=1e-6)
        assert np.allclose(summary["gain_per_channel"], profile.gain, rtol=1e-5)
        # calibrated, the synthesized ERPs follow the live ones up to what the noise allows
        after = profile.metrics["after"]["erp_r"]
        assert after > profile.metrics["before"]["erp_r"] + 0.2 and after > summary["noise_ceiling"] - 0.03
        # the uncertainty: a block bootstrap (neighbours share data), errors within 4 standard errors
        se = np.asarray(profile.uncertainty["gain_se"])
        assert profile.uncertainty["block"] >= int(np.ceil(0.99 / soa)) and np.all(gain_error < 4 * se + 0.003)
        fits[mode] = profile
    assert fits["model"].latency_s == pytest.approx(fits["synth"].latency_s, abs=3e-4)
    assert np.allclose(fits["model"].gain, fits["synth"].gain, rtol=5e-3)


def test_the_predicted_signal_is_the_synthesized_run(montage):
    """Model mode renders what the stream rendered: its wide synthesized ERPs equal those epoched from the
    recorded run (no noise, an SOA of 0.3 s, so each epoch holds four neighbours' responses)."""
    gt = make_ground_truth(montage, n_images=5, n_reps=4, latency_s=0.0, gain=(1.0, 1.0), noise=0.0, sfreq=LIVE_RATE,
                           isi=0.3, jitter=0.02, seed=2)
    model = compare_offline(gt.raw, montage, DictSynth(gt.synth)).comparator.erps()
    run = compare_offline(gt.raw, montage, gt.synth_raw).comparator.erps()
    assert model.keys == run.keys and model.margin == run.margin > 10
    scale = np.abs(run.synth_wide).max()
    assert np.abs(model.synth_wide - run.synth_wide).max() < 0.01 * scale
    assert synthesis_rate(100.0, 500.0) == 1000.0 and synthesis_rate(100.0, 2048.0) == 2048.0
    # the isolated responses alone miss the neighbours: what the comparison of isolated epochs got wrong
    isolated = np.stack([gt.synth[k] for k in run.keys])
    isolated = isolated - isolated[:, :, montage.times <= 0].mean(axis=2, keepdims=True)
    assert np.abs(isolated - run.synth).max() > 0.2 * scale
