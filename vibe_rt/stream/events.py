"""Event policies: which frames become stimulus onsets.

A policy sees frames in capture order and returns True for the frames that count as a new stimulus onset,
False for the others (the pipeline turns an onset frame into a :class:`Stimulus`). Time comes only from
``frame.t_capture`` (the injected clock of the source), so the policies are pure and tested without threads.

Policies
--------
``every``
    Every frame is an onset (image slideshows, PsychoPy flips, videos of discrete stimuli).
``rate``
    A fixed onset rate (default 3.5 Hz, a typical fixation rate): the first frame captured at or after each
    scheduled time on an absolute grid.
``scene``
    Scene change (the default for cameras and videos): mean absolute difference between the downscaled grey
    frame and the frame of the last onset, in grey levels 0-255, above ``threshold`` (default 12), with a
    refractory period (default 0.25 s, about one fixation) and a maximum interval (default 1.0 s) after which
    an onset is forced even in a static scene, as a viewer keeps making saccades.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..errors import ConfigError
from .sources import Frame

POLICIES = ("every", "rate", "scene")


@dataclass
class Stimulus:
    """One stimulus onset.

    Parameters
    ----------
    frame : Frame
        The image shown.
    onset : float
        Onset time on the LSL clock (seconds).
    event_id : int
        Running number, unique within the pipeline.
    code : int
        Positive integer for the numeric marker stream (``frame.meta["code"]`` when given, else 1).
    """

    frame: Frame
    onset: float
    event_id: int = 0
    code: int = 1
    meta: dict = field(default_factory=dict)

    def marker(self, status: str = "ok") -> dict:
        """The JSON marker content for this onset."""
        out = {"event": self.event_id, "frame": self.frame.frame_id, "source": self.frame.source,
               "onset": round(self.onset, 6), "code": self.code, "status": status}
        for key in ("image", "scene", "path", "duration", "pass"):
            if key in self.frame.meta:
                out[key] = self.frame.meta[key]
        out.update({k: v for k, v in self.meta.items() if isinstance(v, (str, int, float, bool))})
        return out


def onset_marker(event_id: int, onset: float, meta: dict, status: str = "marker-only") -> dict:
    """The JSON marker of an onset known only by its time and meta-data (no frame), as :meth:`Stimulus.marker`.

    Used for markers that do not go through the pipeline's inference (marker-only sessions, key presses), so
    that every path writes the same keys. ``meta["trial"]`` (default ``event_id``) is the frame number,
    ``meta["source"]`` (default ``"psychopy"``) the source and ``meta["code"]`` (default 1) the code.
    """
    frame = Frame(image=np.zeros((1, 1, 3), np.uint8), t_capture=onset, frame_id=int(meta.get("trial", event_id)),
                  source=str(meta.get("source", "psychopy")), meta=dict(meta))
    stim = Stimulus(frame=frame, onset=onset, event_id=event_id, code=int(meta.get("code", 1)), meta=dict(meta))
    return stim.marker(status=status)


class EventPolicy(Protocol):
    """Decides whether a frame is a stimulus onset."""

    def __call__(self, frame: Frame) -> bool:
        """True when ``frame`` is a new stimulus onset."""

    def reset(self) -> None:
        """Forget the history."""


class EveryFrame:
    """Every frame is an onset."""

    name = "every"

    def __call__(self, frame: Frame) -> bool:
        return True

    def reset(self) -> None:
        pass


class FixedRate:
    """Onsets at a fixed rate on an absolute time grid.

    Parameters
    ----------
    rate : float
        Onsets per second (default 3.5 Hz).
    """

    name = "rate"

    def __init__(self, rate: float = 3.5) -> None:
        if not rate > 0:
            raise ConfigError(f"--event-rate must be positive, got {rate}")
        self.rate = float(rate)
        self.reset()

    def reset(self) -> None:
        self._t0: float | None = None
        self._k = 0

    def __call__(self, frame: Frame) -> bool:
        t = frame.t_capture
        if self._t0 is None:
            self._t0, self._k = t, 1
            return True
        due = self._t0 + self._k / self.rate
        if t + 1e-9 < due:
            return False
        # next slot strictly after t (skip the slots missed while no frame came)
        self._k = int(np.floor((t - self._t0) * self.rate + 1e-9)) + 1
        return True


def grey_thumbnail(image: np.ndarray, size: int = 32) -> np.ndarray:
    """Grey, ``size`` x ``size`` float32 thumbnail (area averaging) of an RGB uint8 image, values 0-255."""
    import cv2

    grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)


class SceneChange:
    """Onsets at scene changes, with a refractory period and an optional maximum interval.

    Parameters
    ----------
    threshold : float
        Mean absolute grey-level difference (0-255) from the last onset frame that counts as a change.
    refractory : float
        Minimum time between onsets (s).
    max_interval : float | None
        Force an onset when none happened for this long (s); None to disable.
    size : int
        Thumbnail side in pixels.
    """

    name = "scene"

    def __init__(self, threshold: float = 12.0, refractory: float = 0.25, max_interval: float | None = 1.0,
                 size: int = 32) -> None:
        if threshold < 0 or refractory < 0 or (max_interval is not None and max_interval <= 0):
            raise ConfigError("scene-change policy: threshold and refractory must be >= 0, max_interval > 0")
        self.threshold, self.refractory, self.max_interval, self.size = threshold, refractory, max_interval, size
        self.reset()

    def reset(self) -> None:
        self._ref: np.ndarray | None = None
        self._last_onset = -np.inf

    def __call__(self, frame: Frame) -> bool:
        t = frame.t_capture
        if t - self._last_onset < self.refractory:
            return False
        thumb = grey_thumbnail(frame.image, self.size)
        diff = float("inf") if self._ref is None else float(np.mean(np.abs(thumb - self._ref)))
        forced = self.max_interval is not None and t - self._last_onset >= self.max_interval
        if diff > self.threshold or forced:
            self._ref, self._last_onset = thumb, t
            return True
        return False


def make_policy(name: str, *, rate: float = 3.5, threshold: float = 12.0, refractory: float = 0.25,
                max_interval: float | None = 1.0) -> EventPolicy:
    """A policy by name: ``"every"``, ``"rate"`` or ``"scene"`` (see the module docstring for defaults)."""
    if name == "every":
        return EveryFrame()
    if name == "rate":
        return FixedRate(rate)
    if name == "scene":
        return SceneChange(threshold, refractory, max_interval)
    raise ConfigError(f"unknown event policy {name!r}; use one of {', '.join(POLICIES)}")


class StimulusFactory:
    """Turns onset frames into numbered :class:`Stimulus` objects (thread-safe counter)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def __call__(self, frame: Frame, onset: float | None = None, meta: dict | None = None) -> Stimulus:
        code = frame.meta.get("code", 1)
        try:
            code = int(code)
        except (TypeError, ValueError):
            code = 1
        return Stimulus(frame, frame.t_capture if onset is None else float(onset), next(self._ids), code,
                        dict(meta or {}))
