"""The options of a stream, declared once (:class:`StreamConfig`), and the typed parts the pipeline takes.

:class:`StreamConfig` is the single source of the ``vibe-rt stream`` options: each field declares its flag, help
text and validity rule (:func:`vibe_rt.options.option`); the CLI builds its arguments from these declarations, and
:meth:`StreamConfig.validate` is the one place that checks the values. :func:`vibe_rt.stream.run.preflight` turns a
valid config into the typed objects :class:`~vibe_rt.stream.pipeline.StreamPipeline` takes: the frame source and
event policy, the channels, the resolved calibration, and the three specs below, which no one checks again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..options import Choice, ExistingPath, NewFile, Number, Rule, Text, option, validate_options

#: Highest output rate (Hz): above every EEG/MEG amplifier's (BioSemi 16 kHz, g.tec 38.4 kHz) with room to spare;
#: the synthesizer's ring buffer grows with it (about 0.5 GB for 128 channels at this rate).
MAX_SRATE = 65536.0
#: Longest output delay (s): a lookahead is a compute budget, not a recording offset.
MAX_LOOKAHEAD = 10.0
SOURCES = ("auto", "camera", "video", "images", "demo", "none")
EVENT_POLICIES = ("auto", "every", "rate", "scene")
BACKEND_CHOICES = ("auto", "torch", "onnxruntime", "tensorrt")  # vibe_rt.runtime.backends.BACKENDS + "auto"


@dataclass(frozen=True)
class OutputSpec:
    """The signal stream as its consumers see it.

    Parameters
    ----------
    srate : float
        Output sampling rate (Hz).
    lookahead : float | None
        Output delay (s): a sample stamped ``t`` is pushed at ``t + lookahead``; None: chosen at start from a
        warm-up of the real path (:mod:`vibe_rt.stream.lookahead`).
    chunk_s : float
        Target push interval (s).
    name : str
        LSL stream name (marker streams: ``<name>-markers``, ``<name>-codes``).
    source_id : str | None
        LSL source_id (default ``vibe-rt-<name>-<montage>``).
    """

    srate: float = 1000.0
    lookahead: float | None = None
    chunk_s: float = 0.005
    name: str = "vibe-rt"
    source_id: str | None = None


@dataclass(frozen=True)
class SynthSpec:
    """How the signal is synthesized: late responses, background level, line noise, random seed."""

    late_policy: str = "clip"
    line_noise: float = 0
    noise_scale: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class InferenceSpec:
    """Stimulus queue size and largest inference batch."""

    max_queue: int = 8
    max_batch: int = 4


@dataclass(frozen=True)
class RecordSpec:
    """A BrainVision recording of the stream: ``path`` (``.vhdr``); an existing one is replaced only if
    ``overwrite``."""

    path: Path
    overwrite: bool = False


class _FrameSize(Rule):
    """``"WxH"`` with both sides at least 16 pixels."""

    def check(self, flag: str, value: object) -> None:
        parse_frame_size(str(value), flag)


class _Lookahead(Rule):
    """``"auto"`` or a number of seconds in ``[0, MAX_LOOKAHEAD]``."""

    def check(self, flag: str, value: object) -> None:
        if value != "auto":
            Number(0, MAX_LOOKAHEAD, hint="or auto").check(flag, value)


def lookahead_argument(text: str) -> str | float:
    """argparse type of ``--lookahead``: ``auto`` or a number (checked by the config's rule)."""
    return "auto" if text.strip().lower() == "auto" else float(text)


def parse_frame_size(text: str, flag: str = "--size", minimum: int = 16) -> tuple[int, int]:
    """``"WxH"`` -> ``(W, H)``; a :class:`ConfigError` naming ``flag`` otherwise."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{flag} must look like 640x480, got {text!r}") from None
    if not minimum <= w <= 16384 or not minimum <= h <= 16384:
        raise ConfigError(f"{flag} sides must be {minimum}..16384 pixels, got {text!r}")
    return w, h


_SRC, _SRCOPT, _MODEL, _OUT, _EV, _RUN = "source (one of)", "source options", "model", "output", "events", "run"


@dataclass
class StreamConfig:
    """All options of a stream (``vibe-rt stream --help`` shows them with their flags).

    ``source="auto"`` takes the camera, video or image folder that is given, else the demo scene; ``"none"``
    streams background only (or onsets from :meth:`StreamPipeline.submit_onset`). ``events="auto"`` means
    ``every`` for image folders and ``scene`` otherwise. ``montage`` optionally names the channels to stream: a
    preset montage name or a comma-separated channel list, a subset of the model's channels.
    """

    source: str = option("auto", "--source", "'demo': built-in moving scene (no camera needed, the default); "
                         "'none': background only", Choice(SOURCES), group=_SRC, choices=("demo", "none"))
    camera: int | None = option(None, "--camera", "OpenCV camera index (e.g. 0)",
                                Number(integer=True, optional=True), group=_SRC, type=int, metavar="N")
    video: Path | None = option(None, "--video", "video file, played in real time",
                                ExistingPath("file", "video file"), group=_SRC, type=Path, metavar="FILE")
    images: Path | None = option(None, "--images", "folder of images shown as a slideshow",
                                 ExistingPath("folder", "image folder"), group=_SRC, type=Path, metavar="DIR")
    as_fast_as_possible: bool = option(False, "--as-fast-as-possible", "--video: read frames as fast as they are "
                                       "processed instead of at the file's frame rate", group=_SRCOPT,
                                       action="store_true")
    loop: bool = option(False, "--loop", "--video/--images: start again at the end", group=_SRCOPT,
                        action="store_true")
    shuffle: bool = option(False, "--shuffle", "--images: a new random order on every pass (with --loop), "
                           "reproducible with --seed; the order is logged and recorded (--record's events sidecar)",
                           group=_SRCOPT, action="store_true")
    on_s: float = option(0.5, "--on", "--images: seconds each image is shown (default: 0.5)",
                         Number(0, 3600, lo_open=True), group=_SRCOPT, metavar="S")
    off_s: float = option(0.5, "--off", "--images: blank seconds between images (default: 0.5)",
                          Number(0, 3600), group=_SRCOPT, metavar="S")
    size: str = option("640x480", "--size", "--camera: requested frame size (default: 640x480)", _FrameSize(),
                       group=_SRCOPT, metavar="WxH")
    fps: float = option(30.0, "--fps", "--camera: requested frame rate (default: 30)",
                        Number(0, 1000, lo_open=True), group=_SRCOPT)
    model: Path | None = option(None, "--model", "checkpoint (.safetensors/.json stem); default: the embedded "
                                "default model", Text(4096, optional=True), group=_MODEL, type=Path,
                                metavar="CKPT")
    backend: str = option("auto", "--backend", "inference backend (default: auto = TensorRT with a GPU, else ONNX "
                          "Runtime, else torch)", Choice(BACKEND_CHOICES), group=_MODEL, choices=BACKEND_CHOICES)
    calibration: Path | None = option(None, "--calibration", "JSON calibration profile (vibe-rt calibrate): its "
                                      "per-channel gain scales each predicted response and its latency delays the "
                                      "whole response",
                                      ExistingPath("file", "calibration profile"), group=_MODEL, type=Path,
                                      metavar="PROFILE")
    montage: str | None = option(None, "--montage", "stream only these channels of the model: a preset montage "
                                 "name or a comma-separated channel list (default: all model channels)",
                                 Text(4096, optional=True), group=_OUT, metavar="NAME|CH,CH,...")
    srate: float = option(1000.0, "--srate", "output sampling rate in Hz, e.g. 250, 500, 1000 (default: 1000)",
                          Number(0, MAX_SRATE, lo_open=True, hint="Hz; 250, 500 or 1000 are typical"), group=_OUT)
    name: str = option("vibe-rt", "--name", "LSL stream name (default: vibe-rt)", Text(100), group=_OUT)
    source_id: str | None = option(None, "--source-id", "LSL source_id (default: vibe-rt-<name>-<montage>)",
                                   Text(200, optional=True), group=_OUT, metavar="ID")
    lookahead: str | float = option("auto", "--lookahead", "output delay in seconds: the time budget for computing "
                                    "a response; auto (default): chosen at start from a warm-up of this model on "
                                    "this machine (p99 + margin + push interval), grown once if responses come "
                                    "late", _Lookahead(), group=_OUT, type=lookahead_argument, metavar="S|auto")
    late_policy: str = option("clip", "--late-policy", "a response later than the lookahead: 'clip' adds its "
                              "remaining part, 'drop' discards it (default: clip)", Choice(("clip", "drop")),
                              group=_OUT, choices=("clip", "drop"))
    line_noise: int = option(0, "--line-noise", "add power-line noise at 50 or 60 Hz (default: 0 = none)",
                             Choice((0, 50, 60)), group=_OUT, choices=(0, 50, 60))
    noise_scale: float = option(1.0, "--noise-scale", "scale of the background activity (0: evoked responses "
                                "only; default: 1)", Number(0, 100), group=_OUT, metavar="X")
    chunk_ms: float = option(5.0, "--chunk-ms", "push interval in ms (default: 5)", Number(0, 100, lo_open=True),
                             group=_OUT, metavar="MS")
    record: Path | None = option(None, "--record", "also write the streamed signal and markers to a BrainVision "
                                 "file (readable with mne.io.read_raw_brainvision, also after a crash)",
                                 NewFile((".vhdr",)), group=_OUT, type=Path, metavar="FILE.vhdr")
    overwrite: bool = option(False, "--overwrite", "--record: replace an existing recording of that name "
                             "(default: refuse, so that no session is lost)", group=_OUT, action="store_true")
    seed: int | None = option(None, "--seed", "random seed (>= 0) of the background, line noise, demo scene and "
                              "--shuffle order",
                              Number(0, 2**63 - 1, integer=True, optional=True), group=_OUT, type=int)
    events: str = option("auto", "--events", "which frames are stimulus onsets: every frame, a fixed rate, or "
                         "scene changes (default: auto = every for --images, scene otherwise)",
                         Choice(EVENT_POLICIES), group=_EV, choices=EVENT_POLICIES)
    event_rate: float = option(3.5, "--event-rate", "--events rate: onsets per second (default: 3.5, a typical "
                               "fixation rate)", Number(0, 1000, lo_open=True), group=_EV, metavar="HZ")
    threshold: float = option(12.0, "--threshold", "--events scene: mean absolute grey-level change (0-255) that "
                              "counts as a new scene (default: 12)", Number(0, 255), group=_EV, metavar="X")
    refractory: float = option(0.25, "--refractory", "--events scene: minimum seconds between onsets "
                               "(default: 0.25)", Number(0, 60), group=_EV, metavar="S")
    max_interval: float = option(1.0, "--max-interval", "--events scene: force an onset after this many seconds "
                                 "without one; 0 disables (default: 1.0)", Number(0, 3600), group=_EV,
                                 metavar="S")
    duration: float | None = option(None, "--duration", "stop after S seconds (default: until Ctrl-C, or the end "
                                    "of a video/image folder)", Number(0, 1e7, lo_open=True, optional=True),
                                    group=_RUN, type=float, metavar="S")
    max_batch: int = option(4, "--max-batch", "largest inference batch when onsets queue up (default: 4)",
                            Number(1, 1024, integer=True), group=_RUN)
    max_queue: int = option(8, "--max-queue", "onsets waiting for inference; beyond, the oldest is dropped and "
                            "counted (default: 8)", Number(1, 100_000, integer=True), group=_RUN)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid option (the one place options are checked)."""
        validate_options(self)
        given = [flag for flag, value in (("--camera", self.camera), ("--video", self.video),
                                          ("--images", self.images)) if value is not None]
        if len(given) > 1:
            raise ConfigError(f"give one source: {' and '.join(given)} were both given")
        if self.source in ("demo", "none") and given:
            raise ConfigError(f"--source {self.source} and {given[0]} name two sources; give one")
        if self.record is not None and not self.overwrite:
            from .record import recording_files

            existing = [f for f in recording_files(self.record) if f.exists()]
            if existing:
                raise ConfigError(f"--record {self.record}: {existing[0]} exists already (an earlier session); "
                                  "give a new name, or --overwrite to replace it")
        for kind, value in (("video", self.video), ("images", self.images)):
            if self.source == kind and value is None:
                raise ConfigError(f"the {kind} source needs --{kind} {'FILE' if kind == 'video' else 'DIR'}")

    @property
    def resolved_source(self) -> str:
        """The source kind: ``"auto"`` resolved to the camera/video/images given, else ``"demo"``."""
        if self.source != "auto":
            return self.source
        for kind, value in (("camera", self.camera), ("video", self.video), ("images", self.images)):
            if value is not None:
                return kind
        return "demo"

    @property
    def resolved_events(self) -> str:
        """The event policy: ``"auto"`` is ``every`` for image folders, ``scene`` otherwise."""
        if self.events != "auto":
            return self.events
        return "every" if self.resolved_source == "images" else "scene"

    def output_spec(self) -> OutputSpec:
        """The :class:`OutputSpec` of these options."""
        lookahead = None if self.lookahead == "auto" else float(self.lookahead)
        return OutputSpec(srate=float(self.srate), lookahead=lookahead, chunk_s=self.chunk_ms / 1e3, name=self.name,
                          source_id=self.source_id)

    def synth_spec(self) -> SynthSpec:
        """The :class:`SynthSpec` of these options."""
        return SynthSpec(late_policy=self.late_policy, line_noise=self.line_noise, noise_scale=self.noise_scale,
                         seed=self.seed)

    def inference_spec(self) -> InferenceSpec:
        """The :class:`InferenceSpec` of these options."""
        return InferenceSpec(max_queue=int(self.max_queue), max_batch=int(self.max_batch))

    def record_spec(self) -> RecordSpec | None:
        """The :class:`RecordSpec` (None without ``--record``)."""
        return RecordSpec(Path(self.record), self.overwrite) if self.record is not None else None


__all__ = ["BACKEND_CHOICES", "InferenceSpec", "MAX_LOOKAHEAD", "MAX_SRATE", "OutputSpec", "RecordSpec",
           "StreamConfig", "SynthSpec", "parse_frame_size"]
