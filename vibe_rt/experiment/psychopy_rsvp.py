"""PsychoPy part of the experiments: onset reporting around flips, and the RSVP run.

:class:`OnsetReporter` is the piece a user puts into their own PsychoPy script::

    from psychopy import visual
    from vibe_rt.experiment import OnsetReporter
    from vibe_rt.stream import StreamPipeline          # or MarkerOutlets() for markers only

    win = visual.Window(size=(800, 600), units="pix")
    with StreamPipeline(...) as pipeline, OnsetReporter(win, pipeline) as rep:
        for name, pixels in images:                    # pixels: uint8 (H, W, 3) RGB, as drawn
            stim.image = PIL.Image.fromarray(pixels)
            stim.draw()
            rep.flip(name, pixels)                     # this flip is the onset: reported at its true time
            for _ in range(5):
                stim.draw()
                rep.flip()                             # plain flips: timed, drops counted
    print(rep.n_dropped)

``rep.flip`` calls ``win.flip()``, converts the returned flip time (PsychoPy's ``core.getTime`` clock) to the LSL
clock (offset measured by bracketing at ``__enter__``, re-checked at ``__exit__``, see
:mod:`vibe_rt.experiment.clock`) and hands the onset to the sink right after the flip. Scripts that call
``win.flip()`` themselves use ``rep.on_next_flip(name, pixels)`` (``win.callOnFlip`` underneath) instead.

:func:`run_rsvp` runs a THINGS-style RSVP (design in :mod:`vibe_rt.experiment.rsvp`) with a fixation point,
writing the TSV log of :mod:`vibe_rt.experiment.log` as it goes.

Displayed pixels: images are loaded from their files (RGB), shrunk (never enlarged) to fit ``image_size``, and
drawn 1:1 in pixel units without interpolation, placed on whole pixels; the array handed to the pipeline is
exactly that array (checked against the back buffer in the tests).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from .._imports import import_optional_dependency
from .._logs import logger
from ..errors import ConfigError, DataError, VibeError
from ..stream.events import onset_marker  # imported here, not at the first onset (it costs ~100 ms once)
from .clock import ClockOffset, lsl_clock, measure_offset
from .log import ExperimentLog
from .markers import OnsetSink, push_event_marker
from .rsvp import (
    RESPONSE_CODE,
    FramePacer,
    FrameTiming,
    RsvpConfig,
    Trial,
    build_trials,
    frame_timing,
    missed_frames,
    score_responses,
)

PACING = ("auto", "vsync", "clock")
MAX_VSYNC_HZ = 240.0
"""A measured 'refresh rate' above this means flips do not wait for a refresh (no vsync): pace by the clock."""


def import_psychopy() -> SimpleNamespace:
    """Import PsychoPy's ``visual``, ``core``, ``event`` and ``logging`` lazily, with clear errors.

    Raises
    ------
    MissingDependencyError
        PsychoPy is not installed (names the extra).
    ConfigError
        No display to open a window on (Linux without ``DISPLAY``/``WAYLAND_DISPLAY``).
    """
    import_optional_dependency("psychopy")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ConfigError("no display: DISPLAY is not set. Run on a desktop session, or under a virtual display "
                          "with `xvfb-run -a vibe-rt experiment rsvp ...` (no vsync there: timing is emulated)")
    _preload_triton()
    from psychopy import core, event, visual  # noqa: PLC0415
    from psychopy import logging as plog  # noqa: PLC0415

    return SimpleNamespace(visual=visual, core=core, event=event, logging=plog)


def _preload_triton() -> None:
    """Import ``triton`` (if installed) before PsychoPy/pyglet loads the OpenGL driver.

    Mesa's llvmpipe (Xvfb, virtual machines) and radeonsi drivers load ``libLLVM``; importing triton's own LLVM
    build *afterwards* (torch does it lazily, e.g. when a model is built or compiled) segfaults the process.
    Loading triton first is safe (checked under Xvfb with Mesa 22.3 / LLVM 15 and triton from the torch 2.14
    wheels). ``import psychopy.visual`` already creates pyglet's GL context, so this must run before it.
    """
    import importlib.util

    if "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    try:
        import triton  # noqa: F401, PLC0415
    except Exception as err:  # a broken triton must not stop an experiment that does not need it
        logger.debug("could not preload triton: %r", err)


def load_image(path: str | Path, max_size: int | None = None) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3) RGB, shrunk (INTER_AREA) so that its longer side is <= max_size."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot read image {str(path)!r}: is it a valid PNG/JPEG/BMP/TIFF/WebP file?")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if max_size is not None:
        h, w = img.shape[:2]
        scale = max_size / max(h, w)
        if scale < 1.0:
            img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def pixel_aligned_pos(win_size: Sequence[int], image_shape: Sequence[int]) -> tuple[float, float]:
    """Centre position (pix units) that puts an image's edges on whole screen pixels (exact 1:1 drawing)."""
    w, h = int(win_size[0]), int(win_size[1])
    ih, iw = int(image_shape[0]), int(image_shape[1])
    return (0.5 * ((w - iw) % 2), -0.5 * ((h - ih) % 2))


