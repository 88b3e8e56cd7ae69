"""The engine cache (``engines/<model-hash>/``): one :class:`EngineStore` per backend, the library behind
``vibe-rt engines``.

Each backend is one object, looked up by name in :data:`ENGINE_STORES` (:func:`engine_store`):

* ``ensure(model, ...)`` builds what is missing: :class:`OnnxStore` exports the stage graphs (and the fused
  chain) to ONNX and checks each against PyTorch with ONNX Runtime, and for ``precision="int8"`` quantizes those
  graphs for ONNX Runtime on a CPU (:mod:`~vibe_rt.runtime.quantize`), kept only when the INT8 chain's epochs
  correlate with the fp32 chain's at r >= 0.99 on the calibration images; :class:`TensorRTStore` compiles those
  same ONNX files into TensorRT plans. A build is written into a temporary folder and moved into place only when
  every graph passed its parity check (the manifest last), so a failed build leaves nothing half-written.
  An existing set that does not match (model hash, TensorRT version, GPU) or whose files fail their checksum
  is refused with an :class:`~vibe_rt.errors.EngineError` that says which, or, with ``rebuild_invalid``
  (``vibe-rt engines build``), rebuilt.
* ``load(model_hash, ...)`` opens a verified set (checksums before any file reaches ONNX Runtime or TensorRT).
* ``verify(folder, manifest, model)`` reports on one cached folder (``vibe-rt engines verify``).
* ``runners(model, names, ...)`` opens the graphs as :class:`~vibe_rt.runtime.backends.Backend` objects for a
  :class:`~vibe_rt.runtime.predictor.Predictor`. :class:`TorchStore` runs the model's own modules: it has no
  engines, so it offers only ``runners`` (``vibe-rt engines build`` exports ONNX for it).

The cache folder defaults to :func:`~vibe_rt.runtime.manifest.default_engines_dir`, resolved in one place
(:func:`~vibe_rt.runtime.manifest.resolve_engines_dir`, by the store).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._logs import logger
from ..checkpoint import LoadedModel, as_loaded
from ..errors import ConfigError, EngineError
from .backends import Backend, OnnxRuntimeBackend, TorchBackend, select_backend, tensorrt_available
from .export import (
    DEFAULT_OPSET,
    STAGE_IO,
    export_onnx,
    random_inputs,
    relative_error,
    stage_example_inputs,
    stage_modules,
    torch_reference,
    validate_onnx_file,
)
from .int8_set import default_calibration_dir
from .manifest import (
    CHAIN,
    MANIFEST_NAME,
    STAGES,
    EngineManifest,
    StageArtifact,
    gpu_info,
    library_versions,
    list_manifests,
    model_dir,
    onnxruntime_int8_dir,
    resolve_engines_dir,
    sha256_file,
    tensorrt_dir,
    timing_cache_path,
)
from .quantize import MIN_EPOCH_R, QUANTIZED_OPS, image_specific_r, pearson_r, quantize_dynamic_graph

if TYPE_CHECKING:
    from ..models.vibe import ViBE

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
def _parity(backend, module, example, batch: int, seed: int) -> tuple[float, tuple[int, ...]]:
    """Relative error of a built graph against its torch module on ``batch`` random inputs shaped like
    ``example``, and the output shape.

    A module whose own output is not finite has NaN/inf weights (a model diverged in training or built in
    memory from a corrupt source): EngineError says so instead of blaming the export.
    """
    x = random_inputs(example, batch, seed=seed)
    ref = torch_reference(module, x)
    if not np.isfinite(ref).all():
        raise EngineError(f"the PyTorch {type(module).__name__} gives NaN/inf outputs on random inputs: the model's "
                          "weights hold non-finite values (corrupt checkpoint or diverged training); retrain it or "
                          "restore a good checkpoint")
    return relative_error(backend.run({backend.input_name: x})[backend.output_name], ref), ref.shape


def _verified(folder: Path, manifest: EngineManifest, model: LoadedModel | None, runners: Mapping[str, Backend],
              tolerance: float, kind: str) -> VerifyResult:
    """The verify result of a folder whose files were checked: parity of each runner against ``model``."""
    parity: dict[str, float] = {}
    if model is not None:
        modules = stage_modules(model.model, fused=CHAIN in runners)
        examples = stage_example_inputs(model.model, batch=2)
        for name, runner in runners.items():
            parity[name] = _parity(runner, modules[name], examples[name], min(PARITY_BATCH, manifest.batch[2]),
                                   seed=2)[0]
            if not parity[name] < tolerance:
                raise EngineError(f"{name} {kind} differs from the model: relative error {parity[name]:.3g} >= "
                                  f"{tolerance:g}")
    return VerifyResult(folder, manifest.backend, manifest.precision, "ok", "ok", parity)


def _tensorrt_tolerance(precision: str) -> float:
    """Parity tolerance of a TensorRT plan (fp32 plans have their own: TF32 is off, reductions differ)."""
    return TENSORRT_FP32_TOLERANCE if precision == "fp32" else PARITY_TOLERANCE[precision]


# ------------------------------------------------------------------------------------------------- building
@contextmanager
def _staging(root: Path) -> Iterator[Path]:
    """A temporary folder inside the cache (same file system: files move into place atomically), removed
    afterwards whatever happened."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _reusable(folder: Path, load: Callable[[], EngineManifest], usable: Callable[[EngineManifest], bool], *,
              rebuild_invalid: bool, what: str) -> EngineManifest | None:
    """The cached set in ``folder`` when it is sound (``load`` succeeds) and ``usable`` (it has the graphs and
    batch profile asked for), else None: build it. An unsound set raises ``load``'s EngineError unless
    ``rebuild_invalid``; each decision is logged, naming ``what``."""
    if not (folder / MANIFEST_NAME).is_file():
        return None
    try:
        cached = load()
    except EngineError as err:
        if not rebuild_invalid:
            raise
        logger.warning("rebuilding the %s: %s", what, err)
        return None
    if usable(cached):
        logger.info("the %s are up to date in %s", what, folder)
        return cached
    logger.info("rebuilding the %s in %s: other graphs or batch profile requested", what, folder)
    return None


