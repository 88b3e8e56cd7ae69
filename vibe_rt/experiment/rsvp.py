"""Rapid serial visual presentation (RSVP) design and timing: pure functions, no window.

The design follows the THINGS-EEG2 paradigm (Gifford et al. 2022): every image is shown ``repetitions`` times,
each repetition in a new random order, cut into sequences of ``sequence_length`` images presented back to back
(e.g. 100 ms on, 100 ms off, i.e. 5 Hz) with a fixation point throughout; some sequences contain one target
image that the participant reports with a key press (to keep attention), and the target trials are not used
for analysis.

Durations are realised as whole numbers of display frames of the *measured* refresh period; a flip interval
longer than ``drop_threshold`` (default 1.5) refresh periods is a dropped frame.

Numeric marker codes: image ``i`` of the sorted image list has code ``i + 1``; target image ``j`` has code
``n_images + 1 + j``; a key press is :data:`RESPONSE_CODE`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..options import Number, Text, option, validate_options

_D = "design"
RESPONSE_CODE = 99999
"""Numeric marker of a key press (response to a target)."""


@dataclass(frozen=True)
class RsvpConfig:
    """Timing and design of an RSVP run (the ``design`` options of ``vibe-rt experiment rsvp``).

    Parameters
    ----------
    on_s, off_s : float
        Image duration and blank (fixation-only) duration in seconds (rounded to whole frames).
    repetitions : int
        How many times every image is shown.
    sequence_length : int
        Images per sequence (non-target images; a target adds one more).
    target_prob : float
        Probability that a sequence contains one target (0 disables targets even when target images exist).
    seed : int | None
        Seed of the random orders and target positions (same seed, same design).
    pause_s : float
        Fixation-only pause before each sequence (seconds).
    response_key : str
        Key that reports a target (PsychoPy key name, e.g. ``"space"``).
    response_window : tuple of float
        A key press ``lo .. hi`` seconds after a target onset counts as a hit.
    drop_threshold : float
        A flip interval longer than this many refresh periods is a dropped frame.
    self_paced : bool
        Wait for the response key before each sequence (otherwise start after ``pause_s``).
    """

    on_s: float = option(0.1, "--on", "image duration, seconds (default: 0.1)", Number(0, 60, lo_open=True),
                         group=_D, metavar="S")
    off_s: float = option(0.1, "--off", "blank duration, seconds (default: 0.1)", Number(0, 60), group=_D,
                          metavar="S")
    repetitions: int = option(1, "--repetitions", "times each image is shown (default: 1)",
                              Number(1, 10_000, integer=True), group=_D, metavar="N")
    sequence_length: int = option(20, "--sequence-length", "images per sequence (default: 20)",
                                  Number(1, 10_000, integer=True), group=_D, metavar="K")
    target_prob: float = option(0.5, "--target-prob", "with a target folder: probability that a sequence has a "
                                "target (default: 0.5)", Number(0, 1), group=_D, metavar="P")
    seed: int | None = option(None, "--seed", "seed (>= 0) of the image orders and target positions",
                              Number(0, 2**63 - 1, integer=True, optional=True), group=_D, type=int)
    pause_s: float = option(1.0, "--pause", "fixation pause before each sequence, seconds (default: 1.0)",
                            Number(0, 600), group=_D, metavar="S")
    response_key: str = option("space", "--response-key", "key reporting a target (default: space)", Text(40),
                               group=_D, metavar="KEY")
    response_window: tuple[float, float] = (0.15, 1.5)
    drop_threshold: float = option(1.5, "", "", Number(1.0, 100, lo_open=True))
    self_paced: bool = option(False, "--self-paced", "wait for the response key before each sequence", group=_D,
                              action="store_true")

    def __post_init__(self) -> None:
        validate_options(self)
        lo, hi = self.response_window
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
            raise ConfigError(f"response window must be 0 <= lo < hi seconds, got {self.response_window}")

    def to_dict(self) -> dict:
        """Plain-JSON form (for logs and results)."""
        return asdict(self)


@dataclass(frozen=True)
class Trial:
    """One planned image presentation.

    Parameters
    ----------
    trial : int
        Running number over the run (0-based).
    sequence : int
        Sequence number (0-based).
    position : int
        Position within the sequence (0-based).
    image : str
        Image name (file name, or id).
    image_index : int
        Index into the image list (or into the target list when ``is_target``).
    is_target : bool
        A target image (to be reported with the response key).
    code : int
        Numeric marker code (see the module docstring).
    """

    trial: int
    sequence: int
    position: int
    image: str
    image_index: int
    is_target: bool
    code: int


@dataclass(frozen=True)
class FrameTiming:
    """Durations in frames for a given refresh rate.

    Parameters
    ----------
    refresh_hz : float
        Display refresh rate (Hz).
    on_frames, off_frames : int
        Frames with the image and with the fixation only.
    """

    refresh_hz: float
    on_frames: int
    off_frames: int

    @property
    def period(self) -> float:
        """Refresh period in seconds."""
        return 1.0 / self.refresh_hz

    @property
    def soa_frames(self) -> int:
        """Frames from one onset to the next within a sequence."""
        return self.on_frames + self.off_frames

    @property
    def on_s(self) -> float:
        """Realised image duration (seconds)."""
        return self.on_frames * self.period

    @property
    def off_s(self) -> float:
        """Realised blank duration (seconds)."""
        return self.off_frames * self.period


def frames_for_duration(seconds: float, refresh_hz: float, minimum: int = 0) -> int:
    """Nearest whole number of frames for a duration (at least ``minimum``).

    Parameters
    ----------
    seconds : float
        Requested duration.
    refresh_hz : float
        Refresh rate (Hz).
    minimum : int
        Smallest result (1 for an image duration, 0 for a blank).
    """
    if not refresh_hz > 0 or not math.isfinite(refresh_hz):
        raise ConfigError(f"refresh rate must be a positive number of Hz, got {refresh_hz}")
    if seconds < 0:
        raise ConfigError(f"duration must be >= 0 s, got {seconds}")
    # the small epsilon makes 0.1 s at 60 Hz (5.999999...) round to 6 and exact halves round up
    return max(int(minimum), int(math.floor(seconds * refresh_hz + 0.5 + 1e-9)))


def frame_timing(config: RsvpConfig, refresh_hz: float) -> FrameTiming:
    """On/off frame counts of ``config`` at ``refresh_hz`` (image at least one frame)."""
    return FrameTiming(refresh_hz=float(refresh_hz),
                       on_frames=frames_for_duration(config.on_s, refresh_hz, minimum=1),
                       off_frames=frames_for_duration(config.off_s, refresh_hz, minimum=0))


def build_trials(images: Sequence[str], config: RsvpConfig, targets: Sequence[str] = ()) -> list[Trial]:
    """The full trial list: repetitions in fresh random orders, cut into sequences, targets inserted.

    Parameters
    ----------
    images : sequence of str
        Image names (their order defines ``image_index`` and the numeric codes).
    config : RsvpConfig
        Design (``repetitions``, ``sequence_length``, ``target_prob``, ``seed``).
    targets : sequence of str
        Target image names; empty for no targets.

    Returns
    -------
    list of Trial
        In presentation order. Each image occurs exactly ``repetitions`` times as a non-target; an image never
        follows itself across a repetition boundary when that can be avoided.
    """
    n = len(images)
    if n == 0:
        raise ConfigError("no images to present: give a folder with at least one image")
    rng = np.random.default_rng(config.seed)
    order: list[int] = []
    for _ in range(config.repetitions):
        perm = [int(i) for i in rng.permutation(n)]
        if order and n > 1 and perm[0] == order[-1]:
            perm[0], perm[1] = perm[1], perm[0]
        order.extend(perm)
    k = config.sequence_length
    sequences = [order[i:i + k] for i in range(0, len(order), k)]
    trials: list[Trial] = []
    for s, seq in enumerate(sequences):
        items: list[tuple[int, bool]] = [(i, False) for i in seq]
        if targets and config.target_prob > 0 and rng.random() < config.target_prob:
            j = int(rng.integers(len(targets)))
            # not the very first image, so that the sequence starts the same way with or without a target
            pos = int(rng.integers(1, len(items) + 1)) if len(items) > 0 else 0
            items.insert(pos, (j, True))
        for p, (idx, is_target) in enumerate(items):
            name = targets[idx] if is_target else images[idx]
            code = n + 1 + idx if is_target else idx + 1
            trials.append(Trial(trial=len(trials), sequence=s, position=p, image=str(name), image_index=idx,
                                is_target=is_target, code=code))
    return trials


def planned_onsets(trials: Sequence[Trial], timing: FrameTiming) -> np.ndarray:
    """Planned onset of each trial relative to the first onset of its sequence (seconds)."""
    return np.array([t.position * timing.soa_frames * timing.period for t in trials], dtype=float)


def flip_intervals(flip_times: Sequence[float]) -> np.ndarray:
    """Intervals between consecutive flips (seconds); the first is NaN."""
    t = np.asarray(flip_times, dtype=float)
    out = np.full(t.shape, np.nan)
    if t.size > 1:
        out[1:] = np.diff(t)
    return out


def missed_frames(interval: float, period: float, threshold: float = 1.5) -> int:
    """Frames missed before a flip that came ``interval`` s after the previous one: ``round(interval / period) -
    1`` (at least 1) when the interval exceeds ``threshold`` periods, else 0 (also for NaN: the first flip)."""
    if not interval > threshold * period:
        return 0
    return max(1, int(round(interval / period)) - 1)


def detect_drops(flip_times: Sequence[float], period: float, threshold: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Find dropped frames in a series of flip times.

    Parameters
    ----------
    flip_times : sequence of float
        Consecutive flip times (seconds, any clock).
    period : float
        Nominal refresh period (seconds).
    threshold : float
        An interval above ``threshold * period`` is a drop (PsychoPy's own default is 1.2; 1.5 tolerates the
        jitter of compositors and virtual displays).

    Returns
    -------
    intervals : ndarray of float
        Flip intervals (first NaN).
    missed : ndarray of int
        Frames missed before each flip: ``round(interval / period) - 1`` where the interval is a drop, else 0.
    """
    if not period > 0:
        raise ConfigError(f"refresh period must be > 0 s, got {period}")
    intervals = flip_intervals(flip_times)
    missed = np.array([missed_frames(i, period, threshold) for i in intervals], dtype=int)
    return intervals, missed


