"""Checkpoints: weights in ``<stem>.safetensors``, everything else in ``<stem>.json``. No pickle.

The JSON document holds the format name and version, the kind (``"vibe"``: the full model, ``"tsc-vae"``: a
stage-1 VAE), the model configs, the montage, the normalisation statistics, the package versions, the sha256 of
the weights file and optional metrics. Every reader goes through one check of the whole document (each field's
type and value) and of the weights (sha256, tensor names and shapes, finite values), and raises one
:class:`~vibe_rt.errors.CheckpointError` naming what does not match and the fix. :func:`load_model` returns a
:class:`LoadedModel`: the model with its document and its hash, so that nothing computes them again.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from . import __version__
from ._logs import logger
from .errors import CheckpointError, ConfigError
from .models._config import check_fields, config_from_dict
from .models.image_encoder import ImageEncoderConfig
from .models.qformer import QFormerConfig
from .models.vae import TSCVAE, TSCVAEConfig
from .models.vibe import ViBE, ViBEConfig
from .montage import Montage

FORMAT = "vibe-rt-checkpoint"
FORMAT_VERSION = 2  # 2: TSConvPlus kernels over scalp neighbourhoods (1: over the channel order)
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
    tensors = _tensors(module)
    bad = _non_finite(tensors)
    if bad:
        raise CheckpointError(f"refusing to save {weights_path}: {len(bad)} tensors hold NaN or infinite values "
                              f"({_listed(bad)}); the training diverged: lower the learning rate or resume from "
                              "an earlier checkpoint")
    from safetensors.torch import save

    data = save(tensors)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
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
        ``extra["unit"]`` is the unit the model emits (its training data's: ``"V"``, ``"a.u."`` ...); without
        one, the montage's SI unit, which a model whose normalisation was set from SI data emits.

    Returns
    -------
    Path
        The weights file.

    Raises
    ------
    CheckpointError
        When a tensor holds NaN or infinite values (a diverged training): nothing is written.
    """
    config = model.cfg.to_dict()
    del config["montage"]  # stored once, at the top level
    return _save(KIND_VIBE, model, path, config=config, montage=model.montage,
                 normalisation=_normalisation(model.get_buffer("norm_mean").cpu().numpy(),
                                             model.get_buffer("norm_std").cpu().numpy()),
                 metrics=metrics, extra={"unit": model.montage.unit, **(extra or {})})


