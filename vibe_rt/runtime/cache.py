"""Build, load and verify the engine cache (``engines/<model-hash>/``): the library behind ``vibe-rt engines``.

Export -> verify -> build are separate steps. :func:`export_onnx_set` writes the ONNX graph of each stage (and
the fused chain) and checks it against PyTorch with ONNX Runtime; :func:`build_tensorrt_set` compiles those
same ONNX files into TensorRT plans. Loading (:func:`load_onnx_set`, :func:`load_tensorrt_set`) refuses a
cache that does not match (model hash, TensorRT version, GPU) or whose files fail their checksum, with an
:class:`~vibe_rt.errors.EngineError` that says which and how to rebuild; building replaces such a cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._logs import logger
from ..errors import ConfigError, EngineError
from .export import (
    DEFAULT_OPSET,
    STAGE_IO,
    export_onnx,
    random_inputs,
    relative_error,
    resolve_model_hash,
    stage_example_inputs,
    stage_modules,
    torch_reference,
    validate_onnx_file,
)
from .int8_set import default_calibration_dir
from .manifest import (
    CHAIN,
    STAGES,
    EngineManifest,
    StageArtifact,
    default_engines_dir,
    gpu_info,
    library_versions,
    model_dir,
    sha256_file,
    tensorrt_dir,
    timing_cache_path,
)

#: Parity tolerance (relative error ``max|a-b|/max|b|``) per precision, against the fp32 PyTorch module.
PARITY_TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "int8": 1.5e-1}
#: TensorRT fp32 engines: TF32 is disabled, but kernels reorder sums differently from PyTorch.
TENSORRT_FP32_TOLERANCE = 1e-3
#: Batch size of the random inputs used for parity checks (not 1, so the dynamic batch axis is exercised).
PARITY_BATCH = 3
DEFAULT_BATCH = (1, 1, 8)


def parse_batch(text: str | tuple[int, int, int] | None) -> tuple[int, int, int]:
    """Parse ``"MIN:OPT:MAX"`` (or ``"N"`` for a static batch) into a checked tuple."""
    if text is None:
        return DEFAULT_BATCH
    if isinstance(text, tuple):
        parts = list(text)
    else:
        try:
            parts = [int(p) for p in str(text).split(":")]
        except ValueError:
            raise ConfigError(f"--batch {text!r} is not MIN:OPT:MAX integers, e.g. 1:1:8") from None
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise ConfigError(f"--batch {text!r} must be MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, e.g. 1:1:8")
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def _graph_names(fused: bool) -> tuple[str, ...]:
    return (*STAGES, CHAIN) if fused else STAGES


def _shape(array_shape) -> list[int | None]:
    return [None, *(int(d) for d in tuple(array_shape)[1:])]


# ----------------------------------------------------------------------------------------------------- parity
def _parity(backend, module, example, batch: int, seed: int) -> float:
    """Relative error of a built stage against its torch module, on ``batch`` random inputs shaped like ``example``."""
    x = random_inputs(example, batch, seed=seed)
    return relative_error(backend.run({backend.input_name: x})[backend.output_name], torch_reference(module, x))


def _tensorrt_tolerance(precision: str) -> float:
    """Parity tolerance of a TensorRT plan (fp32 plans have their own: TF32 is off, reductions differ)."""
    return TENSORRT_FP32_TOLERANCE if precision == "fp32" else PARITY_TOLERANCE[precision]


# ------------------------------------------------------------------------------------------------------- ONNX
def _onnx_parity(module, path: Path, example, *, device: str = "cpu") -> tuple[float, tuple, tuple]:
    from .backends import OnnxRuntimeBackend

    x = random_inputs(example, PARITY_BATCH, seed=1)
    ref = torch_reference(module, x)
    backend = OnnxRuntimeBackend(path, device=device, validate=False, intra_op_threads=None)
    out = backend.run({backend.input_name: x})[backend.output_name]
    return relative_error(out, ref), x.shape, ref.shape


def export_onnx_set(
    model,
    engines_dir: str | Path | None = None,
    *,
    fused: bool = True,
    force: bool = False,
    batch: tuple[int, int, int] = DEFAULT_BATCH,
    opset: int = DEFAULT_OPSET,
    tolerance: float = PARITY_TOLERANCE["fp32"],
) -> tuple[Path, EngineManifest]:
    """Export the stage graphs of ``model`` to ``engines_dir/<model-hash>/`` and verify them.

    Each graph is checked with ONNX Runtime (CPU, fp32) against the PyTorch module on random inputs of batch
    :data:`PARITY_BATCH`; a relative error above ``tolerance`` raises EngineError. A valid existing export is
    reused (missing graphs are added) unless ``force``; an invalid one (other model, corrupt file) is replaced
    and the reason logged.

    Returns
    -------
    folder : Path
        ``engines_dir/<model-hash>``.
    manifest : EngineManifest
        The ONNX manifest (backend ``"onnxruntime"``, precision ``"fp32"``).
    """
    engines_dir = Path(engines_dir) if engines_dir else default_engines_dir()
    mhash = resolve_model_hash(model)
    folder = model_dir(engines_dir, mhash)
    wanted = _graph_names(fused)
    manifest: EngineManifest | None = None
    if not force and (folder / "manifest.json").is_file():
        try:
            manifest = _check_onnx_manifest(folder, mhash, names=None)
        except EngineError as err:
            logger.warning("re-exporting ONNX graphs: %s", err)
            manifest = None
    todo = [n for n in wanted if manifest is None or n not in manifest.stages]
    if not todo:
        logger.info("ONNX graphs of model %s are up to date in %s", mhash, folder)
        return folder, manifest  # type: ignore[return-value]
    t0 = time.perf_counter()
    modules = stage_modules(model, fused=CHAIN in todo)
    examples = stage_example_inputs(model, batch=2)  # trace at batch 2: no batch-1 specialisation
    stages: dict[str, StageArtifact] = dict(manifest.stages) if manifest else {}
    for name in todo:
        in_name, out_name = STAGE_IO[name]
        path = export_onnx(modules[name], examples[name], folder / f"{name}.onnx", input_name=in_name,
                           output_name=out_name, opset=opset, dynamic_batch=True)
        err, in_shape, out_shape = _onnx_parity(modules[name], path, examples[name])
        logger.info("exported %s graph: onnxruntime vs torch relative error %.2e", name, err)
        if not err < tolerance:
            path.unlink(missing_ok=True)
            raise EngineError(f"ONNX export of the {name} stage does not match PyTorch: relative error {err:.3g} "
                              f">= {tolerance:g}. The graph uses an operator that exports wrongly at opset {opset}")
        stages[name] = StageArtifact(file=path.name, sha256=sha256_file(path), input_name=in_name,
                                     output_name=out_name, input_shape=_shape(in_shape),
                                     output_shape=_shape(out_shape), parity_error=float(err))
    manifest = EngineManifest(model_hash=mhash, backend="onnxruntime", precision="fp32", stages=stages,
                              batch=batch, opset=opset, versions=library_versions(), gpu=None,
                              build_seconds=round(time.perf_counter() - t0, 3),
                              extra={"parity_tolerance": tolerance, "parity_batch": PARITY_BATCH})
    manifest.save(folder)
    return folder, manifest


def _check_onnx_manifest(folder: Path, model_hash: str, names: tuple[str, ...] | None) -> EngineManifest:
    manifest = EngineManifest.load(folder)
    manifest.check_compatible(model_hash=model_hash, backend="onnxruntime", where=folder)
    if names is not None:
        missing = [n for n in names if n not in manifest.stages]
        if missing:
            raise EngineError(f"{folder} has no ONNX graph for {missing}: run `vibe-rt engines build --backend "
                              "onnxruntime`")
    manifest.verify_files(folder, names)
    for name, art in manifest.stages.items():
        if names is None or name in names:
            validate_onnx_file(folder / art.file)
    return manifest


def load_onnx_set(engines_dir: str | Path | None, model_hash: str, *, fused: bool = False) -> tuple[
        Path, EngineManifest]:
    """Open a verified ONNX export (EngineError naming the problem when absent, mismatched or corrupt)."""
    engines_dir = Path(engines_dir) if engines_dir else default_engines_dir()
    folder = model_dir(engines_dir, model_hash)
    names = (CHAIN,) if fused else STAGES
    return folder, _check_onnx_manifest(folder, model_hash, names)


def ensure_onnx_set(model, engines_dir: str | Path | None = None, *, fused: bool = False) -> tuple[
        Path, EngineManifest]:
    """The model's verified ONNX export, exported on the fly when absent (or when a graph is missing).

    An existing export that is corrupt or was built for another model is refused (EngineError), not silently
    replaced: ``vibe-rt engines build --force`` replaces it.
    """
    engines_dir = Path(engines_dir) if engines_dir else default_engines_dir()
    mhash = resolve_model_hash(model)
    folder = model_dir(engines_dir, mhash)
    names = (CHAIN,) if fused else STAGES
    if not (folder / "manifest.json").is_file():
        logger.info("exporting ONNX graphs of model %s to %s", mhash, folder)
        return export_onnx_set(model, engines_dir, fused=fused)
    manifest = EngineManifest.load(folder)
    if any(n not in manifest.stages for n in names):
        _check_onnx_manifest(folder, mhash, None)  # the existing files must be sound before adding to them
        return export_onnx_set(model, engines_dir, fused=fused)
    return folder, _check_onnx_manifest(folder, mhash, names)


# --------------------------------------------------------------------------------------------------- TensorRT
def load_calibration_images(folder: str | Path, preprocess, *, limit: int | None = None) -> np.ndarray:
    """Read the JPEG/PNG images of a calibration folder and preprocess them like the encoder's input.

    Parameters
    ----------
    folder : str | Path
        Folder of images (any size; see ``calibration/README.md``).
    preprocess : callable
        ``uint8 (B,H,W,3) RGB -> float32 (B,3,S,S)``, i.e. ``ImageEncoder.preprocess_frames``.
    limit : int | None
        Use at most this many images (sorted by name).

    Returns
    -------
    ndarray, shape (n_images, 3, S, S)
    """
    import cv2

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")) if \
        folder.is_dir() else []
    if limit:
        files = files[:limit]
    if not files:
        raise EngineError(f"no calibration images (*.png, *.jpg) in {folder}: give a folder of images like the "
                          "ones you show (--calibration DIR), or leave --calibration out for the default set")
    out = []
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise EngineError(f"calibration image {path} cannot be decoded: replace or remove it")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        out.append(np.asarray(preprocess(rgb[None]), dtype=np.float32)[0])
    return np.stack(out)


def _calibration_batches(model, images: np.ndarray, batch_size: int) -> dict[str, list[np.ndarray]]:
    """Inputs of every stage on the calibration images (the Q-Former is calibrated on real encoder outputs)."""
    n = (len(images) // batch_size) * batch_size
    if n == 0:
        raise EngineError(f"{len(images)} calibration images are fewer than one batch of {batch_size}")
    modules = stage_modules(model, fused=False)
    pixels = images[:n]
    tokens = torch_reference(modules["encoder"], pixels)
    latent = torch_reference(modules["qformer"], tokens)
    per_stage = {"encoder": pixels, "qformer": tokens, "decoder": latent, "chain": pixels}
    return {k: [v[i:i + batch_size] for i in range(0, n, batch_size)] for k, v in per_stage.items()}


def _tensorrt_target() -> tuple[str, dict[str, str]]:
    from .tensorrt import tensorrt_version

    version = tensorrt_version()
    gpu = gpu_info()
    if gpu is None:
        raise EngineError("building or loading TensorRT engines needs a CUDA GPU and torch sees none")
    return version, gpu


def load_tensorrt_set(engines_dir: str | Path | None, model_hash: str, precision: str, *,
                      fused: bool = False) -> tuple[Path, EngineManifest]:
    """Open verified TensorRT plans; EngineError naming the mismatch (model, TensorRT version, GPU) or the
    corrupt file. Checksums are verified before any plan reaches TensorRT's deserializer."""
    engines_dir = Path(engines_dir) if engines_dir else default_engines_dir()
    folder = tensorrt_dir(engines_dir, model_hash, precision)
    manifest = EngineManifest.load(folder)
    version, gpu = _tensorrt_target()
    manifest.check_compatible(model_hash=model_hash, backend="tensorrt", precision=precision,
                              tensorrt_version=version, gpu=gpu, where=folder)
    names = (CHAIN,) if fused else STAGES
    missing = [n for n in names if n not in manifest.stages]
    if missing:
        raise EngineError(f"{folder} has no plan for {missing}: rebuild with `vibe-rt engines build --backend "
                          f"tensorrt --precision {precision}`")
    manifest.verify_files(folder, names)
    return folder, manifest


