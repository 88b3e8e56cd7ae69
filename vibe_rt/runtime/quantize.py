"""INT8 graphs for ONNX Runtime on a CPU: the stage graphs quantized, and the parity measure that accepts them.

:func:`quantize_dynamic_graph` is what ``vibe-rt engines build --backend onnxruntime --precision int8`` uses:
ONNX Runtime's dynamic quantization (``onnxruntime.quantization.quantize_dynamic``) of every ``MatMul`` and
``Gemm`` whose weight is a constant. Weights are stored as int8, per output channel; activations are quantized at
run time from each call's own range (``DynamicQuantizeLinear`` -> ``MatMulInteger``), so an outlier activation
costs that call's resolution, not a range fixed in advance on calibration images. ``Conv`` stays fp32: ONNX
Runtime's ``ConvInteger`` is slower than its fp32 convolution on a CPU (measured on this project's 2-core AMD EPYC
with AVX-512 VNNI, 1 thread: the TSC-VAE decoder 0.29 -> 0.77 ms for the embedded model, 2.4 -> 10.9 ms for
ViT-B-32's), while the transformers' matrix products gain (ViT-B-32 encoder 72 -> 29 ms).

:func:`quantize_static_graph` (static QDQ quantization, activation ranges calibrated on images) is measured beside
it by ``vibe-rt bench inference`` on the image encoder. On the random-weight ViT-B-32 it gained less over fp32
(2.5x vs 2.9x on 1 thread, 2.2x vs 2.8x on 2) and was less exact (relative error of the tokens 2.2e-2 vs 1.5e-2);
a range fixed in advance on calibration images is also what a trained CLIP's outlier activations break, so the
engines are dynamic.

The parity of an INT8 chain is measured on its epochs against the fp32 chain's on the calibration images, twice,
and both must reach :data:`MIN_EPOCH_R`: :func:`pearson_r` over all images, channels and samples, and
:func:`image_specific_r`, the same on the epochs' deviations from their mean over the images. The first alone is
blind to what the model is for: in an untrained model the image-independent mean response holds all but 6e-5 of
the epochs' variance (the random-weight tiny preset), and an INT8 Q-Former whose input quantization had destroyed
every token (relative error 0.68) still gave r = 0.99995 over all values, against 3e-8 for the image-specific part.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import EngineError

#: Operators quantized (those with a constant weight input); Conv stays fp32 (see the module docstring).
QUANTIZED_OPS = ("MatMul", "Gemm")
#: Smallest Pearson r of the INT8 chain's epochs vs the fp32 chain's on the calibration images.
MIN_EPOCH_R = 0.99
#: INT8 quantization methods: the engines' (dynamic) and the one measured beside it (static).
METHODS = ("dynamic", "static")


class _DropPreprocessAdvice(logging.Filter):
    """onnxruntime.quantization logs advice to run its shape pre-processing on the root logger for every
    graph; the stage graphs are exported with static shapes but the batch, so the advice does not apply."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root, flt = logging.getLogger(), _DropPreprocessAdvice()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def quantized_nodes(path: str | Path) -> int:
    """Number of integer operators in an ONNX graph (``MatMulInteger``, ``QLinear*``, ``DequantizeLinear`` of
    weights ...): 0 means quantization left the graph as it was."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return sum(node.op_type in ("MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv", "QGemm",
                                "DynamicQuantizeMatMul", "QuantizeLinear") for node in proto.graph.node)


def quantize_dynamic_graph(src: str | Path, dst: str | Path) -> int:
    """Write the dynamically quantized ``src`` to ``dst`` (see the module docstring); return
    :func:`quantized_nodes` of the result. EngineError when ONNX Runtime cannot quantize the graph."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with _quiet_root_logger():
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=list(QUANTIZED_OPS), extra_options={"MatMulConstBOnly": True})
    except Exception as err:  # onnxruntime.quantization raises plain ValueError/RuntimeError/onnx errors
        raise EngineError(f"ONNX Runtime cannot quantize {src} to int8 ({type(err).__name__}: {err}); build "
                          "fp32 engines instead (--precision fp32)") from err
    return quantized_nodes(dst)


def quantize_static_graph(src: str | Path, dst: str | Path, inputs: Sequence[np.ndarray], input_name: str) -> int:
    """Write the statically quantized ``src`` (QDQ format, int8 weights per channel, uint8 activations whose
    ranges are the min/max over ``inputs``: batches of the graph's input) to ``dst``; return
    :func:`quantized_nodes` of the result."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class _Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{input_name: np.ascontiguousarray(x, np.float32)} for x in inputs])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    try:
        with _quiet_root_logger():
            quantize_static(str(src), str(dst), _Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            op_types_to_quantize=list(QUANTIZED_OPS), calibrate_method=CalibrationMethod.MinMax)
    except Exception as err:
        raise EngineError(f"ONNX Runtime cannot statically quantize {src} ({type(err).__name__}: {err})") from err
    return quantized_nodes(dst)


def pearson_r(actual: np.ndarray, reference: np.ndarray) -> float:
    """Pearson correlation of two arrays of the same shape over all their values (NaN when either is constant
    or holds a non-finite value, so that such a graph never passes a parity check)."""
    a = np.asarray(actual, np.float64).ravel()
    b = np.asarray(reference, np.float64).ravel()
    if a.shape != b.shape:
        raise EngineError(f"shape mismatch in the epoch parity check: {np.shape(actual)} vs {np.shape(reference)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b / denom) if denom > 0 else float("nan")


def image_specific_r(actual: np.ndarray, reference: np.ndarray) -> float:
    """:func:`pearson_r` of the deviations of ``actual`` and ``reference`` (images first: (B, ...)) from their
    mean over the images: how well what differs between images is kept (NaN for fewer than two images)."""
    a, b = np.asarray(actual, np.float64), np.asarray(reference, np.float64)
    if a.shape[0] < 2:
        return float("nan")
    return pearson_r(a - a.mean(axis=0), b - b.mean(axis=0))


__all__ = ["METHODS", "MIN_EPOCH_R", "QUANTIZED_OPS", "image_specific_r", "pearson_r", "quantize_dynamic_graph",
           "quantize_static_graph", "quantized_nodes"]