def save_vae_checkpoint(
    vae: TSCVAE,
    path: str | Path,
    *,
    montage: Montage,
    normalisation: tuple[np.ndarray, np.ndarray] | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save a stage-1 :class:`TSCVAE` with its montage and the normalisation ``(mean, std)`` of its data (NaN or
    infinite weights are refused, as by :func:`save_checkpoint`)."""
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


_DOCUMENT_FIX = ("the document was edited or written by another program: restore the original or re-save the "
                 "checkpoint")


def _invalid(doc_path: Path, detail: str) -> CheckpointError:
    """A one-line CheckpointError for a malformed document: the field, its value and the fix."""
    return CheckpointError(f"checkpoint document {doc_path}: {detail}; {_DOCUMENT_FIX}")


_Config = TypeVar("_Config", ViBEConfig, TSCVAEConfig)


@dataclass(frozen=True)
class _Checked:
    """A checkpoint whose document passed :func:`_check_document` and whose weights match its sha256."""

    document: dict[str, Any]
    montage: Montage
    config: ViBEConfig | TSCVAEConfig
    weights: bytes
    weights_path: Path


def _check_weights_record(record: Any, doc_path: Path) -> None:
    if not isinstance(record, dict):
        raise _invalid(doc_path, f"weights is {record!r}, expected an object with file, sha256 and bytes")
    for key, ok, expected in (
            ("file", lambda v: isinstance(v, str) and v != "", "a file name"),
            ("sha256", lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None,
             "64 lower-case hex digits"),
            ("bytes", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
             "a non-negative integer")):
        if key not in record or not ok(record[key]):
            raise _invalid(doc_path, f"weights.{key} is {record.get(key)!r}, expected {expected}")


def _check_normalisation(norm: Any, n_channels: int, doc_path: Path) -> None:
    """None, or ``{"mean": [...], "std": [...]}``: ``n_channels`` finite numbers each, every std > 0."""
    if norm is None:
        return
    if not isinstance(norm, dict) or set(norm) != {"mean", "std"}:
        raise _invalid(doc_path, f"normalisation is {norm!r}, expected null or an object with the lists mean "
                                 "and std")
    for key in ("mean", "std"):
        values = norm[key]
        ok = isinstance(values, list) and len(values) == n_channels and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
        if not ok:
            shown = values if not isinstance(values, list) or len(values) <= 4 else f"{values[:4]}... " \
                f"({len(values)} values)"
            raise _invalid(doc_path, f"normalisation.{key} is {shown!r}, expected a list of {n_channels} finite "
                                     "numbers (one per channel of the montage)")
    bad = [i for i, v in enumerate(norm["std"]) if not v > 0]
    if bad:
        raise _invalid(doc_path, f"normalisation.std[{bad[0]}] is {norm['std'][bad[0]]!r}, expected a standard "
                                 "deviation > 0")


def _check_config(doc: dict[str, Any], montage: Montage, doc_path: Path) -> ViBEConfig | TSCVAEConfig:
    """The typed model config of a document (every field's JSON type checked, then the config's own rules)."""
    config = doc["config"]
    if doc["kind"] == KIND_VAE:
        vae_cfg = config_from_dict(TSCVAEConfig, config, "config")
        _check_vae_montage(vae_cfg, montage, where=str(doc_path))
        return vae_cfg
    check_fields(ViBEConfig, {**config, "montage": doc["montage"]} if isinstance(config, dict) else config,
                 "config")
    encoder = config_from_dict(ImageEncoderConfig, config["encoder"], "config.encoder")
    qformer = config_from_dict(QFormerConfig, config["qformer"], "config.qformer")
    vae_cfg = config_from_dict(TSCVAEConfig, config["vae"], "config.vae")
    _check_vae_montage(vae_cfg, montage, where=str(doc_path))
    return ViBEConfig(doc["montage"], encoder, qformer, vae_cfg)


def _check_document(doc: dict[str, Any], doc_path: Path) -> tuple[Montage, ViBEConfig | TSCVAEConfig]:
    """Check every field of a document with the right format and version: the kind, the weights record, the
    montage, the model config (types of every field, then its own rules and the montage's shape), the
    normalisation and the free-form objects. Returns the montage and the typed config."""
    missing = [k for k in ("kind", "config", "montage", "weights") if k not in doc]
    if missing:
        raise CheckpointError(f"{doc_path} lacks the keys {missing}; re-save the checkpoint")
    if doc["kind"] not in (KIND_VIBE, KIND_VAE):
        raise _invalid(doc_path, f"kind is {doc['kind']!r}, expected {KIND_VIBE!r} or {KIND_VAE!r}")
    _check_weights_record(doc["weights"], doc_path)
    for key in ("metrics", "extra", "versions"):
        if not isinstance(doc.get(key, {}), dict):
            raise _invalid(doc_path, f"{key} is {doc[key]!r}, expected an object")
    try:
        check_fields(Montage, doc["montage"], "montage")
        montage = Montage.from_dict(doc["montage"])
        config = _check_config(doc, montage, doc_path)
    except ConfigError as err:
        raise _invalid(doc_path, str(err)) from err
    _check_normalisation(doc.get("normalisation"), montage.n_channels, doc_path)
    return montage, config


def _read_document(path: str | Path) -> _Checked:
    """Read a checkpoint once and check all of it: the document (existence, JSON, format, version, then every
    field, see :func:`_check_document`) and the weights bytes (existence, sha256). Every reader goes through
    here, so a malformed document is one :class:`CheckpointError` naming the field, never a traceback."""
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
    if doc.get("format_version") == 1:
        raise CheckpointError(f"{doc_path}: a version-1 checkpoint, whose spatial kernels ran over the order of the "
                              "channel list; this vibe-rt convolves over scalp neighbourhoods: retrain it "
                              "(`vibe-rt train vae` / `qformer`, or `vibe-rt train default`)")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{doc_path}: unknown checkpoint format version {doc.get('format_version')!r}; "
                              f"this vibe-rt ({__version__}) reads version {FORMAT_VERSION}. Use the vibe-rt "
                              "version that wrote it, or re-save the checkpoint with this one")
    montage, config = _check_document(doc, doc_path)
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint weights {weights_path} not found (document {doc_path} exists); copy "
                              "both files together")
    data = weights_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    expected = doc["weights"]["sha256"]
    if digest != expected:
        raise CheckpointError(f"checkpoint weights {weights_path} do not match the sha256 recorded in "
                              f"{doc_path.name} (expected {expected}, got {digest}): the file was modified, "
                              "tampered with or truncated; restore or re-save the checkpoint")
    return _Checked(doc, montage, config, data, weights_path)


def _require_kind(checked: _Checked, kind: str, config_type: type[_Config]) -> _Config:
    """The checkpoint's config, after checking that it is a ``kind`` checkpoint."""
    found = checked.document["kind"]
    if found != kind:
        loader = "load_vae_checkpoint" if found == KIND_VAE else "load_checkpoint"
        raise CheckpointError(f"{checked.weights_path} is a {found!r} checkpoint, not {kind!r}; load it with "
                              f"{loader}")
    assert isinstance(checked.config, config_type)  # _check_document builds the config of the document's kind
    return checked.config


def _non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold NaN or infinite values."""
    return sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))


def _listed(names: list[str]) -> str:
    return ", ".join(names[:_MAX_LISTED]) + (" ..." if len(names) > _MAX_LISTED else "")


def _load_weights(module: nn.Module, data: bytes, path: Path) -> None:
    """Load safetensors bytes into ``module``, naming missing, unexpected, mis-shaped and non-finite tensors."""
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
            problems.append(f"{label} ({len(names)}): {_listed(names)}")
    shapes = [f"{k} {tuple(tensors[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items()
              if k in tensors and tensors[k].shape != v.shape]
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {'; '.join(shapes[:_MAX_LISTED])}")
    if problems:
        raise CheckpointError(f"checkpoint weights {path} do not fit the model described by its document: "
                              + "; ".join(problems) + ". The files were written by another model or version")
    bad = _non_finite(tensors)
    if bad:
        raise CheckpointError(f"checkpoint weights {path} hold NaN or infinite values in {len(bad)} tensors "
                              f"({_listed(bad)}): the checkpoint is corrupt or its training diverged; restore a "
                              "good checkpoint or retrain (e.g. with a lower learning rate)")
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
        Missing file, invalid JSON, unknown format version, a document field of the wrong type or value, sha256
        mismatch (tampered or truncated weights), corrupt safetensors, montage/config mismatch,
        missing/unexpected/mis-shaped tensors, or NaN/infinite weights.
    """
    return _load_vibe(_read_document(path))


def _load_vibe(checked: _Checked) -> ViBE:
    config = _require_kind(checked, KIND_VIBE, ViBEConfig)
    model = ViBE(config, load_pretrained=False)  # every weight, the encoder's included, comes from the file
    _load_weights(model, checked.weights, checked.weights_path)
    norm = checked.document.get("normalisation")
    if norm is not None and not (np.allclose(norm["mean"], model.get_buffer("norm_mean").numpy(), rtol=1e-6, atol=0)
                                 and np.allclose(norm["std"], model.get_buffer("norm_std").numpy(), rtol=1e-6,
                                                 atol=0)):
        raise CheckpointError(f"{checked.weights_path}: the normalisation in {checked.weights_path.stem}.json "
                              "differs from the one in the weights; the document was edited, re-save the checkpoint")
    return model


def load_vae_checkpoint(path: str | Path) -> VAECheckpoint:
    """Load a stage-1 checkpoint saved by :func:`save_vae_checkpoint` (same checks as :func:`load_checkpoint`)."""
    checked = _read_document(path)
    vae = TSCVAE(_require_kind(checked, KIND_VAE, TSCVAEConfig))
    _load_weights(vae, checked.weights, checked.weights_path)
    doc = checked.document
    norm = doc.get("normalisation") or {}
    mean = np.asarray(norm["mean"], dtype=np.float32) if norm else None
    std = np.asarray(norm["std"], dtype=np.float32) if norm else None
    return VAECheckpoint(vae, checked.montage, mean, std, doc.get("metrics", {}), doc.get("extra", {}))


def _hash(kind: str, config: dict[str, Any], montage: dict[str, Any], weights_sha256: str) -> str:
    text = json.dumps({"kind": kind, "config": config, "montage": montage, "weights": weights_sha256},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _document_hash(document: dict[str, Any]) -> str:
    return _hash(document["kind"], document["config"], document["montage"], document["weights"]["sha256"])


def model_hash(model_or_path: ViBE | str | Path) -> str:
    """A short (16 hex digits) sha256 of a model's weights and configuration.

    The same for a :class:`ViBE` in memory and for its saved checkpoint; used to key engine caches. A model in
    memory is serialised to compute it: hold a :class:`LoadedModel` to compute it once.
    """
    if isinstance(model_or_path, ViBE):
        config = model_or_path.cfg.to_dict()
        montage = config.pop("montage")
        weights = hashlib.sha256(_weights_bytes(model_or_path)).hexdigest()
        return _hash(KIND_VIBE, config, montage, weights)
    return _document_hash(_read_document(model_or_path).document)


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The checked JSON document of a checkpoint (config, montage, normalisation, versions, metrics)."""
    return _read_document(path).document


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A :class:`ViBE` with what describes it, so that nothing recomputes it.

    Attributes
    ----------
    model : ViBE
        The model, in eval mode.
    document : dict | None
        The checked JSON document of its checkpoint (None: a model built in memory).
    path : Path | None
        Its weights file (None: in memory).
    model_hash : str
        :func:`model_hash` of the model (the engine-cache key): taken from the document, which records the
        weights' sha256, or computed once, on first use, for a model in memory.
    name : str
        The checkpoint's stem (``"vibe-default"`` for the embedded model), ``"in-memory"`` without one.
    """

    model: ViBE
    document: dict[str, Any] | None = None
    path: Path | None = None

    @cached_property
    def model_hash(self) -> str:
        return _document_hash(self.document) if self.document is not None else model_hash(self.model)

    @property
    def name(self) -> str:
        return self.path.stem if self.path is not None else "in-memory"

    @property
    def unit(self) -> str:
        """The unit of the model's output: its training data's unit as the document records it (``extra.unit``:
        ``"V"``, ``"T"``, ``"a.u."`` for whitened or z-scored data such as THINGS-EEG2/MEG as published ...); a
        model in memory emits its montage's SI unit (its normalisation is in SI by construction)."""
        return document_unit(self.document) if self.document is not None else self.model.montage.unit


def document_unit(document: dict[str, Any]) -> str:
    """The unit a checkpoint document says its model emits (``extra.unit``); a :class:`CheckpointError` when it
    says none (units are never guessed: every checkpoint vibe-rt writes records it)."""
    unit = document.get("extra", {}).get("unit")
    if not isinstance(unit, str) or not unit.strip():
        raise CheckpointError(f"the checkpoint of montage {document.get('montage', {}).get('name')!r} records no "
                              "unit of its output (extra.unit, e.g. 'V' or 'a.u.'); re-save it with the unit of "
                              "its training data")
    return unit


def as_loaded(model: LoadedModel | ViBE) -> LoadedModel:
    """``model`` itself, or a model in memory wrapped (its hash computed once, when first needed)."""
    return model if isinstance(model, LoadedModel) else LoadedModel(model)


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


def load_model(path: str | Path | None = None) -> LoadedModel:
    """The checkpoint at ``path``, or the embedded default model when ``path`` is None (a ``--model`` option),
    with its document and hash (see :class:`LoadedModel`); the checkpoint is read and checked once."""
    checked = _read_document(path if path else require_default_checkpoint())
    return LoadedModel(_load_vibe(checked), checked.document, checked.weights_path)
