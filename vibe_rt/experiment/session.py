"""``vibe-rt experiment rsvp`` as a library call: :class:`RsvpSessionConfig` (every option, declared once) and
:func:`run_rsvp_session` (images, targets, the onset sink, the PsychoPy run and its summary).

The onset sink is the synthesized stream (a :class:`~vibe_rt.stream.StreamPipeline` built from the session's
:class:`~vibe_rt.stream.config.StreamConfig` with ``source="none"``: its onsets come from the flips) or, with
``no_synth``, the marker outlets alone, for sessions with a real amplifier.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._logs import logger
from ..errors import ConfigError
from ..options import Choice, ExistingPath, NewFile, Number, Rule, option, validate_options
from ..stream.config import StreamConfig, parse_frame_size
from .rsvp import RsvpConfig

if TYPE_CHECKING:
    from .markers import OnsetSink

#: The stream options an RSVP session takes from ``vibe-rt stream`` (same flags, same rules).
STREAM_OPTIONS = ("model", "backend", "srate", "name", "source_id", "lookahead", "device", "device_delay", "subject")


class _Targets(Rule):
    """``--targets``: a folder of target images or a fraction 0..1 (None: no targets)."""

    def check(self, flag: str, value: object) -> None:
        if value is None or Path(str(value)).is_dir():
            return
        try:
            frac = float(str(value))
        except ValueError:
            raise ConfigError(f"{flag} must be a folder of images or a fraction 0..1, got {value!r} (no such "
                              "folder)") from None
        if not 0.0 <= frac <= 1.0:
            raise ConfigError(f"{flag} fraction must be within 0..1, got {value!r}")


class _Size(Rule):
    def check(self, flag: str, value: object) -> None:
        parse_frame_size(str(value), flag)


_D, _W, _S = "design", "display", "stream"  # argument groups in --help


@dataclass
class RsvpSessionConfig:
    """An RSVP session: design, display, log, and the stream it drives (see ``vibe-rt experiment rsvp --help``)."""

    images: Path | None = option(None, "--images", "folder of stimulus images",
                                 ExistingPath("folder", "image folder", optional=False), group="images", type=Path,
                                 metavar="DIR", required=True)
    targets: str | None = option(None, "--targets", "a folder of target images (inserted into --target-prob of the "
                                 "sequences), or a fraction 0..1: hold one image of --images out as the target and "
                                 "insert it into that fraction of the sequences", _Targets(), group=_D,
                                 type=str, metavar="DIR|FRACTION")
    design: RsvpConfig = field(default_factory=RsvpConfig)
    windowed: bool = option(False, "--windowed", "a window of --size (default: full screen)",
                            group="display mode", action="store_true")
    size: str = option("1024x768", "--size", "window size (default: 1024x768)", _Size(), group=_W,
                       metavar="WxH")
    screen: int = option(0, "--screen", "screen number (default: 0)", Number(0, 64, integer=True), group=_W)
    image_size: int | None = option(None, "--image-size", "largest image side on screen, pixels (default: 0.8 x "
                                    "the window's shorter side; images are shrunk, never enlarged)",
                                    Number(16, 16384, integer=True, optional=True), group=_W, type=int,
                                    metavar="PX")
    refresh: float | None = option(None, "--refresh", "refresh rate (default: measured); the emulated rate when "
                                   "pacing by the clock", Number(0, 1000, lo_open=True, optional=True), group=_W,
                                   type=float, metavar="HZ")
    pacing: str = option("auto", "--pacing", "frame timing: vsync (flips block on the display), clock (emulated "
                         "refresh, for displays without vsync), auto (clock when the measured rate is above "
                         "240 Hz; default)", Choice(("auto", "vsync", "clock")), group=_W,
                         choices=("auto", "vsync", "clock"))
    no_synth: bool = option(False, "--no-synth", "markers only (no synthesized signal), for sessions with a real "
                            "amplifier", group=_S, action="store_true")
    log: Path | None = option(None, "--log", "experiment log TSV (default: rsvp-<date-time>.tsv in the current "
                              "folder)", NewFile(), group=_S, type=Path, metavar="FILE")
    summary: Path | None = option(None, "--summary", "also write the run summary as JSON", NewFile((".json",)),
                                  group=_S, type=Path, metavar="FILE")
    stream: StreamConfig = field(default_factory=lambda: StreamConfig(source="none"))

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid option."""
        validate_options(self)
        self.stream.validate()
        if self.log is not None and Path(self.log).exists():
            raise ConfigError(f"--log {self.log} exists already (an earlier run); give a new name")


