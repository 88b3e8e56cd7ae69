"""From a :class:`StreamConfig` to a running stream, without the model: :func:`preflight` checks and resolves
the options into a :class:`StreamPlan` (what the pipeline takes), :func:`run_pipeline` runs a pipeline until it
is done.

The model comes from :mod:`vibe_rt.runtime` (which stream/ does not import); :func:`vibe_rt.app.run_stream` joins
the two, and is what ``vibe-rt stream`` calls::

    from vibe_rt.app import run_stream
    from vibe_rt.stream import StreamConfig
    summary = run_stream(StreamConfig(source="demo", srate=500, duration=60))
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._logs import logger
from ..calibration import CalibrationProfile, LatentAdapter
from ..devices import DeviceProfile, load_device
from ..errors import ConfigError
from ..montage import Montage
from ..units import parse_quantity, parse_unit, unit_dimension
from .artifacts import check_artifacts
from .clock import lsl_clock
from .config import InferenceSpec, OutputSpec, RecordSpec, StreamConfig, SynthSpec, parse_frame_size
from .events import EventPolicy, make_policy
from .pipeline import ResponsePredictor, StreamPipeline
from .sources import CameraSource, DemoSource, FrameSource, ImageFolderSource, VideoSource
from .synth import Background, resample_factors


@dataclass(frozen=True)
class StreamPlan:
    """What a valid :class:`StreamConfig` resolves to: the typed parts :class:`StreamPipeline` takes.

    Built by :func:`preflight`, which checks everything that can be checked before the model loads (options,
    source, device profile, montage channels, calibration, recording path), so that bad input is reported in one
    line first.
    """

    config: StreamConfig
    source: FrameSource | None
    policy: EventPolicy
    model_montage: Montage
    channels: tuple[str, ...] | None
    calibration: CalibrationProfile | None
    output: OutputSpec
    synth: SynthSpec
    inference: InferenceSpec
    record: RecordSpec | None
    device: DeviceProfile | None = None

    @property
    def target_montage(self) -> Montage:
        """The channels responses are made for: the device's cap (with the model's rate and epoch window), else
        the model's own."""
        return self.device.cap_for(self.model_montage) if self.device is not None else self.model_montage

    @property
    def streamed_montage(self) -> Montage:
        """The channels that are streamed (the target's, or the subset ``--montage`` names)."""
        return self.target_montage.pick(list(self.channels)) if self.channels else self.target_montage

    def pipeline(self, predictor: ResponsePredictor | None, extra_meta: dict[str, Any] | None = None,
                 background: Background | str | None = "auto", projection: np.ndarray | None = None,
                 artifact_topographies: Mapping[str, np.ndarray] | None = None) -> StreamPipeline:
        """A (not started) :class:`StreamPipeline` of this plan (``background``, ``projection``,
        ``artifact_topographies``: see
        :class:`StreamPipeline`)."""
        return StreamPipeline(
            predictor, source=self.source, policy=self.policy, montage=self.model_montage,
            channels=self.channels, output=self.output, synth=self.synth, inference=self.inference,
            record=self.record, calibration=self.calibration, background=background, extra_meta=extra_meta,
            device=self.device, projection=projection, artifact_topographies=artifact_topographies)


def build_source(cfg: StreamConfig) -> FrameSource | None:
    """The frame source described by ``cfg`` (not started)."""
    kind = cfg.resolved_source
    if kind == "camera":
        width, height = parse_frame_size(cfg.size)
        return CameraSource(cfg.camera or 0, width, height, cfg.fps)
    if kind == "video":
        return VideoSource(cfg.video, realtime=not cfg.as_fast_as_possible, loop=cfg.loop)  # type: ignore[arg-type]
    if kind == "images":
        return ImageFolderSource(cfg.images, cfg.on_s, cfg.off_s, loop=cfg.loop,  # type: ignore[arg-type]
                                 shuffle=cfg.shuffle, seed=cfg.seed)
    if kind == "demo":
        return DemoSource(seed=cfg.seed)
    return None