def build_tensorrt_set(
    model,
    engines_dir: str | Path | None = None,
    *,
    precision: str = "fp16",
    batch: tuple[int, int, int] = DEFAULT_BATCH,
    fused: bool = True,
    force: bool = False,
    calibration_dir: str | Path | None = None,
    calibration_batch: int = 8,
) -> tuple[Path, EngineManifest]:
    """Export (if needed) and compile every stage graph to a TensorRT plan in
    ``engines_dir/<model-hash>/tensorrt-<precision>/``, with parity against PyTorch recorded per stage.

    A cached build for the same model, TensorRT version and GPU with intact files is reused unless ``force``;
    any other cached build is rebuilt and the mismatch logged. The timing cache is shared across models in
    ``engines_dir/timing-cache/trt<version>_sm<cc>.cache``.
    """
    from .tensorrt import TensorRTBackend, build_plan

    engines_dir = Path(engines_dir) if engines_dir else default_engines_dir()
    version, gpu = _tensorrt_target()
    onnx_folder, onnx_manifest = export_onnx_set(model, engines_dir, fused=fused, batch=batch)
    mhash = onnx_manifest.model_hash
    folder = tensorrt_dir(engines_dir, mhash, precision)
    names = _graph_names(fused)
    if not force and (folder / "manifest.json").is_file():
        try:
            cached = load_tensorrt_set(engines_dir, mhash, precision, fused=False)[1]
            if all(n in cached.stages for n in names) and tuple(cached.batch) == tuple(batch):
                logger.info("TensorRT %s plans of model %s are up to date in %s", precision, mhash, folder)
                return folder, cached
            logger.info("rebuilding TensorRT plans in %s: other graphs or batch profile requested", folder)
        except EngineError as err:
            logger.warning("rebuilding TensorRT plans: %s", err)
    calib: dict[str, list[np.ndarray]] = {}
    if precision == "int8":
        cdir = Path(calibration_dir) if calibration_dir else default_calibration_dir()
        images = load_calibration_images(cdir, model.encoder.preprocess_frames)
        calib = _calibration_batches(model, images, min(calibration_batch, len(images)))
    timing = timing_cache_path(engines_dir, version, gpu["compute_capability"])
    modules = stage_modules(model, fused=fused)
    examples = stage_example_inputs(model, batch=2)
    tol = _tensorrt_tolerance(precision)
    t0 = time.perf_counter()
    stages: dict[str, StageArtifact] = {}
    for name in names:
        src = onnx_manifest.stages[name]
        plan = build_plan(onnx_folder / src.file, folder / f"{name}.plan", precision=precision, batch=batch,
                          timing_cache=timing, calibration=calib.get(name),
                          calibration_cache=folder / f"{name}.calib" if calib else None)
        backend = TensorRTBackend(plan, precision=precision)
        err = _parity(backend, modules[name], examples[name], min(PARITY_BATCH, batch[2]), seed=1)
        logger.info("TensorRT %s %s plan: relative error vs torch fp32 %.2e (tolerance %.0e)", precision, name, err,
                    tol)
        if not err < tol:  # refused like an ONNX graph that fails parity: no manifest is written, so none loads
            raise EngineError(f"TensorRT {precision} {name} plan: relative error vs torch fp32 {err:.3g} >= {tol:g}; "
                              "build another precision (--precision fp16 or fp32), or for int8 a calibration set "
                              "like the images you show (--calibration DIR)")
        stages[name] = StageArtifact(file=plan.name, sha256=sha256_file(plan), input_name=src.input_name,
                                     output_name=src.output_name, input_shape=src.input_shape,
                                     output_shape=src.output_shape, parity_error=float(err))
    manifest = EngineManifest(
        model_hash=mhash, backend="tensorrt", precision=precision, stages=stages, batch=batch,
        opset=onnx_manifest.opset, versions=library_versions(), gpu=gpu,
        build_seconds=round(time.perf_counter() - t0, 3),
        extra={"parity_tolerance": tol, "tensorrt_version": version, "timing_cache": str(timing.name),
               "onnx_sha256": {n: onnx_manifest.stages[n].sha256 for n in names},
               "calibration": str(calibration_dir or default_calibration_dir()) if precision == "int8" else None})
    manifest.save(folder)
    return folder, manifest


