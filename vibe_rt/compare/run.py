"""``vibe-rt compare`` and ``vibe-rt calibrate`` as library calls: one validated configuration, one call each.

::

    from vibe_rt.compare import CompareConfig, run_compare
    result = run_compare(CompareConfig(live_file=Path("rec.fif"), synth="synth_raw.fif", report=Path("rep")))
    print(result.summary["erp_r"])

:func:`run_compare` compares a recording (``live_file``) or a live LSL stream (``live``, until ``duration``,
``stop_event`` or Ctrl-C) with synthesized epochs (:class:`SynthChoice`), optionally rewriting a self-reloading
report folder while it runs (the live view), and writes the final report. :func:`calibrate_session` fits a
calibration profile from a report, or from a recording it compares first, and saves it.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._logs import logger
from ..calibration import CalibrationProfile
from ..devices import DeviceProfile, load_device
from ..errors import ConfigError, DataError, require_path
from ..montage import Montage
from .comparator import Comparator
from .offline import ParsedMarker, rec_markers_source
from .session import PredictorSynth

__all__ = ["CalibrateConfig", "CompareConfig", "CompareResult", "SynthChoice", "build_synth", "calibrate_session",
           "channel_map_of", "default_profile_path", "run_compare"]

INTERPOLATIONS = ("auto", "spline", "idw")


@dataclass
class CompareConfig:
    """Every option of ``vibe-rt compare`` (see ``vibe-rt compare --help``), checked by :meth:`validate`.

    Attributes
    ----------
    live : str | None
        Live LSL signal stream (name, type or source_id); with ``live_file``, the signal stream inside an XDF file.
    live_file : Path | None
        A recording (.fif, .vhdr, .edf, .bdf, .xdf) compared offline instead of a live stream.
    markers : str | None
        Marker stream (name, type or source_id; default: any stream of type Markers or annotations).
    stimulus_log : Path | None
        With ``live_file``: markers from a CSV (onset in seconds of the recording, image) instead of the file's.
    live_unit : str | None
        Unit of the live data where the stream/file does not say (one of
        :data:`vibe_rt.units.UNIT_SYMBOLS`).
    synth : str | None
        Synthesized signal: a running ``vibe-rt stream`` (name), its recording (a file), or, with ``live_file``,
        the name of its stream inside the same XDF file. None: predicted by ``model`` from the marker images.
    model : Path | None
        Checkpoint that predicts from the marker images (None: the embedded model).
    backend : str
        Inference backend of ``model`` (``"auto"``, ``"torch"``, ``"onnxruntime"``, ``"tensorrt"``).
    images : Path | None
        Folder against which relative image names in markers are resolved.
    montage : str | None
        Model montage preset when no model is loaded (default ``"things-eeg2"``); with a model, its own.
    unit_scale : str | None
        For a model of a.u. data: what one unit of its output is (e.g. ``"2 uV"``); refused for one that emits SI
        (:func:`vibe_rt.stream.run.si_per_model_unit`, the rule of ``vibe-rt stream``).
    device : str | None
        The live device's profile (a name or file, :mod:`vibe_rt.devices`): its channels are read through it
        (10-10 equivalents of its labels, its positions where the stream gives none).
    interpolation : str
        How model channels missing from the live data are interpolated: ``"auto"``, ``"spline"`` or ``"idw"``.
    baseline : bool
        Subtract the pre-stimulus mean of each epoch.
    max_lag_ms : float
        Largest latency searched (ms).
    duration : float | None
        Live: stop after this many seconds (None: until ``stop_event`` or Ctrl-C).
    report : Path | None
        Folder for report.json, erps.npz, figures and index.html.
    html : bool
        Write the HTML page (and so the live view).
    live_view_s : float
        Live, with ``report``: rewrite the report every this many seconds while running (0: only at the end).
    """

    live: str | None = None
    live_file: Path | None = None
    markers: str | None = None
    stimulus_log: Path | None = None
    live_unit: str | None = None
    synth: str | None = None
    model: Path | None = None
    backend: str = "auto"
    images: Path | None = None
    montage: str | None = None
    unit_scale: str | None = None
    device: str | None = None
    interpolation: str = "auto"
    baseline: bool = True
    max_lag_ms: float = 100.0
    duration: float | None = None
    report: Path | None = None
    html: bool = True
    live_view_s: float = 5.0

    @property
    def offline(self) -> bool:
        """True when a recording is compared (``live_file``), False for a live stream."""
        return self.live_file is not None

    @property
    def live_view(self) -> bool:
        """True when a live comparison rewrites its report while running."""
        return not self.offline and self.report is not None and self.html and self.live_view_s > 0

    def live_device(self) -> DeviceProfile | None:
        """The profile ``device`` names (None without one)."""
        return load_device(self.device) if self.device else None

    @property
    def comparator_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~vibe_rt.compare.comparator.Comparator`."""
        return {"baseline": (None, 0.0) if self.baseline else None, "max_lag_s": self.max_lag_ms / 1000.0}

    def validate(self) -> None:
        """Raise :class:`ConfigError` (or :class:`DataError` for a missing input) naming the first bad option."""
        from ..units import parse_quantity, require_unit

        if self.live_file is None and not self.live:
            raise ConfigError("give --live NAME_OR_TYPE (a live LSL stream) or --live-file FILE (a recording)")
        if self.stimulus_log is not None and not self.offline:
            raise ConfigError("--stimulus-log goes with --live-file (a live comparison takes its markers from the "
                              "marker stream)")
        if self.live_unit is not None:
            require_unit(self.live_unit, "--live-unit")
        if self.unit_scale is not None:
            parse_quantity(self.unit_scale, "--unit-scale")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"unknown interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}")
        if not (math.isfinite(self.max_lag_ms) and self.max_lag_ms > 0):
            raise ConfigError(f"--max-lag-ms must be a positive number of ms (e.g. 100), got {self.max_lag_ms:g}")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            raise ConfigError(f"--duration must be a positive number of seconds, got {self.duration:g}")
        if not (math.isfinite(self.live_view_s) and self.live_view_s >= 0):
            raise ConfigError(f"--live-view must be >= 0 s (0: report only at the end), got {self.live_view_s:g}")
        if self.report is not None and self.report.exists() and not self.report.is_dir():
            raise ConfigError(f"--report {self.report} is a file, expected a folder; give a folder for the report")
        if self.images is not None:
            require_path(self.images, "folder", "--images", "give the folder the stimuli were shown from",
                         ConfigError)
        if self.device is not None:
            load_device(self.device)  # an unknown name or a bad profile is one line before any stream opens
        if self.synth is not None and Path(self.synth).is_dir():
            raise ConfigError(f"--synth {self.synth} is a folder; give a recording of the synthesized stream (a "
                              "file) or the name of the synthesized stream")
        if self.synth is not None and not self.offline and Path(self.synth).is_file():
            raise ConfigError(f"--synth {self.synth} is a recording, which a live comparison cannot replay; give "
                              "the name of the running synthesized stream, or compare a recording (--live-file)")


