"""Checkpoints: weights in ``<stem>.safetensors``, everything else in ``<stem>.json``. No pickle.

The JSON document holds the format name and version, the kind (``"vibe"``: the full model, ``"tsc-vae"``: a
stage-1 VAE), the model configs, the montage, the normalisation statistics, the package versions, the sha256 of
the weights file and optional metrics. Loading checks each of these and raises
:class:`~vibe_rt.errors.CheckpointError` naming what does not match.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from ._logs import logger
from .errors import CheckpointError, ConfigError
from .models.vae import TSCVAE, TSCVAEConfig
from .models.vibe import ViBE, ViBEConfig
from .montage import Montage

FORMAT = "vibe-rt-checkpoint"
FORMAT_VERSION = 1
KIND_VIBE = "vibe"
KIND_VAE = "tsc-vae"
#: How to rebuild the embedded default model (shown when it is missing).
REGENERATE_COMMAND = "vibe-rt train default"
_MAX_LISTED = 8


@dataclass
class VAECheckpoint:
    """A loaded stage-1 checkpoint.

    Attributes
    ----------
    vae : TSCVAE
        The model, in eval mode.
    montage : Montage
    norm_mean, norm_std : ndarray, shape (C,) | None
        Normalisation of the training data (SI units), if it was saved.
    metrics, extra : dict
        As given to :func:`save_vae_checkpoint`.
    """

    vae: TSCVAE
    montage: Montage
    norm_mean: np.ndarray | None
    norm_std: np.ndarray | None
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, document)`` paths for ``<stem>``, ``<stem>.safetensors`` or ``<stem>.json``."""
    path = Path(path).expanduser()
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.parent / f"{stem.name}.safetensors", stem.parent / f"{stem.name}.json"


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _weights_bytes(module: nn.Module) -> bytes:
    from safetensors.torch import save

    return save(_tensors(module))


def _versions() -> dict[str, str]:
    import safetensors

    versions = {"vibe_rt": __version__, "torch": torch.__version__, "safetensors": safetensors.__version__,
                "python": platform.python_version()}
    try:
        import open_clip

        versions["open_clip"] = open_clip.__version__
    except ImportError:  # a stage-1 checkpoint does not need open_clip
        pass
    return versions


def _normalisation(mean: Any, std: Any) -> dict[str, list[float]] | None:
    if mean is None or std is None:
        return None
    return {"mean": np.asarray(mean, dtype=float).tolist(), "std": np.asarray(std, dtype=float).tolist()}


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _save(
    kind: str,
    module: nn.Module,
    path: str | Path,
    *,
    config: dict[str, Any],
    montage: Montage,
    normalisation: dict[str, list[float]] | None,
    metrics: dict[str, Any] | None,
    extra: dict[str, Any] | None,
) -> Path:
    weights_path, doc_path = checkpoint_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    data = _weights_bytes(module)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "montage": montage.to_dict(),
        "normalisation": normalisation,
        "weights": {"file": weights_path.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)},
        "versions": _versions(),
        "metrics": metrics or {},
        "extra": extra or {},
    }
    try:
        text = json.dumps(doc, indent=2, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"metrics/extra must be JSON-serialisable finite values: {err}") from err
    _write_atomic(weights_path, data)
    _write_atomic(doc_path, text.encode())
    logger.info("saved %s checkpoint %s (%.1f MB)", kind, weights_path, len(data) / 1e6)
    return weights_path


