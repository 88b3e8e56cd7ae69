"""File-level entry points behind ``vibe-rt train vae|qformer`` and ``vibe-rt eval`` (usable from Python).

Each reads datasets/checkpoints from disk, calls the array-level trainers (:mod:`.stage1`, :mod:`.stage2`) or
the evaluation (:mod:`.evaluate`), and writes checkpoints/reports (rank 0 only under torchrun).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._logs import logger
from ..errors import CheckpointError
from ..models.qformer import QFormer
from ..models.vae import TSCVAE
from .baselines import PCARidgeEncoder, RidgeEncoder, ridge_features
from .common import DistContext, TrainingInterrupted, init_distributed, setup_torch
from .embeddings import image_features
from .evaluate import (
    build_report,
    evaluate_predictions,
    evaluate_reconstruction,
    load_split,
    predict_epochs,
    write_report,
)
from .stage1 import Stage1Config, Stage1Result, _normalised, interruption_note, state_path, train_vae
from .stage2 import Stage2Config, Stage2Result, parse_encoder_spec, train_mapper

__all__ = ["train_stage1", "train_stage2", "build_encoder", "assemble_vibe", "evaluate_checkpoint",
           "default_cache_dir"]


def default_cache_dir(data_dir: str | Path) -> Path:
    """Image-feature cache of a dataset folder: ``<data_dir>/.features``."""
    return Path(data_dir) / ".features"


def train_stage1(data_dir: str | Path, out: str | Path, config: Stage1Config | None = None, *,
                 resume: bool = True, threads: int | None = None) -> Stage1Result:
    """``vibe-rt train vae``: train the TSC-VAE on ``<data_dir>/train`` and write checkpoint ``out``."""
    cfg = config or Stage1Config()
    setup_torch(threads, cfg.seed)
    train = load_split(data_dir, "train")
    return train_vae(train, cfg, out=out, resume=resume)


def build_encoder(spec: str, *, seed: int = 0) -> Any:
    """A frozen :class:`ImageEncoder` from ``NAME[:PRETRAINED|PATH]`` (random init seeded by ``seed``)."""
    from ..models.image_encoder import ImageEncoder, ImageEncoderConfig

    name, pretrained = parse_encoder_spec(spec)
    torch.manual_seed(seed)
    enc = ImageEncoder(ImageEncoderConfig(name, pretrained)).eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc


def assemble_vibe(encoder: Any, mapper: torch.nn.Module, vae: TSCVAE, montage: Any,
                  mean: np.ndarray, std: np.ndarray) -> Any:
    """Put a trained encoder, Q-Former and VAE together into a :class:`ViBE` (weights copied)."""
    from ..models.vibe import ViBE, ViBEConfig

    if not isinstance(mapper, QFormer):
        raise CheckpointError(f"a ViBE checkpoint needs the Q-Former mapper, not {type(mapper).__name__} (an "
                              "ablation only)")
    cfg = ViBEConfig(montage.to_dict(), encoder.cfg, mapper.cfg, vae.cfg)
    model = ViBE(cfg, load_pretrained=False)
    model.encoder.load_state_dict(encoder.state_dict())
    model.qformer.load_state_dict(mapper.state_dict())
    model.vae.load_state_dict(vae.state_dict())
    model.set_normalisation(mean, std)
    return model.eval()


def train_stage2(
    data_dir: str | Path,
    vae_path: str | Path,
    encoder: str,
    out: str | Path,
    config: Stage2Config | None = None,
    *,
    cache_dir: str | Path | None = None,
    resume: bool = True,
    threads: int | None = None,
    ctx: DistContext | None = None,
) -> tuple[Any, Stage2Result]:
    """``vibe-rt train qformer``: train the Q-Former and write the full ViBE checkpoint ``out``.

    Parameters
    ----------
    data_dir : path
        Dataset folder with ``train/`` (epochs + image files).
    vae_path : path
        Stage-1 checkpoint (:func:`~vibe_rt.checkpoint.save_vae_checkpoint`).
    encoder : str
        ``NAME[:PRETRAINED|PATH]`` of the frozen open_clip image encoder.
    out : path
        Output ViBE checkpoint stem.
    config : Stage2Config | None
        Options (``mapper`` must be ``"qformer"`` for a ViBE checkpoint).
    cache_dir : path | None
        Image-feature cache (default ``<data_dir>/.features``).

    Returns
    -------
    model : ViBE
    result : Stage2Result
    """
    from ..checkpoint import load_vae_checkpoint, save_checkpoint

    cfg = config or Stage2Config()
    if cfg.mapper != "qformer":
        raise CheckpointError("a ViBE checkpoint needs the Q-Former mapper; the MLP mapper is an ablation only "
                              "(see vibe_rt.training.stage2.train_mapper)")
    setup_torch(threads, cfg.seed)
    ctx = ctx or init_distributed()
    train = load_split(data_dir, "train")
    ck = load_vae_checkpoint(vae_path)
    if ck.norm_mean is None or ck.norm_std is None:
        raise CheckpointError(f"{vae_path} has no normalisation statistics; retrain it with `vibe-rt train vae`")
    norm_mean, norm_std = ck.norm_mean, ck.norm_std
    if ck.montage.ch_names != train.montage.ch_names or ck.montage.n_times != train.montage.n_times:
        raise CheckpointError(f"{vae_path} was trained on montage {ck.montage.name!r} ({ck.montage.n_channels} "
                              f"channels, {ck.montage.n_times} samples), the data in {data_dir} is "
                              f"{train.montage.name!r}; train stage 1 on this dataset first")
    enc = build_encoder(encoder, seed=cfg.seed)
    name, pretrained = parse_encoder_spec(encoder)
    if not ctx.is_main:
        ctx.barrier()  # rank 0 fills the feature cache first; the others then read it
    tokens, _ = image_features(enc, train.image_paths, cache_dir=cache_dir or default_cache_dir(data_dir),
                               name=name, pretrained=pretrained, progress=cfg.progress and ctx.is_main)
    if ctx.is_main:
        ctx.barrier()
    x = _normalised(np.asarray(train.epochs), norm_mean, norm_std)

    def save(res: Stage2Result, interrupted: bool) -> Any:
        model = assemble_vibe(enc, res.mapper, ck.vae, train.montage, norm_mean, norm_std)
        extra = {"stage2": asdict(cfg), "encoder": encoder, "history": res.history, "unit": train.unit}
        if interrupted:
            extra["interrupted"] = interruption_note("stage 2", res.metrics, out)
        if ctx.is_main:
            save_checkpoint(model, out, metrics={"stage1": ck.metrics, "stage2_val": res.metrics}, extra=extra)
        return model

    try:
        res = train_mapper(tokens, x, ck.vae, cfg, out_state=state_path(out), resume=resume, ctx=ctx)
    except TrainingInterrupted as stop:
        save(stop.result, interrupted=True)
        raise
    return save(res, interrupted=False), res


def evaluate_checkpoint(
    model_path: str | Path | Any,
    data_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    n_splits: int = 100,
    seed: int = 0,
    baseline: bool = True,
    ridge_kind: str = "tokens",
    cache_dir: str | Path | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """``vibe-rt eval``: score a ViBE checkpoint on ``<data_dir>/test`` (and a ridge baseline fitted on
    ``<data_dir>/train`` with the model's own image features), write the report and plots.

    Returns
    -------
    dict
        The report (see :func:`~vibe_rt.training.evaluate.build_report`).
    """
    from ..checkpoint import load_checkpoint

    setup_torch(threads)
    t0 = time.perf_counter()
    model = load_checkpoint(model_path) if isinstance(model_path, (str, Path)) else model_path
    model.eval()
    test = load_split(data_dir, "test")
    if tuple(model.montage.ch_names) != tuple(test.montage.ch_names):
        raise CheckpointError(f"the model's montage {model.montage.name!r} does not match the test data's "
                              f"{test.montage.name!r}; evaluate on data recorded with the model's channels")
    mean = model.norm_mean.numpy().astype(np.float32)
    std = model.norm_std.numpy().astype(np.float32)
    cache = cache_dir or default_cache_dir(data_dir)
    enc_cfg = model.cfg.encoder
    te_tok, te_pool = image_features(model.encoder, test.image_paths, cache_dir=cache, name=enc_cfg.name,
                                     pretrained=enc_cfg.pretrained)
    pred = predict_epochs(model.qformer, model.vae, te_tok, mean, std)
    scores = {"vibe": evaluate_predictions(pred, test, std=std, n_splits=n_splits, seed=seed)}
    extra: dict[str, Any] = {}
    if baseline:
        try:
            train = load_split(data_dir, "train")
        except Exception as err:  # noqa: BLE001 - the baseline is optional
            logger.warning("no ridge baseline: %s", err)
        else:
            tr_tok, tr_pool = image_features(model.encoder, train.image_paths, cache_dir=cache,
                                             name=enc_cfg.name, pretrained=enc_cfg.pretrained)
            ridge, pred_r = fit_ridge(tr_tok, tr_pool, train, te_tok, te_pool, mean, std, kind=ridge_kind)
            scores[f"ridge_{ridge_kind}"] = evaluate_predictions(pred_r, test, std=std, n_splits=n_splits,
                                                                 seed=seed)
            extra["ridge"] = {"features": ridge_kind, "alpha": float(np.mean(ridge.alpha_))}
    recon = evaluate_reconstruction(model.vae, test, mean, std)
    extra["seconds"] = round(time.perf_counter() - t0, 2)
    report = build_report(scores, test=test, reconstruction=recon, extra=extra)
    if out_dir is not None:
        write_report(report, out_dir, scores=scores)
    logger.info("encoding r %.3f (noise ceiling %.3f-%.3f), reconstruction r %.3f", report["headline_r"],
                report["noise_ceiling"]["lower"], report["noise_ceiling"]["upper"],
                report["stage1"]["reconstruction_r"])
    return report


def fit_ridge(tr_tok: np.ndarray, tr_pool: np.ndarray | None, train: Any, te_tok: np.ndarray,
              te_pool: np.ndarray | None,
              mean: np.ndarray, std: np.ndarray, *, kind: str = "tokens", per_target: bool = False,
              pca_components: int | None = None) -> tuple[RidgeEncoder | PCARidgeEncoder, np.ndarray]:
    """Fit the ridge baseline on repetition-averaged, normalised training epochs; predict the test images
    (de-normalised, shape (N_test, C, T)). ``pca_components`` fits the Gifford-style ridge on that many PCA
    components of the features instead (:class:`~vibe_rt.training.baselines.PCARidgeEncoder`)."""
    y = (train.average() - mean[None, :, None]) / std[None, :, None]
    ridge: RidgeEncoder | PCARidgeEncoder = (
        RidgeEncoder(per_target=per_target) if pca_components is None
        else PCARidgeEncoder(pca_components, per_target=per_target))
    ridge.fit(ridge_features(tr_tok, tr_pool, kind), y)
    pred = ridge.predict(ridge_features(te_tok, te_pool, kind)).astype(np.float32)
    return ridge, pred * std[None, :, None] + mean[None, :, None]
