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
    TrainState,
    epoch_indices,
    init_distributed,
    load_train_state,
    lr_at,
    save_train_state,
    unwrap,
)
from .losses import kl_divergence, kl_weight, mse_loss

__all__ = ["Stage1Config", "Stage1Result", "train_vae", "split_validation", "state_path"]

_INPUTS = ("trials", "average", "subsets")
# options that may change between a run and its resumption
_RESUMABLE_CHANGES = ("epochs", "patience", "max_minutes", "progress")


@dataclass
class Stage1Config:
    """Options of stage-1 training.

    Parameters
    ----------
    size : str
        TSC-VAE preset (``"tiny"`` or ``"base"``), see :meth:`TSCVAEConfig.for_montage`.
    vae : dict | None
        Overrides of the preset's :class:`TSCVAEConfig` fields (e.g. ``{"latent_tokens": 16}``).
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

    def resume_key(self) -> dict[str, Any]:
        """The options that must match for a run to resume another."""
        d = asdict(self)
        for k in _RESUMABLE_CHANGES:
            d.pop(k)
        return d


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


def state_path(out: str | Path) -> Path:
    """Where the resumable train state of checkpoint ``out`` lives (``<stem>.state.*``)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".json", ".safetensors") else out
    return stem.with_name(stem.name + ".state")


def split_validation(n_images: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of image indices into (train, validation); at least one image in each."""
    if n_images < 2:
        raise DataError(f"need at least 2 training images for a validation split, got {n_images}")
    n_val = min(n_images - 1, max(1, int(round(n_images * fraction))))
    perm = np.random.default_rng(seed).permutation(n_images)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


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
    recon = torch.cat([vae(x_val[i : i + batch])[0] for i in range(0, len(x_val), batch)])
    xv = x_val.numpy().reshape(len(x_val), -1)
    rv = recon.numpy().reshape(len(x_val), -1)
    xc = xv - xv.mean(0)
    rc = rv - rv.mean(0)
    den = np.sqrt((xc**2).sum(0) * (rc**2).sum(0))
    r = np.where(den > 0, (xc * rc).sum(0) / np.where(den > 0, den, 1), 0.0)
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

    vae_cfg = TSCVAEConfig.for_montage(montage, cfg.size)
    if cfg.vae:
        vae_cfg = TSCVAEConfig.from_dict({**vae_cfg.to_dict(), **cfg.vae})
    torch.manual_seed(cfg.seed)
    vae = TSCVAE(vae_cfg).to(ctx.device)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    key = {**cfg.resume_key(), "vae_config": vae_cfg.to_dict(), "n_images": train.n_images,
           "world_size": ctx.world_size}
    state = None
    spath = state_path(out) if out is not None else None
    if resume and spath is not None:
        state = load_train_state(spath, vae, opt, config=key)
        if state is not None:
            logger.info("stage 1: resuming from %s (epoch %d, step %d)", spath, state.epoch, state.step)
    state = state or TrainState(config=key)
    model = ctx.wrap(vae)

    steps_per_epoch = -(-len(epoch_indices(len(samples), seed=cfg.seed, epoch=0, ctx=ctx)) // cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    logger.info(
        "stage 1: %d train / %d val images, %d samples (%s) per epoch, VAE %s (%.2f M parameters), %s",
        len(tr_img), len(val_img), len(samples), cfg.inputs, cfg.size,
        sum(p.numel() for p in vae.parameters()) / 1e6, f"{ctx.world_size} processes" if ctx.distributed else "1 process",
    )
    from tqdm.auto import tqdm

    first_epoch = state.epoch
    while not state.done and state.epoch < cfg.epochs:
        if stop_after is not None and state.epoch - first_epoch >= stop_after:
            break
        epoch = state.epoch
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed * 1009 + epoch * 31 + ctx.rank)  # dropout/reparameterisation noise
        order = epoch_indices(len(samples), seed=cfg.seed, epoch=epoch, ctx=ctx)
        model.train()
        sums = {"loss": 0.0, "mse": 0.0, "kl": 0.0}
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"vae epoch {epoch + 1}/{cfg.epochs}",
                   leave=False, disable=not (cfg.progress and ctx.is_main))
        for j, start in enumerate(bar):
            xb = samples.batch(order[start : start + cfg.batch_size], epoch=epoch, step=j).to(ctx.device)
            lr = lr_at(state.step, base_lr=cfg.lr, total_steps=total_steps, warmup_steps=cfg.warmup_steps)
            for group in opt.param_groups:
                group["lr"] = lr
            recon, mu, logvar = model(xb)
            mse = mse_loss(recon, xb)
            kl = kl_divergence(mu, logvar)
            loss = mse + kl_weight(state.step, beta=cfg.beta, warmup_steps=cfg.kl_warmup_steps) * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 5.0)
            opt.step()
            state.step += 1
            for k, v in (("loss", loss), ("mse", mse), ("kl", kl)):
                sums[k] += float(v.detach())
            bar.set_postfix(mse=f"{float(mse.detach()):.4f}", kl=f"{float(kl.detach()):.1f}")
        n_b = max(1, j + 1)
        val = _validate(vae, x_val.to(ctx.device))
        rec = {"epoch": epoch + 1, **{k: ctx.all_reduce_mean(v / n_b) for k, v in sums.items()}, **val,
               "lr": lr, "seconds": time.perf_counter() - t0}
        state.history.append(rec)
        state.epoch += 1
        if val["val_mse"] < state.best_val - 1e-6:
            state.best_val, state.best_epoch, state.bad_epochs = val["val_mse"], epoch + 1, 0
            state.best_model = {k: v.detach().cpu().clone() for k, v in vae.state_dict().items()}
        else:
            state.bad_epochs += 1
        logger.info(
            "stage 1 epoch %d: loss %.4f (mse %.4f, kl %.1f) | val mse %.4f, r %.3f | lr %.2e | %.1f s%s",
            epoch + 1, rec["loss"], rec["mse"], rec["kl"], val["val_mse"], val["val_r"], lr, rec["seconds"],
            " *" if state.best_epoch == epoch + 1 else "",
        )
        if state.bad_epochs >= cfg.patience:
            logger.info("stage 1: early stop (no improvement for %d epochs)", cfg.patience)
            state.done = True
        elif cfg.max_minutes is not None and (time.perf_counter() - t_start) / 60 > cfg.max_minutes:
            logger.info("stage 1: stopping after %.1f min (max_minutes)", cfg.max_minutes)
            state.done = True
        if spath is not None and ctx.is_main:
            save_train_state(spath, vae, opt, state)
    if state.best_model is not None:
        vae.load_state_dict(state.best_model)
    vae = unwrap(vae).cpu().eval()
    metrics = {**_validate(vae, x_val), "best_epoch": state.best_epoch, "epochs_run": state.epoch}
    result = Stage1Result(vae=vae, mean=mean, std=std, history=list(state.history), metrics=metrics,
                          train_images=tr_img, val_images=val_img)
    if out is not None and ctx.is_main:
        save_stage1(result, out, montage=montage, unit=train.unit, config=cfg)
    ctx.barrier()
    return result


def save_stage1(result: Stage1Result, out: str | Path, *, montage: Any, unit: str, config: Stage1Config) -> Path:
    """Write the stage-1 checkpoint (weights, config, montage, normalisation, metrics)."""
    from .. import checkpoint as ckpt

    return ckpt.save_vae_checkpoint(
        result.vae, out, montage=montage, normalisation=(result.mean, result.std),
        metrics=result.metrics, extra={"unit": unit, "stage1": asdict(config), "history": result.history},
    )