def save_checkpoint(
    model: ViBE,
    path: str | Path,
    *,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save a :class:`ViBE` as ``<stem>.safetensors`` + ``<stem>.json``.

    Parameters
    ----------
    model : ViBE
        The model (its normalisation buffers are saved with the weights and in the JSON document).
    path : str | Path
        ``<stem>``, ``<stem>.safetensors`` or ``<stem>.json``; parent folders are created.
    metrics, extra : dict | None
        JSON-serialisable evaluation results and free-form information stored in the document.

    Returns
    -------
    Path
        The weights file.
    """
    config = model.cfg.to_dict()
    del config["montage"]  # stored once, at the top level
    return _save(KIND_VIBE, model, path, config=config, montage=model.montage,
                 normalisation=_normalisation(model.norm_mean.cpu().numpy(), model.norm_std.cpu().numpy()),
                 metrics=metrics, extra=extra)


def save_vae_checkpoint(
    vae: TSCVAE,
    path: str | Path,
    *,
    montage: Montage,
    normalisation: tuple[np.ndarray, np.ndarray] | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save a stage-1 :class:`TSCVAE` with its montage and the normalisation ``(mean, std)`` of its data."""
    _check_vae_montage(vae.cfg, montage, where="save_vae_checkpoint")
    norm = _normalisation(*normalisation) if normalisation is not None else None
    return _save(KIND_VAE, vae, path, config=vae.cfg.to_dict(), montage=montage, normalisation=norm,
                 metrics=metrics, extra=extra)


def _check_vae_montage(cfg: TSCVAEConfig, montage: Montage, *, where: str) -> None:
    if cfg.n_channels != montage.n_channels:
        raise CheckpointError(f"{where}: montage {montage.name!r} has {montage.n_channels} channels but the "
                              f"TSC-VAE config expects {cfg.n_channels}")
    if cfg.n_times != montage.n_times:
        raise CheckpointError(f"{where}: montage {montage.name!r} has {montage.n_times} samples per epoch but "
                              f"the TSC-VAE config expects {cfg.n_times}")


def _read_document(path: str | Path) -> tuple[dict[str, Any], bytes, Path]:
    """Read and check the JSON document and the weights bytes (existence, format, version, sha256)."""
    weights_path, doc_path = checkpoint_paths(path)
    if not doc_path.is_file():
        raise CheckpointError(f"checkpoint document {doc_path} not found; a vibe-rt checkpoint is a pair "
                              f"{doc_path.stem}.json + {doc_path.stem}.safetensors in one folder")
    try:
        doc = json.loads(doc_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint document {doc_path} is not valid JSON ({err}); re-save it") from err
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise CheckpointError(f"{doc_path} is not a vibe-rt checkpoint document (format {found!r}, "
                              f"expected {FORMAT!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{doc_path}: unknown checkpoint format version {doc.get('format_version')!r}; "
                              f"this vibe-rt ({__version__}) reads version {FORMAT_VERSION}. Use the vibe-rt "
                              "version that wrote it, or re-save the checkpoint with this one")
    missing = [k for k in ("kind", "config", "montage", "weights") if k not in doc]
    if missing:
        raise CheckpointError(f"{doc_path} lacks the keys {missing}; re-save the checkpoint")
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint weights {weights_path} not found (document {doc_path} exists); copy "
                              "both files together")
    data = weights_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    expected = doc["weights"].get("sha256") if isinstance(doc["weights"], dict) else None
    if digest != expected:
        raise CheckpointError(f"checkpoint weights {weights_path} do not match the sha256 recorded in "
                              f"{doc_path.name} (expected {expected}, got {digest}): the file was modified, "
                              "tampered with or truncated; restore or re-save the checkpoint")
    return doc, data, weights_path


def _parse(doc: dict[str, Any], kind: str, path: Path) -> tuple[Montage, Any]:
    """The montage and the model config (ViBEConfig or TSCVAEConfig) of a checked document."""
    if doc["kind"] != kind:
        loader = "load_vae_checkpoint" if doc["kind"] == KIND_VAE else "load_checkpoint"
        raise CheckpointError(f"{path} is a {doc['kind']!r} checkpoint, not {kind!r}; load it with {loader}")
    try:
        montage = Montage.from_dict(doc["montage"])
        vae_cfg = TSCVAEConfig.from_dict(doc["config"] if kind == KIND_VAE else doc["config"]["vae"])
        _check_vae_montage(vae_cfg, montage, where=str(path))
        cfg = vae_cfg if kind == KIND_VAE else ViBEConfig.from_dict({**doc["config"], "montage": doc["montage"]})
    except (ConfigError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: invalid configuration in the checkpoint document: {err}") from err
    return montage, cfg


def _load_weights(module: nn.Module, data: bytes, path: Path) -> None:
    """Load safetensors bytes into ``module``, naming missing, unexpected and mis-shaped tensors."""
    from safetensors.torch import load

    try:
        tensors = load(data)
    except Exception as err:  # safetensors raises SafetensorError / ValueError on malformed bytes
        raise CheckpointError(f"checkpoint weights {path} are corrupt (not a readable safetensors file: {err}); "
                              "restore or re-save the checkpoint") from err
    expected = module.state_dict()
    problems = []
    for label, names in (("missing tensors", sorted(set(expected) - set(tensors))),
                         ("unexpected tensors", sorted(set(tensors) - set(expected)))):
        if names:
            problems.append(f"{label} ({len(names)}): {', '.join(names[:_MAX_LISTED])}"
                            + (" ..." if len(names) > _MAX_LISTED else ""))
    shapes = [f"{k} {tuple(tensors[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items()
              if k in tensors and tensors[k].shape != v.shape]
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {'; '.join(shapes[:_MAX_LISTED])}")
    if problems:
        raise CheckpointError(f"checkpoint weights {path} do not fit the model described by its document: "
                              + "; ".join(problems) + ". The files were written by another model or version")
    module.load_state_dict(tensors, strict=True)
    module.eval()


def load_checkpoint(path: str | Path) -> ViBE:
    """Load a :class:`ViBE` saved by :func:`save_checkpoint` (eval mode, on the CPU).

    Parameters
    ----------
    path : str | Path
        ``<stem>``, ``<stem>.safetensors`` or ``<stem>.json``.

    Raises
    ------
    CheckpointError
        Missing file, invalid JSON, unknown format version, sha256 mismatch (tampered or truncated weights),
        corrupt safetensors, montage/config mismatch, or missing/unexpected/mis-shaped tensors.
    """
    doc, data, weights_path = _read_document(path)
    _, cfg = _parse(doc, KIND_VIBE, weights_path)
    model = ViBE(cfg, load_pretrained=False)  # every weight, the encoder's included, comes from the file
    _load_weights(model, data, weights_path)
    norm = doc.get("normalisation")
    if norm is not None and not (np.allclose(norm["mean"], model.norm_mean.numpy(), rtol=1e-6, atol=0)
                                 and np.allclose(norm["std"], model.norm_std.numpy(), rtol=1e-6, atol=0)):
        raise CheckpointError(f"{weights_path}: the normalisation in {Path(weights_path).stem}.json differs from "
                              "the one in the weights; the document was edited, re-save the checkpoint")
    return model


def load_vae_checkpoint(path: str | Path) -> VAECheckpoint:
    """Load a stage-1 checkpoint saved by :func:`save_vae_checkpoint` (same checks as :func:`load_checkpoint`)."""
    doc, data, weights_path = _read_document(path)
    montage, cfg = _parse(doc, KIND_VAE, weights_path)
    vae = TSCVAE(cfg)
    _load_weights(vae, data, weights_path)
    norm = doc.get("normalisation") or {}
    mean = np.asarray(norm["mean"], dtype=np.float32) if norm else None
    std = np.asarray(norm["std"], dtype=np.float32) if norm else None
    return VAECheckpoint(vae, montage, mean, std, doc.get("metrics", {}), doc.get("extra", {}))


def _hash(kind: str, config: dict[str, Any], montage: dict[str, Any], weights_sha256: str) -> str:
    text = json.dumps({"kind": kind, "config": config, "montage": montage, "weights": weights_sha256},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_hash(model_or_path: ViBE | str | Path) -> str:
    """A short (16 hex digits) sha256 of a model's weights and configuration.

    The same for a :class:`ViBE` in memory and for its saved checkpoint; used to key engine caches.
    """
    if isinstance(model_or_path, ViBE):
        config = model_or_path.cfg.to_dict()
        montage = config.pop("montage")
        weights = hashlib.sha256(_weights_bytes(model_or_path)).hexdigest()
        return _hash(KIND_VIBE, config, montage, weights)
    doc, _, _ = _read_document(model_or_path)
    return _hash(doc["kind"], doc["config"], doc["montage"], doc["weights"]["sha256"])


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The checked JSON document of a checkpoint (config, montage, normalisation, versions, metrics)."""
    return _read_document(path)[0]


def default_checkpoint_path() -> Path:
    """The embedded default model's weights, ``vibe_rt/assets/vibe-default.safetensors``."""
    return Path(__file__).parent / "assets" / "vibe-default.safetensors"


def require_default_checkpoint() -> Path:
    """The embedded default model's weights path; a missing file raises :class:`CheckpointError` with the fix."""
    weights, doc = checkpoint_paths(default_checkpoint_path())
    if not (weights.is_file() and doc.is_file()):
        raise CheckpointError(f"the embedded default model ({weights} + {doc.name}) is missing from this "
                              f"installation; regenerate it with `{REGENERATE_COMMAND}` or pass a checkpoint of "
                              "your own with --model PATH")
    return weights


def load_default_model() -> ViBE:
    """Load the embedded default model (see :func:`require_default_checkpoint`)."""
    return load_checkpoint(require_default_checkpoint())


def load_model(path: str | Path | None = None) -> ViBE:
    """The checkpoint at ``path``, or the embedded default model when ``path`` is None (a ``--model`` option)."""
    return load_checkpoint(path) if path else load_default_model()
