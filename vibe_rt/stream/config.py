"""The options of a stream, declared once (:class:`StreamConfig`), and the typed parts the pipeline takes.

:class:`StreamConfig` is the single source of the ``vibe-rt stream`` options: each field declares its flag, help
text and validity rule (:func:`vibe_rt.options.option`); the CLI builds its arguments from these declarations, and
:meth:`StreamConfig.validate` is the one place that checks the values. :func:`vibe_rt.stream.run.preflight` turns a
valid config into the typed objects :class:`~vibe_rt.stream.pipeline.StreamPipeline` takes: the frame source and
event policy, the channels, the resolved calibration, and the three specs below, which no one checks again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..options import Choice, ExistingPath, NewFile, Number, Rule, Text, option, validate_options
from ..units import parse_quantity
from .artifacts import ArtifactSpec, LineHum, parse_artifacts
from .faults import FaultSpec, parse_faults

if TYPE_CHECKING:
    from ..devices import DeviceProfile

#: Highest output rate (Hz): above every EEG/MEG amplifier's (BioSemi 16 kHz, g.tec 38.4 kHz) with room to spare;
#: the synthesizer's ring buffer grows with it (about 0.5 GB for 128 channels at this rate).
MAX_SRATE = 65536.0
#: Longest output delay (s): a lookahead is a compute budget, not a recording offset.
MAX_LOOKAHEAD = 10.0
SOURCES = ("auto", "camera", "video", "images", "demo", "none")
EVENT_POLICIES = ("auto", "every", "rate", "scene")
BACKEND_CHOICES = ("auto", "torch", "onnxruntime", "tensorrt")  # vibe_rt.runtime.backends.BACKENDS + "auto"
DEFAULT_SRATE = 1000.0
DEFAULT_CHUNK_S = 0.005
DEFAULT_NAME = "vibe-rt"
#: Longest emulated transport delay (s), as vibe_rt.devices.profile.MAX_DELAY_S.
MAX_DEVICE_DELAY = 1.0
PRECISION_CHOICES = ("auto", "fp32", "fp16", "int8")  # vibe_rt.runtime.backends.PRECISIONS + "auto"


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
    faults : tuple of FaultSpec
        Device and transport faults for testing consumers (:mod:`vibe_rt.stream.faults`).
    """

    srate: float = 1000.0
    lookahead: float | None = None
    chunk_s: float = 0.005
    name: str = "vibe-rt"
    source_id: str | None = None
    faults: tuple[FaultSpec, ...] = ()


@dataclass(frozen=True)
class SynthSpec:
    """How the signal is synthesized: late responses, background level, line noise, random seed, the recording
    artifacts injected (:mod:`vibe_rt.stream.artifacts`); ``model_scale``: SI units (V or T) per unit of the
    model's output (1 for a model that emits SI; what ``--unit-scale`` declares for one trained on a.u. data); and
    how much later than their onsets responses appear: an emulated device's transport delay (``device_delay_s``:
    its samples are stamped that late) plus a synthetic subject's latency shift (``latency_shift_s``). Markers
    keep the true onsets."""

    late_policy: str = "clip"
    line_noise: float = 0
    noise_scale: float = 1.0
    seed: int | None = None
    artifacts: tuple[ArtifactSpec, ...] = ()
    model_scale: float = 1.0
    device_delay_s: float = 0.0
    latency_shift_s: float = 0.0

    @property
    def response_delay_s(self) -> float:
        """Seconds between an onset and where its response is placed: device delay + latency shift."""
        return self.device_delay_s + self.latency_shift_s


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


class _Quantity(Rule):
    """A positive number and a unit, e.g. ``"2 uV"`` (None allowed)."""

    def check(self, flag: str, value: object) -> None:
        if value is not None:
            parse_quantity(str(value), flag)


class _Lookahead(Rule):
    """``"auto"`` or a number of seconds in ``[0, MAX_LOOKAHEAD]``."""

    def check(self, flag: str, value: object) -> None:
        if value != "auto":
            Number(0, MAX_LOOKAHEAD, hint="or auto").check(flag, value)


@dataclass(frozen=True)
class _ItemList(Rule):
    """An item list (None allowed), checked by parsing it with ``parse`` (:func:`parse_artifacts`,
    :func:`parse_faults`)."""

    parse: Callable[[str], object] = parse_artifacts

    def check(self, flag: str, value: object) -> None:
        if value is not None:
            self.parse(str(value))


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
_DEV = "device and subject"
_TEST = "artifacts and faults (for testing pipelines)"


