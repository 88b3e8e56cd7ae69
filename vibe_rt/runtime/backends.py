"""Interchangeable inference backends: PyTorch (eager), ONNX Runtime and TensorRT.

Each backend runs one single-input single-output graph (a ViBE stage or the fused chain) behind the same small
interface, :class:`Backend`: ``run({input_name: array}) -> {output_name: array}`` on float32 numpy arrays, plus
``warmup()``, ``name``, ``device`` and ``precision``. The :class:`~vibe_rt.runtime.predictor.Predictor` chains
them. :func:`select_backend` resolves ``"auto"`` to the fastest backend that can run here.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._imports import import_optional_dependency
from .._logs import logger
from ..errors import ConfigError, EngineError

BACKENDS = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")


@runtime_checkable
class Backend(Protocol):
    """What every backend offers (one graph: one input tensor, one output tensor)."""

    name: str
    device: str
    precision: str
    input_name: str
    output_name: str

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on ``{input_name: float32 array (B, ...)}``; return ``{output_name: float32 array}``."""
        ...

    def warmup(self, batch: int = 1, n: int = 3, shape: tuple[int, ...] | None = None) -> None:
        """Run ``n`` times on zeros of batch ``batch`` (allocations, autotuning, graph capture); ``shape`` is the
        per-sample input shape (read from the graph where a backend can)."""
        ...


def _single_input(backend: Backend, inputs: dict[str, np.ndarray]) -> np.ndarray:
    try:
        x = inputs[backend.input_name]
    except KeyError:
        raise EngineError(
            f"{backend.name} backend expects input {backend.input_name!r}, got {sorted(inputs)}") from None
    x = np.asarray(x)
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    return np.ascontiguousarray(x)


