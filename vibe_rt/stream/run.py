"""``run_stream``: build a source, a predictor and a pipeline from a :class:`StreamConfig` and run it.

This is what ``vibe-rt stream`` calls; Python users can call it too::

    from vibe_rt.stream import StreamConfig, run_stream
    summary = run_stream(StreamConfig(source="demo", srate=500, duration=60))
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .._logs import logger
from ..errors import ConfigError
from ..compare.calibrate import load_calibration
from .clock import lsl_clock
from .events import make_policy
from .pipeline import Predictor, StreamPipeline, _calibration_for
from ..montage import Montage
from .synth import resample_factors
from .sources import CameraSource, DemoSource, FrameSource, ImageFolderSource, VideoSource

SOURCES = ("camera", "video", "images", "demo", "none")


@dataclass
class StreamConfig:
    """All options of a stream (the CLI options of ``vibe-rt stream``; see ``vibe-rt stream --help``).

    ``source`` is ``"camera"``, ``"video"``, ``"images"``, ``"demo"`` or ``"none"`` (background only, or
    onsets from :meth:`StreamPipeline.submit_onset`). ``events="auto"`` means ``every`` for image folders and
    ``scene`` otherwise. ``montage`` optionally names the channels to stream: a preset montage name or a
    comma-separated channel list, a subset of the model's channels.
    """

    source: str = "demo"
    camera: int = 0
    width: int = 640
    height: int = 480
    fps: float = 30.0
    video: Path | None = None
    as_fast_as_possible: bool = False
    loop: bool = False
    images: Path | None = None
    on_s: float = 0.5
    off_s: float = 0.5
    model: Path | None = None
    backend: str = "auto"
    montage: str | None = None
    srate: float = 1000.0
    name: str = "vibe-rt"
    source_id: str | None = None
    lookahead: float = 0.25
    events: str = "auto"
    event_rate: float = 3.5
    threshold: float = 12.0
    refractory: float = 0.25
    max_interval: float | None = 1.0
    late_policy: str = "clip"
    line_noise: float = 0
    noise_scale: float = 1.0
    record: Path | None = None
    duration: float | None = None
    calibration: Path | None = None
    max_batch: int = 4
    max_queue: int = 8
    chunk_ms: float = 5.0
    seed: int | None = None

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid option."""
        if self.source not in SOURCES:
            raise ConfigError(f"unknown source {self.source!r}; use one of {', '.join(SOURCES)}")
        if not (math.isfinite(self.srate) and self.srate > 0):
            raise ConfigError(f"--srate must be a positive number of Hz (250, 500 or 1000 are typical), "
                              f"got {self.srate:g}")
        if not (math.isfinite(self.lookahead) and self.lookahead >= 0):
            raise ConfigError(f"--lookahead must be >= 0 s (e.g. 0.25: the time budget of a response), "
                              f"got {self.lookahead:g}")
        for option, value in (("--max-batch", self.max_batch), ("--max-queue", self.max_queue)):
            if value < 1:
                raise ConfigError(f"{option} must be at least 1, got {value}")
        if self.source == "camera" and not self.fps > 0:
            raise ConfigError(f"--fps must be positive, got {self.fps:g}")
        if self.events == "rate" and not self.event_rate > 0:
            raise ConfigError(f"--event-rate must be positive, got {self.event_rate:g}")
        if not (math.isfinite(self.noise_scale) and self.noise_scale >= 0):
            raise ConfigError(f"--noise-scale must be >= 0, got {self.noise_scale:g}")
        if self.source == "video" and self.video is None:
            raise ConfigError("the video source needs a file: --video FILE")
        if self.source == "images" and self.images is None:
            raise ConfigError("the image source needs a folder: --images DIR")
        if self.duration is not None and self.duration <= 0:
            raise ConfigError(f"--duration must be positive, got {self.duration}")
        if self.record is not None:
            from .record import _paths

            _paths(self.record)  # a BrainVision name (.vhdr), checked before the model loads
        if not 0 < self.chunk_ms <= 100:
            raise ConfigError(f"--chunk-ms must be in (0, 100], got {self.chunk_ms}")


def build_source(cfg: StreamConfig) -> FrameSource | None:
    """The frame source described by ``cfg`` (not started)."""
    if cfg.source == "camera":
        return CameraSource(cfg.camera, cfg.width, cfg.height, cfg.fps)
    if cfg.source == "video":
        return VideoSource(cfg.video, realtime=not cfg.as_fast_as_possible, loop=cfg.loop)  # type: ignore[arg-type]
    if cfg.source == "images":
        return ImageFolderSource(cfg.images, cfg.on_s, cfg.off_s, loop=cfg.loop)  # type: ignore[arg-type]
    if cfg.source == "demo":
        return DemoSource(seed=cfg.seed)
    return None