def _install(staging: Path, folder: Path, manifest: EngineManifest) -> None:
    """Move every file built in ``staging`` into ``folder``, then write the manifest (last: a folder with a
    manifest is complete). A manifest that lists a file being replaced is removed first, so that no manifest
    ever describes files it did not check."""
    folder.mkdir(parents=True, exist_ok=True)
    built = {p.name for p in staging.iterdir()}
    if (folder / MANIFEST_NAME).is_file():
        try:
            listed = {art.file for art in EngineManifest.load(folder).stages.values()}
        except EngineError:
            listed = built
        if listed & built:
            (folder / MANIFEST_NAME).unlink()
    for name in sorted(built):
        os.replace(staging / name, folder / name)
    manifest.save(folder)


@dataclass(frozen=True)
class RunnerOptions:
    """Backend options of a predictor's runners; each store uses its own and ignores the others.

    Attributes
    ----------
    intra_op_threads : int | None
        ONNX Runtime threads per operator (default: physical cores minus one).
    torch_compile : bool
        torch: wrap the modules in ``torch.compile``.
    cuda_graph : bool
        torch and TensorRT on CUDA: capture a CUDA graph at warm-up.
    """

    intra_op_threads: int | None = None
    torch_compile: bool = False
    cuda_graph: bool = False


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


# ---------------------------------------------------------------------------------------------------- stores
class EngineStore(ABC):
    """What every backend offers the predictor: its graphs as :class:`Backend` runners.

    Parameters
    ----------
    engines_dir : str | Path | None
        The engine cache (default :func:`~vibe_rt.runtime.manifest.default_engines_dir`).
    """

    backend: ClassVar[str]
    #: Precision of the runners when none is asked for.
    default_precision: ClassVar[str] = "fp32"

    def __init__(self, engines_dir: str | Path | None = None) -> None:
        self.root = resolve_engines_dir(engines_dir)

    @abstractmethod
    def runners(self, model: LoadedModel, names: tuple[str, ...], *, build: bool, device: str, precision: str,
                options: RunnerOptions) -> dict[str, Backend]:
        """One runner per graph in ``names`` (the stages or ``("chain",)``), on ``device`` in ``precision``;
        engines that are absent are built when ``build`` (else EngineError)."""


class TorchStore(EngineStore):
    """PyTorch eager execution of the model's own stage modules: nothing to build, load or verify."""

    backend = "torch"

    def runners(self, model: LoadedModel, names: tuple[str, ...], *, build: bool, device: str, precision: str,
                options: RunnerOptions) -> dict[str, Backend]:
        """See :meth:`EngineStore.runners`."""
        modules = stage_modules(model.model, fused=CHAIN in names)
        return {stage: TorchBackend(modules[stage], input_name=STAGE_IO[stage][0], output_name=STAGE_IO[stage][1],
                                    device=device, precision=precision, compile=options.torch_compile,
                                    cuda_graph=options.cuda_graph) for stage in names}