def physical_cores() -> int:
    """Physical CPU cores this process may use (logical cores share execution units: no gain for GEMMs)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        allowed = os.cpu_count() or 1
    physical = None
    if importlib.util.find_spec("psutil"):
        import psutil

        physical = psutil.cpu_count(logical=False)
    return max(1, min(allowed, physical or allowed))


def default_intra_op_threads() -> int:
    """ONNX Runtime threads per operator by default: physical cores minus one, at least one.

    The streaming pipeline runs capture and LSL outlet threads beside inference; one core is left to them so
    that ORT's workers never delay an outlet push. Measured on a shared 2-core machine: the tiny model
    runs as fast on 1 thread as on 2 (min 2.97 vs 2.94 ms), and 2 threads under load lose 10x at the median.
    """
    return max(1, physical_cores() - 1)


def cuda_available() -> bool:
    """True when torch sees a CUDA device."""
    import torch

    return bool(torch.cuda.is_available())


# ---------------------------------------------------------------------------------------------------- torch
class TorchBackend:
    """PyTorch eager execution of one module.

    Parameters
    ----------
    module : torch.nn.Module
        The graph. It is copied before being moved to another device or cast to fp16, so the caller's module is
        left untouched.
    input_name, output_name : str
        Names used in ``run``'s dicts.
    device : str
        ``"cpu"`` or ``"cuda"`` / ``"cuda:N"``.
    precision : str
        ``"fp32"``, or ``"fp16"`` (CUDA only: weights and activations in half precision, output cast to fp32).
    compile : bool
        Wrap the module in ``torch.compile`` (first calls are slow; helps on GPU).
    cuda_graph : bool
        On CUDA, capture the module in a CUDA graph at ``warmup`` for that batch size and replay it for inputs
        of the same batch size (static shapes and buffers; other batch sizes run eagerly).
    """

    name = "torch"

    def __init__(self, module, *, input_name: str, output_name: str, device: str = "cpu", precision: str = "fp32",
                 compile: bool = False, cuda_graph: bool = False) -> None:
        import torch

        if precision not in ("fp32", "fp16"):
            raise ConfigError(f"torch backend supports fp32 and fp16, not {precision!r}")
        dev = torch.device(device)
        if dev.type != "cuda" and (precision == "fp16" or cuda_graph):
            raise ConfigError(f"torch {precision}{' with CUDA graphs' if cuda_graph else ''} needs a CUDA device, "
                              f"not {device!r}: use precision fp32 on CPU")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise EngineError("device 'cuda' requested but torch sees no CUDA GPU: use --device cpu")
        param = next(module.parameters(), None)
        current = param.device if param is not None else torch.device("cpu")
        if current != dev or precision == "fp16":
            module = copy.deepcopy(module).to(dev)
        if precision == "fp16":
            module = module.half()
        module.eval()
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        self.module = torch.compile(module) if compile else module
        self.input_name = input_name
        self.output_name = output_name
        self.device = str(dev)
        self.precision = precision
        self._torch_device = dev
        self._cuda_graph = cuda_graph
        self._graph: Any = None
        self._graph_batch: int | None = None
        self._static_in: Any = None
        self._static_out: Any = None

    def _forward(self, x):
        import torch

        with torch.inference_mode():
            return self.module(x)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """See :meth:`Backend.run`."""
        import torch

        x = _single_input(self, inputs)
        if self._graph is not None and x.shape[0] == self._graph_batch:
            self._static_in.copy_(torch.from_numpy(x).to(self._torch_device, non_blocking=False))
            self._graph.replay()
            out = self._static_out
        else:
            out = self._forward(torch.from_numpy(x).to(self._torch_device, self._dtype))
        # .cpu() synchronises the device, so per-call timings measured around run() are complete.
        return {self.output_name: out.float().cpu().numpy()}

    def warmup(self, batch: int = 1, n: int = 3, shape: tuple[int, ...] | None = None) -> None:
        """See :meth:`Backend.warmup`; ``shape`` is the per-sample input shape (needed for CUDA graphs)."""
        import torch

        if shape is None:
            return
        x = torch.zeros((batch, *shape), device=self._torch_device, dtype=self._dtype)
        for _ in range(n):
            self._forward(x)
        if self._cuda_graph and self._graph is None:
            self._static_in = x.clone()
            side = torch.cuda.Stream(self._torch_device)
            side.wait_stream(torch.cuda.current_stream(self._torch_device))
            with torch.cuda.stream(side):  # warm-up on a side stream before capture, as torch documents
                for _ in range(2):
                    self._forward(self._static_in)
            torch.cuda.current_stream(self._torch_device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph):
                self._static_out = self.module(self._static_in)
            self._graph, self._graph_batch = graph, batch
            logger.debug("captured a CUDA graph for batch %d", batch)
        if self._torch_device.type == "cuda":
            torch.cuda.synchronize(self._torch_device)


# ---------------------------------------------------------------------------------------------- onnxruntime
def ort_session_options(intra_op_threads: int | None = None, inter_op_threads: int = 1):
    """Session options chosen for low-latency single-request inference.

    ``intra_op_num_threads`` = :func:`default_intra_op_threads` (physical cores minus one: hyper-threads do not
    speed up GEMMs and the workers compete with the capture/outlet threads), ``inter_op_num_threads`` = 1
    with sequential execution (the stage graphs are chains: nothing to run in parallel), ``ORT_ENABLE_ALL`` graph
    optimisations (constant folding, attention/LayerNorm/GELU fusions, layout transforms), and workers that wait
    instead of spinning (``session.intra_op.allow_spinning = 0``, ONNX Runtime's "Thread management" docs).

    Each stage is its own session with its own pool, and a pool's workers spin on the cores after every run, so
    the next stage's run (and the capture and outlet threads) starts on cores they hold. Measured on a 2-core
    Intel Xeon VM, ViT-B-32 chain at 2 threads, batch 1, p50: fp32 105 -> 54 ms and int8 61 -> 24 ms with the
    workers waiting (85 -> 54 and 42 -> 24 ms with one variant loaded). With one thread there are no workers.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(intra_op_threads or default_intra_op_threads())
    opts.inter_op_num_threads = int(inter_op_threads)
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class OnnxRuntimeBackend:
    """ONNX Runtime session on one ONNX file.

    Parameters
    ----------
    onnx_path : str | Path
        The graph; it is checked with ``onnx.checker`` first (EngineError when corrupt) unless ``validate`` is
        False (the engine cache validates checksums itself).
    device : str
        ``"cpu"`` (CPUExecutionProvider) or ``"cuda"`` / ``"cuda:N"`` (CUDAExecutionProvider, needs the
        ``onnxruntime-gpu`` package).
    precision : str
        ``"fp32"``, or ``"int8"`` for a graph quantized by :mod:`~vibe_rt.runtime.quantize` (its input and
        output stay float32; the precision is recorded, the graph itself holds the integer operators).
    intra_op_threads : int | None
        Threads inside one operator (default: physical cores minus one, see :func:`default_intra_op_threads`).
    inter_op_threads : int
        Threads across operators (default 1: the graphs are sequential).
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, *, device: str = "cpu", precision: str = "fp32",
                 intra_op_threads: int | None = None, inter_op_threads: int = 1, validate: bool = True) -> None:
        ort = import_optional_dependency("onnxruntime")
        if precision not in ("fp32", "int8"):
            raise ConfigError(f"onnxruntime backend runs fp32 and int8 graphs, not {precision!r}: use --backend "
                              "tensorrt for fp16, or torch with fp16 on a GPU")
        onnx_path = Path(onnx_path)
        if validate:
            from .export import validate_onnx_file

            validate_onnx_file(onnx_path)
        if device == "cpu":
            providers: list[Any] = ["CPUExecutionProvider"]
        elif device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise EngineError("onnxruntime has no CUDAExecutionProvider here: install onnxruntime-gpu "
                                  "(pip install onnxruntime-gpu) or use --device cpu")
            index = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        else:
            raise ConfigError(f"unknown device {device!r}: use 'cpu' or 'cuda'")
        opts = ort_session_options(intra_op_threads, inter_op_threads)
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise EngineError(f"onnxruntime cannot load {onnx_path} ({err}): delete it and re-export with "
                              "`vibe-rt engines build --backend onnxruntime`") from err
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self._input_shape = self.session.get_inputs()[0].shape
        self.device = device
        self.precision = precision
        self.path = onnx_path
        self.intra_op_threads = opts.intra_op_num_threads

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """See :meth:`Backend.run`."""
        x = _single_input(self, inputs)
        (out,) = self.session.run([self.output_name], {self.input_name: x})
        return {self.output_name: out}

    def warmup(self, batch: int = 1, n: int = 3, shape: tuple[int, ...] | None = None) -> None:
        """See :meth:`Backend.warmup` (the per-sample shape is read from the graph when not given)."""
        if shape is None:
            shape = tuple(int(d) for d in self._input_shape[1:])
        x = np.zeros((batch, *shape), np.float32)
        for _ in range(n):
            self.run({self.input_name: x})


# ---------------------------------------------------------------------------------------------------- choice
def tensorrt_available() -> bool:
    """True when the ``tensorrt`` package imports and torch sees a CUDA GPU."""
    return import_optional_dependency("tensorrt", raise_error=False) is not None and cuda_available()


def select_backend(name: str = "auto") -> str:
    """Resolve a backend name, checking that it can run here.

    ``"auto"`` picks ``tensorrt`` when TensorRT and a CUDA GPU are present, else ``onnxruntime``, else
    ``torch``, and logs the choice. A forced ``"tensorrt"`` without the package raises
    :class:`~vibe_rt.errors.MissingDependencyError` naming the ``tensorrt`` extra.
    """
    name = name.lower()
    if name == "auto":
        if tensorrt_available():
            chosen, why = "tensorrt", "TensorRT and a CUDA GPU are present"
        elif import_optional_dependency("onnxruntime", raise_error=False) is not None:
            chosen = "onnxruntime"
            why = ("TensorRT is not installed" if import_optional_dependency("tensorrt", raise_error=False) is None
                   else "no CUDA GPU for TensorRT")
        else:
            chosen, why = "torch", "neither TensorRT nor onnxruntime is installed"
        logger.info("inference backend: %s (auto: %s)", chosen, why)
        return chosen
    if name == "tensorrt":
        import_optional_dependency("tensorrt")  # MissingDependencyError: pip install 'vibe-rt[tensorrt]'
        if not cuda_available():
            raise EngineError("the tensorrt backend needs a CUDA GPU and torch sees none: use --backend "
                              "onnxruntime or torch")
        return name
    if name == "onnxruntime":
        import_optional_dependency("onnxruntime")
        return name
    if name == "torch":
        return name
    raise ConfigError(f"unknown backend {name!r}: choose one of auto, {', '.join(BACKENDS)}")


def default_device(backend: str) -> str:
    """The device a backend runs on by default: CUDA where it can, else CPU."""
    if backend == "tensorrt":
        return "cuda"
    if not cuda_available():
        return "cpu"
    if backend == "onnxruntime":
        ort = import_optional_dependency("onnxruntime")
        return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
    return "cuda"
