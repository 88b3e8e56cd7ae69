"""``vibe-rt train ablations``: which parts of ViBE earn their place, on the physiological simulator.

For each training seed: simulate a training set (seed ``s``) and a test set from a fresh seed
(``s + TEST_SEED_OFFSET``), train every stage-1 variant and, on each, the default Q-Former; on the reference VAE
also every stage-2 variant; then score all of them on the test set. Variants (``VARIANTS``):

- spatial kernel: TSConvPlus over scalp neighbourhoods with ``k_s`` = 1, 3 (reference), 5, against a NICE-style
  TSConv whose spatial kernel spans all ``C`` channels (``spatial="global"``);
- latent: the VAE against a plain auto-encoder (no sampling, no KL) and against direct regression of the epoch
  (a Q-Former whose queries are the channels and whose outputs are the time courses: no latent at all);
- mapper: the Q-Former against an MLP on the mean-pooled token and an MLP on all tokens;
- SWD weight: a curve over ``swd_weights``, read on the *validation* images (the held-out training images), the
  test r shown beside it but never used to choose;
- features: the ridge baselines on the same random-init encoder tokens, against a ridge on the simulator's own
  per-source drives (amplitude and latency of each source for the image: :meth:`EvokedModel.drives`), an oracle
  of the features a perfect image encoder would hand over. Where ViBE, the MLPs and the token ridges stop at the
  same r and the drive ridge goes past them, the encoder's features are the limit, not the mapper.

Score: the encoding r against the test images' repetition average (mean over channels x time of the Pearson r
across images), averaged over seeds; 95 % CI by a two-level percentile bootstrap (seeds resampled, then test
images within each seed), so that the interval holds both the training-seed and the test-image variability.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._logs import logger
from .common import init_distributed, setup_torch
from .default import TEST_SEED_OFFSET
from .embeddings import image_features
from .evaluate import predict_epochs
from .metrics import encoding_r
from .pipeline import build_encoder, fit_ridge
from .stage1 import Stage1Config, _normalised, train_vae
from .stage2 import LatentModel, Stage2Config, train_mapper
from .truth import bootstrap_encoding_r

__all__ = ["AblationConfig", "EpochAsLatent", "VARIANTS", "run_ablations", "bootstrap_seeds_images"]

_REPO = Path(__file__).resolve().parents[2]

#: Stage-1 variants (overrides of Stage1Config), each followed by the default Q-Former.
STAGE1_VARIANTS: dict[str, dict[str, Any]] = {
    "tsconvplus_k3": {},
    "tsconvplus_k1": {"vae": {"spatial_kernel": 1}},
    "tsconvplus_k5": {"vae": {"spatial_kernel": 5}},
    "tsconv_global": {"vae": {"spatial": "global"}},
    "autoencoder": {"variational": False},
}
#: Stage-2 variants on the reference VAE (overrides of Stage2Config).
STAGE2_VARIANTS: dict[str, dict[str, Any]] = {
    "mlp_pooled": {"mapper": "mlp"},
    "mlp_tokens": {"mapper": "mlp_tokens"},
}
VARIANTS = (*STAGE1_VARIANTS, "direct_regression", *STAGE2_VARIANTS)


class EpochAsLatent(nn.Module):
    """The "no latent" ablation's stand-in for the VAE: the latent *is* the normalised epoch ``(C, T)``.

    With it, stage 2 trains the mapper to regress the epoch directly (``C`` queries of ``T`` values each), with the
    same loss, optimiser, validation and early stopping as ViBE's mapper.
    """

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The epoch itself as the posterior mean (zero log-variance)."""
        return x, torch.zeros_like(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The latent is the epoch."""
        return z


@dataclass
class AblationConfig:
    """Settings of the ablation study (sized for about 14 minutes per seed on 2 CPU cores).

    Parameters
    ----------
    work_dir, results : str
        Data/cache folder; the results JSON (``benchmarks/results/ablations.json``).
    seeds : tuple of int
        Training seeds (>= 3 for the CIs to mean anything).
    n_train, train_reps, n_test, test_reps, noise_scale
        Simulated data per seed (things-eeg2 montage).
    stage1, stage2 : dict
        Overrides of the reference :class:`Stage1Config` / :class:`Stage2Config` (every variant starts from them).
    swd_weights : tuple of float
        The SWD-weight curve (the reference weight is ``stage2["swd_weight"]``).
    n_boot : int
        Bootstrap resamples of the CIs.
    """

    work_dir: str = "data/ablations"
    results: str = str(_REPO / "benchmarks" / "results" / "ablations.json")
    seeds: tuple[int, ...] = (0, 1, 2)
    n_train: int = 800
    train_reps: int = 4
    n_test: int = 100
    test_reps: int = 20
    noise_scale: float = 0.1  # the embedded default's recipe (DefaultConfig.noise_scale)
    encoder: str = "vibe-tiny-vit"
    stage1: dict[str, Any] = field(default_factory=lambda: dict(
        vae={"widths": [8, 16, 16]}, inputs="average", batch_size=64, lr=3e-3, epochs=40, patience=6,
        kl_warmup_steps=200, max_minutes=1.2))
    stage2: dict[str, Any] = field(default_factory=lambda: dict(
        epochs=40, batch_size=64, lr=1e-3, patience=6, swd_weight=0.1, qformer={"dropout": 0.1}, max_minutes=0.6))
    swd_weights: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0)
    n_boot: int = 1000
    threads: int = 2
    progress: bool = False


def bootstrap_seeds_images(preds: list[np.ndarray], targets: list[np.ndarray], *, n_boot: int = 1000,
                           seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Mean over seeds of the encoding r, and its two-level percentile-bootstrap 95 % CI.

    Parameters
    ----------
    preds, targets : list of ndarray, shape (N, C, T)
        Per training seed: predictions and the test images' repetition averages.
    n_boot : int
        Resamples: each draws seeds with replacement, then images with replacement within each drawn seed
        (:func:`~vibe_rt.training.truth.bootstrap_encoding_r`, one independent image resample per draw).

    Returns
    -------
    (mean r, (low, high))
    """
    n_seeds = len(preds)
    point = float(np.mean([encoding_r(p, y, axis=0).mean() for p, y in zip(preds, targets)]))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_seeds, (n_boot, n_seeds))
    # per seed, an image resample for every (bootstrap, draw) slot; a slot reads the seed it drew
    per_seed = np.stack([bootstrap_encoding_r(p, y, n_boot * n_seeds, rng).reshape(n_boot, n_seeds)
                         for p, y in zip(preds, targets)])
    boots = per_seed[picks, np.arange(n_boot)[:, None], np.arange(n_seeds)[None, :]].mean(1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return point, (float(low), float(high))


def simulator_drive_features(data_dir: Path, image_paths: list[Any], sim: Any) -> np.ndarray:
    """The simulator's drives of each image (amplitudes then latencies of every source), shape (N, 2 x sources).

    ``data_dir`` is a :func:`simulate_dataset` folder (its ``images.json`` holds each image's declared category),
    ``sim`` the :class:`SimulationConfig` it was simulated with.
    """
    from ..data.categories import as_label
    from ..data.simulate import EvokedModel
    from ..data.stimuli import read_image

    category = {p["file"]: p.get("category") for p in json.loads((data_dir / "images.json").read_text())}
    model = EvokedModel(sim.get_montage(), image_deg=sim.get_paradigm().image_deg)
    return np.stack([np.concatenate(model.drives(read_image(path), as_label(category[Path(path).name])))
                     for path in image_paths])


def _one_seed(cfg: AblationConfig, seed: int, ctx: Any) -> dict[str, Any]:
    """Train and score every variant for one training seed: predictions (volts), target, validation r."""
    from ..data.simulate import SimulationConfig, simulate_dataset

    work = Path(cfg.work_dir) / f"seed-{seed}"
    sim: dict[str, Any] = dict(montage="things-eeg2", n_train=cfg.n_train, train_reps=cfg.train_reps,
                               n_test=cfg.n_test, test_reps=cfg.test_reps, seed=seed, noise_scale=cfg.noise_scale)
    train_sim, test_sim = SimulationConfig(**sim), SimulationConfig(**{**sim, "seed": seed + TEST_SEED_OFFSET,
                                                                          "n_train": 1})
    train, _ = simulate_dataset(train_sim, work / "data")
    _, test = simulate_dataset(test_sim, work / "test-data")
    enc = build_encoder(cfg.encoder, seed=0)
    cache = Path(cfg.work_dir) / "features"
    tr_tok, tr_pool = image_features(enc, train.image_paths, cache_dir=cache, name=cfg.encoder, progress=False)
    te_tok, te_pool = image_features(enc, test.image_paths, cache_dir=cache, name=cfg.encoder, progress=False)
    out: dict[str, Any] = {"target": test.average(), "pred": {}, "val_r": {}, "seconds": {}}

    def mapper_run(name: str, vae: LatentModel, mean: np.ndarray, std: np.ndarray, **over: Any) -> None:
        t = time.perf_counter()
        s2 = Stage2Config(**{**cfg.stage2, **over, "seed": seed, "progress": cfg.progress})
        res = train_mapper(tr_tok, _normalised(np.asarray(train.epochs), mean, std), vae, s2, ctx=ctx)
        out["pred"][name] = predict_epochs(res.mapper, vae, te_tok, mean, std)
        out["val_r"][name] = res.metrics["val_r"]
        out["seconds"][name] = round(time.perf_counter() - t, 1)

    reference = None
    for name, over in STAGE1_VARIANTS.items():
        t = time.perf_counter()
        s1 = Stage1Config(**{**cfg.stage1, **over, "vae": {**cfg.stage1.get("vae", {}), **over.get("vae", {})},
                             "seed": seed, "progress": cfg.progress})
        r1 = train_vae(train, s1, out=None, ctx=ctx)
        out["seconds"][f"{name}_stage1"] = round(time.perf_counter() - t, 1)
        mapper_run(name, r1.vae, r1.mean, r1.std)
        if reference is None:
            reference = r1
    assert reference is not None
    for weight in cfg.swd_weights:
        if weight != cfg.stage2["swd_weight"]:
            mapper_run(f"swd_{weight:g}", reference.vae, reference.mean, reference.std, swd_weight=weight)
    out["pred"][f"swd_{cfg.stage2['swd_weight']:g}"] = out["pred"]["tsconvplus_k3"]
    out["val_r"][f"swd_{cfg.stage2['swd_weight']:g}"] = out["val_r"]["tsconvplus_k3"]
    for name, over in STAGE2_VARIANTS.items():
        mapper_run(name, reference.vae, reference.mean, reference.std, **over)
    mapper_run("direct_regression", EpochAsLatent(), reference.mean, reference.std)
    for kind in ("pooled", "tokens"):
        _, pred = fit_ridge(tr_tok, tr_pool, train, te_tok, te_pool, reference.mean, reference.std, kind=kind)
        out["pred"][f"ridge_{kind}"] = pred
    tr_drive = simulator_drive_features(work / "data", train.image_paths, train_sim)[:, None, :]
    te_drive = simulator_drive_features(work / "test-data", test.image_paths, test_sim)[:, None, :]
    _, out["pred"]["ridge_simulator_drives"] = fit_ridge(tr_drive, None, train, te_drive, None, reference.mean,
                                                         reference.std, kind="tokens")
    out["pred"]["truth"] = np.load(work / "test-data" / "test" / "evoked_true.npy", allow_pickle=False)
    return out


def run_ablations(config: AblationConfig | None = None) -> dict[str, Any]:
    """Run the study over all seeds; writes and returns the results (see the module docstring)."""
    cfg = config or AblationConfig()
    setup_torch(cfg.threads, cfg.seeds[0])
    ctx = init_distributed(device="cpu")
    t0 = time.perf_counter()
    runs = []
    for seed in cfg.seeds:
        logger.info("ablations: seed %d", seed)
        runs.append(_one_seed(cfg, seed, ctx))
    names = list(runs[0]["pred"])
    table: dict[str, Any] = {}
    for name in names:
        r, ci = bootstrap_seeds_images([run["pred"][name] for run in runs], [run["target"] for run in runs],
                                       n_boot=cfg.n_boot)
        row: dict[str, Any] = {"test_r": r, "test_r_ci95": list(ci)}
        if name in runs[0]["val_r"]:
            row["val_r"] = float(np.mean([run["val_r"][name] for run in runs]))
        table[name] = row
    swd = {f"{w:g}": table[f"swd_{w:g}"] for w in cfg.swd_weights}
    chosen = max(swd, key=lambda w: swd[w]["val_r"])
    results: dict[str, Any] = {
        "description": __doc__.split("\n\n")[0],
        "score": "encoding r against the test images' repetition average (channels x time mean of the r across "
                 "images), mean over training seeds; 95 % CI: percentile bootstrap over seeds, then test images",
        "n_seeds": len(cfg.seeds),
        "variants": table,
        "swd_curve": {"weights": swd, "chosen_on_validation": float(chosen)},
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("work_dir", "results", "progress")},
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": {"cpu_threads": cfg.threads, "platform": platform.platform(), "torch": torch.__version__},
    }
    Path(cfg.results).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.results).write_text(json.dumps(results, indent=1))
    logger.info("ablations (%d seeds, %.1f min): %s", len(cfg.seeds), results["seconds"] / 60,
                {k: round(v["test_r"], 3) for k, v in table.items()})
    return results