class _CachedStore(EngineStore):
    """A backend whose graphs are files in the cache, described by a manifest."""

    @abstractmethod
    def folder(self, model_hash: str, precision: str) -> Path:
        """Where its engines of a model live."""

    @abstractmethod
    def ensure(self, model: LoadedModel | ViBE, *, precision: str | None = None, fused: bool = True,
               batch: tuple[int, int, int] | None = None, force: bool = False, rebuild_invalid: bool = False,
               calibration_dir: str | Path | None = None) -> tuple[Path, EngineManifest]:
        """The model's verified engines (folder, manifest), building the graphs that are missing.

        ``model`` is a :class:`LoadedModel` (a :class:`ViBE` is wrapped: hold a LoadedModel to hash it once);
        ``precision`` defaults to :attr:`default_precision`; ``fused`` adds the fused chain graph to the three
        stages; ``batch`` is the (min, opt, max) profile (None: any cached profile, :data:`DEFAULT_BATCH` when
        building); ``force`` rebuilds a valid set; ``rebuild_invalid`` rebuilds a set that is corrupt or was
        built for another model, TensorRT version or GPU (logging why) instead of refusing it with EngineError;
        ``calibration_dir`` holds the INT8 calibration images (TensorRT int8; default: the built-in set).
        """

    @abstractmethod
    def load(self, model_hash: str, *, precision: str | None = None, fused: bool = False) -> tuple[
            Path, EngineManifest]:
        """A verified set (folder, manifest), or EngineError naming the problem (absent, mismatched, corrupt);
        checksums are verified before any file reaches the runtime, which may crash on malformed input."""

    @abstractmethod
    def verify(self, folder: Path, manifest: EngineManifest, model: LoadedModel | None) -> VerifyResult:
        """One cached folder of this backend checked (files, validity, compatibility) and, when ``model`` is
        given (the folder's own model), parity re-measured."""

    @abstractmethod
    def _runner(self, path: Path, *, device: str, precision: str, options: RunnerOptions) -> Backend:
        """Open one engine file."""

    def runners(self, model: LoadedModel, names: tuple[str, ...], *, build: bool, device: str, precision: str,
                options: RunnerOptions) -> dict[str, Backend]:
        """See :meth:`EngineStore.runners`: :meth:`ensure` (``build``) or :meth:`load`, then open each file."""
        fused = CHAIN in names
        if build:
            folder, manifest = self.ensure(model, precision=precision, fused=fused)
        else:
            folder, manifest = self.load(model.model_hash, precision=precision, fused=fused)
        return {stage: self._runner(folder / manifest.stages[stage].file, device=device, precision=precision,
                                    options=options) for stage in names}


