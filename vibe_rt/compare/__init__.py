"""Closed-loop comparison of live recordings with synthesized M/EEG, and the fitting of calibration profiles.

Pure parts (:mod:`.metrics`, :class:`Comparator`, :class:`EpochExtractor`, :class:`Session`,
:class:`PredictedSignal`: the signal the stream would have produced for a session's onsets) are fed either by
LSL inlets (:class:`LiveComparator`) or by files (:func:`compare_offline`) through the same code path.
:func:`run_compare` and :func:`calibrate_session` are what ``vibe-rt compare`` and ``vibe-rt calibrate`` call.
Profiles themselves (reading, validating, applying) are :mod:`vibe_rt.calibration`.
"""

from __future__ import annotations

from .calibrate import fit_calibration
from .channels import ChannelMatch, match_channels
from .comparator import Comparator, ErpSet
from .epocher import EpochExtractor, Marker, parse_marker
from .live import LiveComparator
from .offline import Recording, compare_offline, log_markers, read_recording, read_stimulus_log, recording_markers
from .predicted import PredictedSignal
from .report import read_report, write_report
from .run import CalibrateConfig, CompareConfig, CompareResult, calibrate_session, run_compare
from .session import DictSynth, PredictorSynth, Session

__all__ = [
    "CalibrateConfig", "ChannelMatch", "CompareConfig", "CompareResult", "Comparator", "DictSynth",
    "EpochExtractor", "ErpSet", "LiveComparator", "Marker", "PredictedSignal", "PredictorSynth", "Recording",
    "Session",
    "calibrate_session", "compare_offline", "fit_calibration", "log_markers", "match_channels", "parse_marker",
    "read_recording", "read_report", "read_stimulus_log", "recording_markers", "run_compare",
    "write_report",
]
