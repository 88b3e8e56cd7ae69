"""Stage 2: train a mapper (the Q-Former) from frozen image tokens to the frozen TSC-VAE latent.

- The image encoder and the VAE are frozen; image tokens are computed once and cached
  (:mod:`vibe_rt.training.embeddings`).
- Target (``target="average"``, the default): the VAE posterior mean ``mu`` of each training image's
  repetition-averaged, normalised epoch, i.e. the latent of the best available estimate of the evoked response.
  ``target="repetitions"`` uses the posterior mean of one randomly drawn repetition per image and step (more,
  noisier targets); measured worse on simulated data with few repetitions, see ``docs/training.md``.
- Loss: ``MSE(pred, mu) + swd_weight * SWD(pred, mu)`` on the flattened latents of a batch
  (:func:`~vibe_rt.training.losses.sliced_wasserstein_distance`, fresh random directions every step).
- Validation: the same image split as stage 1; early stopping on the Pearson r (per channel and time across the
  validation images) between decoded predictions and the validation images' averaged epochs.
- Resumable and torchrun-ready like stage 1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from .._logs import logger
from ..errors import ConfigError
from .common import DistContext, ResumableConfig, TrainingInterrupted, fit, init_distributed, split_validation
from .losses import mse_loss, sliced_wasserstein_distance
from .metrics import encoding_r

__all__ = ["Stage2Config", "Stage2Result", "train_mapper", "vae_latents", "decode_latents", "parse_encoder_spec"]

_TARGETS = ("average", "repetitions")
_MAPPERS = ("qformer", "mlp", "mlp_tokens")


def parse_encoder_spec(spec: str) -> tuple[str, str | None]:
    """Split ``NAME[:PRETRAINED|PATH]`` into (name, pretrained or None)."""
    name, _, pretrained = spec.partition(":")
    if not name:
        raise ConfigError(f"encoder {spec!r}: give an open_clip model name, e.g. 'vibe-tiny-vit' or "
                          "'ViT-B-32:laion2b_s34b_b79k'")
    return name, (pretrained or None)


@dataclass
class Stage2Config(ResumableConfig):
    """Options of stage-2 training.

    Parameters
    ----------
    mapper : {"qformer", "mlp", "mlp_tokens"}
        The Q-Former (ViBE), or the MLP ablation on the mean-pooled token (``"mlp"``) or on all tokens
        flattened (``"mlp_tokens"``).
    qformer_size : str
        Q-Former preset (``"tiny"`` or ``"base"``).
    qformer : dict | None
        Overrides of :class:`QFormerConfig` fields (e.g. ``{"dropout": 0.1}``).
    mlp_hidden : int
        Hidden width of the MLP ablation.
    epochs, batch_size, lr, weight_decay, warmup_steps
        Optimisation (AdamW, warm-up + cosine).
    swd_weight : float
        Weight of the sliced Wasserstein term (0 = MSE only). Default 0.1; ``vibe-rt train default`` picks the
        weight on validation r (``quality.json`` ``swd_selection``; weight 1 lowers it).
    swd_projections : int
        Random directions per step.
    swd_p : float
        Order of the Wasserstein distance.
    target : {"average", "repetitions"}
        Latent targets (see the module docstring).
    val_fraction, patience, seed, max_minutes, progress
        As in :class:`~vibe_rt.training.stage1.Stage1Config` (same seed -> same validation images).
    """

    mapper: str = "qformer"
    qformer_size: str = "tiny"
    qformer: dict[str, Any] | None = None
    mlp_hidden: int = 512
    epochs: int = 60
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    swd_weight: float = 0.1
    swd_projections: int = 64
    swd_p: float = 2.0
    target: str = "average"
    val_fraction: float = 0.1
    patience: int = 10
    seed: int = 0
    max_minutes: float | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.target not in _TARGETS:
            raise ConfigError(f"stage-2 target must be one of {_TARGETS}, got {self.target!r}")
        if self.mapper not in _MAPPERS:
            raise ConfigError(f"stage-2 mapper must be one of {_MAPPERS}, got {self.mapper!r}")
        if self.swd_weight < 0 or self.swd_projections < 1:
            raise ConfigError("swd_weight must be >= 0 and swd_projections >= 1")


class LatentModel(Protocol):
    """What stage 2 needs of its frozen stage-1 model: the TSC-VAE, or the ablations' identity latent."""

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance of normalised epochs."""
        ...

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised epochs of latents."""
        ...

    def eval(self) -> Any:
        """Evaluation mode (a torch module's)."""
        ...

    def cpu(self) -> Any:
        """On the CPU (a torch module's)."""
        ...

    def parameters(self) -> Iterator[nn.Parameter]:
        """The weights to freeze."""
        ...