class OnnxStore(_CachedStore):
    """ONNX graphs of the stages (and the fused chain): fp32 in ``<engines_dir>/<model-hash>/``, and their INT8
    quantization (CPU) in ``<engines_dir>/<model-hash>/onnxruntime-int8/``.

    Parameters
    ----------
    engines_dir : str | Path | None
        The engine cache.
    opset : int
        ONNX opset of new exports (17: LayerNorm stays one operator).
    tolerance : float
        Largest relative error against PyTorch (ONNX Runtime, CPU, fp32, random inputs of batch
        :data:`PARITY_BATCH`) for an exported graph to be kept.
    """

    backend = "onnxruntime"

    def __init__(self, engines_dir: str | Path | None = None, *, opset: int = DEFAULT_OPSET,
                 tolerance: float = PARITY_TOLERANCE["fp32"]) -> None:
        super().__init__(engines_dir)
        self.opset = opset
        self.tolerance = tolerance

    def folder(self, model_hash: str, precision: str = "fp32") -> Path:
        """``<engines_dir>/<model-hash>`` (fp32) or ``<engines_dir>/<model-hash>/onnxruntime-int8`` (int8)."""
        if precision == "int8":
            return onnxruntime_int8_dir(self.root, model_hash)
        return model_dir(self.root, model_hash)

    @staticmethod
    def _check_precision(precision: str | None) -> str:
        if precision not in (None, "fp32", "int8"):
            raise ConfigError(f"ONNX Runtime engines are fp32 or int8, not {precision}: use --backend tensorrt for "
                              "fp16 (on a machine with TensorRT and a CUDA GPU), or torch with fp16 on a GPU")
        return precision or "fp32"

    def _check(self, folder: Path, model_hash: str, names: tuple[str, ...] | None,
               precision: str = "fp32") -> EngineManifest:
        manifest = EngineManifest.load(folder)
        manifest.check_compatible(model_hash=model_hash, backend=self.backend, precision=precision, where=folder)
        if names is not None:
            missing = [n for n in names if n not in manifest.stages]
            if missing:
                raise EngineError(f"{folder} has no ONNX graph for {missing}: run `vibe-rt engines build --backend "
                                  f"onnxruntime --precision {precision}`")
        manifest.verify_files(folder, names)
        for name, art in manifest.stages.items():
            if names is None or name in names:
                validate_onnx_file(folder / art.file)
        return manifest

    def load(self, model_hash: str, *, precision: str | None = None, fused: bool = False) -> tuple[
            Path, EngineManifest]:
        """See :class:`_CachedStore`."""
        precision = self._check_precision(precision)
        folder = self.folder(model_hash, precision)
        return folder, self._check(folder, model_hash, (CHAIN,) if fused else STAGES, precision)

    def ensure(self, model: LoadedModel | ViBE, *, precision: str | None = None, fused: bool = True,
               batch: tuple[int, int, int] | None = None, force: bool = False, rebuild_invalid: bool = False,
               calibration_dir: str | Path | None = None) -> tuple[Path, EngineManifest]:
        """See :class:`_CachedStore`. Missing graphs are added to a sound existing export; ``precision="int8"``
        quantizes the fp32 graphs (exported first if needed) with :meth:`_ensure_int8`."""
        precision = self._check_precision(precision)
        model = as_loaded(model)
        if precision == "int8":
            return self._ensure_int8(model, fused=fused, batch=batch, force=force, rebuild_invalid=rebuild_invalid,
                                     calibration_dir=calibration_dir)
        mhash = model.model_hash
        folder = self.folder(mhash)
        existing: EngineManifest | None = None
        if not force and (folder / MANIFEST_NAME).is_file():
            try:
                existing = self._check(folder, mhash, None)  # sound before it is reused or added to
            except EngineError as err:
                if not rebuild_invalid:
                    raise
                logger.warning("re-exporting ONNX graphs: %s", err)
        todo = [n for n in _graph_names(fused) if existing is None or n not in existing.stages]
        if existing is not None and not todo:
            logger.info("ONNX graphs of model %s are up to date in %s", mhash, folder)
            return folder, existing
        logger.info("exporting ONNX graphs %s of model %s to %s", ", ".join(todo), mhash, folder)
        t0 = time.perf_counter()
        modules = stage_modules(model.model, fused=CHAIN in todo)
        examples = stage_example_inputs(model.model, batch=2)  # trace at batch 2: no batch-1 specialisation
        stages: dict[str, StageArtifact] = dict(existing.stages) if existing else {}
        with _staging(self.root) as staging:
            for name in todo:
                stages[name] = self._export(name, modules[name], examples[name], staging)
            manifest = EngineManifest(model_hash=mhash, backend=self.backend, precision="fp32", stages=stages,
                                      batch=batch or DEFAULT_BATCH, opset=self.opset, versions=library_versions(),
                                      gpu=None, build_seconds=round(time.perf_counter() - t0, 3),
                                      extra={"parity_tolerance": self.tolerance, "parity_batch": PARITY_BATCH})
            _install(staging, folder, manifest)
        return folder, manifest

    def _export(self, name: str, module, example, staging: Path) -> StageArtifact:
        """Export one graph into ``staging`` and check it against PyTorch with ONNX Runtime."""
        in_name, out_name = STAGE_IO[name]
        path = export_onnx(module, example, staging / f"{name}.onnx", input_name=in_name, output_name=out_name,
                           opset=self.opset, dynamic_batch=True)
        runner = OnnxRuntimeBackend(path, device="cpu", validate=False, intra_op_threads=None)
        err, out_shape = _parity(runner, module, example, PARITY_BATCH, seed=1)
        logger.info("exported %s graph: onnxruntime vs torch relative error %.2e", name, err)
        if not err < self.tolerance:
            raise EngineError(f"ONNX export of the {name} stage does not match PyTorch: relative error {err:.3g} "
                              f">= {self.tolerance:g}. The graph uses an operator that exports wrongly at opset "
                              f"{self.opset}")
        return StageArtifact(file=path.name, sha256=sha256_file(path), input_name=in_name, output_name=out_name,
                             input_shape=_shape(example.shape), output_shape=_shape(out_shape),
                             parity_error=float(err))

    def _ensure_int8(self, model: LoadedModel, *, fused: bool, batch: tuple[int, int, int] | None, force: bool,
                     rebuild_invalid: bool, calibration_dir: str | Path | None) -> tuple[Path, EngineManifest]:
        """The INT8 graphs of ``model``: its fp32 graphs (exported if needed) quantized
        (:func:`~vibe_rt.runtime.quantize.quantize_dynamic_graph`), kept only when the epochs of the INT8 chains
        (staged, and fused when built) correlate with the fp32 PyTorch chain's at r >= :data:`MIN_EPOCH_R` on
        the calibration images, over all values and in their image-specific part (:func:`_int8_parity`);
        otherwise EngineError and nothing is written."""
        mhash = model.model_hash
        folder = self.folder(mhash, "int8")
        names = _graph_names(fused)
        cached = None if force else _reusable(folder, lambda: self._check(folder, mhash, None, "int8"),
                                              lambda m: all(n in m.stages for n in names),
                                              rebuild_invalid=rebuild_invalid, what=f"int8 graphs of model {mhash}")
        if cached is not None:
            return folder, cached
        fp32_folder, fp32 = self.ensure(model, fused=fused, batch=batch, rebuild_invalid=rebuild_invalid)
        cdir = Path(calibration_dir) if calibration_dir else default_calibration_dir()
        images = load_calibration_images(cdir, model.model.encoder.preprocess_frames)
        logger.info("quantizing the ONNX graphs %s of model %s to int8 (once; cached in %s)", ", ".join(names), mhash,
                    folder)
        t0 = time.perf_counter()
        with _staging(self.root) as staging:
            nodes = {name: quantize_dynamic_graph(fp32_folder / fp32.stages[name].file,
                                                  staging / fp32.stages[name].file) for name in names}
            for name in names:
                validate_onnx_file(staging / fp32.stages[name].file)
            runners = {name: OnnxRuntimeBackend(staging / fp32.stages[name].file, precision="int8", validate=False)
                       for name in names}
            errors, epoch_r = _int8_parity(model.model, runners, images)
            logger.info("int8 graphs: relative error vs torch fp32 %s; epoch r %s",
                        ", ".join(f"{k} {v:.2e}" for k, v in errors.items()),
                        ", ".join(f"{k} {v:.4f}" for k, v in epoch_r.items()))
            bad = {k: r for k, r in epoch_r.items() if not r >= MIN_EPOCH_R}
            if bad:
                worst = ", ".join(f"{k.replace('_', ' ')} {r:.4f}" for k, r in bad.items())
                raise EngineError(f"the int8 epochs correlate with the fp32 chain's at r = {worst} < {MIN_EPOCH_R} "
                                  f"on the {len(images)} calibration images of {cdir}: int8 loses too much for "
                                  "this model; use --precision fp32, or a calibration set like the images you "
                                  "show (--calibration DIR)")
            stages = {name: dataclasses.replace(fp32.stages[name],
                                                sha256=sha256_file(staging / fp32.stages[name].file),
                                                parity_error=float(errors[name])) for name in names}
            manifest = EngineManifest(
                model_hash=mhash, backend=self.backend, precision="int8", stages=stages, batch=fp32.batch,
                opset=fp32.opset, versions=library_versions(), gpu=None,
                build_seconds=round(time.perf_counter() - t0, 3),
                extra={"method": "dynamic", "quantized_ops": list(QUANTIZED_OPS), "quantized_nodes": nodes,
                       "calibration": str(cdir), "calibration_images": int(len(images)), "epoch_r": epoch_r,
                       "min_epoch_r": MIN_EPOCH_R, "onnx_sha256": {n: fp32.stages[n].sha256 for n in names}})
            _install(staging, folder, manifest)
        return folder, manifest

    def verify(self, folder: Path, manifest: EngineManifest, model: LoadedModel | None) -> VerifyResult:
        """See :class:`_CachedStore`; an int8 set has its epoch r re-measured on the calibration images it was
        built with (the default set where that folder is gone)."""
        manifest.verify_files(folder)
        for art in manifest.stages.values():
            validate_onnx_file(folder / art.file)
        runners = {name: OnnxRuntimeBackend(folder / art.file, precision=manifest.precision, validate=False)
                   for name, art in manifest.stages.items()} if model is not None else {}
        if manifest.precision != "int8" or model is None:
            return _verified(folder, manifest, model, runners, PARITY_TOLERANCE["fp32"], "graph")
        cdir = Path(manifest.extra.get("calibration") or default_calibration_dir())
        images = load_calibration_images(cdir if cdir.is_dir() else default_calibration_dir(),
                                         model.model.encoder.preprocess_frames)
        errors, epoch_r = _int8_parity(model.model, runners, images)
        bad = {k: r for k, r in epoch_r.items() if not r >= MIN_EPOCH_R}
        if bad:
            worst = ", ".join(f"{k} {r:.4f}" for k, r in bad.items())
            raise EngineError(f"int8 graphs differ from the model: epoch r {worst} < {MIN_EPOCH_R}; rebuild with "
                              "`vibe-rt engines build --backend onnxruntime --precision int8 --force`")
        return VerifyResult(folder, manifest.backend, manifest.precision, "ok", "ok",
                            {**errors, **{f"epoch_r_{k}": r for k, r in epoch_r.items()}})

    def _runner(self, path: Path, *, device: str, precision: str, options: RunnerOptions) -> Backend:
        return OnnxRuntimeBackend(path, device=device, precision=precision, intra_op_threads=options.intra_op_threads,
                                  validate=False)  # checksums + onnx.checker done by load/ensure


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


