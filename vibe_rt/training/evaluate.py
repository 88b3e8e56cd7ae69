"""Evaluation of trained models on a held-out test split, with the THINGS-EEG2 encoding protocol.

Headline number: ``models.<name>.r``: the mean over channels x time of the Pearson r, across test images,
between predicted epochs and measured epochs averaged over a random half of the repetitions (``n_splits``
seeded random splits, 100 by default, averaged; the report's ``headline`` text states the count); see
:mod:`vibe_rt.training.metrics`. Also reported: r per image over channels x time, the split-half noise ceiling
(lower/upper) on the same splits, and for stage 1 the reconstruction r of the repetition-averaged test epochs.
Plots: r per channel and per time point with the noise ceiling (PNG).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .._logs import logger
from ..errors import DataError
from .metrics import EncodingScores, encoding_scores, reconstruction_scores

if TYPE_CHECKING:
    from .stage2 import LatentModel

__all__ = [
    "headline",
    "reconstruct",
    "predict_epochs",
    "evaluate_reconstruction",
    "evaluate_predictions",
    "build_report",
    "write_report",
    "load_split",
]

def headline(model: str, n_splits: int) -> str:
    """What the headline number ``models.<model>.r`` of a report is, with the number of splits it averages."""
    return (f"models.{model}.r: mean over channels x time of the Pearson r across test images between predicted "
            "epochs and measured epochs averaged over a random half of the repetitions "
            f"({n_splits} seeded split{'s' if n_splits != 1 else ''}, averaged)")


def load_split(data_dir: str | Path, split: str) -> Any:
    """The ``split`` ("train"/"test") :class:`EpochsDataset` of a dataset folder.

    Accepts the simulator/loader layout (``DIR/train``, ``DIR/test``) or a single-split folder whose
    ``dataset.json`` has that split.
    """
    from ..data.dataset import EpochsDataset

    data_dir = Path(data_dir)
    if (data_dir / split / "dataset.json").is_file():
        return EpochsDataset.load(data_dir / split)
    if (data_dir / "dataset.json").is_file():
        ds = EpochsDataset.load(data_dir)
        if ds.split == split:
            return ds
    raise DataError(f"{data_dir} has no {split!r} split: expected {data_dir / split / 'dataset.json'} "
                    "(create a dataset with `vibe-rt data simulate` or a THINGS loader)")


@torch.no_grad()
def reconstruct(vae: nn.Module, epochs: np.ndarray, mean: np.ndarray, std: np.ndarray, batch: int = 256) -> np.ndarray:
    """Stage-1 reconstructions (posterior mean, no sampling) of epochs ``(N, C, T)`` in their own unit."""
    vae.eval()
    m, s = mean[None, :, None].astype(np.float32), std[None, :, None].astype(np.float32)
    x = torch.from_numpy(((np.asarray(epochs, np.float32) - m) / s).astype(np.float32))
    out = torch.cat([vae(x[i : i + batch])[0] for i in range(0, len(x), batch)]).numpy()
    return out * s + m


@torch.no_grad()
def predict_epochs(
    mapper: nn.Module, vae: LatentModel, tokens: np.ndarray, mean: np.ndarray, std: np.ndarray, batch: int = 256
) -> np.ndarray:
    """Image tokens ``(N, n_tokens, D)`` -> mapper -> VAE decoder -> epochs ``(N, C, T)`` (de-normalised)."""
    from .stage2 import decode_latents, predict_latents

    out = decode_latents(vae, predict_latents(mapper, tokens, batch), batch)
    return out * std[None, :, None] + mean[None, :, None]


def evaluate_reconstruction(vae: nn.Module, test: Any, mean: np.ndarray, std: np.ndarray) -> dict[str, Any]:
    """Stage-1 reconstruction r on the repetition-averaged test epochs.

    Returns
    -------
    dict
        ``r`` (headline of stage 1: mean over channels x time of r across test images between the
        reconstruction and its input), ``r_per_epoch`` (r over channels x time per epoch, averaged),
        ``r_map`` (C, T) ndarray.
    """
    avg = test.average()
    return reconstruction_scores(reconstruct(vae, avg, mean, std), avg, scale=std)


def evaluate_predictions(
    pred: np.ndarray, test: Any, *, std: np.ndarray | None = None, n_splits: int = 100, seed: int = 0
) -> EncodingScores:
    """Encoding scores of predictions ``(N, C, T)`` for the test images (see :func:`encoding_scores`)."""
    return encoding_scores(pred, np.asarray(test.epochs), n_splits=n_splits, seed=seed, scale=std)


def _summary_with_maps(scores: EncodingScores) -> dict[str, Any]:
    return {
        **scores.summary(),
        "r_per_channel": scores.r_map.mean(1).round(5).tolist(),
        "r_per_time": scores.r_map.mean(0).round(5).tolist(),
    }


def build_report(
    scores: Mapping[str, EncodingScores],
    *,
    test: Any,
    reconstruction: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    headline_model: str = "vibe",
) -> dict[str, Any]:
    """A JSON-ready report of several models scored on the same test split and splits.

    Parameters
    ----------
    scores : mapping name -> EncodingScores
        Must contain ``headline_model``; all computed with the same ``n_splits`` and seed.
    test : EpochsDataset
        The test split (shape and montage are recorded).
    reconstruction : dict | None
        Output of :func:`evaluate_reconstruction`.
    extra : dict | None
        Anything else to record (training settings, timings).
    """
    first = scores[headline_model]
    montage = test.montage
    rep: dict[str, Any] = {
        "headline": headline(headline_model, first.n_splits),
        "headline_r": first.r,
        "dataset": {"n_images": test.n_images, "n_reps": test.n_reps, "montage": montage.name,
                    "n_channels": montage.n_channels, "n_times": montage.n_times, "unit": test.unit},
        "protocol": {"n_splits": first.n_splits, "ceiling_lower": "r(half A, half B)",
                     "ceiling_upper": "r(all repetitions, half B)", "prediction_vs": "half A",
                     "per_image": "r over channels x time per image (channels scaled by the training std), "
                                  "mean over images and splits"},
        "noise_ceiling": {
            "lower": float(first.ceiling_lower.mean()),
            "upper": float(first.ceiling_upper.mean()),
            "lower_per_image": float(first.ceiling_lower_per_image.mean()),
            "upper_per_image": float(first.ceiling_upper_per_image.mean()),
            "lower_per_channel": first.ceiling_lower.mean(1).round(5).tolist(),
            "upper_per_channel": first.ceiling_upper.mean(1).round(5).tolist(),
            "lower_per_time": first.ceiling_lower.mean(0).round(5).tolist(),
            "upper_per_time": first.ceiling_upper.mean(0).round(5).tolist(),
        },
        "models": {name: _summary_with_maps(s) for name, s in scores.items()},
        "ch_names": list(montage.ch_names),
        "times": [round(float(t), 5) for t in montage.times],
    }
    if reconstruction is not None:
        rep["stage1"] = {"reconstruction_r": reconstruction["r"], "reconstruction_r_per_epoch":
                         reconstruction["r_per_epoch"], "on": "repetition-averaged test epochs"}
    if extra:
        rep.update(extra)
    return rep


def write_report(report: dict[str, Any], out_dir: str | Path, *, scores: Mapping[str, EncodingScores] | None = None
                 ) -> dict[str, Path]:
    """Write ``report.json`` and the PNG plots (per channel, per time, channel x time map) into ``out_dir``.

    Returns
    -------
    dict
        Name -> written path.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"report": out_dir / "report.json"}
    paths["report"].write_text(json.dumps(report, indent=1))
    nc = report["noise_ceiling"]
    names = list(report["models"])
    ch = report["ch_names"]
    times = np.asarray(report["times"])

    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(ch) + 2), 4))
    width = 0.8 / max(1, len(names))
    x = np.arange(len(ch))
    for i, name in enumerate(names):
        ax.bar(x + (i - (len(names) - 1) / 2) * width, report["models"][name]["r_per_channel"], width, label=name)
    ax.plot(x, nc["upper_per_channel"], "k_", markersize=14, label="noise ceiling (upper)")
    ax.plot(x, nc["lower_per_channel"], "_", color="grey", markersize=14, label="noise ceiling (lower)")
    if len(ch) <= 64:
        ax.set_xticks(x, ch, rotation=90, fontsize=7)
    ax.set_ylabel("Pearson r (mean over time)")
    ax.set_title("Encoding r per channel")
    ax.legend(fontsize=7)
    paths["per_channel"] = _save_figure(fig, out_dir / "r_per_channel.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(times, nc["lower_per_time"], nc["upper_per_time"], color="0.85", label="noise ceiling")
    for name in names:
        ax.plot(times, report["models"][name]["r_per_time"], label=name)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Pearson r (mean over channels)")
    ax.set_title("Encoding r per time point")
    ax.legend(fontsize=7)
    paths["per_time"] = _save_figure(fig, out_dir / "r_per_time.png")

    if scores is not None and names:
        head = scores[names[0]].r_map
        fig, ax = plt.subplots(figsize=(7, 0.2 * len(ch) + 2))
        im = ax.imshow(head, aspect="auto", cmap="viridis", extent=(times[0], times[-1], len(ch) - 0.5, -0.5))
        if len(ch) <= 64:
            ax.set_yticks(np.arange(len(ch)), ch, fontsize=6)
        ax.set_xlabel("time (s)")
        ax.set_title(f"Encoding r ({names[0]})")
        fig.colorbar(im, ax=ax)
        paths["map"] = _save_figure(fig, out_dir / "r_map.png")
    logger.info("evaluation report written to %s", out_dir)
    return paths


def _save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write as PNG and close a matplotlib figure; returns ``path``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
