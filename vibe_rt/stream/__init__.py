"""Real-time streaming: frame sources, event policies, synthesis, LSL outlets and the pipeline joining them."""

from __future__ import annotations

from .clock import Pacer, SampleClock
from .events import EveryFrame, FixedRate, SceneChange, Stimulus, make_policy
from .lsl import LslOutlets, MarkerOutlets, default_marker_source_id, default_source_id
from .config import InferenceSpec, OutputSpec, RecordSpec, StreamConfig, SynthSpec
from .pipeline import ResponsePredictor, StreamPipeline
from .record import BrainVisionWriter
from .run import StreamPlan, preflight, run_pipeline
from .sources import CameraSource, DemoSource, Frame, FrameSource, ImageFolderSource, VideoSource
from .stats import PipelineStats, format_status
from .synth import PinkBackground, Synthesizer, ZeroBackground, make_background

__all__ = [
    "BrainVisionWriter", "CameraSource", "DemoSource", "EveryFrame", "FixedRate", "Frame", "FrameSource",
    "ImageFolderSource", "InferenceSpec", "LslOutlets", "MarkerOutlets", "OutputSpec", "Pacer", "PinkBackground",
    "PipelineStats", "RecordSpec", "ResponsePredictor", "SampleClock", "SceneChange", "Stimulus", "StreamConfig",
    "StreamPipeline", "StreamPlan", "Synthesizer", "SynthSpec", "VideoSource", "ZeroBackground",
    "default_marker_source_id", "default_source_id", "format_status", "make_background", "make_policy", "preflight",
    "run_pipeline",
]