def _checkpoint_montage(model: str | Path | None) -> Montage:
    """The montage recorded in a checkpoint's JSON document (None: the embedded default), without building the
    model; a missing or corrupt checkpoint raises :class:`~vibe_rt.errors.CheckpointError` here."""
    from .. import checkpoint
    from ..errors import CheckpointError

    path = model if model is not None else checkpoint.require_default_checkpoint()
    document = checkpoint.read_checkpoint_config(path)
    try:
        return Montage.from_dict(document["montage"])
    except (ConfigError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid montage in the checkpoint document ({err}); re-save the "
                              "checkpoint") from err


def _channels(spec: str | None, model: Montage) -> list[str] | None:
    """The channels that ``--montage`` names (None: all), checked against the model's montage."""
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
    if missing:
        if len(names) == 1:  # most likely a misspelt preset name
            raise ConfigError(f"--montage {spec!r} is neither a preset montage ({', '.join(list_montages())}) nor "
                              f"a channel of the model (montage {model.name!r}: {', '.join(model.ch_names[:6])}"
                              "...); give a preset or a comma-separated subset of the model's channels")
        raise ConfigError(f"--montage {spec!r}: channels {missing[:10]} are not produced by the model "
                          f"(montage {model.name!r}: {', '.join(model.ch_names[:6])}...); use a subset of its "
                          "channels")
    return names


def _check_adapter_model(adapter: dict[str, Any], model: str | Path | None) -> None:
    """A calibration's latent adapter must belong to the checkpoint streamed (compared by model hash, cheaply)."""
    from .. import checkpoint
    from ..compare.adapter import LatentAdapter

    path = model if model is not None else checkpoint.require_default_checkpoint()
    LatentAdapter.from_dict(adapter).require_model(checkpoint.model_hash(path))


def build_pipeline(cfg: StreamConfig, predictor: Predictor | None = None,
                   extra_meta: dict[str, Any] | None = None) -> StreamPipeline:
    """A (not started) :class:`StreamPipeline` for ``cfg``; loads the model when ``predictor`` is None."""
    cfg.validate()
    meta = dict(extra_meta or {})
    source = build_source(cfg)
    if source is not None:
        source.probe()  # a missing camera or file is reported before the model loads
    # so is a missing or malformed calibration profile (its channels are checked against the model's below)
    calibration = load_calibration(cfg.calibration) if cfg.calibration is not None else None
    events = cfg.events
    if events == "auto":
        events = "every" if cfg.source == "images" else "scene"
    policy = make_policy(events, rate=cfg.event_rate, threshold=cfg.threshold, refractory=cfg.refractory,
                         max_interval=cfg.max_interval)
    if predictor is None:
        # the options that depend on the model's channels are checked against the checkpoint document (cheap)
        # before the model loads and its engines are built (slow)
        model_montage = _checkpoint_montage(cfg.model)
        resample_factors(model_montage.sfreq, cfg.srate)  # --srate must be a rational multiple of the model's
        early = _channels(cfg.montage, model_montage)
        if calibration is not None:
            _calibration_for(calibration, model_montage.pick(early) if early else model_montage)
            if calibration.get("adapter") is not None:
                _check_adapter_model(calibration["adapter"], cfg.model)
        from ..runtime.predictor import load_predictor

        predictor = load_predictor(cfg.model, cfg.backend)
        meta = {**predictor.meta, **meta}
    channels = _channels(cfg.montage, predictor.montage)
    return StreamPipeline(
        predictor, source=source, policy=policy, channels=channels, noise_scale=cfg.noise_scale,
        srate=cfg.srate, lookahead=cfg.lookahead, name=cfg.name, source_id=cfg.source_id,
        late_policy=cfg.late_policy, line_noise=cfg.line_noise, record=cfg.record, calibration=calibration,
        chunk_s=cfg.chunk_ms / 1000.0, max_queue=cfg.max_queue, max_batch=cfg.max_batch, extra_meta=meta,
        seed=cfg.seed)


def run_stream(config: StreamConfig, *, predictor: Predictor | None = None,
               on_status: Callable[[dict[str, Any]], None] | None = None, status_interval: float = 1.0,
               stop_event: threading.Event | None = None) -> dict[str, Any]:
    """Stream until ``config.duration`` elapses, ``stop_event`` is set, the source ends (and every response was
    emitted), or a worker fails (re-raised).

    Parameters
    ----------
    config : StreamConfig
        The options.
    predictor : Predictor | None
        Use this predictor instead of loading ``config.model``.
    on_status : callable | None
        Called with :meth:`StreamPipeline.status` every ``status_interval`` seconds (the CLI prints it).
    stop_event : threading.Event | None
        Set it (e.g. from a signal handler) to stop.

    Returns
    -------
    dict
        The final status (counters, timings, rates).
    """
    pipeline = build_pipeline(config, predictor)
    stop_event = stop_event or threading.Event()
    pipeline.start()
    t_start = lsl_clock()
    summary: dict[str, Any] = {}
    try:
        next_status = t_start + status_interval
        while not stop_event.is_set():
            now = lsl_clock()
            if config.duration is not None and now - t_start >= config.duration:
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
            if config.duration is not None:
                wait = min(wait, t_start + config.duration - now)
            stop_event.wait(max(wait, 0.0))
    finally:
        summary = pipeline.status()
        pipeline.stop()
    return summary
