"""The library calls behind ``vibe-rt stream`` that join packages: options -> checkpoint -> predictor -> pipeline,
with the realistic background of :mod:`vibe_rt.data.noise`, the artifact topographies of
:mod:`vibe_rt.data.artifacts`, and, for an emulated device or a synthetic subject, the cap projection and
individual parameters of :mod:`vibe_rt.data`.

:mod:`vibe_rt.stream` runs a pipeline around any predictor and :mod:`vibe_rt.runtime` makes predictors; neither
imports the other (a test checks the dependency rule), nor :mod:`vibe_rt.data` (physiology). This module joins
them, handing the stream plain numbers and matrices::

    from vibe_rt.app import run_stream
    from vibe_rt.stream import StreamConfig
    summary = run_stream(StreamConfig(source="demo", srate=500, duration=60))
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ._logs import logger
from .stream import ResponsePredictor, StreamConfig, StreamPipeline, preflight
from .stream.run import StreamPlan, run_pipeline

if TYPE_CHECKING:
    from .data.subject import SyntheticSubject


def build_stream(config: StreamConfig, predictor: ResponsePredictor | None = None) -> StreamPipeline:
    """A (not started) pipeline for ``config``: checked first (:func:`~vibe_rt.stream.run.preflight`, before any
    model loads), then the predictor of ``config.model`` on ``config.backend`` unless ``predictor`` is given.

    With ``config.device`` or ``config.subject``, the model's channels are projected onto the target's (the
    device's cap, or the model's own channels on the subject's head) through the simulator's forward model
    (:func:`vibe_rt.data.cap.cap_projection`, one matrix computed here); the subject's latency shift moves every
    response, and the background is that subject's, on the streamed channels.
    """
    from .data.artifacts import artifact_topographies
    from .data.noise import BackgroundNoise
    from .data.subject import draw_subject

    plan = (preflight(config) if predictor is None
            else preflight(config, predictor.montage, getattr(predictor, "unit", None)))
    if predictor is None:
        from .runtime.predictor import load_predictor

        predictor = load_predictor(config.model, config.backend,
                                   precision=None if config.precision == "auto" else config.precision)
    meta = dict(getattr(predictor, "meta", {}))
    subject = draw_subject(config.subject) if config.subject is not None else None
    projection = None
    if plan.device is not None or subject is not None:
        plan, projection = _individualise(plan, subject, meta)
    spec = plan.synth
    background = (BackgroundNoise(plan.streamed_montage, plan.output.srate, seed=spec.seed, scale=spec.noise_scale,
                                  subject=subject) if spec.noise_scale > 0 else None)
    topographies = artifact_topographies(plan.streamed_montage) if spec.artifacts else None
    return plan.pipeline(predictor, meta, background=background, projection=projection,
                         artifact_topographies=topographies)


def _individualise(plan: StreamPlan, subject: SyntheticSubject | None, meta: dict[str, Any]
                   ) -> tuple[StreamPlan, np.ndarray]:
    """The cap projection (target x model) of ``plan`` for ``subject`` (None: the template), the plan with the
    subject's latency shift, and what was drawn written into ``meta`` (``desc/vibe_rt``) and the log."""
    from .data.cap import cap_projection

    projection = cap_projection(plan.model_montage, plan.target_montage, subject=subject)
    meta["cap_projection"] = projection.describe()
    logger.info("responses on %d channels: %s", projection.cap.n_channels, projection.describe())
    if subject is not None:
        logger.info(subject.describe())
        meta.update({f"subject_{k}": v for k, v in subject.to_dict().items() if v is not None})
        synth = dataclasses.replace(plan.synth, latency_shift_s=subject.latency_shift_s)
        plan = dataclasses.replace(plan, synth=synth)
    return plan, projection.matrix


def run_stream(config: StreamConfig, *, predictor: ResponsePredictor | None = None,
               on_status: Callable[[dict[str, Any]], None] | None = None,
               stop_event: threading.Event | None = None) -> dict[str, Any]:
    """Build the stream of ``config`` and run it (:func:`~vibe_rt.stream.run.run_pipeline`) for
    ``config.duration``; returns the final status."""
    return run_pipeline(build_stream(config, predictor), duration=config.duration, on_status=on_status,
                        stop_event=stop_event)


__all__ = ["build_stream", "run_stream"]
