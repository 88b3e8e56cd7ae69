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
    modes = _eval(module)
    dynamic_axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    buf = io.BytesIO()
    try:
        # No torch.no_grad() here: under no_grad, eval-mode nn.TransformerEncoderLayer/MultiheadAttention take
        # their fused "fast path" (aten::_transformer_encoder_layer_fwd), which has no ONNX symbolic.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about python control flow on shapes
            torch.onnx.export(
                module,
                (example_input,),
                buf,  # type: ignore[arg-type]  # torch writes to a file-like object too; its annotation omits it
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
        _restore(modes)
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    logger.debug("exported %s -> %s (opset %d)", type(module).__name__, path, opset)
    return path


def _eval(module) -> list:
    """Put ``module`` and all its submodules in eval mode; return their previous modes for :func:`_restore`.

    ``module.train(previous)`` would not do: it sets every submodule, and stage modules such as the SI decoder
    wrapper share submodules with the model (restoring "train" on the wrapper would flip the shared VAE).
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    return modes


def _restore(modes: list) -> None:
    for m, training in modes:
        m.training = training


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


# ---------------------------------------------------------------------------------------------- stage graphs
#: Tensor names of each stage graph: (input, output). The fused "chain" graph maps pixels -> epochs.
STAGE_IO: dict[str, tuple[str, str]] = {
    "encoder": ("pixels", "tokens"),
    "qformer": ("tokens", "latent"),
    "decoder": ("latent", "epochs"),
    "chain": ("pixels", "epochs"),
}


def chain_module(model):
    """The three stages of ``model`` as one ``torch.nn.Module`` (pixels -> epochs), for the fused graph."""
    import torch

    stages = model.stages()

    class _Chain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = stages["encoder"]
            self.qformer = stages["qformer"]
            self.decoder = stages["decoder"]

        def forward(self, pixels):
            return self.decoder(self.qformer(self.encoder(pixels)))

    chain = _Chain()
    chain.training = model.training  # only the wrapper flag: leave the shared stages as they are
    return chain


def stage_modules(model, *, fused: bool = True) -> dict:
    """``model.stages()`` plus, when ``fused``, the :func:`chain_module` under ``"chain"``."""
    modules = dict(model.stages())
    missing = [s for s in ("encoder", "qformer", "decoder") if s not in modules]
    if missing:
        raise EngineError(f"model.stages() lacks {missing}: expected encoder, qformer and decoder")
    if fused:
        modules["chain"] = chain_module(model)
    if not model.training:  # wrappers built by stages() (e.g. the SI decoder) start in train mode
        for module in modules.values():
            module.eval()
    return modules


def stage_example_inputs(model, batch: int = 1) -> dict:
    """Example input tensor of every stage graph (``chain`` takes the encoder's input)."""
    inputs = dict(model.example_inputs(batch))
    inputs["chain"] = inputs["encoder"]
    return inputs


def random_inputs(example, batch: int, seed: int = 0) -> np.ndarray:
    """Standard-normal float32 array with ``example``'s trailing shape and ``batch`` rows."""
    rng = np.random.default_rng(seed)
    shape = (batch, *tuple(example.shape[1:]))
    return rng.standard_normal(shape).astype(np.float32)


def validate_onnx_file(path: str | Path):
    """Load and check an ONNX file; raise EngineError when it is missing, truncated or malformed.

    Returns
    -------
    onnx.ModelProto
        The parsed model.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise EngineError(f"ONNX file {path} is missing: export it with `vibe-rt engines build`")
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception as err:  # DecodeError, ValidationError, OSError ...: all mean the same to the user
        raise EngineError(f"ONNX file {path} is corrupt or not an ONNX model ({type(err).__name__}: "
                          f"{str(err).strip()[:200]}): delete it and re-export with `vibe-rt engines build`") from err
    if len(proto.graph.input) != 1 or len(proto.graph.output) != 1:
        raise EngineError(f"ONNX file {path} has {len(proto.graph.input)} inputs and {len(proto.graph.output)} "
                          "outputs; vibe-rt stage graphs have one of each: re-export it")
    return proto


def torch_reference(module, x: np.ndarray) -> np.ndarray:
    """Run a module on CPU in fp32 (the parity reference)."""
    import torch

    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    modes = _eval(module)
    try:
        with torch.no_grad():
            out = module(torch.from_numpy(x).to(device))
    finally:
        _restore(modes)
    return out.detach().float().cpu().numpy()