def build_engines(
    model,
    *,
    backend: str = "auto",
    precision: str | None = None,
    batch: tuple[int, int, int] = DEFAULT_BATCH,
    engines_dir: str | Path | None = None,
    fused: bool = True,
    force: bool = False,
    calibration_dir: str | Path | None = None,
) -> tuple[Path, EngineManifest]:
    """``vibe-rt engines build``: ONNX export (onnxruntime; also for ``torch``, which needs no engines) or
    TensorRT plans for ``model``; ``precision`` defaults to fp16 for TensorRT, fp32 otherwise."""
    from .backends import select_backend

    name = select_backend(backend)
    if name == "torch":
        name = "onnxruntime"
    precision = precision or ("fp16" if name == "tensorrt" else "fp32")
    if name == "onnxruntime":
        if precision != "fp32":
            raise ConfigError(f"ONNX Runtime engines are fp32, not {precision}: use --backend tensorrt for "
                              "fp16/int8 (on a machine with TensorRT and a CUDA GPU)")
        return export_onnx_set(model, engines_dir, fused=fused, force=force, batch=batch)
    return build_tensorrt_set(model, engines_dir, precision=precision, batch=batch, fused=fused, force=force,
                              calibration_dir=calibration_dir)


# ------------------------------------------------------------------------------------------------------ verify
@dataclass
class VerifyResult:
    """Outcome of checking one cached engine folder."""

    folder: Path
    backend: str
    precision: str
    status: str  # "ok", "error" or "skipped"
    message: str
    parity: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "backend": self.backend, "precision": self.precision,
                "status": self.status, "message": self.message, "parity": self.parity}


