"""The engine cache: ``engines/<model-hash>/`` folders described by a ``manifest.json``.

Layout::

    engines/
      <model-hash>/
        manifest.json            ONNX export (backend "onnxruntime", fp32): encoder/qformer/decoder/chain.onnx
        encoder.onnx ...
        onnxruntime-int8/
          manifest.json          the ONNX graphs above quantized to INT8 for ONNX Runtime on a CPU
          encoder.onnx ...
        tensorrt-fp16/
          manifest.json          TensorRT plans built from the ONNX files above for one GPU + TensorRT version
          encoder.plan ...
      timing-cache/
        trt10.8.0_sm90.cache     TensorRT timing cache, shared by every model, keyed by TensorRT version + GPU

Every artefact is listed with its SHA-256 so that a truncated or tampered file is refused
(:class:`~vibe_rt.errors.EngineError`) before it reaches ONNX Runtime or TensorRT, which may crash the process
on malformed input. A manifest records what the artefacts were built for (model hash, library versions, GPU)
and :meth:`EngineManifest.check_compatible` names the first mismatch.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._logs import logger
from ..errors import EngineError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
STAGES = ("encoder", "qformer", "decoder")
CHAIN = "chain"


def default_engines_dir() -> Path:
    """The engine cache folder.

    ``$VIBE_RT_ENGINES_DIR`` if set; else the top-level ``engines/`` folder of a source checkout (the folder
    that holds ``pyproject.toml`` beside the ``vibe_rt`` package); else ``~/.cache/vibe-rt/engines``.
    """
    env = os.environ.get("VIBE_RT_ENGINES_DIR")
    if env:
        return Path(env).expanduser()
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file():
        return root / "engines"
    return Path.home() / ".cache" / "vibe-rt" / "engines"


def resolve_engines_dir(engines_dir: str | Path | None) -> Path:
    """The engine cache folder to use: ``engines_dir`` when given, else :func:`default_engines_dir`."""
    return Path(engines_dir).expanduser() if engines_dir else default_engines_dir()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fid:
        for block in iter(lambda: fid.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gpu_info(device: int = 0) -> dict[str, str] | None:
    """Name and compute capability (``"9.0"``) of a CUDA device, or None without CUDA."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(device)
    return {"name": props.name, "compute_capability": f"{props.major}.{props.minor}"}


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries that an artefact depends on (None where not installed)."""
    import importlib.metadata

    from .. import __version__

    versions: dict[str, str | None] = {"vibe_rt": __version__}
    for dist, key in (("torch", "torch"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime"),
                      ("onnxruntime-gpu", "onnxruntime"), ("tensorrt", "tensorrt")):
        if versions.get(key):
            continue
        try:
            versions[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions.setdefault(key, None)
    return versions


@dataclass
class StageArtifact:
    """One serialized network (ONNX file or TensorRT plan) of a manifest.

    Parameters
    ----------
    file : str
        File name relative to the manifest's folder.
    sha256 : str
        Hex SHA-256 of the file.
    input_name, output_name : str
        Graph tensor names.
    input_shape, output_shape : list
        Shapes with ``None`` for the dynamic batch axis.
    parity_error : float | None
        Measured ``max|out - ref| / max|ref|`` against the PyTorch module on random inputs.
    """

    file: str
    sha256: str
    input_name: str
    output_name: str
    input_shape: list[int | None]
    output_shape: list[int | None]
    parity_error: float | None = None


@dataclass
class EngineManifest:
    """Build metadata stored beside the artefacts in ``manifest.json``.

    Parameters
    ----------
    model_hash : str
        :func:`vibe_rt.checkpoint.model_hash` of the model the artefacts were exported from.
    backend : str
        ``"onnxruntime"`` (ONNX files) or ``"tensorrt"`` (plans).
    precision : str
        ``"fp32"``, ``"fp16"`` or ``"int8"``.
    stages : dict
        Stage name (``encoder``, ``qformer``, ``decoder``, ``chain``) -> :class:`StageArtifact`.
    batch : tuple of int
        (min, opt, max) batch sizes the artefacts accept (ONNX: dynamic, recorded for information).
    opset : int
        ONNX opset.
    versions : dict
        Library versions at build time (torch, onnx, onnxruntime, tensorrt, vibe_rt).
    gpu : dict | None
        ``{"name", "compute_capability"}`` of the GPU a TensorRT plan was built on.
    build_time : str
        ISO 8601 UTC time of the build.
    build_seconds : float
        Wall time of the build.
    extra : dict
        Free-form notes (calibration set, parity tolerance, ...).
    """

    model_hash: str
    backend: str
    precision: str
    stages: dict[str, StageArtifact]
    batch: tuple[int, int, int] = (1, 1, 1)
    opset: int = 17
    versions: dict[str, str | None] = field(default_factory=library_versions)
    gpu: dict[str, str] | None = None
    build_time: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    build_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        out = asdict(self)
        out["batch"] = list(self.batch)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineManifest:
        """Inverse of :meth:`to_dict`; raises EngineError on a malformed dict."""
        try:
            if int(data.get("format", 0)) != MANIFEST_FORMAT:
                raise EngineError(f"manifest format {data.get('format')!r} is not {MANIFEST_FORMAT}: rebuild the "
                                  "engines with `vibe-rt engines build`")
            stages = {name: StageArtifact(**entry) for name, entry in data["stages"].items()}
            fields = {k: v for k, v in data.items() if k != "stages"}
            fields["batch"] = tuple(int(b) for b in fields.get("batch", (1, 1, 1)))
            return cls(stages=stages, **fields)
        except EngineError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise EngineError(f"malformed engine manifest ({err}): delete it and rebuild with "
                              "`vibe-rt engines build`") from err

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/manifest.json`` atomically and return its path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> EngineManifest:
        """Read ``folder/manifest.json`` (EngineError when missing or malformed)."""
        path = Path(folder) / MANIFEST_NAME
        if not path.is_file():
            raise EngineError(f"no engine manifest at {path}: build the engines with `vibe-rt engines build`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise EngineError(f"unreadable engine manifest {path} ({err}): delete {path.parent} and rebuild "
                              "with `vibe-rt engines build`") from err
        if not isinstance(data, dict):
            raise EngineError(f"malformed engine manifest {path}: delete it and rebuild with `vibe-rt engines build`")
        return cls.from_dict(data)

    # ------------------------------------------------------------------ checks
    def check_compatible(
        self,
        *,
        model_hash: str | None = None,
        backend: str | None = None,
        precision: str | None = None,
        tensorrt_version: str | None = None,
        gpu: dict[str, str] | None = None,
        where: str | Path = "",
    ) -> None:
        """Raise EngineError naming the first mismatch between this manifest and the running setup.

        Parameters
        ----------
        model_hash, backend, precision : str | None
            Expected values (None: not checked).
        tensorrt_version : str | None
            Installed TensorRT version; a plan only runs on the exact version that built it.
        gpu : dict | None
            The running GPU (:func:`gpu_info`); a plan is tied to the compute capability and checked against the
            GPU name as well (same architecture, different SKU can pick other tactics).
        where : str | Path
            Folder named in the message.
        """
        rebuild = "rebuild with `vibe-rt engines build" + (f" --backend {self.backend}" if self.backend else "") + (
            f" --precision {self.precision}`" if self.precision else "`")
        loc = f" in {where}" if where else ""
        if model_hash is not None and self.model_hash != model_hash:
            raise EngineError(f"engines{loc} were built for model {self.model_hash}, not for model {model_hash} "
                              f"(other model hash): {rebuild}")
        if backend is not None and self.backend != backend:
            raise EngineError(f"engines{loc} are for backend {self.backend}, not {backend}")
        if precision is not None and self.precision != precision:
            raise EngineError(f"engines{loc} have precision {self.precision}, not {precision}: {rebuild}")
        if tensorrt_version is not None:
            built = self.versions.get("tensorrt")
            if built != tensorrt_version:
                raise EngineError(f"TensorRT plans{loc} were built with TensorRT {built}, this is TensorRT "
                                  f"{tensorrt_version} (other TensorRT version): {rebuild}")
        if gpu is not None:
            if self.gpu is None:
                raise EngineError(f"engines{loc} record no GPU: {rebuild}")
            if self.gpu.get("compute_capability") != gpu.get("compute_capability") or self.gpu.get(
                    "name") != gpu.get("name"):
                raise EngineError(
                    f"TensorRT plans{loc} were built on GPU {self.gpu.get('name')} (compute capability "
                    f"{self.gpu.get('compute_capability')}), this is {gpu.get('name')} (compute capability "
                    f"{gpu.get('compute_capability')}) (other GPU): {rebuild}")

    def verify_files(self, folder: str | Path, names: tuple[str, ...] | None = None) -> None:
        """Check that each listed artefact exists and has the recorded SHA-256 (EngineError otherwise)."""
        folder = Path(folder)
        for name, art in self.stages.items():
            if names is not None and name not in names:
                continue
            path = folder / art.file
            if not path.is_file():
                raise EngineError(f"{name} artefact {path} is missing: rebuild with `vibe-rt engines build`")
            digest = sha256_file(path)
            if digest != art.sha256:
                raise EngineError(f"{name} artefact {path} is corrupt (SHA-256 {digest[:12]}... differs from "
                                  f"the manifest's {art.sha256[:12]}...): delete {folder} and rebuild with "
                                  "`vibe-rt engines build`")
        logger.debug("verified checksums in %s", folder)


def model_dir(engines_dir: str | Path, model_hash: str) -> Path:
    """``engines_dir/<model_hash>``."""
    return Path(engines_dir) / model_hash


def tensorrt_dir(engines_dir: str | Path, model_hash: str, precision: str) -> Path:
    """``engines_dir/<model_hash>/tensorrt-<precision>``."""
    return model_dir(engines_dir, model_hash) / f"tensorrt-{precision}"


def onnxruntime_int8_dir(engines_dir: str | Path, model_hash: str) -> Path:
    """``engines_dir/<model_hash>/onnxruntime-int8``: the quantized ONNX graphs."""
    return model_dir(engines_dir, model_hash) / "onnxruntime-int8"


def timing_cache_path(engines_dir: str | Path, tensorrt_version: str, compute_capability: str) -> Path:
    """TensorRT timing cache file, keyed by TensorRT version and GPU compute capability (``trt10.8.0_sm90``)."""
    cc = compute_capability.replace(".", "")
    return Path(engines_dir) / "timing-cache" / f"trt{tensorrt_version}_sm{cc}.cache"


def list_manifests(engines_dir: str | Path) -> list[tuple[Path, EngineManifest | EngineError]]:
    """Every manifest under ``engines_dir`` (the error in place of the manifest where one cannot be read)."""
    engines_dir = Path(engines_dir)
    out: list[tuple[Path, EngineManifest | EngineError]] = []
    if not engines_dir.is_dir():
        return out
    for path in sorted(engines_dir.glob(f"*/{MANIFEST_NAME}")) + sorted(engines_dir.glob(f"*/*/{MANIFEST_NAME}")):
        try:
            out.append((path.parent, EngineManifest.load(path.parent)))
        except EngineError as err:
            out.append((path.parent, err))
    return out
