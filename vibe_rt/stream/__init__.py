"""Real-time streaming: frame sources, event policies, synthesis, LSL outlets and the pipeline joining them."""

from __future__ import annotations

from .clock import Pacer, SampleClock
from .events import EveryFrame, FixedRate, SceneChange, Stimulus, make_policy
from .lsl import LslOutlets, MarkerOutlets, default_marker_source_id, default_source_id
from .pipeline import Predictor, StreamPipeline
from .record import BrainVisionWriter
from .run import StreamConfig, build_pipeline, run_stream
from .sources import CameraSource, DemoSource, Frame, FrameSource, ImageFolderSource, VideoSource
from .stats import PipelineStats, format_status
from .synth import PinkBackground, Synthesizer, ZeroBackground, make_background

__all__ = [
    "BrainVisionWriter", "CameraSource", "DemoSource", "EveryFrame", "FixedRate", "Frame",
    "FrameSource", "ImageFolderSource", "LslOutlets", "MarkerOutlets", "Pacer", "PinkBackground", "PipelineStats",
    "Predictor", "SampleClock", "SceneChange", "Stimulus", "StreamConfig", "StreamPipeline", "Synthesizer",
    "VideoSource", "ZeroBackground", "build_pipeline", "default_marker_source_id", "default_source_id", "format_status",
    "make_background", "make_policy", "run_stream",
]