def _int8_parity(model, runners: Mapping[str, Backend], images: np.ndarray, batch_size: int = 8) -> tuple[
        dict[str, float], dict[str, float]]:
    """How far INT8 graphs are from the fp32 PyTorch stages on the calibration images.

    Returns
    -------
    errors : dict
        Per graph, the relative error (``max|a-b|/max|b|``) of its output, each fed the fp32 chain's input of that
        stage (the Q-Former the fp32 encoder's tokens ...).
    epoch_r : dict
        ``"staged"`` (the three INT8 stages in a row, as a staged predictor runs them) and, when built,
        ``"chain"`` (the fused INT8 graph): the :func:`~vibe_rt.runtime.quantize.pearson_r` of their epochs with
        the fp32 chain's; ``"<kind>_image_specific"``: the same for the part of the epochs that differs between
        images (:func:`~vibe_rt.runtime.quantize.image_specific_r`).
    """
    inputs = _calibration_batches(model, images, min(batch_size, len(images)))
    epochs = [torch_reference(stage_modules(model, fused=False)["decoder"], x) for x in inputs["decoder"]]
    reference = {"encoder": inputs["qformer"], "qformer": inputs["decoder"], "decoder": epochs, "chain": epochs}

    def run(name: str, x: np.ndarray) -> np.ndarray:
        return runners[name].run({runners[name].input_name: x})[runners[name].output_name]

    outputs = {name: [run(name, x) for x in inputs[name]] for name in runners}
    errors = {name: relative_error(np.concatenate(out), np.concatenate(reference[name]))
              for name, out in outputs.items()}
    ref_epochs = np.concatenate(epochs)
    chains: dict[str, list[np.ndarray]] = {}
    if all(s in runners for s in STAGES):
        chains["staged"] = [run("decoder", run("qformer", run("encoder", x))) for x in inputs["encoder"]]
    if CHAIN in runners:
        chains["chain"] = outputs[CHAIN]
    epoch_r: dict[str, float] = {}
    for kind, out in chains.items():
        epoch_r[kind] = pearson_r(np.concatenate(out), ref_epochs)
        epoch_r[f"{kind}_image_specific"] = image_specific_r(np.concatenate(out), ref_epochs)
    return errors, epoch_r


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


