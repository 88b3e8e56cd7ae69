"""Stage 1: train the TSC-VAE to reconstruct normalised M/EEG epochs (reconstruction MSE + warmed-up KL).

- Inputs are normalised with per-channel statistics of the training split (saved with the checkpoint).
- A seeded random ``val_fraction`` of the training *images* (all their repetitions) is held out; training stops
  early when the validation reconstruction MSE of their repetition-averaged epochs stops improving, and the
  best weights are kept.
- ``inputs`` picks what one training sample is: ``"trials"`` (one repetition), ``"average"`` (the mean of all
  repetitions of an image) or ``"subsets"`` (the mean of a random non-empty subset of an image's repetitions,
  drawn anew every time: a range of signal-to-noise ratios, from single trials to the full average).
- Resumable: after every epoch, rank 0 writes ``<out>.state.safetensors/.json`` (weights, best weights, AdamW
  state, counters); a rerun with the same options continues from there and gives the same result as an
  uninterrupted run (the sample order and all random draws are seeded per epoch).
- Runs unchanged under ``torchrun`` (DDP when ``WORLD_SIZE > 1``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._logs import logger
from ..errors import ConfigError, DataError
from .common import (
    DistContext,
    ResumableConfig,
    TrainingInterrupted,
    fit,
    init_distributed,
    split_validation,
    state_path,
)
from .losses import kl_divergence, kl_weight, mse_loss
from .metrics import encoding_r

__all__ = ["Stage1Config", "Stage1Result", "train_vae", "split_validation", "state_path"]

_INPUTS = ("trials", "average", "subsets")


@dataclass
class Stage1Config(ResumableConfig):
    """Options of stage-1 training.

    Parameters
    ----------
    size : str
        TSC-VAE preset (``"tiny"`` or ``"base"``), see :meth:`TSCVAEConfig.for_montage`.
    vae : dict | None
        Overrides of the preset's :class:`TSCVAEConfig` fields (e.g. ``{"latent_tokens": 16}``) and the
        neighbourhood arguments of :meth:`TSCVAEConfig.for_montage` (``{"spatial_kernel": 5}``,
        ``{"spatial": "global"}``).
    variational : bool
        True: the VAE (sampled latent, KL term). False: the plain auto-encoder ablation (the posterior mean is
        decoded, no sampling, no KL).
    epochs : int
        Maximum passes over the training samples.
    batch_size : int
        Samples per optimiser step (per process under torchrun).
    lr, weight_decay : float
        AdamW; the learning rate warms up linearly over ``warmup_steps`` then follows a cosine to 5%.
    warmup_steps : int
        Learning-rate warm-up.
    beta : float
        Final KL weight (KL in nats per epoch sample, reconstruction MSE per value).
    kl_warmup_steps : int
        Linear warm-up of the KL weight from 0 to ``beta``.
    val_fraction : float
        Fraction of training images held out for early stopping.
    patience : int
        Epochs without improvement of the validation MSE before stopping.
    inputs : {"trials", "average", "subsets"}
        What one training sample is (see the module docstring).
    seed : int
        Seed of the initialisation, the validation split and every random draw.
    max_minutes : float | None
        Stop (after the current epoch) when this wall time is exceeded.
    progress : bool
        Show tqdm progress bars (rank 0).
    """

    size: str = "tiny"
    vae: dict[str, Any] | None = None
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    beta: float = 1e-4
    kl_warmup_steps: int = 500
    variational: bool = True
    val_fraction: float = 0.1
    patience: int = 5
    inputs: str = "trials"
    seed: int = 0
    max_minutes: float | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.inputs not in _INPUTS:
            raise ConfigError(f"stage-1 inputs must be one of {_INPUTS}, got {self.inputs!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be positive")


@dataclass
class Stage1Result:
    """Outcome of :func:`train_vae`.

    Attributes
    ----------
    vae : TSCVAE
        The best (lowest validation MSE) model, in eval mode, on CPU.
    mean, std : ndarray, shape (C,)
        Normalisation statistics (dataset unit).
    history : list of dict
        One entry per epoch (train loss terms, validation MSE and r, learning rate, seconds).
    metrics : dict
        Final validation scores of the best model.
    """

    vae: Any
    mean: np.ndarray
    std: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    train_images: np.ndarray | None = None
    val_images: np.ndarray | None = None


def _normalised(epochs: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    out = np.empty(epochs.shape, np.float32)
    m = mean[None, None, :, None]
    s = std[None, None, :, None]
    for i in range(0, epochs.shape[0], 256):
        out[i : i + 256] = (np.asarray(epochs[i : i + 256], np.float32) - m) / s
    return out


class _Samples:
    """Training samples of one kind drawn from normalised epochs (n_images, R, C, T) held in memory."""

    def __init__(self, x: np.ndarray, kind: str, seed: int) -> None:
        self.kind = kind
        self.seed = seed
        self.valid = np.isfinite(x).all(axis=(2, 3))  # (N, R)
        self.x = torch.from_numpy(np.nan_to_num(x))
        if kind == "trials":
            self.pairs = np.argwhere(self.valid)  # (M, 2): image, repetition
        elif kind == "average":
            counts = self.valid.sum(1)
            if (counts == 0).any():
                raise DataError("some training images have no valid repetition")
            w = torch.from_numpy(self.valid / counts[:, None]).float()
            self.avg = torch.einsum("nr,nrct->nct", w, self.x)
        else:
            self.mask = torch.from_numpy(self.valid)
            self.pairs = np.argwhere(self.valid)

    def __len__(self) -> int:
        return len(self.pairs) if self.kind != "average" else self.avg.shape[0]

    def batch(self, idx: np.ndarray, *, epoch: int, step: int) -> torch.Tensor:
        if self.kind == "trials":
            p = self.pairs[idx]
            return self.x[p[:, 0], p[:, 1]]
        if self.kind == "average":
            return self.avg[idx]
        img = torch.from_numpy(self.pairs[idx, 0])
        g = torch.Generator().manual_seed(self.seed * 7919 + epoch * 100_003 + step)
        valid = self.mask[img]
        pick = (torch.rand(valid.shape, generator=g) < 0.5) & valid
        # guarantee one repetition: the one of the sample itself
        pick[torch.arange(len(idx)), torch.from_numpy(self.pairs[idx, 1])] = True
        w = pick.float() / pick.sum(1, keepdim=True)
        return torch.einsum("br,brct->bct", w, self.x[img])


@torch.no_grad()
def _validate(vae: torch.nn.Module, x_val: torch.Tensor, batch: int = 512) -> dict[str, float]:
    vae.eval()
    device = next(vae.parameters()).device
    recon = torch.cat([vae(x_val[i : i + batch].to(device))[0].cpu() for i in range(0, len(x_val), batch)])
    xv = x_val.numpy().reshape(len(x_val), -1)
    rv = recon.numpy().reshape(len(x_val), -1)
    r = encoding_r(rv, xv, axis=0)
    return {"val_mse": float(((rv - xv) ** 2).mean()), "val_r": float(r.mean())}


def train_vae(
    train: Any,
    config: Stage1Config | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = True,
    ctx: DistContext | None = None,
    stop_after: int | None = None,
) -> Stage1Result:
    """Train the TSC-VAE on a training :class:`~vibe_rt.data.dataset.EpochsDataset`.

    Parameters
    ----------
    train : EpochsDataset
        Training split, epochs ``(n_images, n_reps, C, T)``.
    config : Stage1Config | None
        Options (defaults if None).
    out : path | None
        Stage-1 checkpoint to write (rank 0) with the best model and the normalisation statistics; the
        resumable state goes beside it (:func:`state_path`). None trains in memory only.
    resume : bool
        Continue from the state beside ``out`` if it exists (same options required).
    ctx : DistContext | None
        Process context; None reads torchrun's environment (:func:`init_distributed`).
    stop_after : int | None
        Return after this many epochs of *this call* without marking the run finished (the state is saved;
        a later call with ``resume=True`` continues): for time-sliced jobs and for testing resumption.

    Returns
    -------
    Stage1Result
    """
    from ..models.vae import TSCVAE, TSCVAEConfig

    cfg = config or Stage1Config()
    ctx = ctx or init_distributed()
    t_start = time.perf_counter()
    montage = train.montage
    mean, std = train.normalisation()
    tr_img, val_img = split_validation(train.n_images, cfg.val_fraction, cfg.seed)
    x_all = _normalised(np.asarray(train.epochs), mean, std)
    samples = _Samples(x_all[tr_img], cfg.inputs, cfg.seed + ctx.rank)
    x_val = torch.from_numpy(np.nanmean(x_all[val_img], axis=1).astype(np.float32))
    del x_all

    vae_cfg = TSCVAEConfig.for_montage(montage, cfg.size, **(cfg.vae or {}))
    torch.manual_seed(cfg.seed)
    vae = TSCVAE(vae_cfg).to(ctx.device)
    logger.info(
        "stage 1: %d train / %d val images, %d samples (%s) per epoch, VAE %s (%.2f M parameters), %s",
        len(tr_img), len(val_img), len(samples), cfg.inputs, cfg.size,
        sum(p.numel() for p in vae.parameters()) / 1e6,
        f"{ctx.world_size} processes" if ctx.distributed else "1 process",
    )

    def train_step(model: torch.nn.Module, pos: np.ndarray, *, epoch: int, batch: int, step: int,
                   rng: torch.Generator) -> dict[str, torch.Tensor]:
        xb = samples.batch(pos, epoch=epoch, step=batch).to(ctx.device)
        recon, mu, logvar = model(xb, sample=cfg.variational)
        mse = mse_loss(recon, xb)
        if not cfg.variational:
            return {"loss": mse, "mse": mse}
        kl = kl_divergence(mu, logvar)
        loss = mse + kl_weight(step, beta=cfg.beta, warmup_steps=cfg.kl_warmup_steps) * kl
        return {"loss": loss, "mse": mse, "kl": kl}

    key = {**cfg.resume_key(), "vae_config": vae_cfg.to_dict(), "n_images": train.n_images,
           "world_size": ctx.world_size}
    interrupted = None
    try:
        state = fit(vae, cfg, name="stage 1", ctx=ctx, key=key, n_samples=len(samples), train_step=train_step,
                    validate=lambda m: _validate(m, x_val), criterion=lambda v: v["val_mse"], min_delta=1e-6,
                    state_file=state_path(out) if out is not None else None, resume=resume,
                    stop_after=stop_after, started=t_start)
    except TrainingInterrupted as stop:  # Ctrl-C: the best model so far becomes the checkpoint, then re-raise
        state, interrupted = stop.state, stop
    vae = vae.cpu().eval()
    metrics = {**_validate(vae, x_val), "best_epoch": state.best_epoch, "epochs_run": state.epoch}
    result = Stage1Result(vae=vae, mean=mean, std=std, history=list(state.history), metrics=metrics,
                          train_images=tr_img, val_images=val_img)
    if out is not None and ctx.is_main:
        save_stage1(result, out, montage=montage, unit=train.unit, config=cfg, interrupted=interrupted is not None)
    if interrupted is not None:
        interrupted.result = result
        raise interrupted
    ctx.barrier()
    return result


def interruption_note(stage: str, metrics: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """What a checkpoint saved on Ctrl-C records in its document (``extra["interrupted"]``); says so in the log."""
    logger.warning("%s interrupted after %d epochs: the best model so far (epoch %d) is saved to %s, marked as "
                   "interrupted; rerun the same command to resume", stage, metrics["epochs_run"],
                   metrics["best_epoch"], out)
    return {"epochs_run": metrics["epochs_run"], "best_epoch": metrics["best_epoch"],
            "resume": "rerun the same command: it resumes from the train state beside the checkpoint"}


def save_stage1(result: Stage1Result, out: str | Path, *, montage: Any, unit: str, config: Stage1Config,
                interrupted: bool = False) -> Path:
    """Write the stage-1 checkpoint (weights, config, montage, normalisation, metrics); ``interrupted`` marks a
    best-so-far model saved on Ctrl-C (``extra["interrupted"]``, see :func:`interruption_note`)."""
    from .. import checkpoint as ckpt

    extra: dict[str, Any] = {"unit": unit, "stage1": asdict(config), "history": result.history}
    if interrupted:
        extra["interrupted"] = interruption_note("stage 1", result.metrics, out)
    return ckpt.save_vae_checkpoint(result.vae, out, montage=montage, normalisation=(result.mean, result.std),
                                    metrics=result.metrics, extra=extra)
