"""Training tests on a tiny simulated dataset: metrics move the right way, resumption, checkpoints, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vibe_rt.training.common import DistContext
from vibe_rt.training.stage1 import Stage1Config, split_validation, train_vae
from vibe_rt.training.stage2 import Stage2Config, train_mapper

TINY_VAE = {"widths": [4, 8], "latent_tokens": 4, "latent_dim": 8, "hidden": 16, "temporal_kernel": 5}
_FIVE = ((0, 1, 2), (1, 0, 2), (2, 1, 3), (3, 2, 4), (4, 3, 2))  # five sensors on a line: each and its 2 nearest


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from vibe_rt.data.simulate import SimulationConfig, simulate_dataset

    out = tmp_path_factory.mktemp("sim")
    train, test = simulate_dataset(
        SimulationConfig(n_train=48, train_reps=2, n_test=12, test_reps=4, image_size=32, seed=1), out)
    return out, train, test


def _s1(**kw) -> Stage1Config:
    base = dict(vae=TINY_VAE, epochs=4, batch_size=16, lr=3e-3, warmup_steps=2, kl_warmup_steps=10,
                patience=100, inputs="trials", progress=False, val_fraction=0.2)
    return Stage1Config(**{**base, **kw})


def test_validation_split_is_seeded():
    a, b = split_validation(50, 0.1, 3)
    assert len(b) == 5 and len(a) == 45 and not set(a) & set(b)
    np.testing.assert_array_equal(split_validation(50, 0.1, 3)[1], b)


def test_stage1_learns_and_resumes(tiny_data, tmp_path):
    _, train, _ = tiny_data
    full = train_vae(train, _s1(), out=tmp_path / "a" / "vae")
    h = full.history
    assert h[-1]["mse"] < h[0]["mse"] and h[-1]["val_mse"] < h[0]["val_mse"]
    assert h[-1]["val_r"] > h[0]["val_r"]
    # interrupted after 2 epochs, then resumed: identical weights and history
    train_vae(train, _s1(), out=tmp_path / "b" / "vae", stop_after=2)
    resumed = train_vae(train, _s1(), out=tmp_path / "b" / "vae")
    for (k, v), (_, w) in zip(full.vae.state_dict().items(), resumed.vae.state_dict().items()):
        torch.testing.assert_close(v, w, rtol=0, atol=1e-6, msg=k)
    assert [e["mse"] for e in resumed.history] == pytest.approx([e["mse"] for e in h], abs=1e-6)
    # the stage-1 checkpoint holds the normalisation
    from vibe_rt.checkpoint import load_vae_checkpoint

    ck = load_vae_checkpoint(tmp_path / "a" / "vae")
    np.testing.assert_allclose(ck.norm_std, full.std, rtol=1e-6)
    # resuming with other settings is refused with a clear error
    from vibe_rt.errors import CheckpointError

    with pytest.raises(CheckpointError, match="different settings"):
        train_vae(train, _s1(lr=1e-3), out=tmp_path / "b" / "vae")


def test_stage2_learns_and_resumes(tmp_path):
    from vibe_rt.models.vae import TSCVAE, TSCVAEConfig

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    vae = TSCVAE(TSCVAEConfig(n_channels=5, n_times=16, neighbours=_FIVE, **TINY_VAE)).eval()
    n = 60
    tokens = rng.normal(size=(n, 6, 12)).astype(np.float32)
    # epochs that depend linearly on the tokens, so that the mapper has something to learn
    w = rng.normal(size=(12, 5 * 16)).astype(np.float32) / 4
    epochs = (tokens.mean(1) @ w).reshape(n, 1, 5, 16) + 0.1 * rng.normal(size=(n, 2, 5, 16)).astype(np.float32)
    cfg = Stage2Config(qformer={"hidden": 16, "n_layers": 1, "n_heads": 2}, epochs=6, batch_size=16, lr=3e-3,
                       warmup_steps=2, patience=100, swd_projections=8, progress=False)
    ctx = DistContext()
    full = train_mapper(tokens, epochs, vae, cfg, out_state=tmp_path / "a", ctx=ctx)
    h = full.history
    assert h[-1]["mse"] < h[0]["mse"] and h[-1]["val_latent_mse"] < h[0]["val_latent_mse"]
    assert h[-1]["swd"] > 0
    train_mapper(tokens, epochs, vae, cfg, out_state=tmp_path / "b", ctx=ctx, stop_after=3)
    resumed = train_mapper(tokens, epochs, vae, cfg, out_state=tmp_path / "b", ctx=ctx)
    for (k, v), (_, u) in zip(full.mapper.state_dict().items(), resumed.mapper.state_dict().items()):
        torch.testing.assert_close(v, u, rtol=0, atol=1e-6, msg=k)
    mlp = train_mapper(tokens, epochs, vae, Stage2Config(mapper="mlp", mlp_hidden=32, epochs=3, batch_size=16,
                                                         swd_weight=0.0, progress=False), ctx=ctx)
    assert mlp.mapper(torch.from_numpy(tokens[:2])).shape == (2, 4, 8)


def test_cli_train_eval_and_checkpoint(tiny_data, tmp_path):
    from vibe_rt.checkpoint import load_checkpoint
    from vibe_rt.cli import main

    data, _, test = tiny_data
    vae = tmp_path / "vae"
    assert main(["train", "vae", "--data", str(data), "--out", str(vae), "--epochs", "2", "--batch-size", "16",
                 "--vae-config", json.dumps(TINY_VAE), "--no-progress"]) == 0
    model_path = tmp_path / "vibe"
    assert main(["train", "qformer", "--data", str(data), "--vae", str(vae), "--encoder", "vibe-tiny-vit",
                 "--out", str(model_path), "--epochs", "2", "--batch-size", "16", "--swd-projections", "8",
                 "--no-progress", "--cache", str(tmp_path / "cache")]) == 0
    assert len(list((tmp_path / "cache").glob("*.tokens.npy"))) == 1  # one cache entry per encoder + image list
    model = load_checkpoint(model_path)
    frames = np.zeros((1, 32, 32, 3), np.uint8)
    with torch.no_grad():
        out = model(torch.from_numpy(model.encoder.preprocess_frames(frames)))
    assert out.shape == (1, test.montage.n_channels, test.montage.n_times)
    assert main(["eval", "--model", str(model_path), "--data", str(data), "--out", str(tmp_path / "rep"),
                 "--splits", "5", "--cache", str(tmp_path / "cache")]) == 0
    assert len(list((tmp_path / "cache").glob("*.tokens.npy"))) == 2  # + the test images
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert set(rep["models"]) == {"vibe", "ridge_tokens"}
    assert -1 <= rep["headline_r"] <= 1 and "reconstruction_r" in rep["stage1"]
    assert "(5 seeded splits, averaged)" in rep["headline"]
    assert (tmp_path / "rep" / "r_per_time.png").is_file()


def test_ctrl_c_saves_the_best_model_so_far_marked_interrupted(tiny_data, tmp_path, monkeypatch, capsys):
    """Ctrl-C in `train vae` / `train qformer` after two epochs: exit 130, the best-so-far model is the normal
    checkpoint (it loads), marked as interrupted with the epochs run; the train state still resumes."""
    import tqdm.auto

    from vibe_rt.checkpoint import load_checkpoint, load_vae_checkpoint, read_checkpoint_config
    from vibe_rt.cli import main

    data, _, _ = tiny_data
    interrupted = {"epoch": 3}

    class Bar(tqdm.auto.tqdm):  # the epoch loop opens one progress bar per epoch: Ctrl-C as that epoch starts
        def __init__(self, *args, **kw) -> None:
            if f"epoch {interrupted['epoch']}/" in kw.get("desc", ""):
                raise KeyboardInterrupt
            super().__init__(*args, **kw)

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    vae = tmp_path / "vae"
    args = ["--epochs", "4", "--batch-size", "16", "--no-progress"]
    assert main(["train", "vae", "--data", str(data), "--out", str(vae), "--vae-config", json.dumps(TINY_VAE),
                 *args]) == 130
    assert "interrupted" in capsys.readouterr().err
    doc = read_checkpoint_config(vae)
    assert doc["extra"]["interrupted"]["epochs_run"] == 2 and doc["metrics"]["epochs_run"] == 2
    assert 1 <= doc["extra"]["interrupted"]["best_epoch"] <= 2
    ck = load_vae_checkpoint(vae)
    state = json.loads((tmp_path / "vae.state.json").read_text())
    assert state["epoch"] == 2 and not state["done"]  # resumable where it stopped
    assert ck.metrics["best_epoch"] == state["best_epoch"]

    vibe = tmp_path / "vibe"
    assert main(["train", "qformer", "--data", str(data), "--vae", str(vae), "--out", str(vibe),
                 "--swd-projections", "8", "--cache", str(tmp_path / "cache"), *args]) == 130
    doc = read_checkpoint_config(vibe)
    assert doc["extra"]["interrupted"]["epochs_run"] == 2 and doc["metrics"]["stage2_val"]["epochs_run"] == 2
    load_checkpoint(vibe)
    # Ctrl-C before one epoch finished: nothing to keep, no checkpoint written, still exit 130
    interrupted["epoch"] = 1
    assert main(["train", "vae", "--data", str(data), "--out", str(tmp_path / "none"), "--vae-config",
                 json.dumps(TINY_VAE), *args]) == 130
    assert not (tmp_path / "none.json").exists()


_DDP_SCRIPT = """
import json, os, sys
import numpy as np, torch
torch.set_num_threads(1)
from vibe_rt.models.vae import TSCVAE, TSCVAEConfig
from vibe_rt.training.common import init_distributed
from vibe_rt.training.stage2 import Stage2Config, train_mapper
ctx = init_distributed(device="cpu")
rng = np.random.default_rng(0)
torch.manual_seed(0)
vae = TSCVAE(TSCVAEConfig(n_channels=5, n_times=16, neighbours=[[0, 1, 2], [1, 0, 2], [2, 1, 3], [3, 2, 4],
                                                                    [4, 3, 2]],
                          widths=[4, 8], latent_tokens=4, latent_dim=8, hidden=16, temporal_kernel=5))