def estimate_refresh(flip_times: Sequence[float]) -> float:
    """Refresh rate (Hz) from the median flip interval of a series of back-to-back flips."""
    d = np.diff(np.asarray(flip_times, dtype=float))
    d = d[d > 0]
    if d.size == 0:
        raise ConfigError("need at least two increasing flip times to estimate the refresh rate")
    return float(1.0 / np.median(d))


@dataclass
class ResponseScore:
    """Hits, misses and false alarms of a target-detection task.

    Attributes
    ----------
    hits : int
    misses : int
    false_alarms : int
    reaction_times : list of float
        Seconds from target onset to the hit response.
    """

    hits: int = 0
    misses: int = 0
    false_alarms: int = 0
    reaction_times: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        rts = self.reaction_times
        return {"hits": self.hits, "misses": self.misses, "false_alarms": self.false_alarms,
                "median_rt": float(np.median(rts)) if rts else None}


def score_responses(target_onsets: Sequence[float], response_times: Sequence[float],
                    window: tuple[float, float] = (0.15, 1.5)) -> ResponseScore:
    """Match key presses to targets: the first unused press within ``window`` after an onset is a hit.

    Presses matching no target are false alarms. All times on one clock (seconds).
    """
    lo, hi = window
    presses = sorted(float(r) for r in response_times)
    used = [False] * len(presses)
    score = ResponseScore()
    for onset in sorted(float(t) for t in target_onsets):
        for i, r in enumerate(presses):
            if not used[i] and lo <= r - onset <= hi:
                used[i] = True
                score.hits += 1
                score.reaction_times.append(r - onset)
                break
        else:
            score.misses += 1
    score.false_alarms = used.count(False)
    return score