class TensorRTStore(_CachedStore):
    """TensorRT plans compiled from the ONNX graphs, in ``<engines_dir>/<model-hash>/tensorrt-<precision>/``,
    for one TensorRT version and GPU (the timing cache is shared across models in
    ``<engines_dir>/timing-cache/trt<version>_sm<cc>.cache``)."""

    backend = "tensorrt"
    default_precision = "fp16"

    def folder(self, model_hash: str, precision: str = "fp16") -> Path:
        """``<engines_dir>/<model-hash>/tensorrt-<precision>``."""
        return tensorrt_dir(self.root, model_hash, precision)

    def load(self, model_hash: str, *, precision: str | None = None, fused: bool = False) -> tuple[
            Path, EngineManifest]:
        """See :class:`_CachedStore`: EngineError naming the mismatch (model, TensorRT version, GPU) or the corrupt
        file; checksums are verified before any plan reaches TensorRT's deserializer."""
        precision = precision or self.default_precision
        folder = self.folder(model_hash, precision)
        manifest = EngineManifest.load(folder)
        version, gpu = _tensorrt_target()
        manifest.check_compatible(model_hash=model_hash, backend=self.backend, precision=precision,
                                  tensorrt_version=version, gpu=gpu, where=folder)
        names = (CHAIN,) if fused else STAGES
        missing = [n for n in names if n not in manifest.stages]
        if missing:
            raise EngineError(f"{folder} has no plan for {missing}: rebuild with `vibe-rt engines build --backend "
                              f"tensorrt --precision {precision}`")
        manifest.verify_files(folder, names)
        return folder, manifest

    def ensure(self, model: LoadedModel | ViBE, *, precision: str | None = None, fused: bool = True,
               batch: tuple[int, int, int] | None = None, force: bool = False, rebuild_invalid: bool = False,
               calibration_dir: str | Path | None = None, calibration_batch: int = 8) -> tuple[
            Path, EngineManifest]:
        """See :class:`_CachedStore`: exports the ONNX graphs if needed, then compiles every graph, with
        parity against PyTorch recorded per plan. A plan that fails parity is refused like an ONNX graph (no
        manifest is written, nothing is left in the cache). ``calibration_batch``: INT8 calibration batch size."""
        from .tensorrt import TensorRTBackend, build_plan

        precision = precision or self.default_precision
        model = as_loaded(model)
        mhash = model.model_hash
        folder = self.folder(mhash, precision)
        names = _graph_names(fused)
        version, gpu = _tensorrt_target()
        cached = None if force else _reusable(
            folder, lambda: self.load(mhash, precision=precision)[1],
            lambda m: all(n in m.stages for n in names) and batch in (None, tuple(m.batch)),
            rebuild_invalid=rebuild_invalid, what=f"TensorRT {precision} plans of model {mhash}")
        if cached is not None:
            return folder, cached
        batch = batch or DEFAULT_BATCH
        logger.info("building TensorRT %s engines for model %s (once; cached afterwards)", precision, mhash)
        onnx_folder, onnx_manifest = OnnxStore(self.root).ensure(model, fused=fused, batch=batch,
                                                                 rebuild_invalid=rebuild_invalid)
        calib: dict[str, list[np.ndarray]] = {}
        if precision == "int8":
            cdir = Path(calibration_dir) if calibration_dir else default_calibration_dir()
            images = load_calibration_images(cdir, model.model.encoder.preprocess_frames)
            calib = _calibration_batches(model.model, images, min(calibration_batch, len(images)))
        timing = timing_cache_path(self.root, version, gpu["compute_capability"])
        modules = stage_modules(model.model, fused=fused)
        examples = stage_example_inputs(model.model, batch=2)
        tol = _tensorrt_tolerance(precision)
        t0 = time.perf_counter()
        stages: dict[str, StageArtifact] = {}
        with _staging(self.root) as staging:
            for name in names:
                table = folder / f"{name}.calib"
                if calib and table.is_file():  # the calibration table of an earlier build is reused
                    shutil.copy2(table, staging / table.name)
                src = onnx_manifest.stages[name]
                plan = build_plan(onnx_folder / src.file, staging / f"{name}.plan", precision=precision,
                                  batch=batch, timing_cache=timing, calibration=calib.get(name),
                                  calibration_cache=staging / table.name if calib else None)
                err = _parity(TensorRTBackend(plan, precision=precision), modules[name], examples[name],
                              min(PARITY_BATCH, batch[2]), seed=1)[0]
                logger.info("TensorRT %s %s plan: relative error vs torch fp32 %.2e (tolerance %.0e)", precision,
                            name, err, tol)
                if not err < tol:
                    raise EngineError(f"TensorRT {precision} {name} plan: relative error vs torch fp32 {err:.3g} >= "
                                      f"{tol:g}; build another precision (--precision fp16 or fp32), or for int8 a "
                                      "calibration set like the images you show (--calibration DIR)")
                stages[name] = StageArtifact(file=plan.name, sha256=sha256_file(plan), input_name=src.input_name,
                                             output_name=src.output_name, input_shape=src.input_shape,
                                             output_shape=src.output_shape, parity_error=float(err))
            manifest = EngineManifest(
                model_hash=mhash, backend=self.backend, precision=precision, stages=stages, batch=batch,
                opset=onnx_manifest.opset, versions=library_versions(), gpu=gpu,
                build_seconds=round(time.perf_counter() - t0, 3),
                extra={"parity_tolerance": tol, "tensorrt_version": version, "timing_cache": str(timing.name),
                       "onnx_sha256": {n: onnx_manifest.stages[n].sha256 for n in names},
                       "calibration": str(calibration_dir or default_calibration_dir()) if precision == "int8"
                       else None})
            _install(staging, folder, manifest)
        return folder, manifest

    def verify(self, folder: Path, manifest: EngineManifest, model: LoadedModel | None) -> VerifyResult:
        """See :class:`_CachedStore`; ``"skipped"`` after the checksums where TensorRT or a GPU is missing, and
        the TensorRT version and GPU must match to re-measure parity."""
        manifest.verify_files(folder)
        if not tensorrt_available():
            return VerifyResult(folder, manifest.backend, manifest.precision, "skipped",
                                "checksums ok; TensorRT or a CUDA GPU is not available here", {})
        from .tensorrt import TensorRTBackend

        version, gpu = _tensorrt_target()
        manifest.check_compatible(tensorrt_version=version, gpu=gpu, where=folder)
        runners = {name: TensorRTBackend(folder / art.file, precision=manifest.precision) for name, art in
                   manifest.stages.items()} if model is not None else {}
        return _verified(folder, manifest, model, runners, _tensorrt_tolerance(manifest.precision), "plan")

    def _runner(self, path: Path, *, device: str, precision: str, options: RunnerOptions) -> Backend:
        from .tensorrt import TensorRTBackend

        return TensorRTBackend(path, device=device, precision=precision, cuda_graph=options.cuda_graph)


