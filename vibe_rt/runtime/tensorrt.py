"""TensorRT 10 engines: build serialized plans from the ONNX stage graphs, and run them.

Everything follows NVIDIA's documented TensorRT 10 Python API:

* build: ``trt.Builder`` -> ``create_network(0)`` (explicit batch is the only mode since TensorRT 10, the
  ``EXPLICIT_BATCH`` flag is deprecated and ignored) -> ``trt.OnnxParser.parse`` -> ``create_builder_config``
  with one optimisation profile (min/opt/max batch), ``BuilderFlag.FP16`` / ``BuilderFlag.INT8`` and a timing
  cache loaded from and saved to disk -> ``build_serialized_network`` -> plan bytes written to a ``.plan`` file;
* run: ``trt.Runtime.deserialize_cuda_engine`` -> ``create_execution_context`` -> per call
  ``set_input_shape`` + ``set_tensor_address`` for every I/O tensor -> ``execute_async_v3(stream)``.

Device memory and streams are torch CUDA tensors and a ``torch.cuda.Stream`` (``tensor.data_ptr()`` is the
device address TensorRT needs, ``stream.cuda_stream`` the ``cudaStream_t``): torch is already a dependency,
so no pycuda/cuda-python buffer code is needed. Host staging buffers are pinned (page-locked) torch tensors
so that host<->device copies are asynchronous DMA on the same stream. For static batch-1 real-time use, the
enqueue can be captured once in a CUDA graph and replayed (static shapes and fixed buffer addresses).

INT8: TensorRT 10.1 deprecated implicit quantisation with calibrators in favour of explicit quantisation (Q/DQ
nodes in the ONNX graph, e.g. from NVIDIA ModelOpt). The ViBE graphs carry no Q/DQ nodes, so ``int8`` builds
use the (deprecated but still shipped) ``IInt8EntropyCalibrator2`` fed from a folder of calibration images
(``calibration/int8/``), with FP16 enabled as the fallback for layers that INT8 does not cover. INT8 gains little
on small ViTs; measure before recommending it.

TensorRT is imported lazily (:func:`import_tensorrt`), so this module imports without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._imports import import_optional_dependency
from .._logs import logger
from ..errors import ConfigError, EngineError

#: Builder workspace limit (bytes). The ViBE stages need far less; larger limits only widen the tactic search.
DEFAULT_WORKSPACE = 1 << 30

_TRT_LOGGER: Any = None


def import_tensorrt():
    """``import tensorrt`` or raise MissingDependencyError naming the ``vibe-rt[tensorrt]`` extra."""
    return import_optional_dependency("tensorrt")


def tensorrt_version() -> str:
    """Installed TensorRT version string (e.g. ``"10.8.0.43"``)."""
    return str(import_tensorrt().__version__)


def trt_logger():
    """A ``trt.ILogger`` that forwards TensorRT messages to the vibe_rt logger (one per process; it must
    outlive every builder, runtime and engine created with it)."""
    global _TRT_LOGGER
    if _TRT_LOGGER is not None:
        return _TRT_LOGGER
    trt = import_tensorrt()
    class _Logger(trt.ILogger):  # type: ignore[name-defined]  # a base class from the lazily imported module
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg):  # noqa: D401 - TensorRT callback
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                logger.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                logger.warning("TensorRT: %s", msg)
            else:
                logger.debug("TensorRT: %s", msg)

    _TRT_LOGGER = _Logger()
    return _TRT_LOGGER


# ------------------------------------------------------------------------------------------------ calibration
def make_entropy_calibrator(batches: Sequence[np.ndarray], cache_file: str | Path | None = None):
    """An ``IInt8EntropyCalibrator2`` that feeds ``batches`` (float32, all the same shape) to the builder.

    Parameters
    ----------
    batches : sequence of ndarray
        Calibration inputs of the network being built, e.g. preprocessed calibration images for the encoder,
        or the encoder's outputs on them for the Q-Former.
    cache_file : str | Path | None
        Where TensorRT's calibration table is read from / written to (skips recalibration on rebuilds).
    """
    import torch

    trt = import_tensorrt()
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise EngineError(f"TensorRT {trt.__version__} has no IInt8EntropyCalibrator2 (implicit INT8 was removed): "
                          "quantise the ONNX graphs explicitly (Q/DQ nodes, NVIDIA ModelOpt) or build fp16")
    if not batches:
        raise EngineError("no calibration batches: put images in calibration/int8/ (see calibration/README.md)")
    cache_path = Path(cache_file) if cache_file else None

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[name-defined]  # see trt_logger
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = [np.ascontiguousarray(b, dtype=np.float32) for b in batches]
            self._index = 0
            self._device: Any = None  # keeps the current batch alive while TensorRT reads it

        def get_batch_size(self) -> int:
            return int(self._batches[0].shape[0])

        def get_batch(self, names):  # noqa: ARG002 - one input per stage graph
            if self._index >= len(self._batches):
                return None
            self._device = torch.from_numpy(self._batches[self._index]).cuda().contiguous()
            self._index += 1
            return [int(self._device.data_ptr())]

        def read_calibration_cache(self):
            if cache_path is not None and cache_path.is_file():
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            if cache_path is not None:
                cache_path.parent.mkdir(parents=True, exist_ok=True)
                cache_path.write_bytes(bytes(cache))

    return _EntropyCalibrator()


# ----------------------------------------------------------------------------------------------------- build
def _load_timing_cache(config, path: Path | None):
    data = b""
    if path is not None and path.is_file():
        data = path.read_bytes()
    try:
        cache = config.create_timing_cache(data)
    except Exception as err:  # a corrupt cache file must not stop the build
        logger.warning("ignoring unreadable TensorRT timing cache %s (%s)", path, err)
        cache = config.create_timing_cache(b"")
    # ignore_mismatch=False: entries from another device are rejected (the file name already keys by GPU).
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _save_timing_cache(config, path: Path | None) -> None:
    if path is None:
        return
    cache = config.get_timing_cache()
    if cache is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(bytes(memoryview(cache.serialize())))
    tmp.replace(path)


def build_plan(
    onnx_path: str | Path,
    plan_path: str | Path,
    *,
    precision: str = "fp16",
    batch: tuple[int, int, int] = (1, 1, 8),
    timing_cache: str | Path | None = None,
    calibration: Sequence[np.ndarray] | None = None,
    calibration_cache: str | Path | None = None,
    workspace: int = DEFAULT_WORKSPACE,
) -> Path:
    """Build a serialized TensorRT plan from a single-input ONNX graph with a dynamic batch axis.

    Parameters
    ----------
    onnx_path : str | Path
        Source graph (opset 17: LayerNorm is one ``INormalizationLayer``).
    plan_path : str | Path
        Output ``.plan`` file.
    precision : str
        ``"fp32"`` (TF32 disabled, for a strict reference), ``"fp16"`` or ``"int8"`` (needs ``calibration``).
    batch : tuple of int
        (min, opt, max) batch sizes of the optimisation profile.
    timing_cache : str | Path | None
        Timing cache file, loaded before and saved after the build (keyed by TensorRT version and GPU by
        :func:`vibe_rt.runtime.manifest.timing_cache_path`).
    calibration : sequence of ndarray | None
        INT8 calibration batches (see :func:`make_entropy_calibrator`).
    calibration_cache : str | Path | None
        INT8 calibration table file.
    workspace : int
        Builder workspace memory pool limit in bytes.

    Returns
    -------
    Path
        ``plan_path``.
    """
    trt = import_tensorrt()
    if precision not in ("fp32", "fp16", "int8"):
        raise ConfigError(f"unknown precision {precision!r}: choose fp32, fp16 or int8")
    bmin, bopt, bmax = (int(b) for b in batch)
    if not 1 <= bmin <= bopt <= bmax:
        raise ConfigError(f"batch profile {batch} must satisfy 1 <= min <= opt <= max")
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    log = trt_logger()
    builder = trt.Builder(log)
    network = builder.create_network(0)  # explicit batch: the only mode in TensorRT 10 (flag deprecated)
    parser = trt.OnnxParser(network, log)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {errors}")
    if network.num_inputs != 1:
        raise EngineError(f"{onnx_path} has {network.num_inputs} inputs; vibe-rt stage graphs have one")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))

    inp = network.get_input(0)
    per_sample = tuple(int(d) for d in inp.shape)[1:]
    if any(d < 0 for d in per_sample):
        raise EngineError(f"{onnx_path}: only the batch axis may be dynamic, input shape is {tuple(inp.shape)}")
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (bmin, *per_sample), (bopt, *per_sample), (bmax, *per_sample))
    config.add_optimization_profile(profile)

    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # strict fp32: the reference engine
    else:
        # BuilderFlag.FP16 is the weakly-typed way to allow fp16 kernels (newer TensorRT releases prefer strongly
        # typed networks; the flag still works in 10.x). INT8 builds keep FP16 as the fallback precision.
        config.set_flag(trt.BuilderFlag.FP16)
        # Keep normalisation layers (LayerNorm from opset 17) in fp32: fp16 LayerNorm after attention can
        # overflow. PREFER (not OBEY) lets TensorRT fall back if no fp32 kernel exists.
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type == trt.LayerType.NORMALIZATION:
                layer.precision = trt.float32
                layer.set_output_type(0, trt.float32)
    if precision == "int8":
        if not calibration:
            raise EngineError("int8 needs calibration images: see calibration/README.md (default calibration/int8/)")
        config.set_flag(trt.BuilderFlag.INT8)
        calib_batch = int(calibration[0].shape[0])
        calib_profile = builder.create_optimization_profile()
        shape = (calib_batch, *per_sample)
        calib_profile.set_shape(inp.name, shape, shape, shape)
        config.set_calibration_profile(calib_profile)
        config.int8_calibrator = make_entropy_calibrator(calibration, calibration_cache)

    timing_path = Path(timing_cache) if timing_cache else None
    _load_timing_cache(config, timing_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT failed to build {plan_path.name} from {onnx_path} ({precision}); see the "
                          "TensorRT messages above")
    _save_timing_cache(config, timing_path)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan_path.with_suffix(plan_path.suffix + ".tmp")
    tmp.write_bytes(bytes(memoryview(serialized)))
    tmp.replace(plan_path)
    logger.info("built TensorRT %s plan %s", precision, plan_path)
    return plan_path


# ------------------------------------------------------------------------------------------------------- run
class TensorRTBackend:
    """Run a serialized TensorRT plan (one input, one output) with torch-managed CUDA memory.

    The plan file must already have been checked against its manifest (checksum, TensorRT version, GPU) by
    the engine cache: TensorRT may abort the process on a malformed plan. ``deserialize_cuda_engine``
    returning None (wrong version/GPU) raises EngineError.

    Parameters
    ----------
    plan_path : str | Path
        The serialized engine.
    device : str
        ``"cuda"`` or ``"cuda:N"``.
    precision : str
        Precision the plan was built with (informational: I/O tensors stay float32).
    cuda_graph : bool
        Capture ``execute_async_v3`` in a CUDA graph at :meth:`warmup` for that batch size and replay it for
        inputs of that batch size (use with batch 1 for real-time streaming).
    """

    name = "tensorrt"

    def __init__(self, plan_path: str | Path, *, device: str = "cuda", precision: str = "fp16",
                 cuda_graph: bool = False) -> None:
        import torch

        trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise EngineError("the tensorrt backend needs a CUDA GPU and torch sees none")
        dev = torch.device(device if device.startswith("cuda") else "cuda")
        self._torch_device = torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())
        torch.cuda.set_device(self._torch_device)  # TensorRT uses the current device
        plan_path = Path(plan_path)
        try:
            data = plan_path.read_bytes()
        except OSError as err:
            raise EngineError(
                f"cannot read TensorRT plan {plan_path} ({err}): rebuild with `vibe-rt engines build`") from err
        self._runtime = trt.Runtime(trt_logger())
        self.engine = self._runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise EngineError(f"TensorRT {trt.__version__} cannot deserialize {plan_path} (corrupt, or built by "
                              "another TensorRT version or GPU): rebuild with `vibe-rt engines build --backend "
                              "tensorrt`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise EngineError(f"{plan_path} has inputs {inputs} and outputs {outputs}; expected one of each")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self._in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self._out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        bmin, bopt, bmax = (tuple(s) for s in self.engine.get_tensor_profile_shape(self.input_name, 0))
        self.batch_range = (int(bmin[0]), int(bopt[0]), int(bmax[0]))
        self._per_sample = tuple(int(d) for d in bopt[1:])
        self.stream = torch.cuda.Stream(self._torch_device)
        self.device = str(self._torch_device)
        self.precision = precision
        self.path = plan_path
        self._buffers: dict[int, tuple[Any, Any, Any, Any]] = {}
        self._cuda_graph = cuda_graph
        self._graph: Any = None
        self._graph_batch: int | None = None

    def _buffers_for(self, batch: int):
        """Pinned host + device buffers for one batch size (cached: fixed addresses, as CUDA graphs need)."""
        import torch

        if batch not in self._buffers:
            lo, _, hi = self.batch_range
            if not lo <= batch <= hi:
                raise EngineError(f"batch {batch} is outside the engine's profile {lo}..{hi}: rebuild with "
                                  f"`vibe-rt engines build --batch {min(lo, batch)}:1:{max(hi, batch)}`")
            in_shape = (batch, *self._per_sample)
            self.context.set_input_shape(self.input_name, in_shape)
            out_shape = tuple(int(d) for d in self.context.get_tensor_shape(self.output_name))
            tdt = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16}
            host_in = torch.empty(in_shape, dtype=tdt[self._in_dtype], pin_memory=True)
            host_out = torch.empty(out_shape, dtype=tdt[self._out_dtype], pin_memory=True)
            dev_in = torch.empty(in_shape, dtype=tdt[self._in_dtype], device=self._torch_device)
            dev_out = torch.empty(out_shape, dtype=tdt[self._out_dtype], device=self._torch_device)
            self._buffers[batch] = (host_in, dev_in, dev_out, host_out)
        return self._buffers[batch]

    def _bind(self, batch: int):
        host_in, dev_in, dev_out, host_out = self._buffers_for(batch)
        self.context.set_input_shape(self.input_name, tuple(dev_in.shape))
        self.context.set_tensor_address(self.input_name, int(dev_in.data_ptr()))
        self.context.set_tensor_address(self.output_name, int(dev_out.data_ptr()))
        return host_in, dev_in, dev_out, host_out

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise EngineError(f"TensorRT execution of {self.path.name} failed; see the TensorRT messages above")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """See :meth:`vibe_rt.runtime.backends.Backend.run`."""
        import torch

        from .backends import _single_input

        x = _single_input(self, inputs)
        if tuple(x.shape[1:]) != self._per_sample:
            raise EngineError(f"{self.input_name} has shape {x.shape}, the engine expects (B, *{self._per_sample})")
        batch = int(x.shape[0])
        host_in, dev_in, dev_out, host_out = self._bind(batch)
        host_in.numpy()[...] = x.astype(self._in_dtype, copy=False)
        with torch.cuda.stream(self.stream):
            dev_in.copy_(host_in, non_blocking=True)
            if self._graph is not None and batch == self._graph_batch:
                self._graph.replay()
            else:
                self._enqueue()
            host_out.copy_(dev_out, non_blocking=True)
        self.stream.synchronize()
        return {self.output_name: host_out.numpy().astype(np.float32, copy=True)}

    def warmup(self, batch: int = 1, n: int = 3, shape: tuple[int, ...] | None = None) -> None:  # noqa: ARG002
        """Run ``n`` times on zeros; with ``cuda_graph`` capture the enqueue for this batch size afterwards."""
        import torch

        x = np.zeros((batch, *self._per_sample), np.float32)
        for _ in range(n):
            self.run({self.input_name: x})
        if self._cuda_graph and self._graph is None:
            self._bind(batch)
            # TensorRT documents one enqueue before capture so that deferred shape work is not captured.
            with torch.cuda.stream(self.stream):
                self._enqueue()
            self.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                self._enqueue()
            self._graph, self._graph_batch = graph, batch
            logger.debug("captured a CUDA graph of %s for batch %d", self.path.name, batch)