@dataclass
class StreamConfig:
    """All options of a stream (``vibe-rt stream --help`` shows them with their flags).

    ``source="auto"`` takes the camera, video or image folder that is given, else the demo scene; ``"none"``
    streams background only (or onsets from :meth:`StreamPipeline.submit_onset`). ``events="auto"`` means
    ``every`` for image folders and ``scene`` otherwise. ``montage`` optionally names the channels to stream: a
    preset montage name or a comma-separated channel list, a subset of the model's channels (of the device's cap
    with ``device``). ``srate``, ``chunk_ms`` and ``name`` default to the device's (its usual rate, its LSL app's
    push size and stream name), else to 1000 Hz, 5 ms and ``vibe-rt``.
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
    precision: str = option("auto", "--precision", "precision of the networks (default: auto = fp16 for TensorRT, "
                            "fp32 otherwise); int8: ONNX Runtime on a CPU (graphs quantized once and cached, kept "
                            "only when their epochs match fp32 at r >= 0.99) or TensorRT",
                            Choice(PRECISION_CHOICES), group=_MODEL, choices=PRECISION_CHOICES)
    calibration: Path | None = option(None, "--calibration", "JSON calibration profile (vibe-rt calibrate): its "
                                      "per-channel gain scales each predicted response and its latency delays the "
                                      "whole response",
                                      ExistingPath("file", "calibration profile"), group=_MODEL, type=Path,
                                      metavar="PROFILE")
    montage: str | None = option(None, "--montage", "stream only these channels of the model (of the device's "
                                 "cap with --device): a preset montage name or a comma-separated channel list "
                                 "(default: all)", Text(4096, optional=True), group=_OUT, metavar="NAME|CH,CH,...")
    srate: float | None = option(None, "--srate", "output sampling rate in Hz, e.g. 250, 500, 1000 (default: 1000, "
                                 "or the device's usual rate)", Number(0, MAX_SRATE, lo_open=True, optional=True,
                                                                      hint="Hz; 250, 500 or 1000 are typical"),
                                 group=_OUT, type=float)
    name: str | None = option(None, "--name", "LSL stream name (default: vibe-rt, or the name the device's LSL app "
                              "gives its stream)", Text(100, optional=True), group=_OUT)
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
    unit_scale: str | None = option(None, "--unit-scale", "what one unit of the model's output is, for a model "
                                    "trained on whitened or z-scored data (unit a.u., e.g. THINGS-EEG2/MEG as "
                                    "published), e.g. '2 uV' or '300 fT'; refused for a model that emits SI units",
                                    _Quantity(), group=_OUT, type=str, metavar="'N UNIT'")
    chunk_ms: float | None = option(None, "--chunk-ms", "push interval in ms (default: 5, or the push size of the "
                                    "device's LSL app)", Number(0, 100, lo_open=True, optional=True), group=_OUT,
                                    type=float, metavar="MS")
    record: Path | None = option(None, "--record", "also write the streamed signal and markers to a BrainVision "
                                 "file (readable with mne.io.read_raw_brainvision, also after a crash)",
                                 NewFile((".vhdr",)), group=_OUT, type=Path, metavar="FILE.vhdr")
    overwrite: bool = option(False, "--overwrite", "--record: replace an existing recording of that name "
                             "(default: refuse, so that no session is lost)", group=_OUT, action="store_true")
    seed: int | None = option(None, "--seed", "random seed (>= 0) of the background, line noise, artifacts, faults, "
                              "demo scene and --shuffle order",
                              Number(0, 2**63 - 1, integer=True, optional=True), group=_OUT, type=int)
    device: str | None = option(None, "--device", "emulate an amplifier: a device profile name (vibe-rt devices "
                                "lists them) or a profile file; streams its cap (every channel gets a response), "
                                "rates, resolution, units and LSL stream shape", Text(4096, optional=True),
                                group=_DEV, metavar="NAME|FILE.json")
    device_delay: float | None = option(None, "--device-delay", "--device: transport delay to emulate in seconds, "
                                        "the time between a sample's true time and its LSL timestamp (default: the "
                                        "profile's measured one, 0 where unknown)",
                                        Number(0, MAX_DEVICE_DELAY, optional=True), group=_DEV, type=float,
                                        metavar="S")
    subject: int | None = option(None, "--subject", "a synthetic subject (seed >= 0): individual alpha frequency "
                                 "and power, evoked latency and amplitude, head size and skull conductivity, drawn "
                                 "within published ranges (default: the template subject)",
                                 Number(0, 2**63 - 1, integer=True, optional=True), group=_DEV, type=int,
                                 metavar="SEED")
    artifacts: str | None = option(None, "--artifacts", "inject recording artifacts, each also a marker: a comma "
                                   "list of blinks, saccades, emg, drift, pops, bad-channel, line, or realistic (a "
                                   "documented mix); NAME:RATE (blinks:12/min), saccades:scene, "
                                   "bad-channel:flat|noisy[@CH], line:50|60; see vibe_rt.stream.artifacts",
                                   _ItemList(parse_artifacts), group=_TEST, metavar="LIST")
    faults: str | None = option(None, "--faults", "simulate device/transport faults, each announced on the marker "
                                "stream: drift:50ppm, jitter:0.5ms, freeze:2s@30s, drop:100ms@20s, restart[:1s]@40s "
                                "(@T: stream time; @R/min: Poisson times); see vibe_rt.stream.faults",
                                _ItemList(parse_faults), group=_TEST, metavar="LIST")
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
        if self.device_delay is not None and self.device is None:
            raise ConfigError("--device-delay sets the transport delay of an emulated device; give --device NAME too")
        if self.record is not None and not self.overwrite:
            from .record import recording_files

            existing = [f for f in recording_files(self.record) if f.exists()]
            if existing:
                raise ConfigError(f"--record {self.record}: {existing[0]} exists already (an earlier session); "
                                  "give a new name, or --overwrite to replace it")
        for kind, value in (("video", self.video), ("images", self.images)):
            if self.source == kind and value is None:
                raise ConfigError(f"the {kind} source needs --{kind} {'FILE' if kind == 'video' else 'DIR'}")
        if self.line_noise and any(isinstance(a, LineHum) for a in parse_artifacts(self.artifacts)):
            raise ConfigError("--line-noise and --artifacts line both add line noise; give one (--artifacts "
                              "line:50 adds the harmonics too)")

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

    def output_spec(self, device: DeviceProfile | None = None) -> OutputSpec:
        """The :class:`OutputSpec` of these options; unset rate, push interval and name come from ``device``."""
        lookahead = None if self.lookahead == "auto" else float(self.lookahead)
        srate = float(self.srate or (device.default_rate_hz if device is not None else DEFAULT_SRATE))
        if self.chunk_ms is not None:
            chunk_s = self.chunk_ms / 1e3
        else:
            chunk_s = device.lsl.chunk_samples(srate) / srate if device is not None else DEFAULT_CHUNK_S
        name = self.name or (device.lsl.name if device is not None else DEFAULT_NAME)
        return OutputSpec(srate=srate, lookahead=lookahead, chunk_s=chunk_s, name=name, source_id=self.source_id,
                          faults=parse_faults(self.faults))

    def synth_spec(self, device: DeviceProfile | None = None, model_scale: float = 1.0) -> SynthSpec:
        """The :class:`SynthSpec` of these options; with ``device``, responses appear its transport delay late
        (``--device-delay``, else the profile's, else 0); ``model_scale``: see :class:`SynthSpec`."""
        delay = 0.0
        if device is not None:
            delay = self.device_delay if self.device_delay is not None else device.transport_delay_s or 0.0
        return SynthSpec(late_policy=self.late_policy, line_noise=self.line_noise, noise_scale=self.noise_scale,
                         seed=self.seed, artifacts=parse_artifacts(self.artifacts), model_scale=model_scale,
                         device_delay_s=float(delay))

    def inference_spec(self) -> InferenceSpec:
        """The :class:`InferenceSpec` of these options."""
        return InferenceSpec(max_queue=int(self.max_queue), max_batch=int(self.max_batch))

    def record_spec(self) -> RecordSpec | None:
        """The :class:`RecordSpec` (None without ``--record``)."""
        return RecordSpec(Path(self.record), self.overwrite) if self.record is not None else None


__all__ = ["BACKEND_CHOICES", "DEFAULT_CHUNK_S", "DEFAULT_NAME", "DEFAULT_SRATE", "InferenceSpec", "MAX_DEVICE_DELAY",
           "MAX_LOOKAHEAD", "MAX_SRATE", "OutputSpec", "PRECISION_CHOICES", "RecordSpec", "StreamConfig", "SynthSpec",
           "parse_frame_size"]
