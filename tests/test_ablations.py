"""The ablation study runs every variant end to end and its statistics behave (tiny sizes: logic, not numbers)."""

from __future__ import annotations

import json

import numpy as np
import torch

from vibe_rt.training.ablations import VARIANTS, AblationConfig, EpochAsLatent, bootstrap_seeds_images, run_ablations

torch.set_num_threads(1)


def test_bootstrap_ci_holds_the_mean_and_widens_with_seed_spread():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(60, 3, 8))
    targets = [signal + rng.normal(size=signal.shape) for _ in range(3)]
    same = [signal.copy() for _ in range(3)]
    r, (lo, hi) = bootstrap_seeds_images(same, targets, n_boot=300)
    assert lo < r < hi and 0.6 < r < 0.8  # r of signal vs signal + equal noise: about 1/sqrt(2)
    spread = [signal + s * rng.normal(size=signal.shape) for s in (0.0, 1.0, 3.0)]
    _, (lo2, hi2) = bootstrap_seeds_images(spread, targets, n_boot=300)
    assert hi2 - lo2 > 2 * (hi - lo)  # seeds that disagree widen the interval


def test_epoch_as_latent_is_the_identity():
    x = torch.randn(2, 4, 6)
    mu, logvar = EpochAsLatent().encode(x)
    assert torch.equal(mu, x) and torch.equal(EpochAsLatent().decode(mu), x) and not logvar.any()


def test_every_variant_trains_and_is_scored(tmp_path):
    cfg = AblationConfig(
        work_dir=str(tmp_path / "work"), results=str(tmp_path / "ablations.json"), seeds=(0, 1), n_train=24,
        train_reps=2, n_test=10, test_reps=4, n_boot=50, threads=1,
        stage1=dict(vae={"widths": [4, 8], "latent_tokens": 2, "latent_dim": 4, "hidden": 8}, inputs="average",
                    batch_size=8, epochs=1, patience=1),
        stage2=dict(epochs=1, batch_size=8, patience=1, swd_weight=0.1, swd_projections=4,
                    qformer={"hidden": 16, "n_layers": 1, "n_heads": 2}, mlp_hidden=8),
        swd_weights=(0.0, 0.1))
    results = run_ablations(cfg)
    assert json.loads((tmp_path / "ablations.json").read_text()) == json.loads(json.dumps(results))
    table = results["variants"]
    assert set(VARIANTS) | {"swd_0", "swd_0.1", "ridge_pooled", "ridge_tokens", "ridge_simulator_drives",
                                                              "truth"} == set(table)
    assert results["n_seeds"] == 2 and results["swd_curve"]["chosen_on_validation"] in (0.0, 0.1)
    assert all(row["test_r_ci95"][0] < row["test_r_ci95"][1] for row in table.values())
    lo, hi = table["truth"]["test_r_ci95"]
    assert lo <= table["truth"]["test_r"] <= hi
    assert table["truth"]["test_r"] > max(v["test_r"] for k, v in table.items() if k != "truth")