@dataclass(frozen=True)
class SynthChoice:
    """Where a comparison's synthesized epochs come from: exactly one of ``stream``, ``recording`` and
    ``predictor``.

    Attributes
    ----------
    montage : Montage
        The model montage the epochs are compared in.
    stream : str | None
        A synthesized signal stream epoched around the same markers: live, or inside the compared XDF file.
    recording : Path | None
        A recording of the synthesized stream (same timeline and markers as the compared one).
    predictor : PredictorSynth | None
        Predicts each marker's image.
    """

    montage: Montage
    stream: str | None = None
    recording: Path | None = None
    predictor: PredictorSynth | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.stream, self.recording, self.predictor)) != 1:
            raise ConfigError("a synthesized source is one of a stream, a recording or a predictor")

    def describe(self) -> dict[str, Any]:
        """What a report says about the synthesized side (``kind``, and the stream, file or model hash)."""
        if self.stream is not None:
            return {"kind": "stream", "stream": self.stream}
        if self.recording is not None:
            return {"kind": "recording", "file": str(self.recording)}
        meta = getattr(self.predictor.predictor, "meta", {}) if self.predictor is not None else {}
        return {"kind": "model (overlap-added at the onsets)", "model": meta.get("model"),
                "model_hash": meta.get("model_hash")}


def build_synth(config: CompareConfig, markers: list[ParsedMarker] | None = None) -> SynthChoice:
    """The synthesized source of ``config`` (loads the model for a predictor).

    With a predictor and the ``markers`` known beforehand (a recording), a :class:`DataError` says so before the
    model loads when none of them names an existing image.
    """
    from ..montage import get_montage

    if config.synth:
        montage = get_montage(config.montage or "things-eeg2")
        if Path(config.synth).is_file():
            return SynthChoice(montage, recording=Path(config.synth))
        return SynthChoice(montage, stream=config.synth)
    if markers is not None:
        from .session import find_image, image_name, no_image_error

        names = [image_name(key, payload) for _, key, payload in markers]
        if not any(find_image(n, config.images) is not None for n in dict.fromkeys(names)):
            raise no_image_error(names, config.images)
    from ..runtime.predictor import load_predictor

    predictor = load_predictor(config.model, config.backend)
    montage = predictor.montage
    if config.montage and config.montage != montage.name:
        raise ConfigError(f"--montage {config.montage} differs from the model's montage {montage.name!r}; "
                          "leave --montage out when using a model")
    from ..stream.run import si_per_model_unit

    scale = si_per_model_unit(predictor.unit, montage, config.unit_scale)
    return SynthChoice(montage, predictor=PredictorSynth(predictor, config.images, model_scale=scale))


