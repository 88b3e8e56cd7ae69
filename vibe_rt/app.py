"""The library calls behind ``vibe-rt stream`` that join packages: options -> checkpoint -> predictor -> pipeline,
with the realistic background of :mod:`vibe_rt.data.noise`.

:mod:`vibe_rt.stream` runs a pipeline around any predictor and :mod:`vibe_rt.runtime` makes predictors; neither
imports the other (a test checks the dependency rule). This module joins them::

    from vibe_rt.app import run_stream
    from vibe_rt.stream import StreamConfig
    summary = run_stream(StreamConfig(source="demo", srate=500, duration=60))
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from .stream import ResponsePredictor, StreamConfig, StreamPipeline, preflight
from .stream.run import run_pipeline


def build_stream(config: StreamConfig, predictor: ResponsePredictor | None = None) -> StreamPipeline:
    """A (not started) pipeline for ``config``: checked first (:func:`~vibe_rt.stream.run.preflight`, before any
    model loads), then the predictor of ``config.model`` on ``config.backend`` unless ``predictor`` is given."""
    from .data.noise import BackgroundNoise

    plan = preflight(config, predictor.montage if predictor is not None else None)
    if predictor is None:
        from .runtime.predictor import load_predictor

        predictor = load_predictor(config.model, config.backend,
                                   precision=None if config.precision == "auto" else config.precision)
    spec = plan.synth
    background = (BackgroundNoise(plan.streamed_montage, plan.output.srate, seed=spec.seed, scale=spec.noise_scale)
                  if spec.noise_scale > 0 else None)
    return plan.pipeline(predictor, dict(getattr(predictor, "meta", {})), background=background)


def run_stream(config: StreamConfig, *, predictor: ResponsePredictor | None = None,
               on_status: Callable[[dict[str, Any]], None] | None = None,
               stop_event: threading.Event | None = None) -> dict[str, Any]:
    """Build the stream of ``config`` and run it (:func:`~vibe_rt.stream.run.run_pipeline`) for
    ``config.duration``; returns the final status."""
    return run_pipeline(build_stream(config, predictor), duration=config.duration, on_status=on_status,
                        stop_event=stop_event)


__all__ = ["build_stream", "run_stream"]
