"""The calibration's latent adapter on the embedded model: fitted where the live data differ from the model in
the latent, refused where they do not, applied by the predictor between the Q-Former and the decoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vibe_rt.calibration import CalibrationProfile, LatentAdapter, shift_signal
from vibe_rt.checkpoint import load_default_model, model_hash
from vibe_rt.compare import ErpSet, fit_calibration
from vibe_rt.compare import metrics as M
from vibe_rt.compare.adapter import decode_latents
from vibe_rt.errors import ConfigError, DataError
from vibe_rt.runtime.predictor import create_predictor
from vibe_rt.stream import StreamPipeline

N_KEYS, LATENCY = 16, 0.02


@pytest.fixture(scope="module")
def model():
    return load_default_model()


@pytest.fixture(scope="module")
def pixels(model) -> np.ndarray:
    frames = (np.random.default_rng(0).random((N_KEYS, 64, 64, 3)) * 255).astype(np.uint8)
    return np.asarray(model.encoder.preprocess_frames(frames), np.float32)


@pytest.fixture(scope="module")
def latents(model, pixels) -> np.ndarray:
    with torch.no_grad():
        return model.predict_latent(torch.as_tensor(pixels)).numpy()


def _session(model, latents, scale, shift, seed: int) -> tuple[ErpSet, np.ndarray]:
    """ERPs of a subject whose responses are the model's decoded from ``scale * z + shift``, delayed by LATENCY,
    scaled per channel, with noise (half the signal's SD per repetition half); returns them and the clean live."""
    rng = np.random.default_rng(seed)
    mont = model.montage
    synth = decode_latents(model, latents)
    gain = rng.uniform(0.7, 1.4, mont.n_channels)
    clean = shift_signal(decode_latents(model, latents * scale + shift), LATENCY * mont.sfreq) * gain[:, None]
    odd, even = (clean + 0.5 * clean.std() * rng.standard_normal(clean.shape) for _ in range(2))
    erps = ErpSet([f"img{k:02d}" for k in range(N_KEYS)], (odd + even) / 2, synth, np.full(N_KEYS, 4), odd, even)
    return erps, clean


def test_adapter_recovers_a_latent_difference(model, latents, tmp_path):
    rng = np.random.default_rng(1)
    scale = 1 + 0.6 * rng.standard_normal(latents.shape[1:])
    shift = 0.8 * rng.standard_normal(latents.shape[1:])
    erps, clean = _session(model, latents, scale, shift, seed=2)
    prof = fit_calibration(erps, model.montage, adapter_model=model)
    fit = prof.metrics["heldout"]["adapter"]
    assert fit["kept"] and prof.version == 2
    # held out (fitted on odd, scored on even repetitions): the adapter adds what gain and latency cannot
    assert max(fit["penalty_r"].values()) > fit["identity_r"] + 0.02
    # in sample it brings the ERP r up to what the noise allows (r of the live ERPs with their clean truth)
    ceiling = M.overall_r(erps.live, clean)
    assert prof.metrics["after_adapter"]["erp_r"] > prof.metrics["after"]["erp_r"] + 0.02
    assert prof.metrics["after_adapter"]["erp_r"] > ceiling - 0.01
    assert abs(prof.latency_s - LATENCY) < 1 / model.montage.sfreq
    path = prof.save(tmp_path / "subject.json")
    assert json.loads(path.read_text())["version"] == 2
    adapter = CalibrationProfile.load(path).adapter
    assert adapter.model_hash == model_hash(model) and adapter.latent_shape == latents.shape[1:]
    assert np.allclose(adapter(latents), latents * adapter.scale + adapter.shift)


def test_adapter_not_kept_when_the_latent_already_fits(model, latents):
    ones, zeros = np.ones(latents.shape[1:]), np.zeros(latents.shape[1:])
    erps, _ = _session(model, latents, ones, zeros, seed=3)
    prof = fit_calibration(erps, model.montage, adapter_model=model)
    fit = prof.metrics["heldout"]["adapter"]
    assert not fit["kept"] and fit["chosen"] is None
    assert prof.adapter is None and prof.version == 1 and "after_adapter" not in prof.metrics
    single = ErpSet(erps.keys, erps.live, erps.synth, np.ones(N_KEYS, int), erps.odd, erps.even)
    with pytest.raises(DataError, match="shown at least twice"):
        fit_calibration(single, model.montage, adapter_model=model)


def test_predictor_applies_the_adapter_between_qformer_and_decoder(model, pixels, latents):
    rng = np.random.default_rng(4)
    adapter = LatentAdapter(1 + 0.5 * rng.standard_normal(latents.shape[1:]),
                            rng.standard_normal(latents.shape[1:]), model_hash(model))
    predictor = create_predictor(model, backend="torch", device="cpu", warmup=False)
    plain, _ = predictor.predict(pixels[:4])
    assert np.allclose(plain, decode_latents(model, latents[:4]), rtol=1e-4, atol=1e-9)
    StreamPipeline(predictor, background=None, calibration=_profile(model, adapter))
    assert predictor.latent_adapter is not None
    adapted, timings = predictor.predict(pixels[:4])
    assert set(timings) == {"encoder", "qformer", "decoder", "total"}
    expected = decode_latents(model, adapter(latents[:4]))
    assert np.allclose(adapted, expected, rtol=1e-4, atol=1e-9)
    assert M.overall_r(adapted, plain) < 0.99  # it changed the prediction
    predictor.set_latent_adapter(None)
    assert np.array_equal(predictor.predict(pixels[:4])[0], plain)
    with pytest.raises(ConfigError, match="fitted for model 0000"):
        predictor.set_latent_adapter(LatentAdapter(adapter.scale, adapter.shift, "0000000000000000"))
    fused = create_predictor(model, backend="torch", device="cpu", fused=True, warmup=False)
    with pytest.raises(ConfigError, match="staged chain"):
        fused.set_latent_adapter(adapter)


def _profile(model, adapter: LatentAdapter) -> CalibrationProfile:
    names = model.montage.ch_names
    return CalibrationProfile(montage=model.montage.name, channels=names, gain=[1.0] * len(names), latency_s=0.0,
                              adapter=adapter)