@dataclass
class CompareResult:
    """What :func:`run_compare` returns.

    Attributes
    ----------
    comparator : Comparator
        The session's comparator (events, running ERPs, history).
    summary : dict
        ``comparator.summary()`` at the end.
    info : dict
        Mode, file or streams, channel match (as stored in the report).
    outages, gaps : list of dict
        Live: stream outages and gaps in the data (see :meth:`LiveComparator.outages`), with the events lost.
    report : Path | None
        The report.json written, if any.
    """

    comparator: Comparator
    summary: dict[str, Any]
    info: dict[str, Any]
    outages: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    report: Path | None = None

    @property
    def channel_map(self) -> dict[str, str] | None:
        """Model channel -> live channel of the session's channel match."""
        return channel_map_of(self.info)


def channel_map_of(info: Mapping[str, Any]) -> dict[str, str] | None:
    """The channel map stored in a comparison's ``info`` (offline: at the top, live: under the live stream)."""
    match = info.get("channel_match") or info.get("streams", {}).get("live", {}).get("channel_match") or {}
    return match.get("map") if isinstance(match, dict) else None


def run_compare(config: CompareConfig, *, on_status: Callable[[str], None] | None = None,
                stop_event: threading.Event | None = None) -> CompareResult:
    """Run a comparison and write its report (``config.report``).

    Parameters
    ----------
    config : CompareConfig
        The options (validated here).
    on_status : callable | None
        Live: called about twice a second with a one-line status (the CLI prints it in place).
    stop_event : threading.Event | None
        Live: set it to stop (as do ``config.duration``, Ctrl-C and a failing stream worker).

    Returns
    -------
    CompareResult

    Raises
    ------
    DataError
        When no event could be compared, naming the cause and the fix (no marker named an existing image, the
        markers carry only codes, no marker arrived ...).
    """
    config.validate()
    if config.offline:
        result = _compare_file(config)
    else:
        result = _compare_live(config, build_synth(config), on_status, stop_event or threading.Event())
    if result.comparator.n_events == 0:
        raise _no_events_error(config, result)
    result.summary = result.comparator.summary()
    if config.report is not None:
        from .report import write_report

        result.report = write_report(config.report, result.comparator, outages=result.outages, gaps=result.gaps,
                                     info=result.info, html_page=config.html, summary=result.summary)
    return result


def _compare_file(config: CompareConfig) -> CompareResult:
    from .offline import compare_offline, read_recording, session_markers

    assert config.live_file is not None
    rec = read_recording(config.live_file, signal_stream=config.live, marker_stream=config.markers)
    markers = session_markers(rec, config.stimulus_log)
    synth = build_synth(config, markers)
    session = compare_offline(
        rec, synth.montage, synth.predictor or synth.recording or config.live_file, markers=markers,
        stimulus_log=config.stimulus_log, synth_stream=synth.stream, interpolation=config.interpolation,
        unit_override=config.live_unit, device=config.live_device(), **config.comparator_options)
    info = {"mode": "offline", "file": str(config.live_file), "channel_match": session.live.match.to_dict(),
            "synth": synth.describe(), "markers": rec_markers_source(rec, config.stimulus_log)}
    return CompareResult(session.comparator, {}, info)


def _compare_live(config: CompareConfig, synth: SynthChoice, on_status: Callable[[str], None] | None,
                  stop_event: threading.Event) -> CompareResult:
    from .live import LiveComparator

    # a short run does not wait longer for its streams than it runs
    resolve_timeout = 10.0 if config.duration is None else min(10.0, max(1.0, config.duration))
    source = synth.predictor or synth.stream  # a live comparison has no synthesized recording
    assert config.live is not None and source is not None  # checked by config.validate()
    live = LiveComparator(config.live, synth.montage, source, markers=config.markers,
                          interpolation=config.interpolation, unit_override=config.live_unit,
                          resolve_timeout=resolve_timeout, device=config.live_device(),
                          **config.comparator_options)
    live.start()
    t0 = next_view = time.monotonic()
    try:
        while config.duration is None or time.monotonic() - t0 < config.duration:
            if stop_event.wait(0.5):
                break
            if on_status is not None:
                on_status(live.status_line())
            if not live.running:
                break
            if config.live_view and time.monotonic() >= next_view:
                _write_live_view(config, live)
                next_view = time.monotonic() + config.live_view_s
    except KeyboardInterrupt:  # Ctrl-C ends a live comparison like its duration: report what was compared
        logger.info("interrupted: stopping the comparison")
    finally:
        live.stop()
    return CompareResult(live.comparator, {}, {"mode": "live", "streams": live.info(), "synth": synth.describe()},
                         live.outages(), live.data_gaps())