def preflight(config: StreamConfig, model_montage: Montage | None = None, model_unit: str | None = None
              ) -> StreamPlan:
    """Validate ``config`` and resolve it into a :class:`StreamPlan`, before any model is loaded.

    Parameters
    ----------
    config : StreamConfig
        The options.
    model_montage, model_unit : Montage | None, str | None
        The montage and output unit of the predictor that will be used; default: what the checkpoint document
        of ``config.model`` records (read without building the model). A predictor without a unit emits SI.
    """
    config.validate()
    device = load_device(config.device) if config.device else None
    output = config.output_spec(device)
    if device is not None and config.srate is not None:
        device.require_rate(output.srate)
    source = build_source(config)
    if source is not None:
        source.probe()  # a missing camera or unreadable file is reported before the model loads
    if model_montage is None:
        model_montage, model_unit = _checkpoint_description(config.model)
    model_scale = si_per_model_unit(model_unit or model_montage.unit, model_montage, config.unit_scale)
    if device is not None and model_montage.modality != "EEG":
        raise ConfigError(f"--device {device.name} emulates an EEG amplifier, but the model predicts "
                          f"{model_montage.modality} ({model_montage.name}); give an EEG model (--model)")
    resample_factors(model_montage.sfreq, output.srate)  # --srate must be a rational multiple of the model's
    target = device.cap_for(model_montage) if device is not None else model_montage
    channels = _channels(config.montage, target, f"the {device.name} cap" if device else "")
    streamed = target.pick(channels) if channels else target
    calibration = None
    if config.calibration is not None:
        calibration = CalibrationProfile.load(config.calibration)
        streamed = calibration.resolve(streamed).output_montage  # the labels the stream carries
        if calibration.adapter is not None:
            _check_adapter_model(calibration.adapter, config.model)
    synth = config.synth_spec(device, model_scale)
    check_artifacts(synth.artifacts, streamed, output.srate)
    policy = make_policy(config.resolved_events, rate=config.event_rate, threshold=config.threshold,
                         refractory=config.refractory, max_interval=config.max_interval or None)
    return StreamPlan(config, source, policy, model_montage, tuple(channels) if channels else None, calibration,
                      output, synth, config.inference_spec(), config.record_spec(), device)


def si_per_model_unit(model_unit: str, montage: Montage, unit_scale: str | None) -> float:
    """SI units per unit of a model's output: 1 for a model that emits its montage's SI unit; the factor of a
    physical unit it declares (e.g. ``"uV"``); what ``--unit-scale`` says for a model of a.u. data. A model of
    a.u. data without ``--unit-scale`` (or with one of the wrong dimension) is refused: its output has no
    physical unit, and the stream never labels numbers with a unit they are not in."""
    si = montage.unit
    if model_unit in (si, "SI"):
        if unit_scale is not None:
            raise ConfigError(f"--unit-scale {unit_scale!r}: the model already emits {si}; leave --unit-scale out")
        return 1.0
    if model_unit == "a.u.":
        if unit_scale is None:
            raise ConfigError(f"the model was trained on data in a.u. (whitened or z-scored, e.g. THINGS-EEG2 or "
                              f"THINGS-MEG as published), so its output has no physical unit and cannot stream as "
                              f"{si}; give --unit-scale 'N UNIT' (what one a.u. is in your recordings, e.g. "
                              "'2 uV'), then refine it with a calibration profile (vibe-rt calibrate)")
        value, dimension = parse_quantity(unit_scale, "--unit-scale")
        if dimension != si:
            raise ConfigError(f"--unit-scale {unit_scale!r} is in {dimension}, but montage {montage.name!r} "
                              f"streams {si}; give a value in {si}")
        return value
    factor = parse_unit(model_unit)
    if factor is None or unit_dimension(model_unit) != si:
        raise ConfigError(f"the checkpoint says its model emits {model_unit!r}, which is not a unit of montage "
                          f"{montage.name!r} ({si}); re-save it with the unit of its training data")
    if unit_scale is not None:
        raise ConfigError(f"--unit-scale {unit_scale!r}: the model already emits {model_unit}; leave it out")
    return factor