@dataclass
class Stage2Result:
    """Outcome of :func:`train_mapper`: the best mapper (eval mode, CPU), its history and validation scores."""

    mapper: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


@torch.no_grad()
def vae_latents(vae: LatentModel, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """Posterior means of normalised epochs ``(N, C, T)`` -> ``(N, latent_tokens, latent_dim)``."""
    vae.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    return torch.cat([vae.encode(xt[i : i + batch])[0] for i in range(0, len(xt), batch)]).numpy()


@torch.no_grad()
def decode_latents(vae: LatentModel, z: np.ndarray | torch.Tensor, batch: int = 512) -> np.ndarray:
    """Decode latents to normalised epochs ``(N, C, T)``."""
    vae.eval()
    zt = torch.as_tensor(z, dtype=torch.float32)
    return torch.cat([vae.decode(zt[i : i + batch]) for i in range(0, len(zt), batch)]).numpy()


@torch.no_grad()
def predict_latents(mapper: nn.Module, tokens: np.ndarray | torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Mapper outputs (on CPU) for tokens ``(N, n_tokens, D)``; runs on the mapper's device."""
    mapper.eval()
    device = next(mapper.parameters()).device
    tt = torch.as_tensor(tokens, dtype=torch.float32)
    return torch.cat([mapper(tt[i : i + batch].to(device)).cpu() for i in range(0, len(tt), batch)])


def build_mapper(cfg: Stage2Config, *, n_tokens: int, token_dim: int, n_queries: int, out_dim: int) -> nn.Module:
    """The Q-Former (preset + overrides) or an MLP ablation for the given shapes."""
    if cfg.mapper in ("mlp", "mlp_tokens"):
        from .baselines import MLPMapper

        return MLPMapper(token_dim, n_queries, out_dim, hidden=cfg.mlp_hidden,
                         n_tokens=n_tokens if cfg.mapper == "mlp_tokens" else None)
    from ..models.qformer import QFormer, QFormerConfig

    qcfg = QFormerConfig.preset(cfg.qformer_size, token_dim=token_dim, n_queries=n_queries, out_dim=out_dim)
    if cfg.qformer:
        qcfg = QFormerConfig.from_dict({**qcfg.to_dict(), **cfg.qformer})
    return QFormer(qcfg)


def train_mapper(
    tokens: np.ndarray,
    train_epochs_norm: np.ndarray,
    vae: LatentModel,
    config: Stage2Config | None = None,
    *,
    out_state: str | Path | None = None,
    resume: bool = True,
    ctx: DistContext | None = None,
    stop_after: int | None = None,
) -> Stage2Result:
    """Train the stage-2 mapper on cached tokens.

    Parameters
    ----------
    tokens : ndarray, shape (N, n_tokens, D)
        Frozen image tokens of the N training images.
    train_epochs_norm : ndarray, shape (N, R, C, T)
        Normalised training epochs (NaN = missing repetition), images in the order of ``tokens``.
    vae : TSCVAE
        Frozen stage-1 model (its posterior means are the targets; its decoder scores validation).
    config : Stage2Config | None
        Options.
    out_state : path | None
        Stem of the resumable train state (rank 0 writes it after every epoch); None disables it.
    resume : bool
        Continue from ``out_state`` when present.
    ctx : DistContext | None
        Process context (None: from torchrun's environment).
    stop_after : int | None
        Return after this many epochs of this call, leaving the saved state resumable (see stage 1).

    Returns
    -------
    Stage2Result

    Raises
    ------
    TrainingInterrupted
        On Ctrl-C after at least one epoch, with the best-so-far :class:`Stage2Result` as ``result``.
    """
    cfg = config or Stage2Config()
    ctx = ctx or init_distributed()
    t_start = time.perf_counter()
    vae = vae.cpu().eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    n = len(tokens)
    tr, val = split_validation(n, cfg.val_fraction, cfg.seed)
    avg = np.nanmean(train_epochs_norm, axis=1).astype(np.float32)
    mu_avg = vae_latents(vae, avg)
    if cfg.target == "repetitions":
        reps = train_epochs_norm.shape[1]
        flat = np.nan_to_num(np.asarray(train_epochs_norm, np.float32)).reshape(n * reps, *avg.shape[1:])
        mu_rep = torch.from_numpy(vae_latents(vae, flat).reshape(n, reps, *mu_avg.shape[1:]))
        valid = torch.from_numpy(np.isfinite(train_epochs_norm).all(axis=(2, 3)))
    tok = torch.from_numpy(np.ascontiguousarray(tokens, np.float32))
    target = torch.from_numpy(mu_avg)
    val_avg = avg[val]
    n_q, l_dim = mu_avg.shape[1:]

    torch.manual_seed(cfg.seed)
    mapper = build_mapper(cfg, n_tokens=tok.shape[1], token_dim=tok.shape[-1], n_queries=n_q,
                          out_dim=l_dim).to(ctx.device)
    logger.info("stage 2 (%s, swd weight %g, target %s): %d train / %d val images, %.2f M parameters",
                cfg.mapper, cfg.swd_weight, cfg.target, len(tr), len(val),
                sum(p.numel() for p in mapper.parameters()) / 1e6)

    def train_step(model: nn.Module, pos: np.ndarray, *, epoch: int, batch: int, step: int,
                   rng: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.from_numpy(tr[pos])
        if cfg.target == "repetitions":
            w = valid[idx].float() * torch.rand(valid[idx].shape, generator=rng)
            yb = mu_rep[idx, w.argmax(1)]
        else:
            yb = target[idx]
        xb, yb = tok[idx].to(ctx.device), yb.to(ctx.device)
        pred = model(xb)
        mse = mse_loss(pred, yb)
        loss, swd = mse, torch.zeros(())
        if cfg.swd_weight > 0:
            swd = sliced_wasserstein_distance(pred.flatten(1), yb.flatten(1), n_projections=cfg.swd_projections,
                                              p=cfg.swd_p, generator=rng)
            loss = mse + cfg.swd_weight * swd
        return {"loss": loss, "mse": mse, "swd": swd}

    key = {**cfg.resume_key(), "n_images": n, "token_shape": list(tok.shape[1:]), "world_size": ctx.world_size}
    interrupted = None
    try:
        state = fit(mapper, cfg, name="stage 2", ctx=ctx, key=key, n_samples=len(tr), train_step=train_step,
                    validate=lambda m: _validate(m, vae, tok[val], target[val], val_avg),
                    criterion=lambda v: -v["val_r"], min_delta=1e-5, state_file=out_state, resume=resume,
                    stop_after=stop_after, started=t_start)
    except TrainingInterrupted as stop:  # Ctrl-C: hand the best mapper so far to the caller, then re-raise
        state, interrupted = stop.state, stop
    mapper = mapper.cpu().eval()
    metrics = {**_validate(mapper, vae, tok[val], target[val], val_avg), "best_epoch": state.best_epoch,
               "epochs_run": state.epoch}
    result = Stage2Result(mapper=mapper, history=list(state.history), metrics=metrics)
    if interrupted is not None:
        interrupted.result = result
        raise interrupted
    ctx.barrier()
    return result


@torch.no_grad()
def _validate(mapper: nn.Module, vae: LatentModel, tok: torch.Tensor, target: torch.Tensor,
              val_avg: np.ndarray) -> dict[str, float]:
    pred = predict_latents(mapper, tok)
    dec = decode_latents(vae, pred)
    r = encoding_r(dec, val_avg, axis=0)
    return {"val_latent_mse": float(((pred - target) ** 2).mean()), "val_r": float(r.mean())}
