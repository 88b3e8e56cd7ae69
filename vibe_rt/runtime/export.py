"""Export of the ViBE stages to ONNX and parity checks against PyTorch.

Opset 17 is chosen deliberately: from opset 17 on, ``LayerNormalization`` is a single ONNX operator, which
TensorRT maps onto one normalisation layer that it keeps in safe (fp32) precision when building fp16 engines.
With older opsets LayerNorm is exported as ReduceMean/Sub/Pow/Sqrt/Div, and the variance of attention outputs
computed in fp16 can overflow. The graph that TensorRT compiles is the same graph that ONNX Runtime runs in CI.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from .._logs import logger
from ..errors import EngineError

#: ONNX opset used for every export (see the module docstring for why 17).
DEFAULT_OPSET = 17


def export_onnx(
    module,
    example_input,
    path: str | Path,
    *,
    input_name: str,
    output_name: str,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
) -> Path:
    """Export a single-input single-output module to an ONNX file.

    Parameters
    ----------
    module : torch.nn.Module
        The network; it is put in eval mode for the export.
    example_input : torch.Tensor
        An example input (batch first) used to trace the graph; its dtype and trailing shape are kept.
    path : str | Path
        Output ``.onnx`` file; parent folders are created. Written atomically (temporary file + rename).
    input_name, output_name : str
        Names of the graph input and output tensors (the backends address tensors by these names).
    opset : int
        ONNX opset version; 17 or newer keeps LayerNorm as one operator (see module docstring).
    dynamic_batch : bool
        If True, axis 0 of the input and output is a symbolic dimension ``"batch"``.

    Returns
    -------
    Path
        The written ONNX file.
    """
    import onnx
    import torch

    if opset < 17:
        logger.warning("ONNX opset %d < 17: LayerNorm is decomposed and may overflow in fp16 engines", opset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    module.eval()
    dynamic_axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about python control flow on shapes
            torch.onnx.export(
                module,
                (example_input,),
                buf,
                input_names=[input_name],
                output_names=[output_name],
                opset_version=opset,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as err:  # torch raises many kinds of errors from the tracer
        raise EngineError(f"ONNX export of {type(module).__name__} to {path} failed: {err}") from err
    finally:
        module.train(was_training)
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    logger.debug("exported %s -> %s (opset %d)", type(module).__name__, path, opset)
    return path


def relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """Return ``max|actual - reference| / max|reference|`` (0 when both are all zero)."""
    actual = np.asarray(actual, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if actual.shape != reference.shape:
        raise EngineError(f"shape mismatch in parity check: {actual.shape} vs reference {reference.shape}")
    denom = float(np.max(np.abs(reference))) if reference.size else 0.0
    num = float(np.max(np.abs(actual - reference))) if reference.size else 0.0
    if denom == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / denom