def _write_live_view(config: CompareConfig, live: Any) -> None:
    """Rewrite the report folder from a snapshot of the running comparison (the worker goes on meanwhile)."""
    from .report import write_report

    assert config.report is not None  # a live view writes to the report folder
    comp = live.snapshot()
    if comp.n_events:
        write_report(config.report, comp, outages=live.outages(), gaps=live.data_gaps(),
                     info={"mode": "live (running)", "streams": live.info()}, refresh_s=config.live_view_s)


def _no_events_error(config: CompareConfig, result: CompareResult) -> DataError:
    """Why a comparison compared no event, and the fix."""
    from .session import no_image_error

    lost = result.comparator.lost
    if not lost:  # live: no marker arrived (a recording's markers are either compared or lost)
        return DataError("no marker arrived while the comparison ran, so no event was compared; check the marker "
                         "stream (--markers NAME) and that the stimulus program sends markers")
    reasons = sorted({x["reason"] for x in lost})
    if reasons == ["no synthesized epoch"] and not config.synth:
        return no_image_error([x["key"] for x in lost], config.images)
    what = f"none of the {len(lost)} events could be compared (lost: {', '.join(reasons)})"
    if config.offline:
        return DataError(f"{what}; the markers must fall inside the data of recording {config.live_file} and of the "
                         "synthesized signal (a --stimulus-log's onsets are seconds from the recording's first "
                         "sample)")
    return DataError(f"{what}; run longer (--duration) and check that the live and the synthesized streams carry "
                     "data around the markers")


@dataclass
class CalibrateConfig:
    """The options of ``vibe-rt calibrate`` (see ``vibe-rt calibrate --help``).

    Attributes
    ----------
    session : Path
        A comparison report folder (or its report.json), or a recording that is compared first.
    out : Path | None
        Profile to write (default :func:`default_profile_path`).
    per_channel_latency : bool
        Fit one latency per channel instead of one overall.
    adapter : bool
        Also fit a latent adapter for ``compare.model`` (the model that synthesized the session).
    compare : CompareConfig
        How a recording session is compared (its ``live_file`` is the session, its ``report`` unused), the
        largest latency searched, and the model of the adapter.
    """

    session: Path
    out: Path | None = None
    per_channel_latency: bool = False
    adapter: bool = False
    compare: CompareConfig = field(default_factory=CompareConfig)

    @property
    def from_report(self) -> bool:
        """True when the session is a comparison report, False for a recording."""
        return self.session.is_dir() or self.session.suffix.lower() == ".json"

    @property
    def out_path(self) -> Path:
        """Where the profile goes."""
        return self.out if self.out is not None else default_profile_path(self.session)

    def session_compare(self) -> CompareConfig:
        """The comparison of a recording session."""
        return dataclasses.replace(self.compare, live_file=self.session, report=None)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad option."""
        if self.out_path.is_dir():
            raise ConfigError(f"--out {self.out_path} is a folder, expected a file; give a name such as "
                              f"{self.out_path / 'profile.json'}")
        if not self.from_report:
            self.session_compare().validate()


def default_profile_path(session: Path) -> Path:
    """``calibration/<name>.json`` for a report folder (its name), its report.json (the folder's) or a recording
    (its stem)."""
    if session.suffix.lower() == ".json":
        session = session.parent
    return Path("calibration") / f"{session.stem if session.is_file() else session.name}.json"


def calibrate_session(config: CalibrateConfig) -> tuple[CalibrationProfile, Path]:
    """Fit a calibration profile from a comparison session and save it; returns it and its path.

    A report is read as it is; a recording is compared first (:func:`run_compare`, same errors).
    """
    from .calibrate import fit_calibration
    from .report import read_report

    config.validate()
    if config.from_report:
        report, erps, montage = read_report(config.session)
        info = report.get("info", {})
    else:
        result = run_compare(config.session_compare())
        erps, montage, info = result.comparator.erps(), result.comparator.montage, result.info
    channel_map = channel_map_of(info)
    model_hash = (info.get("synth") or {}).get("model_hash")
    adapter_model = None
    if config.adapter:
        from ..checkpoint import load_model

        adapter_model = load_model(config.compare.model)
    out = config.out_path
    profile = fit_calibration(erps, montage, max_lag_s=config.compare.max_lag_ms / 1000.0,
                              per_channel_latency=config.per_channel_latency, channel_map=channel_map,
                              name=out.stem, adapter_model=adapter_model, model_hash=model_hash)
    return profile, profile.save(out)
