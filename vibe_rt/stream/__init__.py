"""Real-time streaming: frame sources, event policies, synthesis, LSL outlets and the pipeline joining them.

The names below load their module when first used, so that building the CLI's parser (which reads the option
declarations of :mod:`vibe_rt.stream.config`) does not import the synthesizer and its SciPy dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, eagerly, for type checkers
    from .clock import Pacer, SampleClock
    from .config import InferenceSpec, OutputSpec, RecordSpec, StreamConfig, SynthSpec
    from .events import EveryFrame, FixedRate, SceneChange, Stimulus, make_policy
    from .lsl import LslOutlets, MarkerOutlets, default_marker_source_id, default_source_id
    from .pipeline import ResponsePredictor, StreamPipeline
    from .record import BrainVisionWriter
    from .run import StreamPlan, preflight, run_pipeline
    from .sources import CameraSource, DemoSource, Frame, FrameSource, ImageFolderSource, VideoSource
    from .stats import PipelineStats, format_status
    from .synth import PinkBackground, Synthesizer, ZeroBackground, make_background

_WHERE = {
    "clock": ("Pacer", "SampleClock"),
    "config": ("InferenceSpec", "OutputSpec", "RecordSpec", "StreamConfig", "SynthSpec"),
    "events": ("EveryFrame", "FixedRate", "SceneChange", "Stimulus", "make_policy"),
    "lsl": ("LslOutlets", "MarkerOutlets", "default_marker_source_id", "default_source_id"),
    "pipeline": ("ResponsePredictor", "StreamPipeline"),
    "record": ("BrainVisionWriter",),
    "run": ("StreamPlan", "preflight", "run_pipeline"),
    "sources": ("CameraSource", "DemoSource", "Frame", "FrameSource", "ImageFolderSource", "VideoSource"),
    "stats": ("PipelineStats", "format_status"),
    "synth": ("PinkBackground", "Synthesizer", "ZeroBackground", "make_background"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = [
    "BrainVisionWriter", "CameraSource", "DemoSource", "EveryFrame", "FixedRate", "Frame", "FrameSource",
    "ImageFolderSource", "InferenceSpec", "LslOutlets", "MarkerOutlets", "OutputSpec", "Pacer", "PinkBackground",
    "PipelineStats", "RecordSpec", "ResponsePredictor", "SampleClock", "SceneChange", "Stimulus", "StreamConfig",
    "StreamPipeline", "StreamPlan", "SynthSpec", "Synthesizer", "VideoSource", "ZeroBackground",
    "default_marker_source_id", "default_source_id", "format_status", "make_background", "make_policy", "preflight",
    "run_pipeline",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