def resolve_targets(spec: str | None, images: list[Path], target_prob: float,
                    seed: int | None) -> tuple[list[Path], list[Path], float]:
    """Turn ``--targets`` into (images, targets, target probability).

    A folder gives its images as targets (``target_prob`` unchanged); a fraction holds one image of ``images``
    out (chosen with ``seed``) as the single target, inserted into that fraction of the sequences.
    """
    import numpy as np

    from .rsvp import list_images

    if spec is None:
        return images, [], 0.0
    path = Path(spec)
    if path.is_dir():
        return images, list_images(path), target_prob
    _Targets().check("--targets", spec)
    if len(images) < 2:
        raise ConfigError("--targets FRACTION holds one image out as the target: give at least 2 images")
    k = int(np.random.default_rng(seed).integers(len(images)))
    return images[:k] + images[k + 1:], [images[k]], float(spec)


def run_rsvp_session(config: RsvpSessionConfig) -> dict[str, Any]:
    """Run an RSVP session: the window, the onsets into the stream (or markers only), the log; returns the
    summary (also written to ``config.summary``), with ``"log"`` naming the log file."""
    from ..stream.lsl import MarkerOutlets
    from .psychopy_rsvp import import_psychopy, run_rsvp
    from .rsvp import list_images

    config.validate()
    import_psychopy()  # fail early (missing PsychoPy or display) before any stream appears
    images = list_images(config.images)  # type: ignore[arg-type]
    images, targets, target_prob = resolve_targets(config.targets, images, config.design.target_prob,
                                                   config.design.seed)
    design = dataclasses.replace(config.design, target_prob=target_prob)
    log_path = config.log or Path(f"rsvp-{_dt.datetime.now():%Y%m%d-%H%M%S}.tsv")
    stream = config.stream
    stream_name = stream.output_spec().name
    header = {"images": str(config.images), "targets": config.targets, "synth": not config.no_synth,
              "stream_name": stream_name}
    if targets:
        logger.info("targets (press %s): %s", design.response_key, ", ".join(p.name for p in targets[:5]))

    def present(sink: OnsetSink) -> dict[str, Any]:
        result = run_rsvp(images, design, targets=targets, sink=sink, fullscreen=not config.windowed,
                          size=parse_frame_size(config.size), screen=config.screen, image_size=config.image_size,
                          refresh_hz=config.refresh, pacing=config.pacing, log_path=log_path, log_header=header)
        return result.to_dict()

    if config.no_synth:
        outlets = MarkerOutlets(stream_name, stream.source_id)
        try:
            summary = present(outlets)
        finally:
            outlets.close()
    else:
        from ..app import build_stream

        with build_stream(stream) as pipeline:
            summary = present(pipeline)
            # let the last responses (epoch length after the last onset + lookahead) reach the stream
            deadline = time.monotonic() + 5.0
            while not pipeline.idle and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(pipeline.lookahead + 0.05)
            summary["stream"] = pipeline.status()
    summary["log"] = str(log_path)
    if config.summary is not None:
        Path(config.summary).write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return summary


__all__ = ["STREAM_OPTIONS", "RsvpSessionConfig", "resolve_targets", "run_rsvp_session"]