def verify_engines(engines_dir: str | Path | None = None, model=None) -> list[VerifyResult]:
    """Check every cached engine folder: checksums, ONNX validity, compatibility, and (for the folders of
    ``model``) parity against PyTorch re-measured now."""
    from .backends import OnnxRuntimeBackend
    from .manifest import list_manifests

    engines_dir = Path(engines_dir) if engines_dir else default_engines_dir()
    mhash = resolve_model_hash(model) if model is not None else None
    modules = stage_modules(model, fused=True) if model is not None else {}
    examples = stage_example_inputs(model, batch=2) if model is not None else {}
    results: list[VerifyResult] = []
    for folder, manifest in list_manifests(engines_dir):
        if isinstance(manifest, EngineError):
            results.append(VerifyResult(folder, "?", "?", "error", str(manifest), {}))
            continue
        parity: dict[str, float] = {}
        try:
            manifest.verify_files(folder)
            if manifest.backend == "onnxruntime":
                for name, art in manifest.stages.items():
                    validate_onnx_file(folder / art.file)
                    if manifest.model_hash == mhash:
                        be = OnnxRuntimeBackend(folder / art.file, validate=False)
                        parity[name] = _parity(be, modules[name], examples[name], PARITY_BATCH, seed=2)
                        if not parity[name] < PARITY_TOLERANCE["fp32"]:
                            raise EngineError(f"{name} graph differs from the model: relative error "
                                              f"{parity[name]:.3g}")
            elif manifest.backend == "tensorrt":
                from .backends import tensorrt_available

                if not tensorrt_available():
                    results.append(VerifyResult(folder, manifest.backend, manifest.precision, "skipped",
                                                "checksums ok; TensorRT or a CUDA GPU is not available here",
                                                {}))
                    continue
                from .tensorrt import TensorRTBackend

                version, gpu = _tensorrt_target()
                manifest.check_compatible(tensorrt_version=version, gpu=gpu, where=folder)
                if manifest.model_hash == mhash:
                    tol = _tensorrt_tolerance(manifest.precision)
                    for name, art in manifest.stages.items():
                        be = TensorRTBackend(folder / art.file, precision=manifest.precision)
                        parity[name] = _parity(be, modules[name], examples[name],
                                               min(PARITY_BATCH, manifest.batch[2]), seed=2)
                        if not parity[name] < tol:
                            raise EngineError(f"{name} plan differs from the model: relative error "
                                              f"{parity[name]:.3g} >= {tol:g}")
            msg = "ok" + ("" if parity else " (checksums; parity not re-measured: other model)")
            results.append(VerifyResult(folder, manifest.backend, manifest.precision, "ok", msg, parity))
        except EngineError as err:
            results.append(VerifyResult(folder, manifest.backend, manifest.precision, "error", str(err), parity))
    return results