@dataclass
class FlipRecord:
    """Flip times seen by an :class:`OnsetReporter` (LSL clock) and the frames missed before each."""

    times: list[float] = field(default_factory=list)
    missed: list[int] = field(default_factory=list)


class OnsetReporter:
    """Reports stimulus onsets at their flip times to a pipeline or marker outlets; counts dropped frames.

    Parameters
    ----------
    win : psychopy.visual.Window
        The window.
    sink : OnsetSink | None
        Receives ``submit_onset(image, onset_lsl, meta)``: a ``StreamPipeline``, :class:`MarkerOutlets`, or None
        (only timing and the returned onsets).
    refresh_hz : float | None
        Refresh rate used for drop detection; None measures it with ``win.getActualFrameRate`` (or uses
        ``win.monitorFramePeriod``).
    drop_threshold : float
        A flip interval above this many refresh periods is a drop.
    clock_offset : ClockOffset | None
        PsychoPy-to-LSL offset; None measures it at ``__enter__``.
    lsl_time : callable
        The LSL clock (default ``pylsl.local_clock``).

    Attributes
    ----------
    flips : FlipRecord
        Every flip made through :meth:`flip` (LSL times).
    onsets : list of dict
        ``{"onset": t_lsl, "image": id, "flip_interval": s, "push_delay": s, "meta": ...}`` per reported onset.
    """

    def __init__(self, win: Any, sink: OnsetSink | None = None, *, refresh_hz: float | None = None,
                 drop_threshold: float = 1.5, clock_offset: ClockOffset | None = None,
                 lsl_time: Callable[[], float] = lsl_clock) -> None:
        self.win = win
        self.sink = sink
        self.drop_threshold = float(drop_threshold)
        self.clock_offset = clock_offset
        self.clock_offset_end: ClockOffset | None = None
        self.lsl_time = lsl_time
        self.refresh_hz = refresh_hz
        self.flips = FlipRecord()
        self.onsets: list[dict[str, Any]] = []
        self._core: Any = None

    # lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> OnsetReporter:
        """Measure the clock offset (unless given) and the refresh rate (unless given); enable frame recording."""
        from psychopy import core  # noqa: PLC0415  (the window exists, so PsychoPy is importable)

        self._core = core
        if self.clock_offset is None:
            self.clock_offset = measure_offset(core.getTime, self.lsl_time, n_reads=200)
        if self.refresh_hz is None:
            period = getattr(self.win, "monitorFramePeriod", None)
            rate = self.win.getActualFrameRate(nIdentical=10, nMaxFrames=120, nWarmUpFrames=10, threshold=1)
            self.refresh_hz = float(rate) if rate else (1.0 / period if period else 60.0)
        self.win.recordFrameIntervals = True
        self.win.refreshThreshold = self.drop_threshold / float(self.refresh_hz)
        logger.debug("onset reporter: PsychoPy->LSL offset %.6f s (+/- %.1f us), refresh %.2f Hz",
                     self.clock_offset.offset, 1e6 * self.clock_offset.uncertainty, self.refresh_hz)
        return self

    def stop(self) -> None:
        """Re-measure the clock offset and warn if it moved by more than 1 ms (the clocks would drift)."""
        if self._core is None:
            return
        self.clock_offset_end = measure_offset(self._core.getTime, self.lsl_time, n_reads=200)
        assert self.clock_offset is not None
        drift = self.clock_offset_end.offset - self.clock_offset.offset
        if abs(drift) > 1e-3:
            logger.warning("the PsychoPy and LSL clocks drifted by %.3f ms during the run: onsets late in the run "
                           "are off by up to that much", 1e3 * drift)

    def __enter__(self) -> OnsetReporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # timing ----------------------------------------------------------------------------------------------
    @property
    def period(self) -> float:
        """Refresh period (s)."""
        return 1.0 / float(self.refresh_hz or 60.0)

    @property
    def n_dropped(self) -> int:
        """Frames missed over all flips made through :meth:`flip`."""
        return int(sum(self.flips.missed))

    def to_lsl(self, t_psychopy: float) -> float:
        """Convert a PsychoPy ``core.getTime`` time to the LSL clock."""
        if self.clock_offset is None:
            raise VibeError("the onset reporter is not started: use it as a context manager or call start()")
        return self.clock_offset.to_dst(t_psychopy)

    def _record_flip(self, t_lsl: float) -> float:
        prev = self.flips.times[-1] if self.flips.times else math.nan
        interval = t_lsl - prev
        self.flips.times.append(t_lsl)
        self.flips.missed.append(missed_frames(interval, self.period, self.drop_threshold))
        return interval

    def flip(self, image_id: str | int | None = None, image: np.ndarray | None = None,
             meta: dict[str, Any] | None = None, **flip_kwargs: Any) -> float:
        """Flip the window; if ``image_id`` or ``image`` is given this flip is an onset and is reported.

        Returns
        -------
        float
            The flip time on the LSL clock (seconds).
        """
        t = self.win.flip(**flip_kwargs)
        t_lsl = self.to_lsl(t)
        interval = self._record_flip(t_lsl)
        if image_id is not None or image is not None:
            self.report(t_lsl, image_id, image, meta, flip_interval=interval)
        return t_lsl

    def on_next_flip(self, image_id: str | int | None, image: np.ndarray | None,
                     meta: dict[str, Any] | None = None) -> None:
        """Report an onset at the next ``win.flip()`` made by the caller (``win.callOnFlip`` underneath)."""
        self.win.callOnFlip(self._on_flip, image_id, image, meta)

    def _on_flip(self, image_id: Any, image: np.ndarray | None, meta: dict[str, Any] | None) -> None:
        # Window.flip sets _frameTime to its return value just before running the callOnFlip functions
        t = getattr(self.win, "_frameTime", None)
        if t is None:
            t = self._core.getTime()
        self.report(self.to_lsl(float(t)), image_id, image, meta)

    def report(self, onset_lsl: float, image_id: Any, image: np.ndarray | None, meta: dict[str, Any] | None = None,
               flip_interval: float = math.nan) -> dict[str, Any]:
        """Hand one onset (LSL time) to the sink; returns the record appended to :attr:`onsets`."""
        m = {"image": str(image_id), "source": "psychopy", "code": 1}
        m.update(meta or {})
        if self.sink is not None:
            if image is None:
                raise ConfigError("an onset sent to a stream pipeline needs the image as shown (uint8 RGB array)")
            self.sink.submit_onset(image, onset_lsl, m)
        rec = {"onset": onset_lsl, "image": image_id, "flip_interval": flip_interval,
               "push_delay": self.lsl_time() - onset_lsl, "meta": m}
        self.onsets.append(rec)
        return rec

    def response(self, key: str, t_psychopy: float, meta: dict[str, Any] | None = None) -> float:
        """Push a key-press marker (code :data:`~vibe_rt.experiment.rsvp.RESPONSE_CODE`) at its LSL time."""
        t = self.to_lsl(t_psychopy)
        if self.sink is not None:
            m = {"key": key, "source": "psychopy", "code": RESPONSE_CODE, "kind": "response"}
            m.update(meta or {})
            push_event_marker(self.sink, onset_marker(-1, t, m, status="response"), t, RESPONSE_CODE)
        return t


