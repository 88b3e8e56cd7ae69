"""Where onsets go: the streaming pipeline (synthesized signal + markers) or marker outlets alone.

Anything with ``submit_onset(image, onset_time, meta)`` can receive onsets (:class:`OnsetSink`); the
:class:`~vibe_rt.stream.pipeline.StreamPipeline` is one. :class:`~vibe_rt.stream.lsl.MarkerOutlets` is the
other, for sessions with a real amplifier (``--no-synth``): the same two marker streams as the pipeline
(``<name>-markers``, JSON strings, and ``<name>-codes``, int32), without a signal stream; its source ids
default to ``vibe-rt-<name>-experiment-markers`` / ``-codes``.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

import numpy as np

from .._logs import logger
from ..stream.lsl import MarkerOutlets

__all__ = ["MarkerOutlets", "OnsetSink", "push_event_marker", "unique_source_id"]


class OnsetSink(Protocol):
    """Receives stimulus onsets (``StreamPipeline`` and ``MarkerOutlets`` implement it)."""

    def submit_onset(self, image: np.ndarray, onset_time: float, meta: dict) -> Any:
        """Place the response to ``image`` (uint8 RGB) at ``onset_time`` (LSL seconds) and push its markers."""


def push_event_marker(sink: Any, marker: dict[str, Any], timestamp: float, code: int | None) -> bool:
    """Push a marker that is not a stimulus (a key press) through the sink's ``push_marker``, if it has one.

    Works with :class:`~vibe_rt.stream.lsl.MarkerOutlets` and with
    :meth:`~vibe_rt.stream.pipeline.StreamPipeline.push_marker` (which also writes the ``--record`` file).
    Returns False (and logs at debug level) when the sink offers no way to do it.
    """
    push = getattr(sink, "push_marker", None)
    if callable(push):
        push(marker, timestamp, code)
        return True
    logger.debug("the onset sink %r has no push_marker: key press not pushed", type(sink).__name__)
    return False


def unique_source_id(prefix: str = "vibe-rt-experiment") -> str:
    """A fresh source id (tests and benchmarks, where streams must not resolve each other)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