#: The store of each backend, by name.
ENGINE_STORES: dict[str, type[EngineStore]] = {"torch": TorchStore, "onnxruntime": OnnxStore,
                                               "tensorrt": TensorRTStore}


def engine_store(backend: str, engines_dir: str | Path | None = None) -> EngineStore:
    """The :class:`EngineStore` of a backend name (``"torch"``, ``"onnxruntime"`` or ``"tensorrt"``)."""
    try:
        return ENGINE_STORES[backend](engines_dir)
    except KeyError:
        raise ConfigError(f"unknown backend {backend!r}: choose one of {', '.join(ENGINE_STORES)}") from None


# ---------------------------------------------------------------------------------------- vibe-rt engines
def build_engines(
    model: LoadedModel | ViBE,
    *,
    backend: str = "auto",
    precision: str | None = None,
    batch: tuple[int, int, int] = DEFAULT_BATCH,
    engines_dir: str | Path | None = None,
    fused: bool = True,
    force: bool = False,
    calibration_dir: str | Path | None = None,
) -> tuple[Path, EngineManifest]:
    """``vibe-rt engines build``: the ONNX export (onnxruntime; also for ``torch``, which needs no engines) or
    the TensorRT plans of ``model``, rebuilding an invalid cached set; ``precision`` defaults to fp16 for
    TensorRT, fp32 otherwise."""
    store = TensorRTStore(engines_dir) if select_backend(backend) == "tensorrt" else OnnxStore(engines_dir)
    return store.ensure(model, precision=precision, fused=fused, batch=batch, force=force, rebuild_invalid=True,
                        calibration_dir=calibration_dir)