tokens = rng.normal(size=(40, 6, 12)).astype(np.float32)
epochs = rng.normal(size=(40, 2, 5, 16)).astype(np.float32)
cfg = Stage2Config(qformer={"hidden": 16, "n_layers": 1, "n_heads": 2}, epochs=2, batch_size=8, progress=False)
res = train_mapper(tokens, epochs, vae, cfg, out_state=sys.argv[1], ctx=ctx)
w = sum(float(p.detach().sum()) for p in res.mapper.parameters())
# stage 1 (BatchNorm, early stopping): every rank must stop at the same epoch on the same scores
from vibe_rt.data.dataset import EpochsDataset
from vibe_rt.montage import get_montage
from vibe_rt.training.stage1 import Stage1Config, train_vae
mont = get_montage("things-eeg2").with_window(100.0, -0.2, 16)
data = EpochsDataset(rng.normal(size=(48, 2, 17, 16)).astype(np.float32) * 1e-6, mont, [f"i{k}" for k in range(48)])
s1 = train_vae(data, Stage1Config(vae={"widths": [4, 8], "latent_tokens": 2, "latent_dim": 4, "hidden": 8},
                                  epochs=12, batch_size=16, patience=1, progress=False, warmup_steps=1, lr=0.1),
               ctx=ctx)
with open(sys.argv[1] + f".rank{ctx.rank}", "w") as f:
    json.dump({"world": ctx.world_size, "w": w, "epochs": len(res.history),
               "vae_epochs": len(s1.history), "vae_val": [h["val_mse"] for h in s1.history]}, f)
"""


@pytest.mark.slow
def test_torchrun_ddp(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    state = tmp_path / "state"
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(__import__("pathlib").Path(
        __file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(state)], env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "state.rank0").read_text())
    r1 = json.loads((tmp_path / "state.rank1").read_text())
    assert r0["world"] == 2 and r0["epochs"] == 2
    assert r0["w"] == pytest.approx(r1["w"], rel=1e-6)  # DDP keeps the replicas identical
    # noise data: the VAE stops early (patience 1), and both ranks on the same epoch with the same scores
    assert r0["vae_epochs"] == r1["vae_epochs"] < 12 and r0["vae_val"] == r1["vae_val"], (r0["vae_val"], r1["vae_val"])
    assert (tmp_path / "state.json").is_file()  # written by rank 0 only
