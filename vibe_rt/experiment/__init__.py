"""Stimulus experiments (PsychoPy) whose onsets drive the synthesized stream and the LSL markers.

Pure parts (importable without PsychoPy): :mod:`~vibe_rt.experiment.rsvp` (design and frame timing),
:mod:`~vibe_rt.experiment.clock` (PsychoPy-to-LSL clock offset), :mod:`~vibe_rt.experiment.log` (TSV log),
:mod:`~vibe_rt.experiment.markers` (onset sinks; the marker-only outlets are
:class:`vibe_rt.stream.lsl.MarkerOutlets`). The window part,
:mod:`~vibe_rt.experiment.psychopy_rsvp`, imports PsychoPy lazily.
"""

from __future__ import annotations

from typing import Any

from ..stream.lsl import MarkerOutlets
from .clock import ClockOffset, measure_offset, psychopy_to_lsl
from .log import ExperimentLog, read_log
from .markers import OnsetSink
from .rsvp import (
    RESPONSE_CODE,
    FramePacer,
    FrameTiming,
    RsvpConfig,
    Trial,
    build_trials,
    detect_drops,
    frame_timing,
    frames_for_duration,
    score_responses,
)

__all__ = ["RESPONSE_CODE", "ClockOffset", "ExperimentLog", "FramePacer", "FrameTiming", "MarkerOutlets",
           "OnsetReporter", "OnsetSink", "RsvpConfig", "RsvpResult", "Trial", "build_trials", "detect_drops",
           "frame_timing", "frames_for_duration", "measure_offset", "psychopy_to_lsl", "read_log", "run_rsvp",
           "score_responses"]

_LAZY = {"OnsetReporter", "RsvpResult", "run_rsvp", "open_window", "load_image"}


def __getattr__(name: str) -> Any:
    # the PsychoPy-facing names live in psychopy_rsvp (which itself imports PsychoPy only when used)
    if name in _LAZY:
        from . import psychopy_rsvp

        return getattr(psychopy_rsvp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
