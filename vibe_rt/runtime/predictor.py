"""The predictor: frames -> preprocessed pixels -> encoder -> Q-Former -> decoder -> epochs, on one backend.

``create_predictor`` picks the backend (``"auto"``: TensorRT with a GPU, else ONNX Runtime, else torch),
finds or builds its engines through the backend's :class:`~vibe_rt.runtime.cache.EngineStore`, and returns a
:class:`Predictor`; ``load_predictor`` does the same for a checkpoint path (``--model``). The three stages run as
separate graphs by default (per-stage timings for the latency budget); ``fused=True`` runs the single fused
chain graph instead (one graph, no host round trips between stages).

Default: staged. Measured on CPU with ONNX Runtime (batch 1, 1 thread, shared 2-core AMD EPYC, variants
interleaved round-robin; ``benchmarks/results/inference_latency-cpu-amd-epyc-2c.json``): on the embedded model
the fused chain takes 2.67 ms at the median against 3.09 ms staged (14 %; 17 % in another run, 8-11 % at the
minimum in earlier ones); on ViT-B-32 they are equal within 1 %. Staged stays the default, and the stream
pipeline uses it: per-stage timings are part of the predictor's contract (latency budget, status line), a
calibration's latent adapter runs between the Q-Former and the decoder, and 0.4 ms is 0.2 % of the default
250 ms lookahead. Callers that want the fused graph pass ``fused=True`` and get ``timings = {"chain",
"total"}``. On a GPU, where each stage boundary is a host round trip, the gap should be larger: measure with
``benchmarks/inference_latency.py --device cuda``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._logs import logger
from ..errors import ConfigError
from .backends import Backend, default_device, select_backend
from .export import stage_example_inputs
from .manifest import CHAIN, STAGES

if TYPE_CHECKING:
    from ..checkpoint import LoadedModel
    from ..models.vibe import ViBE


class Predictor:
    """One ViBE chain on one backend.

    Parameters
    ----------
    model : LoadedModel | ViBE
        The model (its montage, image encoder preprocessing and torch modules), with its document and hash; a
        :class:`ViBE` is wrapped (:func:`~vibe_rt.checkpoint.as_loaded`).
    runners : dict of str to Backend
        ``{"encoder", "qformer", "decoder"}`` (staged) or ``{"chain"}`` (fused).
    backend_name : str
        ``"torch"``, ``"onnxruntime"`` or ``"tensorrt"``.

    Attributes
    ----------
    loaded : LoadedModel
        The model with its document and hash.
    model : ViBE
        ``loaded.model``.
    montage : Montage
        Channels, rate and epoch window of the predicted epochs.
    image_size : int
        Side S of the encoder's square input.
    fused : bool
        True when the chain runs as one graph.
    device, precision : str
        Where and in which precision the graphs run.
    latent_adapter : callable | None
        Applied to the Q-Former's latent before the decoder (a calibration profile's
        :class:`~vibe_rt.calibration.LatentAdapter`; staged chains only); set with :meth:`set_latent_adapter`.
    """

    def __init__(self, model: LoadedModel | ViBE, runners: dict[str, Backend], *, backend_name: str) -> None:
        from ..checkpoint import as_loaded

        if set(runners) not in (set(STAGES), {CHAIN}):
            raise ConfigError(f"runners must be {STAGES} or ('chain',), got {sorted(runners)}")
        self.loaded = as_loaded(model)
        self.model = self.loaded.model
        self.runners = runners
        self.backend_name = backend_name
        self.fused = CHAIN in runners
        first = next(iter(runners.values()))
        self.device = first.device
        self.precision = first.precision
        self.montage = self.model.montage
        self.image_size = int(self.model.encoder.image_size)
        self._order = (CHAIN,) if self.fused else STAGES
        self._shapes = {k: tuple(v.shape[1:]) for k, v in stage_example_inputs(self.model, batch=1).items()}
        self.latent_adapter = None

    @property
    def meta(self) -> dict[str, str]:
        """What a stream says about its model: ``backend``, ``precision``, ``model`` (the checkpoint's name) and
        ``model_hash``."""
        return {"backend": self.backend_name, "precision": self.precision, "model": self.loaded.name,
                "model_hash": self.loaded.model_hash}

    @property
    def unit(self) -> str:
        """The unit of the predicted epochs (:attr:`vibe_rt.checkpoint.LoadedModel.unit`: SI, or ``"a.u."``)."""
        return self.loaded.unit

    def __repr__(self) -> str:
        return (f"Predictor(backend={self.backend_name!r}, device={self.device!r}, precision={self.precision!r}, "
                f"fused={self.fused}, montage={self.montage.name!r})")

    def set_latent_adapter(self, adapter) -> None:
        """Apply ``adapter`` (a :class:`~vibe_rt.calibration.LatentAdapter`, or None to remove it) between
        the Q-Former and the decoder. Raises :class:`ConfigError` when it was fitted for another model or the chain
        is fused (no latent between the graphs)."""
        if adapter is None:
            self.latent_adapter = None
            return
        if self.fused:
            raise ConfigError("a latent adapter needs the staged chain (the fused graph has no latent between its "
                              "stages); create the predictor with fused=False")
        adapter.require_model(self.loaded.model_hash)
        latent = self._shapes["decoder"]
        if tuple(adapter.latent_shape) != latent:
            raise ConfigError(f"the latent adapter is for latents {tuple(adapter.latent_shape)}, this model's are "
                              f"{latent}")
        self.latent_adapter = adapter

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB frames (B,H,W,3) (or one (H,W,3)) -> float32 normalised pixels (B,3,S,S)."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ConfigError(f"frames must be uint8 (B,H,W,3) RGB, got shape {frames.shape}")
        return np.asarray(self.model.encoder.preprocess_frames(frames), dtype=np.float32)

    def predict(self, pixels: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """Predict epochs from preprocessed pixels.

        Parameters
        ----------
        pixels : ndarray, shape (B, 3, S, S)
            Output of :meth:`preprocess`.

        Returns
        -------
        epochs : ndarray, shape (B, C, T), float32
            Predicted responses in SI units (V for EEG, T or T/m for MEG).
        timings : dict of str to float
            Wall seconds per stage (``"encoder"``, ``"qformer"``, ``"decoder"``; ``"chain"`` when fused)
            and ``"total"``. Every backend returns host arrays, so each time includes device synchronisation.
        """
        x = np.ascontiguousarray(pixels, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (3, self.image_size, self.image_size):
            raise ConfigError(f"pixels must be (B, 3, {self.image_size}, {self.image_size}) float32, got {x.shape}")
        timings: dict[str, float] = {}
        start = time.perf_counter()
        for name in self._order:
            runner = self.runners[name]
            t0 = time.perf_counter()
            x = runner.run({runner.input_name: x})[runner.output_name]
            if name == "qformer" and self.latent_adapter is not None:
                x = self.latent_adapter(x)  # a few hundred multiply-adds: timed with the Q-Former
            timings[name] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - start
        return np.ascontiguousarray(x, dtype=np.float32), timings

    def warmup(self, batch: int = 1, n: int = 3) -> None:
        """Run every graph ``n`` times at ``batch`` (allocations, autotuning, CUDA graph capture)."""
        for name in self._order:
            self.runners[name].warmup(batch=batch, n=n, shape=self._shapes[name])


def create_predictor(
    model: LoadedModel | ViBE | None = None,
    backend: str = "auto",
    *,
    engines_dir: str | Path | None = None,
    precision: str | None = None,
    device: str | None = None,
    fused: bool = False,
    intra_op_threads: int | None = None,
    torch_compile: bool = False,
    cuda_graph: bool = False,
    build: bool = True,
    warmup: bool = True,
) -> Predictor:
    """Create a :class:`Predictor` for ``model`` (None: the embedded default model) on a backend.

    Parameters
    ----------
    model : LoadedModel | ViBE | None
        The model; None loads the embedded default checkpoint. A :class:`ViBE` is hashed when its engines are
        looked up: pass a :class:`~vibe_rt.checkpoint.LoadedModel` to hash it once.
    backend : str
        ``"auto"``, ``"torch"``, ``"onnxruntime"`` or ``"tensorrt"`` (see :func:`select_backend`).
    engines_dir : str | Path | None
        Engine cache (default :func:`~vibe_rt.runtime.manifest.default_engines_dir`).
    precision : str | None
        ``"fp32"``, ``"fp16"`` (torch on CUDA, TensorRT) or ``"int8"`` (TensorRT; ONNX Runtime on a CPU: graphs
        quantized once and cached, see :mod:`~vibe_rt.runtime.quantize`). Default: fp16 for TensorRT, fp32
        otherwise.
    device : str | None
        ``"cpu"`` or ``"cuda"``; default: CUDA where the backend can use it.
    fused : bool
        Run the fused chain graph instead of three stage graphs.
    intra_op_threads : int | None
        ONNX Runtime threads per operator (default: physical cores minus one, at least one).
    torch_compile, cuda_graph : bool
        Torch backend options (CUDA graphs also for TensorRT; both need static batch size, captured at warm-up).
    build : bool
        Export/build engines that are absent (ONNX on the fly; TensorRT plans take longer). Engines that exist
        but do not match or are corrupt are refused with EngineError either way.
    warmup : bool
        Run a batch-1 warm-up before returning.
    """
    from ..checkpoint import as_loaded, load_model
    from .cache import RunnerOptions, engine_store

    name = select_backend(backend)  # first: a missing dependency is reported before any model is loaded
    loaded = as_loaded(model) if model is not None else load_model(None)
    loaded.model.eval()
    store = engine_store(name, engines_dir)
    device = device or default_device(name)
    precision = precision or store.default_precision
    runners = store.runners(loaded, (CHAIN,) if fused else STAGES, build=build, device=device, precision=precision,
                            options=RunnerOptions(intra_op_threads, torch_compile, cuda_graph))
    predictor = Predictor(loaded, runners, backend_name=name)
    logger.info("predictor: %s on %s, %s, %s", name, device, precision, "fused" if fused else "staged")
    if warmup:
        predictor.warmup(batch=1)
    return predictor


def load_predictor(model: LoadedModel | str | Path | None = None, backend: str = "auto",
                   **options: Any) -> Predictor:
    """The predictor of a ``--model`` option: a checkpoint path (read and checked once), a loaded model, or
    None for the embedded default; ``options`` as for :func:`create_predictor`. Its :attr:`Predictor.meta`
    (backend, model name, model hash) is what a stream announces."""
    from ..checkpoint import LoadedModel, load_model

    return create_predictor(model if isinstance(model, LoadedModel) else load_model(model), backend, **options)