class FramePacer:
    """Paces flips against absolute clock targets where the display does not (no vsync: Xvfb, some VMs).

    With vsync ``win.flip()`` blocks until the refresh, and frame counting alone gives the durations. Without
    it a flip returns at once; then :meth:`wait` sleeps until ``t_first + n * period`` (absolute targets, so
    errors do not accumulate) before each flip, emulating a display of ``refresh_hz``.

    Parameters
    ----------
    refresh_hz : float
        Emulated refresh rate (Hz).
    clock : callable
        Time in seconds (the clock that the targets refer to).
    sleep : callable
        ``sleep(seconds)``.
    spin_s : float
        Sleep until this long before the target, then busy-wait (sleep overshoots by ~0.1 ms on Linux).
    """

    def __init__(self, refresh_hz: float, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep, spin_s: float = 0.001) -> None:
        if not refresh_hz > 0:
            raise ConfigError(f"refresh rate must be > 0 Hz, got {refresh_hz}")
        self.period = 1.0 / float(refresh_hz)
        self.clock = clock
        self.sleep = sleep
        self.spin_s = float(spin_s)
        self.t_first: float | None = None
        self.n = 0

    def reset(self, t_first: float | None = None) -> None:
        """Restart the frame grid at ``t_first`` (default: the next :meth:`wait` starts it)."""
        self.t_first = t_first
        self.n = 0

    def target(self) -> float | None:
        """Time of the next frame on the grid (None before the first)."""
        return None if self.t_first is None else self.t_first + self.n * self.period

    def wait(self) -> float:
        """Wait for the next frame time and return it; a frame already missed is skipped (a drop)."""
        now = self.clock()
        if self.t_first is None:
            self.t_first = now
            self.n = 1
            return now
        target = self.t_first + self.n * self.period
        if now > target + 0.5 * self.period:
            # behave like a display: a missed refresh is lost, the next one comes on the grid
            self.n = int(math.floor((now - self.t_first) / self.period)) + 1
            target = self.t_first + self.n * self.period
        while True:
            delay = target - self.clock()
            if delay <= 0:
                break
            if delay > self.spin_s:
                self.sleep(delay - self.spin_s)
        self.n += 1
        return target


def list_images(directory: str | Path) -> list[Path]:
    """Image files in ``directory`` (sorted by name; PNG, JPEG, BMP, TIFF, WebP)."""
    from ..stream.sources import IMAGE_EXTENSIONS

    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"image folder {str(d)!r} does not exist: give a folder of image files")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ConfigError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {str(d)!r}")
    return files