def _checkpoint_description(model: str | Path | None) -> tuple[Montage, str]:
    """The montage and output unit recorded in a checkpoint's JSON document (None: the embedded default),
    without building the model; a missing or corrupt checkpoint raises :class:`~vibe_rt.errors.CheckpointError`
    here."""
    from .. import checkpoint

    path = model if model is not None else checkpoint.require_default_checkpoint()
    document = checkpoint.read_checkpoint_config(path)
    return Montage.from_dict(document["montage"]), checkpoint.document_unit(document)


def _channels(spec: str | None, model: Montage, cap: str = "") -> list[str] | None:
    """The channels that ``--montage`` names (None: all), checked against the model's montage (or a device's cap,
    named by ``cap``)."""
    if not spec:
        return None
    from ..montage import get_montage, list_montages

    if spec in list_montages():
        names = list(get_montage(spec).ch_names)
    else:
        names = [c.strip() for c in spec.split(",") if c.strip()]
    if not names:
        raise ConfigError(f"--montage {spec!r} names no channel; give a preset ({', '.join(list_montages())}) "
                          "or a comma-separated channel list")
    dups = sorted({c for c in names if names.count(c) > 1})
    if dups:
        raise ConfigError(f"--montage lists the channels {dups} more than once; name each channel once")
    missing = [c for c in names if c not in model.ch_names]
    if missing and cap:
        raise ConfigError(f"--montage {spec!r}: channels {missing[:10]} are not on {cap} "
                          f"({', '.join(model.ch_names[:6])}...); use a subset of its channels")
    if missing:
        if len(names) == 1:  # most likely a misspelt preset name
            raise ConfigError(f"--montage {spec!r} is neither a preset montage ({', '.join(list_montages())}) nor "
                              f"a channel of the model (montage {model.name!r}: {', '.join(model.ch_names[:6])}"
                              "...); give a preset or a comma-separated subset of the model's channels")
        raise ConfigError(f"--montage {spec!r}: channels {missing[:10]} are not produced by the model "
                          f"(montage {model.name!r}: {', '.join(model.ch_names[:6])}...); use a subset of its "
                          "channels")
    return names


def _check_adapter_model(adapter: LatentAdapter, model: str | Path | None) -> None:
    """A calibration's latent adapter must belong to the checkpoint streamed (compared by model hash, cheaply)."""
    from .. import checkpoint

    path = model if model is not None else checkpoint.require_default_checkpoint()
    adapter.require_model(checkpoint.model_hash(path))


def run_pipeline(pipeline: StreamPipeline, *, duration: float | None = None,
                 on_status: Callable[[dict[str, Any]], None] | None = None, status_interval: float = 1.0,
                 stop_event: threading.Event | None = None) -> dict[str, Any]:
    """Start ``pipeline`` and stream until ``duration`` elapses, ``stop_event`` is set, the source ends (and every
    response was emitted), or a worker fails (re-raised by :meth:`StreamPipeline.stop`).

    Parameters
    ----------
    pipeline : StreamPipeline
        Not started (e.g. :meth:`StreamPlan.pipeline`).
    duration : float | None
        Seconds to stream (None: until stopped or the source ends).
    on_status : callable | None
        Called with :meth:`StreamPipeline.status` every ``status_interval`` seconds (the CLI prints it).
    stop_event : threading.Event | None
        Set it (e.g. from a signal handler) to stop.

    Returns
    -------
    dict
        The final status (counters, timings, rates).
    """
    stop_event = stop_event or threading.Event()
    pipeline.start()
    t_start = lsl_clock()
    summary: dict[str, Any] = {}
    try:
        next_status = t_start + status_interval
        while not stop_event.is_set():
            now = lsl_clock()
            if duration is not None and now - t_start >= duration:
                break
            if pipeline.error is not None:
                break
            if pipeline.source is not None and pipeline.source_finished and pipeline.idle:
                logger.info("the source ended and every response was emitted; stopping")
                break
            if now >= next_status:
                next_status += status_interval
                if on_status is not None:
                    on_status(pipeline.status())
            wait = min(next_status - now, 0.05)
            if duration is not None:
                wait = min(wait, t_start + duration - now)
            stop_event.wait(max(wait, 0.0))
    finally:
        summary = pipeline.status()
        pipeline.stop()
    return summary