def verify_engines(engines_dir: str | Path | None = None, model: LoadedModel | ViBE | None = None) -> list[
        VerifyResult]:
    """``vibe-rt engines verify``: check every cached engine folder (checksums, ONNX validity, compatibility)
    and that its manifest belongs to the model its folder is named after; for the folders of ``model``,
    re-measure parity against it. Folders of other models are ``"skipped"``, naming the model they belong to."""
    root = resolve_engines_dir(engines_dir)
    model = as_loaded(model) if model is not None else None
    results: list[VerifyResult] = []
    for folder, manifest in list_manifests(root):
        if isinstance(manifest, EngineError):
            results.append(VerifyResult(folder, "?", "?", "error", str(manifest), {}))
            continue
        owner = folder.relative_to(root).parts[0]  # <model-hash>/ or <model-hash>/tensorrt-<precision>/
        ours = model is not None and manifest.model_hash == model.model_hash
        try:
            store = ENGINE_STORES.get(manifest.backend)
            if store is None or not issubclass(store, _CachedStore):
                raise EngineError(f"unknown engine backend {manifest.backend!r} in {folder / MANIFEST_NAME}: delete "
                                  f"{folder} and rebuild with `vibe-rt engines build`")
            if manifest.model_hash != owner:
                raise EngineError(f"{folder} is the folder of model {owner}, but its manifest says the engines were "
                                  f"built for model {manifest.model_hash}: no model loads them; delete {folder} and "
                                  "rebuild with `vibe-rt engines build`")
            result = store(root).verify(folder, manifest, model if ours else None)
            if model is not None and not ours and result.status == "ok":
                result.status = "skipped"
                result.message = (f"checksums ok; engines of model {manifest.model_hash}, not of the model verified "
                                  f"({model.name}, {model.model_hash}): parity not measured")
        except EngineError as err:
            result = VerifyResult(folder, manifest.backend, manifest.precision, "error", str(err), {})
        results.append(result)
    return results
