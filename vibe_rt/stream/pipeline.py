"""The streaming pipeline: source -> event policy -> inference worker -> synthesizer -> LSL outlets.

Threads (only at the edges, joined by bounded queues)::

    capture thread (source)  --Frame-->  dispatch thread (event policy)  --Stimulus-->  inference thread
        (ResponsePredictor.preprocess/predict, batching)  --epochs-->  Synthesizer (pure, under a lock)  <--render--
        outlet thread (paced on absolute LSL-clock targets, pushes chunks, appends the recording)

The stimulus queue holds at most ``max_queue`` onsets; when inference cannot keep up the *oldest* waiting onset
is dropped (``overload_dropped``; its JSON marker says ``"status": "overload"``), so the newest stimuli stay
current. Several waiting onsets are predicted as one batch (up to ``max_batch``).

A failure in any worker thread is stored, shown in :meth:`StreamPipeline.status`, and re-raised by
:meth:`StreamPipeline.stop`.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from .._logs import logger
from ..calibration import CalibrationProfile
from ..devices import DeviceProfile
from ..errors import ConfigError, StreamError
from ..montage import Montage
from .artifacts import ArtifactInjector, format_artifacts
from .clock import Clock, Pacer, SampleClock, chunk_samples, lsl_clock
from .config import MAX_LOOKAHEAD, InferenceSpec, OutputSpec, RecordSpec, SynthSpec
from .device import DeviceOutput
from .events import EventPolicy, Stimulus, StimulusFactory
from .faults import FaultInjector, format_faults
from .lookahead import WARMUP_RUNS, Lookahead, auto_lookahead, grown_lookahead, should_grow
from .lsl import LslOutlets
from .record import BrainVisionWriter
from .sources import Frame, FrameSource, as_rgb_uint8
from .stats import PipelineStats
from .synth import Background, Synthesizer, make_background

_IN_SIGNAL = ("ok", "clipped")


class ResponsePredictor(Protocol):
    """What the pipeline needs from a predictor (:class:`vibe_rt.runtime.predictor.Predictor` implements it)."""

    montage: Montage
    image_size: int
    backend_name: str

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3) RGB -> float32 (B, 3, S, S)."""

    def predict(self, pixels: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """float32 (B, 3, S, S) -> (epochs (B, C, T) SI units, per-stage timings in seconds)."""


class StreamPipeline:
    """Runs a frame source and a predictor into LSL outlets in real time.

    The arguments are typed values that :func:`vibe_rt.stream.run.preflight` builds from a validated
    :class:`~vibe_rt.stream.config.StreamConfig`; the pipeline does not check them again.

    Parameters
    ----------
    predictor : ResponsePredictor | None
        Image -> epoch model; None streams background only (no events).
    source : FrameSource | None
        Frames; None when onsets come only from :meth:`submit_onset` (PsychoPy) or there are none.
    policy : EventPolicy | None
        Which frames are onsets (default: every frame).
    montage : Montage | None
        Needed only without a predictor (default: ``predictor.montage``).
    channels : sequence of str | None
        Subset of the montage channels (of the device's cap with ``device``) to stream (default: all).
    output : OutputSpec
        Rate, lookahead, push interval, LSL name and source id, faults (:mod:`vibe_rt.stream.faults`).
    synth : SynthSpec
        Late-response policy, background level, line noise, seed, artifacts (:mod:`vibe_rt.stream.artifacts`).
    inference : InferenceSpec
        Stimulus queue size and largest inference batch.
    record : RecordSpec | None
        BrainVision recording of the streamed signal and markers.
    calibration : CalibrationProfile | None
        Resolved once for the streamed channels: its per-channel gain scales the predicted epochs, its latency
        delays each whole response in the synthesizer (nothing is cut), the live device's channel labels from its
        channel map go on the outlet and the recording, its latent adapter, if any, is installed in
        ``predictor``; it is logged at start and declared in ``desc/vibe_rt/calibration``.
    background : Background | "auto" | None
        ``generate(n) -> (n, C)`` SI units, for the streamed channels; ``"auto"`` builds the stream's simple 1/f
        background (:func:`~vibe_rt.stream.synth.make_background`, scaled by ``synth.noise_scale``; the CLI passes
        the realistic :class:`vibe_rt.data.noise.BackgroundNoise` instead); None streams the evoked responses on
        silence.
    clock : callable | None
        Time source (default ``pylsl.local_clock``).
    extra_meta : dict | None
        Entries for the signal stream's ``desc/vibe_rt`` (model hash, backend ...).
    synth_kwargs : dict | None
        More :class:`~vibe_rt.stream.synth.Synthesizer` options.
    stats_window : int
        Values kept per timing in :attr:`stats` (rolling percentiles); benchmarks raise it to keep a whole run.
    device : DeviceProfile | None
        An amplifier to emulate: its cap is streamed (every channel through ``projection``), with its values on
        its resolution grid within its range (:class:`~vibe_rt.stream.device.DeviceOutput`), its unit, and its LSL
        app's meta-data and other channels (a trigger channel records each onset's code; the recording keeps the
        EEG channels); ``synth.device_delay_s`` is its transport delay.
    projection : ndarray, shape (n_target, n_model) | None
        Predicted epochs on the model's channels -> responses on the target's (the device's cap, else the
        model's own channels): ``vibe_rt.app.build_stream`` computes it through the simulator's forward model
        (:func:`vibe_rt.data.cap.cap_projection`); required with ``device``. None without device: the model's
        channels as predicted.
    artifact_topographies : mapping of str to ndarray | None
        The spatial patterns ``synth.artifacts`` need, for the streamed channels
        (:func:`vibe_rt.data.artifacts.artifact_topographies`; :func:`vibe_rt.app.build_stream` passes them).
    """

    def __init__(self, predictor: ResponsePredictor | None = None, *, source: FrameSource | None = None,
                 policy: EventPolicy | None = None, montage: Montage | None = None,
                 channels: Sequence[str] | None = None, output: OutputSpec = OutputSpec(),
                 synth: SynthSpec = SynthSpec(), inference: InferenceSpec = InferenceSpec(),
                 record: RecordSpec | None = None, calibration: CalibrationProfile | None = None,
                 background: Background | str | None = "auto", clock: Clock | None = None,
                 extra_meta: dict[str, Any] | None = None, synth_kwargs: dict[str, Any] | None = None,
                 stats_window: int = 1000, device: DeviceProfile | None = None,
                 projection: np.ndarray | None = None,
                 artifact_topographies: Mapping[str, np.ndarray] | None = None) -> None:
        from .events import EveryFrame

        if predictor is None and montage is None:
            raise ConfigError("StreamPipeline needs a predictor or, for a background-only stream, a montage")
        self.predictor = predictor
        model_montage = predictor.montage if predictor is not None else montage
        assert model_montage is not None
        self.model_montage: Montage = model_montage
        self.device = device
        target = device.cap_for(self.model_montage) if device is not None else self.model_montage
        self.montage = target.pick(list(channels)) if channels else target
        self._projection = self._projection_rows(projection, target)
        self._ch_idx = np.array([self.model_montage.ch_names.index(c) for c in self.montage.ch_names]
                                if self._projection is None else [], dtype=int)
        self.source, self.policy = source, policy or EveryFrame()
        self.output = output
        self.srate = float(output.srate)
        #: The output delay in use (s) and how it was chosen; an automatic one is set by :meth:`start`.
        self.lookahead_choice: Lookahead | None = (Lookahead.fixed(output.lookahead) if output.lookahead is not None
                                                   else None)
        self.clock = clock or lsl_clock
        if isinstance(background, str):
            if background != "auto":
                raise ConfigError(f"background must be 'auto', None or a generator, got {background!r}")
            background = make_background(self.montage, self.srate, seed=synth.seed, scale=synth.noise_scale)
        if calibration is not None and not isinstance(calibration, CalibrationProfile):
            raise ConfigError("calibration= takes a CalibrationProfile (vibe_rt.calibration.CalibrationProfile.load)")
        self.calibration = calibration.resolve(self.montage) if calibration is not None else None
        # the outlet and the recording carry the live device's labels where the profile's channel map has them
        self.output_montage = self.calibration.output_montage if self.calibration is not None else self.montage
        #: Recording artifacts (None: none) and device/transport faults (None: none) of this stream.
        self.artifacts = (ArtifactInjector(synth.artifacts, self.output_montage, self.srate,
                                           topographies=artifact_topographies, seed=synth.seed)
                          if synth.artifacts else None)
        self.faults = FaultInjector(output.faults, self.srate, seed=synth.seed) if output.faults else None
        # a calibration's latency delays each whole response where it is placed (never cut inside the window)
        self.synth = Synthesizer(self.montage, self.srate, background=background, late_policy=synth.late_policy,
                                 line_noise=synth.line_noise, seed=synth.seed, model_scale=synth.model_scale,
                                 response_delay_s=synth.response_delay_s, artifacts=self.artifacts,
                                 delay_s=self.calibration.latency_s if self.calibration is not None else 0.0,
                                 **(synth_kwargs or {}))
        self.device_output = DeviceOutput(device, self.srate) if device is not None else None
        self.device_delay_s = synth.device_delay_s
        if self.calibration is not None:
            self.calibration.install_adapter(predictor)
        self.record = record
        self.chunk = chunk_samples(self.srate, output.chunk_s)
        self.max_queue, self.max_batch = inference.max_queue, inference.max_batch
        self.extra_meta = dict(extra_meta or {})
        if predictor is not None:
            self.extra_meta.setdefault("backend", getattr(predictor, "backend_name", "unknown"))
        self.extra_meta.setdefault("late_policy", synth.late_policy)
        if synth.model_scale != 1.0:  # a model of a.u. data streams in SI through a declared scale
            self.extra_meta.setdefault("model_unit_in_si", f"{synth.model_scale:g} {self.montage.unit}")
        self.extra_meta.setdefault("event_policy", getattr(self.policy, "name", type(self.policy).__name__))
        self.extra_meta.setdefault("source", source.name if source is not None else "external")
        if device is not None:
            self.extra_meta.setdefault("device", device.name)
            self.extra_meta.setdefault("device_delay_s", f"{synth.device_delay_s:g}")
        if synth.artifacts:
            self.extra_meta.setdefault("artifacts", format_artifacts(synth.artifacts))
        if output.faults:
            self.extra_meta.setdefault("faults", format_faults(output.faults))
        self.stats = PipelineStats(self.clock, window=stats_window)
        self.sample_clock: SampleClock | None = None
        self._pacer: Pacer | None = None
        self._lookahead_grown = False
        self.outlets: LslOutlets | None = None
        self.writer: BrainVisionWriter | None = None
        self._factory = StimulusFactory()
        self._ext_ids = itertools.count()
        self._queue: collections.deque[tuple[Stimulus, float]] = collections.deque()
        # (first output sample holding a response, its onset): min-heap, guarded by the synth lock
        self._unemitted: list[tuple[int, float]] = []
        self._cond = threading.Condition()
        self._synth_lock = threading.Lock()
        self._marker_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self._busy = 0
        self._started = False

    # lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> StreamPipeline:
        """Create the outlets (and recording), start the threads, then open the source.

        Sample 0 is stamped when the outlets exist, before the source opens, so that a source's first frame is
        never older than the stream; when the source cannot be opened (e.g. no camera) everything is stopped
        again and its :class:`~vibe_rt.errors.SourceError` raised.
        """
        if self._started:
            return self
        if self.output.lookahead is None:
            self.lookahead_choice = auto_lookahead(self._time_the_path(), self.output.chunk_s, MAX_LOOKAHEAD)
        assert self.lookahead_choice is not None
        logger.info("lookahead %.1f ms (%s)", 1e3 * self.lookahead, self.lookahead_choice.rule)
        if self.calibration is not None:
            logger.info(self.calibration.summary())
        units = self.synth.units
        self.outlets = LslOutlets(self.output_montage, self.srate, units, name=self.output.name,
                                  source_id=self.output.source_id, lookahead=self.lookahead_choice,
                                  chunk_size=self.chunk, extra=self.extra_meta, device=self.device,
                                  device_delay_s=self.device_delay_s,
                                  calibration=self.calibration.describe() if self.calibration is not None else None)
        t0 = self.clock()
        self.synth.t0 = t0
        self.sample_clock = SampleClock(self.srate, t0, self.lookahead,
                                        self.faults.pace_factor if self.faults is not None else 1.0)
        self._pacer = Pacer(self.sample_clock, self.chunk, self.clock)
        if self.record is not None:
            try:
                resolution = self.device_output.step if self.device_output is not None else None
                self.writer = BrainVisionWriter(self.record.path, list(self.output_montage.ch_names), units,
                                                self.srate, t0, overwrite=self.record.overwrite,
                                                resolution=resolution)
            except BaseException:
                self.outlets.close()
                raise
        self._stop.clear()
        self._started = True
        self._spawn("outlet", self._outlet_loop)
        if self.predictor is not None:
            self._spawn("inference", self._inference_loop)
        if self.source is not None:
            try:
                self.source.start()
            except BaseException:
                self.stop()
                raise
            self._spawn("dispatch", self._dispatch_loop)
        logger.info("streaming %s (%d ch, %g Hz, lookahead %.1f ms, %s) as LSL %r", self.montage.modality,
                    self.montage.n_channels, self.srate, 1e3 * self.lookahead, self.lookahead_choice.mode,
                    self.outlets.source_id)
        return self

    @property
    def lookahead(self) -> float:
        """The output delay in seconds (see :attr:`lookahead_choice`); known once :meth:`start` chose it."""
        if self.lookahead_choice is None:
            raise StreamError("the automatic lookahead is chosen when the pipeline starts; call start() first")
        return self.lookahead_choice.seconds

    def _time_the_path(self) -> list[float]:
        """Seconds per run of what an onset goes through before its response can be emitted (preprocessing,
        every inference stage, channel selection and calibration, resampling for the synthesizer), on a frame of
        the source's size (640 x 480 when unknown); the first runs warm caches up and are not counted."""
        if self.predictor is None:
            return []
        width, height = getattr(self.source, "frame_size", None) or (640, 480)
        frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        times = []
        for i in range(WARMUP_RUNS + 3):
            t0 = time.perf_counter()
            epochs, _ = self.predictor.predict(self._preprocess([frame]))
            self.synth.prepare_batch(self._streamed(epochs))
            if i >= 3:
                times.append(time.perf_counter() - t0)
        return times

    def _projection_rows(self, projection: np.ndarray | None, target: Montage) -> np.ndarray | None:
        """The rows of ``projection`` (target x model) for the streamed channels, checked."""
        if projection is None:
            if self.device is not None:
                raise ConfigError(f"a {self.device.name} stream needs the projection of the model's channels onto "
                                  "its cap (projection=; vibe_rt.app.build_stream computes it)")
            return None
        matrix = np.asarray(projection, dtype=np.float64)
        shape = (target.n_channels, self.model_montage.n_channels)
        if matrix.shape != shape or not np.all(np.isfinite(matrix)):
            raise ConfigError(f"projection must be a finite {shape[0]} x {shape[1]} matrix (target channels x model "
                              f"channels), got shape {matrix.shape}")
        return np.ascontiguousarray(matrix[[target.ch_names.index(c) for c in self.montage.ch_names]])

    def _streamed(self, epochs: np.ndarray) -> np.ndarray:
        """Predicted epochs (B, model channels, T) -> the streamed channels (projected onto the target's), times
        the calibration's gain (its latency is the synthesizer's onset delay)."""
        if self._projection is not None:
            with np.errstate(all="ignore"):  # a non-finite epoch stays non-finite and is dropped when added
                epochs = np.einsum("om,bmt->bot", self._projection, np.asarray(epochs, dtype=np.float64))
        else:
            epochs = np.asarray(epochs)[:, self._ch_idx]
        if self.calibration is not None:
            with np.errstate(all="ignore"):
                epochs = self.calibration.apply_gain(epochs)
        return epochs

    def _grow_lookahead_if_late(self) -> None:
        """The one allowed growth of an automatic lookahead (:mod:`vibe_rt.stream.lookahead`): announced in the
        log and on the marker stream; timestamps are untouched, only the push delay changes."""
        c = self.synth.counters
        assert self.lookahead_choice is not None and self.sample_clock is not None and self._pacer is not None
        if not should_grow(self.lookahead_choice, c["responses"] + c["late_dropped"], c["late"],
                           self._lookahead_grown):
            return
        old = self.lookahead_choice
        self.lookahead_choice = grown_lookahead(old, self.stats.samples("onset_to_ready"), self.output.chunk_s,
                                                MAX_LOOKAHEAD)
        self._lookahead_grown = True
        self.sample_clock = dataclasses.replace(self.sample_clock, lookahead=self.lookahead)
        self._pacer.sample_clock = self.sample_clock  # the outlet loop waits longer from its next push on
        logger.warning("%d of %d responses were late: lookahead grown from %.1f to %.1f ms (%s)", c["late"],
                       c["responses"] + c["late_dropped"], 1e3 * old.seconds, 1e3 * self.lookahead,
                       self.lookahead_choice.rule)
        self._push_marker({"kind": "lookahead", "status": "grown", "lookahead_s": round(self.lookahead, 6),
                           "previous_s": round(old.seconds, 6), "rule": self.lookahead_choice.rule},
                          self.clock(), None, "Comment", "lookahead-grown")

    def _spawn(self, label: str, fn: Any) -> None:
        th = threading.Thread(target=self._guard, args=(label, fn), name=f"vibe-rt-{label}", daemon=True)
        th.start()
        self._threads.append(th)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop all threads, close outlets and the recording; re-raise the first worker error."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for th in self._threads:
            th.join(timeout)
        self._threads = []
        if self.source is not None and self._started:
            try:
                self.source.stop()
            except BaseException as err:
                self._errors.append(err)
        if self.writer is not None:
            self.writer.close()
        if self.outlets is not None:
            self.outlets.close()
        self._started = False
        if self._errors:
            first = self._errors[0]
            self._errors = []
            raise first

    def __enter__(self) -> StreamPipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def error(self) -> BaseException | None:
        """The first error of a worker thread or the source, if any."""
        if self._errors:
            return self._errors[0]
        return self.source.error if self.source is not None else None

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._started and not self._stop.is_set()

    @property
    def source_finished(self) -> bool:
        """True when the source has delivered its last frame (end of a video or image folder)."""
        return self.source is not None and self.source.finished.is_set() and self.source._queue.empty()

    @property
    def idle(self) -> bool:
        """No onset waiting or being predicted, and every response emitted."""
        with self._cond:
            waiting = bool(self._queue) or self._busy > 0
        with self._synth_lock:
            return not waiting and self.synth.idle

    def status(self) -> dict[str, Any]:
        """Counters, timings (ms percentiles) and rates; ``"error"`` names a worker failure."""
        st = self.stats
        with self._synth_lock:
            for key, value in self.synth.counters.items():
                st.set_counter(key, value)
        if self.source is not None:
            st.set_counter("source_drops", self.source.drops)
            st.set_counter("source_reconnects", self.source.reconnects)
            st.set_counter("source_dropped_frames", self.source.dropped_frames)
            st.set_counter("source_skipped", getattr(self.source, "skipped", 0))
        with self._cond:
            st.queue_depth = len(self._queue)
        st.error = self.error
        snap = st.snapshot()
        if self.lookahead_choice is not None:
            snap["lookahead_s"] = self.lookahead_choice.seconds
            snap["lookahead_mode"] = self.lookahead_choice.mode
            snap["lookahead_rule"] = self.lookahead_choice.rule
        if self.device_output is not None:
            snap["device_saturated"] = self.device_output.saturated
        if self.writer is not None:
            snap["recording"] = self.writer.failure or "ok"
        if self.artifacts is not None:
            snap["artifacts"] = dict(self.artifacts.counts)
        if self.faults is not None:
            snap["faults"] = self.faults.status()
        return snap

    # external onsets ----------------------------------------------------------------------------------------
    def submit_onset(self, image: np.ndarray, onset_time: float | None = None, meta: dict | None = None) -> int:
        """Submit a stimulus shown by an external program (e.g. a PsychoPy flip) and return its event id.

        Parameters
        ----------
        image : ndarray, (H, W, 3) uint8 RGB (grey, RGBA and float 0-1 images are converted)
            What was shown.
        onset_time : float | None
            Onset on the LSL clock (``pylsl.local_clock()``; with PsychoPy, the flip time); default now. It may
            lie in the future (up to a minute), e.g. the time of the next scheduled flip.
        meta : dict | None
            Copied into the JSON marker (str/int/float/bool values); ``meta["code"]`` (int) is the numeric
            marker code (default 1).
        """
        if not self.running:
            raise StreamError("the pipeline is not running; call start() (or use it as a context manager) first")
        if self.predictor is None:
            raise StreamError("this pipeline has no predictor, so it cannot turn onsets into responses")
        t = self.clock() if onset_time is None else float(onset_time)
        meta = dict(meta or {})
        frame = Frame(as_rgb_uint8(image), t, next(self._ext_ids), "external", meta)
        stim = self._factory(frame, t, meta)
        self.stats.incr("events")
        self._enqueue(stim)
        return stim.event_id

    def push_marker(self, marker: dict[str, Any], timestamp: float, code: int | None = None) -> None:
        """Push a marker that is not a stimulus response (e.g. a key press) on the marker streams.

        Taken under the pipeline's marker lock (so it never interleaves with the onset markers of the inference
        thread) and also written into the ``record=`` BrainVision recording: as ``Response`` marker
        ``R<code>`` when ``marker["kind"] == "response"``, else as ``Stimulus`` marker ``S<code>``; without a
        code as a ``Comment`` naming ``marker["status"]`` (or ``marker["kind"]``).

        Parameters
        ----------
        marker : dict
            The JSON marker (see :func:`vibe_rt.stream.events.onset_marker` for the usual keys).
        timestamp : float
            Its time on the LSL clock (seconds).
        code : int | None
            Numeric code for the ``<name>-codes`` stream (None: JSON marker only).
        """
        if not self.running:
            raise StreamError("the pipeline is not running; call start() (or use it as a context manager) first")
        if code is None:
            kind, description = "Comment", str(marker.get("status") or marker.get("kind") or "marker")
        elif marker.get("kind") == "response":
            kind, description = "Response", f"R{int(code):3d}"
        else:
            kind, description = "Stimulus", f"S{int(code):3d}"
        self._push_marker(dict(marker), float(timestamp), None if code is None else int(code), kind, description)

    # threads ------------------------------------------------------------------------------------------------
    def _guard(self, label: str, fn: Any) -> None:
        try:
            fn()
        except BaseException as err:
            logger.error("the %s thread failed: %r", label, err)
            self._errors.append(err)

    def _enqueue(self, stim: Stimulus) -> None:
        sc = self.sample_clock
        if sc is not None:
            at = sc.device_time(stim.onset)  # a drifting device clock puts the onset elsewhere in its data
            if self.device_output is not None:  # the amplifier's trigger input sees every onset, at its time
                self.device_output.trigger(sc.sample_index(at + self.device_delay_s), stim.code)
            if self.artifacts is not None:  # saccades:scene follow the onsets
                self.artifacts.stimulus_onset(sc.sample_index(at))
        dropped = None
        with self._cond:
            if len(self._queue) >= self.max_queue:
                dropped = self._queue.popleft()[0]
            self._queue.append((stim, self.clock()))
            self._cond.notify()
        if dropped is not None:
            self.stats.incr("overload_dropped")
            self._marker(dropped, "overload")

    def _dispatch_loop(self) -> None:
        assert self.source is not None
        while not self._stop.is_set():
            frame = self.source.get(timeout=0.05)
            while not self.source.notices.empty():
                notice = self.source.notices.get_nowait()
                self._push_marker(notice, notice["time"], None, "Comment", f"{notice['status']}-{notice['reason']}")
            if frame is None:
                if self.source.error is not None:
                    raise self.source.error
                continue
            self.stats.incr("frames")
            if frame.t_capture < self.synth.t0:  # captured before the stream's first sample: not an onset
                continue
            if self.predictor is not None and self.policy(frame):
                self.stats.incr("events")
                stim = self._factory(frame)
                self.stats.time("capture_to_dispatch", self.clock() - frame.t_capture)
                self._enqueue(stim)

    def _take_batch(self) -> list[tuple[Stimulus, float]]:
        with self._cond:
            while not self._queue and not self._stop.is_set():
                self._cond.wait(0.1)
            batch: list[tuple[Stimulus, float]] = []
            while self._queue and len(batch) < self.max_batch:
                batch.append(self._queue.popleft())
            self._busy = len(batch)
        return batch

    def _inference_loop(self) -> None:
        assert self.predictor is not None
        clock, st = self.clock, self.stats
        while not self._stop.is_set():
            batch = self._take_batch()
            if not batch:
                continue
            try:
                t_deq = clock()
                for stim, t_enq in batch:
                    st.time("queue_wait", t_deq - t_enq)
                    if stim.frame.t_capture <= t_deq:
                        st.time("capture_to_dequeue", t_deq - stim.frame.t_capture)
                pixels = self._preprocess([s.frame.image for s, _ in batch])
                t_pre = clock()
                st.time("preprocess", t_pre - t_deq)
                epochs, timings = self.predictor.predict(pixels)
                t_inf = clock()
                st.time("inference", t_inf - t_pre)
                for key, value in (timings or {}).items():
                    st.time(key, value)
                st.incr("batches")
                epochs = self._streamed(epochs)
                onsets = [s.onset for s, _ in batch]
                sc = self.sample_clock
                assert sc is not None
                placed = [sc.device_time(t) for t in onsets]  # a drifting device clock takes them elsewhere
                prepared = self.synth.prepare_batch(epochs)  # resampling outside the lock the outlet waits on
                with self._synth_lock:
                    statuses = self.synth.add_prepared_batch(prepared, placed)
                    first = self.synth.n_rendered  # a clipped response starts at the next sample to render
                    for onset, at, status in zip(onsets, placed, statuses):
                        if status in _IN_SIGNAL:
                            heapq.heappush(self._unemitted, (max(self.synth.onset_index(at), first), onset))
                t_add = clock()
                st.time("synth_add", t_add - t_inf)
                for (stim, _), status in zip(batch, statuses):
                    st.time("onset_to_ready", t_add - stim.onset)
                    self._marker(stim, status)
                self._grow_lookahead_if_late()
            finally:
                with self._cond:
                    self._busy = 0

    def _preprocess(self, images: list[np.ndarray]) -> np.ndarray:
        assert self.predictor is not None
        shapes = {im.shape for im in images}
        if len(shapes) == 1:
            return np.asarray(self.predictor.preprocess(np.stack(images)))
        return np.concatenate([np.asarray(self.predictor.preprocess(im[None])) for im in images])

    def _marker(self, stim: Stimulus, status: str) -> None:
        in_signal = status in _IN_SIGNAL
        if in_signal:
            self._push_marker(stim.marker(status), stim.onset, stim.code, "Stimulus", f"S{stim.code:3d}")
        else:
            self._push_marker(stim.marker(status), stim.onset, None, "Comment", f"dropped-{status}")

    def _push_marker(self, marker: dict[str, Any], timestamp: float, code: int | None, kind: str,
                     description: str, *, duration_s: float | None = None, channel: int = 0) -> None:
        with self._marker_lock:
            if self.outlets is not None and self.outlets.markers is not None:
                self.outlets.push_marker(marker, timestamp, code)
            if self.writer is not None:
                self.writer.marker(timestamp, description, kind, marker, code, duration_s=duration_s,
                                   channel=channel)
        self.stats.incr("markers_pushed")

    def _push_notices(self, sc: SampleClock) -> None:
        """Markers of the artifacts just rendered and of the faults that started or ended, stamped at their
        samples (``Comment`` markers in the recording, with the artifact's duration and channel)."""
        if self.artifacts is not None:
            names = self.output_montage.ch_names
            for event in self.artifacts.take_events():
                onset = sc.timestamp(event.start)
                duration = None if event.n_samples is None else event.n_samples / self.srate
                marker = {**event.marker, "onset": round(onset, 6),
                          "duration": None if duration is None else round(duration, 6)}
                channel = names.index(marker["channel"]) + 1 if "channel" in marker else 0
                self._push_marker(marker, onset, None, "Comment", f"artifact-{marker['artifact']}",
                                  duration_s=duration, channel=channel)
        if self.faults is not None:
            for notice in self.faults.take_notices():
                onset = sc.timestamp(notice.index)
                marker = {**notice.marker, "onset": round(onset, 6)}
                self._push_marker(marker, onset, None, "Comment", f"fault-{marker['fault']}-{marker['status']}")

    def _set_signal_outlet(self, up: bool) -> bool:
        """Destroy or (re)create the signal outlet for an outlet-restart fault; True when it exists. A failed
        re-creation is logged and retried at the next chunk (a fault never stops the stream for good)."""
        outlets = self.outlets
        assert outlets is not None
        if not up and outlets.signal is not None:
            outlets.close_signal()
        elif up and outlets.signal is None:
            try:
                outlets.open_signal()
                logger.warning("fault: the signal outlet is back (source_id %s)", outlets.source_id)
            except Exception as err:  # noqa: BLE001 - liblsl errors have no common type
                logger.warning("fault: re-creating the signal outlet failed (%r); retrying", err)
        return outlets.signal is not None

    def _not_due(self, index: int) -> bool:
        """Sample ``index`` is not due yet (a freeze holds the samples until the one where it ends is due)."""
        assert self._pacer is not None
        return self.clock() < self._pacer.sample_clock.emit_time(index)

    def _outlet_loop(self) -> None:
        assert self._pacer is not None and self.outlets is not None
        pacer, st, clock, faults = self._pacer, self.stats, self.clock, self.faults
        cpu0 = time.thread_time()
        stop = self._stop.is_set
        while not stop():
            start, n = pacer.due()
            send = True
            if n and faults is not None:  # cut at fault edges; nothing while frozen; not sent while dropped/down
                n, send, outlet_up = faults.plan(start, n, self._not_due)
                send = self._set_signal_outlet(outlet_up) and send
                if not n:
                    self._push_notices(pacer.sample_clock)
                    self._stop.wait(self.output.chunk_s)  # frozen: the samples wait, the loop does not spin
                    continue
            if n:
                emitted = []
                with self._synth_lock:  # only the ring buffer is shared: background and noise are added outside
                    pending = self.synth.take(start, n)
                    while self._unemitted and self._unemitted[0][0] < start + n:
                        emitted.append(heapq.heappop(self._unemitted)[1])
                data = self.synth.finish(pending, start)
                frame = data
                if self.device_output is not None:  # the last step: nothing may be added after it
                    data = self.device_output.apply(data)
                    frame = self.device_output.frame(data, start)  # with the device's other channels
                sc = pacer.sample_clock  # its lookahead may grow once (timestamps do not depend on it)
                if send:
                    stamps = sc.timestamps(start, n)
                    if faults is not None:
                        stamps = faults.stamps(stamps)
                    t_push = clock()
                    self.outlets.push_signal(frame, stamps)
                    t_done = clock()
                    st.time("push", t_done - t_push)
                    st.time("push_lag", t_push - sc.emit_time(start + n - 1))
                else:
                    t_done = clock()
                pacer.advance(n)
                if faults is not None:
                    faults.sent(start, n)
                for onset in emitted:
                    st.time("onset_to_emitted", t_done - onset)
                st.pushed(t_done, pacer.n_emitted)
                if self.writer is not None:
                    self.writer.write(data)  # every sample the device produced, faults or not
                self._push_notices(sc)
                st.outlet_cpu_s = time.thread_time() - cpu0
            pacer.wait(stop)
        if faults is not None:
            faults.stop(max(pacer.n_emitted - 1, 0))  # the last sample: a marker the recording still holds
        self._push_notices(pacer.sample_clock)