@dataclass
class RsvpResult:
    """Summary of an RSVP run.

    Attributes
    ----------
    n_trials, n_presented : int
        Planned and presented trials.
    n_dropped : int
        Frames missed (flip interval above the drop threshold) over the run.
    n_dropped_psychopy : int
        PsychoPy's own count (``win.nDroppedFrames``, threshold set to the same value).
    timing : FrameTiming
        Refresh rate and on/off frames used.
    pacing : str
        ``"vsync"`` (flips wait for the display) or ``"clock"`` (emulated refresh, e.g. under Xvfb).
    onsets : ndarray
        Onset times (LSL clock) of the presented trials.
    onset_error : ndarray
        Actual minus planned onset (s) per presented trial.
    push_delay : ndarray
        LSL time when the onset had been handed to the sink, minus the onset (s).
    clock_offset, clock_offset_end : ClockOffset
        PsychoPy-to-LSL offset at the start and end.
    score : dict
        Target detection (hits, misses, false alarms, median RT).
    aborted : bool
        Escape pressed.
    log_path : Path | None
    """

    n_trials: int
    n_presented: int
    n_dropped: int
    n_dropped_psychopy: int
    timing: FrameTiming
    pacing: str
    onsets: np.ndarray
    onset_error: np.ndarray
    push_delay: np.ndarray
    clock_offset: ClockOffset
    clock_offset_end: ClockOffset | None
    score: dict
    aborted: bool
    log_path: Path | None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary."""
        def stats(x: np.ndarray) -> dict[str, float] | None:
            x = x[np.isfinite(x)]
            if x.size == 0:
                return None
            return {"mean": float(x.mean()), "std": float(x.std()), "p50": float(np.percentile(x, 50)),
                    "p95": float(np.percentile(x, 95)), "p99": float(np.percentile(x, 99)), "max": float(x.max())}

        return {"n_trials": self.n_trials, "n_presented": self.n_presented, "n_dropped": self.n_dropped,
                "n_dropped_psychopy": self.n_dropped_psychopy, "refresh_hz": self.timing.refresh_hz,
                "on_frames": self.timing.on_frames, "off_frames": self.timing.off_frames, "pacing": self.pacing,
                "onset_error_s": stats(self.onset_error), "push_delay_s": stats(self.push_delay),
                "clock_offset_s": self.clock_offset.offset,
                "clock_offset_uncertainty_s": self.clock_offset.uncertainty,
                "clock_drift_s": (None if self.clock_offset_end is None
                                  else self.clock_offset_end.offset - self.clock_offset.offset),
                "score": self.score, "aborted": self.aborted,
                "log": None if self.log_path is None else str(self.log_path)}


def open_window(*, fullscreen: bool = False, size: tuple[int, int] = (800, 600), screen: int = 0,
                color: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Any:
    """Open a PsychoPy window in pixel units (grey background by default, mouse hidden in full screen)."""
    pp = import_psychopy()
    pp.logging.console.setLevel(pp.logging.ERROR)
    try:
        win = pp.visual.Window(size=list(size), fullscr=fullscreen, screen=screen, units="pix", color=color,
                               colorSpace="rgb", allowGUI=not fullscreen, waitBlanking=True, checkTiming=False)
    except Exception as err:  # pyglet/GL errors have many types
        raise ConfigError(f"cannot open a PsychoPy window ({type(err).__name__}: {err}); check the display and "
                          "OpenGL drivers (on a headless machine: xvfb-run -a, and apt-get install libgl1 "
                          "libglu1-mesa)") from err
    if fullscreen:
        win.mouseVisible = False
    return win


SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "software rasterizer")
"""OpenGL renderers without a display refresh (Mesa's software rasterisers, as under Xvfb)."""


def gl_renderer() -> str:
    """The OpenGL renderer string of the current context (``""`` when unknown)."""
    try:
        from pyglet.gl import gl_info  # noqa: PLC0415

        return str(gl_info.get_renderer())
    except Exception:  # no context, or another windowing backend
        return ""


def choose_pacing(pacing: str, measured_hz: float | None, renderer: str = "") -> str:
    """``"vsync"`` or ``"clock"``.

    ``auto`` paces by the clock when the renderer is a software rasteriser (Xvfb: flips never wait for a
    refresh, and a measured rate only reflects CPU load) or the measured rate is missing or above
    :data:`MAX_VSYNC_HZ`.
    """
    if pacing not in PACING:
        raise ConfigError(f"unknown pacing {pacing!r}; choose one of {', '.join(PACING)}")
    if pacing != "auto":
        return pacing
    if any(name in renderer.lower() for name in SOFTWARE_RENDERERS):
        return "clock"
    return "vsync" if measured_hz and measured_hz <= MAX_VSYNC_HZ else "clock"


def _new_stim(pp: SimpleNamespace, win: Any) -> Any:
    return pp.visual.ImageStim(win, image=None, units="pix", interpolate=False, colorSpace="rgb")


def _set_image(stim: Any, win: Any, pixels: np.ndarray) -> None:
    from PIL import Image  # PsychoPy depends on Pillow; uint8 PIL images are drawn exactly

    stim.image = Image.fromarray(pixels)
    stim.size = (pixels.shape[1], pixels.shape[0])
    stim.pos = pixel_aligned_pos(win.size, pixels.shape)


def run_rsvp(images: Sequence[str | Path], config: RsvpConfig | None = None, *, targets: Sequence[str | Path] = (),
             sink: OnsetSink | None = None, win: Any = None, fullscreen: bool = False,
             size: tuple[int, int] = (800, 600), screen: int = 0, image_size: int | None = None,
             refresh_hz: float | None = None, pacing: str = "auto", log_path: str | Path | None = None,
             fixation_px: int = 4, fixation_color: str = "red", on_trial: Callable[[dict], None] | None = None,
             log_header: dict[str, Any] | None = None) -> RsvpResult:
    """Run an RSVP experiment and report every onset at its flip time.

    Parameters
    ----------
    images : sequence of path
        Image files (their order defines the codes: image ``i`` has code ``i + 1``).
    config : RsvpConfig | None
        Timing and design (default :class:`RsvpConfig`).
    targets : sequence of path
        Target image files (inserted into sequences with ``config.target_prob``).
    sink : OnsetSink | None
        ``StreamPipeline`` (synthesized signal + markers), :class:`MarkerOutlets` (markers only) or None.
    win : psychopy.visual.Window | None
        Use this window (left open); None opens one (closed at the end).
    fullscreen, size, screen :
        Window settings when ``win`` is None (``size`` is ignored in full screen).
    image_size : int | None
        Largest side of the images on screen (pixels); default the window's shorter side * 0.8. Images are
        shrunk, never enlarged.
    refresh_hz : float | None
        Refresh rate; None measures it. With ``pacing="clock"`` it is the emulated rate (default 60 Hz).
    pacing : {"auto", "vsync", "clock"}
        How frames are timed: ``vsync`` trusts blocking flips; ``clock`` sleeps to absolute frame times (for
        displays without vsync, such as Xvfb); ``auto`` picks ``clock`` when the measured rate exceeds
        240 Hz or cannot be measured.
    log_path : path | None
        TSV experiment log (written and flushed per trial).
    fixation_px, fixation_color :
        Radius and colour of the fixation point (drawn in every frame).
    on_trial : callable | None
        Called with each trial's log row after it ends (progress display, tests).
    log_header : dict | None
        Extra ``# key: value`` lines for the log.

    Returns
    -------
    RsvpResult
    """
    config = config or RsvpConfig()
    pp = import_psychopy()
    image_names = [Path(p).name for p in images]
    target_names = [Path(p).name for p in targets]
    trials = build_trials(image_names, config, target_names)
    own_window = win is None
    if own_window:
        win = open_window(fullscreen=fullscreen, size=size, screen=screen)
    log: ExperimentLog | None = None
    try:
        measured = None
        renderer = gl_renderer()
        if refresh_hz is None:
            measured = win.getActualFrameRate(nIdentical=10, nMaxFrames=120, nWarmUpFrames=10, threshold=1)
        mode = choose_pacing(pacing, refresh_hz if refresh_hz is not None else measured, renderer)
        if mode == "clock":
            refresh_hz = 60.0 if refresh_hz is None else refresh_hz
            logger.warning("no vsync (renderer %r, measured %s Hz): frames are paced by the clock at an emulated "
                           "%.2f Hz; onset times are the exact flip times, but nothing is synchronised to a real "
                           "display", renderer or "unknown", "n/a" if measured is None else f"{measured:.0f}",
                           refresh_hz)
        elif refresh_hz is None:
            if not measured:
                raise ConfigError("could not measure the refresh rate (flips too irregular): give it with "
                                  "--refresh HZ, or use --pacing clock")
            refresh_hz = float(measured)
        timing = frame_timing(config, float(refresh_hz))
        if abs(timing.on_s - config.on_s) > 1e-6 or abs(timing.off_s - config.off_s) > 1e-6:
            logger.info("at %.2f Hz the image lasts %d frames (%.1f ms) and the blank %d frames (%.1f ms)",
                        timing.refresh_hz, timing.on_frames, 1e3 * timing.on_s, timing.off_frames, 1e3 * timing.off_s)
        short = min(win.size)
        max_side = int(image_size) if image_size else int(0.8 * short)
        fix = pp.visual.Circle(win, radius=fixation_px, units="pix", fillColor=fixation_color, lineColor=None,
                               edges=24)
        paths = {Path(p).name: Path(p) for p in images}
        tpaths = {Path(p).name: Path(p) for p in targets}

        def load(trial: Trial) -> np.ndarray:
            return load_image((tpaths if trial.is_target else paths)[trial.image], max_side)

        reporter = OnsetReporter(win, sink, refresh_hz=timing.refresh_hz, drop_threshold=config.drop_threshold)
        reporter.start()
        assert reporter.clock_offset is not None
        win.nDroppedFrames = 0
        header = {"vibe_rt_experiment": "rsvp", "n_images": len(image_names), "n_targets": len(target_names),
                  "n_trials": len(trials), "refresh_hz": f"{timing.refresh_hz:.4f}", "on_frames": timing.on_frames,
                  "off_frames": timing.off_frames, "pacing": mode, "gl_renderer": renderer,
                  "clock_offset_psychopy_to_lsl": f"{reporter.clock_offset.offset:.9f}",
                  "clock_offset_uncertainty": f"{reporter.clock_offset.uncertainty:.9f}",
                  "config": config.to_dict()}
        header.update(log_header or {})
        if log_path is not None:
            log = ExperimentLog(log_path, header)
        # the pacer runs on PsychoPy's clock, so its frame targets convert to LSL time like the flips
        pacer = FramePacer(timing.refresh_hz, clock=pp.core.getTime) if mode == "clock" else None
        last_target = [math.nan]
        stims = [_new_stim(pp, win), _new_stim(pp, win)]
        pixels: list[np.ndarray | None] = [None, None]
        # the first two images are loaded before the run; the first draw of each stimulus compiles shaders and
        # uploads textures (tens of ms), so draw both once into the back buffer and clear it
        for k in range(min(2, len(trials))):
            pixels[k] = loaded = load(trials[k])
            _set_image(stims[k], win, loaded)
            stims[k].draw()
        fix.draw()
        win.clearBuffer()
        onsets: list[float] = []
        errors: list[float] = []
        delays: list[float] = []
        target_onsets: list[float] = []
        presses: list[float] = []
        aborted = False
        pp.event.clearEvents()

        def flip(**report: Any) -> float:
            if pacer is not None:
                last_target[0] = reporter.to_lsl(pacer.wait())
            return reporter.flip(**report)

        def poll_keys() -> bool:
            for key, t in pp.event.getKeys(keyList=[config.response_key, "escape"], timeStamped=True):
                if key == "escape":
                    return True
                t_lsl = reporter.response(key, t)
                presses.append(t_lsl)
                if log is not None:
                    log.write(image=f"<{key}>", code=RESPONSE_CODE, actual_onset_lsl=t_lsl, marker="response")
            return False

        i = 0
        n_seq = trials[-1].sequence + 1 if trials else 0
        for s in range(n_seq):
            seq = [t for t in trials if t.sequence == s]
            # pause: fixation only (self-paced: until the response key)
            if pacer is not None:
                pacer.reset()
            fix.draw()
            flip()
            if config.self_paced:
                keys = pp.event.waitKeys(keyList=[config.response_key, "escape"])
                if keys and "escape" in keys:
                    aborted = True
                    break
            else:
                for _ in range(int(round(config.pause_s * timing.refresh_hz))):
                    fix.draw()
                    flip()
            if poll_keys():
                aborted = True
                break
            seq_start: float | None = None
            for trial in seq:
                cur = i % 2
                image = pixels[cur]
                assert image is not None
                stim = stims[cur]
                meta = {"image": trial.image, "code": trial.code, "trial": trial.trial, "sequence": trial.sequence,
                        "position": trial.position, "target": trial.is_target, "source": "psychopy-rsvp"}
                n_missed_before = len(reporter.flips.missed)
                t_on = t_off = t_on_target = math.nan
                for f in range(timing.soa_frames):
                    if f < timing.on_frames:
                        stim.draw()
                    fix.draw()
                    if f == 0:
                        t_on = flip(image_id=trial.image, image=image, meta=meta)
                        t_on_target = last_target[0]
                        # prepare the next image while this one is on screen (trials 0 and 1 are preloaded)
                        if 1 <= i and i + 1 < len(trials):
                            t_prep = time.perf_counter()
                            nxt = (i + 1) % 2
                            pixels[nxt] = loaded = load(trials[i + 1])
                            _set_image(stims[nxt], win, loaded)
                            t_prep = time.perf_counter() - t_prep
                            if t_prep > timing.period:
                                logger.debug("loading %s took %.1f ms (%.1f frames)", trials[i + 1].image,
                                             1e3 * t_prep, t_prep / timing.period)
                    else:
                        t = flip()
                        if f == timing.on_frames:
                            t_off = t
                last_in_seq = trial is seq[-1]
                if timing.off_frames == 0 and last_in_seq:
                    fix.draw()
                    t_off = flip()
                rec = reporter.onsets[-1]
                if seq_start is None:
                    # planned times: the emulated frame grid when pacing by the clock, else the first onset
                    seq_start = t_on_target if pacer is not None else t_on
                planned = seq_start + trial.position * timing.soa_frames * timing.period
                onsets.append(t_on)
                errors.append(t_on - planned)
                delays.append(rec["push_delay"])
                if trial.is_target:
                    target_onsets.append(t_on)
                dropped = int(sum(reporter.flips.missed[n_missed_before:]))
                row = {"trial": trial.trial, "sequence": trial.sequence, "position": trial.position,
                       "image": trial.image, "is_target": trial.is_target, "code": trial.code,
                       "planned_onset": planned, "actual_onset_lsl": t_on, "flip_interval": rec["flip_interval"],
                       "on_duration": t_off - t_on, "dropped": dropped,
                       "marker": "target" if trial.is_target else "stim"}
                if log is not None:
                    log.write(**row)
                if on_trial is not None:
                    on_trial(row)
                if dropped:
                    logger.warning("trial %d (%s): %d frame(s) dropped", trial.trial, trial.image, dropped)
                i += 1
                if timing.off_frames > 0 or last_in_seq:
                    if poll_keys():
                        aborted = True
                        break
            if aborted:
                break
        # a last fixation frame and a final key check (late responses to a target at the end)
        fix.draw()
        flip()
        if not aborted:
            t_end = time.perf_counter() + (config.response_window[1] if target_onsets else 0.0)
            while time.perf_counter() < t_end and not aborted:
                fix.draw()
                flip()
                aborted = poll_keys()
        reporter.stop()
        score = score_responses(target_onsets, presses, config.response_window).to_dict()
        if log is not None:
            assert reporter.clock_offset_end is not None
            log.comment("clock_offset_end", f"{reporter.clock_offset_end.offset:.9f}")
            log.comment("n_dropped", reporter.n_dropped)
            log.comment("score", score)
        result = RsvpResult(n_trials=len(trials), n_presented=len(onsets), n_dropped=reporter.n_dropped,
                            n_dropped_psychopy=int(getattr(win, "nDroppedFrames", 0)), timing=timing, pacing=mode,
                            onsets=np.asarray(onsets), onset_error=np.asarray(errors), push_delay=np.asarray(delays),
                            clock_offset=reporter.clock_offset, clock_offset_end=reporter.clock_offset_end,
                            score=score, aborted=aborted, log_path=None if log_path is None else Path(log_path))
        if aborted:
            logger.warning("run aborted with Escape after %d of %d trials", len(onsets), len(trials))
        return result
    finally:
        if log is not None:
            log.close()
        if own_window:
            win.close()
