"""Tests of the ViBE networks: shapes, learning, gradients, preprocessing, pretrained weights, ONNX export."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from vibe_rt.errors import CheckpointError, ConfigError
from vibe_rt.models import (
    TSCVAE,
    ImageEncoder,
    ImageEncoderConfig,
    QFormer,
    QFormerConfig,
    TSConvPlus,
    TSCVAEConfig,
    ViBE,
    ViBEConfig,
)
from vibe_rt.models.tsconv import scalp_neighbours
from vibe_rt.montage import get_montage
from vibe_rt.runtime.export import export_onnx, relative_error

torch.set_num_threads(1)


@pytest.fixture(scope="module", params=["things-eeg2", "things-meg"])
def tiny(request) -> ViBE:
    torch.manual_seed(0)
    return ViBE.tiny(request.param).eval()


@pytest.fixture(scope="module")
def tiny_eeg() -> ViBE:
    torch.manual_seed(0)
    return ViBE.tiny("things-eeg2").eval()


EEG2 = get_montage("things-eeg2")


def test_tsconv_block_shapes():
    block = TSConvPlus(4, 8, scalp_neighbours(EEG2.positions, 3), temporal_kernel=5, pool=2)
    assert block(torch.randn(2, 4, 17, 100)).shape == (2, 8, 17, 50)
    assert TSConvPlus(4, 8, scalp_neighbours(EEG2.positions, 3), pool=1)(torch.randn(1, 4, 17, 13)).shape == (
        1, 8, 17, 13)
    assert block.spatial.kernel_size == (3, 1) and block.temporal.kernel_size == (1, 5)


def test_spatial_kernel_must_be_smaller_than_channels():
    five = scalp_neighbours(EEG2.positions[:5], 5)
    with pytest.raises(ConfigError, match="smaller than the number of channels"):
        TSConvPlus(1, 4, five)
    with pytest.raises(ConfigError, match="smaller than the number of channels"):
        TSCVAEConfig.for_montage(EEG2, spatial_kernel=17)
    with pytest.raises(ConfigError, match="odd"):
        TSCVAEConfig.for_montage(EEG2, temporal_kernel=4)
    with pytest.raises(ConfigError, match="neighbour table of 17 rows"):
        TSCVAEConfig(n_channels=17, n_times=100)
    assert TSConvPlus(1, 4, five, spatial="global").spatial.kernel_size == (5, 1)  # the NICE-style ablation
    small = EEG2.pick(["Pz", "Oz", "O1", "O2"])
    assert TSCVAEConfig.for_montage(small, "base").spatial_kernel == 3  # reduced below C=4


@pytest.mark.parametrize("name", ["things-eeg2", "things-meg"])
def test_vae_shapes_any_length(name):
    montage = get_montage(name)
    cfg = TSCVAEConfig.for_montage(montage, "tiny")
    assert cfg.padded_times % cfg.time_factor == 0 and cfg.padded_times >= montage.n_times
    vae = TSCVAE(cfg)
    x = torch.randn(2, montage.n_channels, montage.n_times)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (2, cfg.latent_tokens, cfg.latent_dim)
    recon, mu2, _ = vae(x)
    assert recon.shape == x.shape
    assert vae.decode(mu).shape == x.shape
    kl = vae.kl_divergence(mu2, logvar)
    assert kl.dim() == 0 and kl.item() >= 0
    assert vae.kl_divergence(torch.zeros_like(mu), torch.zeros_like(mu)).item() == 0.0
    with pytest.raises(ConfigError, match="expects epochs of shape"):
        vae.encode(torch.randn(2, montage.n_channels, montage.n_times + 1))


def test_vae_base_preset_shapes():
    cfg = TSCVAEConfig.for_montage(get_montage("things-eeg2"), "base")
    vae = TSCVAE(cfg).eval()
    with torch.no_grad():
        recon, mu, _ = vae(torch.randn(1, 17, 100))
    assert recon.shape == (1, 17, 100) and mu.shape == (1, cfg.latent_tokens, cfg.latent_dim)


def _toy_epochs(n: int, gen: torch.Generator, topo: torch.Tensor, waves: torch.Tensor) -> torch.Tensor:
    """Sums of fixed spatio-temporal components with random amplitudes, plus a little white noise."""
    amp = torch.randn(n, topo.shape[0], generator=gen)
    x = torch.einsum("nk,kc,kt->nct", amp, topo, waves)
    return x + 0.05 * torch.randn(x.shape, generator=gen)


def test_vae_learns_toy_signal():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    n_ch, n_t = 8, 60  # 60 is not a multiple of the pooling factor 4: padding and cropping are exercised
    t = torch.arange(n_t) / 100.0
    waves = torch.stack([torch.sin(2 * np.pi * f * t + p) * torch.exp(-(((t - c) / 0.12) ** 2))
                         for f, p, c in [(3, 0.0, 0.2), (5, 1.0, 0.3), (8, 2.0, 0.35), (2, 0.5, 0.4)]])
    topo = torch.randn(4, n_ch, generator=gen)
    positions = torch.randn(n_ch, 3, generator=gen).numpy()
    vae = TSCVAE(TSCVAEConfig(n_ch, n_t, scalp_neighbours(positions, 3), widths=(8, 16), latent_tokens=4,
                              latent_dim=8, hidden=32))
    opt = torch.optim.AdamW(vae.parameters(), lr=3e-3)
    for _ in range(120):
        x = _toy_epochs(16, gen, topo, waves)
        recon, mu, logvar = vae(x)
        loss = torch.nn.functional.mse_loss(recon, x) + 1e-4 * vae.kl_divergence(mu, logvar)
        opt.zero_grad()
        loss.backward()
        opt.step()
    vae.eval()
    held_out = _toy_epochs(64, torch.Generator().manual_seed(123), topo, waves)
    with torch.no_grad():
        recon = vae(held_out)[0]
    r = np.corrcoef(recon.flatten().numpy(), held_out.flatten().numpy())[0, 1]
    assert r > 0.9, r


def test_qformer_shapes_and_config():
    cfg = QFormerConfig(token_dim=24, n_queries=5, hidden=32, n_layers=2, n_heads=4, out_dim=7)
    assert QFormer(cfg)(torch.randn(3, 11, 24)).shape == (3, 5, 7)
    with pytest.raises(ConfigError, match="divisible"):
        QFormerConfig(token_dim=24, hidden=30, n_heads=4)


def test_configs_round_trip_through_json(tiny_eeg):
    cfg = tiny_eeg.cfg
    again = ViBEConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ConfigError, match="unknown keys"):
        TSCVAEConfig.from_dict({**cfg.vae.to_dict(), "bogus": 1})
    with pytest.raises(ConfigError, match="does not match montage"):
        ViBEConfig(cfg.montage, cfg.encoder, cfg.qformer, TSCVAEConfig.for_montage(EEG2.pick(EEG2.ch_names[:16])))


def test_vibe_shapes_stages_and_units(tiny):
    m = tiny.montage
    inputs = tiny.example_inputs(batch=2)
    stages = tiny.stages()
    assert set(stages) == {"encoder", "qformer", "decoder"}
    with torch.no_grad():
        tokens = stages["encoder"](inputs["encoder"])
        latent = stages["qformer"](tokens)
        assert tokens.shape == inputs["qformer"].shape
        assert latent.shape == inputs["decoder"].shape == (2, tiny.cfg.vae.latent_tokens, tiny.cfg.vae.latent_dim)
        unit = tiny(inputs["encoder"])
        assert unit.shape == (2, m.n_channels, m.n_times) and unit.dtype == torch.float32
        mean, std = np.full(m.n_channels, 2e-6), np.linspace(1e-6, 5e-6, m.n_channels)
        tiny.set_normalisation(mean, std)
        si = tiny(inputs["encoder"])
        tiny.set_normalisation(np.zeros(m.n_channels), np.ones(m.n_channels))
    expected = unit * torch.tensor(std, dtype=torch.float32)[:, None] + torch.tensor(mean, dtype=torch.float32)[:, None]
    assert relative_error(si.numpy(), expected.numpy()) < 1e-6
    with pytest.raises(ConfigError, match="shape"):
        tiny.set_normalisation(np.zeros(3), np.ones(3))


def test_gradients_reach_every_parameter(tiny_eeg):
    model = ViBE(tiny_eeg.cfg).train()
    pixels = model.example_inputs(batch=2)["encoder"]
    epochs = torch.randn(2, model.montage.n_channels, model.montage.n_times)
    recon, mu, logvar = model.vae(epochs)
    loss = model(pixels).pow(2).mean() + (recon - epochs).pow(2).mean() + model.vae.kl_divergence(mu, logvar)
    loss.backward()
    # the CLIP projection only serves the pooled embedding, which ViBE does not use
    unused = {"encoder.visual.proj"}
    dead = [n for n, p in model.named_parameters()
            if n not in unused and (p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0)]
    assert not dead, dead


def test_preprocess_frames_matches_open_clip(tiny_eeg):
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    enc = tiny_eeg.encoder
    reference = image_transform_v2(PreprocessCfg(**enc.visual.preprocess_cfg), is_train=False)
    rng = np.random.default_rng(0)
    for h, w in [(120, 160), (40, 50), (64, 64)]:
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([128 + 100 * np.sin(x / 9.0 + c) * np.cos(y / 13.0) for c in range(3)], -1)
        frame = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
        ours = enc.preprocess_frames(np.stack([frame, frame]))
        theirs = reference(Image.fromarray(frame)).numpy()
        assert ours.shape == (2, 3, enc.image_size, enc.image_size) and ours.dtype == np.float32
        # mean absolute difference in normalised units (pixel range [0, 1] / std ~ 0.27)
        assert np.abs(ours[0] - theirs).mean() < 0.05, (h, w)
    with pytest.raises(ConfigError, match="uint8"):
        enc.preprocess_frames(np.zeros((1, 8, 8, 3), dtype=np.float32))


def test_pretrained_tag_without_local_file_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as err:
        ImageEncoder(ImageEncoderConfig("ViT-B-32", pretrained="laion2b_s34b_b79k"))
    assert time.perf_counter() - start < 5.0
    message = str(err.value)
    assert "not available locally" in message and "--encoder ViT-B-32:PATH" in message
    assert "open_clip.create_model('ViT-B-32', pretrained='laion2b_s34b_b79k')" in message
    with pytest.raises(CheckpointError, match="not an open_clip pretrained tag"):
        ImageEncoder(ImageEncoderConfig("ViT-B-32", pretrained="no-such-tag"))


def test_pretrained_weights_from_a_local_file(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = open_clip.create_model("vibe-tiny-vit")
    path = tmp_path / "tiny-clip.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    enc = ImageEncoder(ImageEncoderConfig("vibe-tiny-vit", pretrained=str(path)))
    for name, tensor in source.visual.state_dict().items():
        assert torch.equal(enc.visual.state_dict()[name], tensor), name


def _onnx_parity(module: torch.nn.Module, example: torch.Tensor, path) -> float:
    import onnxruntime as ort

    export_onnx(module, example, path, input_name="input", output_name="output")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    batch = torch.cat([example, example.flip(0) * 0.5 + 0.1])  # another batch size than the traced one
    with torch.no_grad():
        expected = module.eval()(batch).numpy()
    (actual,) = session.run(None, {"input": batch.numpy()})
    return relative_error(actual, expected)


def test_every_stage_exports_to_onnx(tiny, tmp_path):
    tiny.set_normalisation(np.full(tiny.montage.n_channels, 1e-7), np.full(tiny.montage.n_channels, 3e-6))
    try:
        inputs = tiny.example_inputs(batch=1)
        for name, module in tiny.stages().items():
            err = _onnx_parity(module, inputs[name], tmp_path / f"{name}.onnx")
            assert err < 1e-4, (name, err)

        class PosteriorMean(torch.nn.Module):  # the TSC-VAE encoder half (training, calibration adapter)
            def __init__(self, encoder: torch.nn.Module) -> None:
                super().__init__()
                self.encoder = encoder

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.encoder(x)[0]

        epochs = torch.randn(1, tiny.montage.n_channels, tiny.montage.n_times)
        err = _onnx_parity(PosteriorMean(tiny.vae.encoder), epochs, tmp_path / "vae_encoder.onnx")
        assert err < 1e-4, ("vae_encoder", err)
    finally:
        tiny.set_normalisation(np.zeros(tiny.montage.n_channels), np.ones(tiny.montage.n_channels))
