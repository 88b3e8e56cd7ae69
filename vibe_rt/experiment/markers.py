"""Where onsets go: the streaming pipeline (synthesized signal + markers) or marker outlets alone.

Anything with ``submit_onset(image, onset_time, meta)`` can receive onsets (:class:`OnsetSink`); the
:class:`~vibe_rt.stream.pipeline.StreamPipeline` is one. :class:`MarkerOutlets` is the other, for sessions with
a real amplifier (``--no-synth``): the same two marker streams as the pipeline (``<name>-markers``, JSON
strings, and ``<name>-codes``, int32), without a signal stream.
"""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any, Protocol

import numpy as np

from .._logs import logger
from ..stream.events import Stimulus  # imported here, not at the first onset (it costs ~100 ms once)
from ..stream.sources import Frame


class OnsetSink(Protocol):
    """Receives stimulus onsets (``StreamPipeline`` implements it)."""

    def submit_onset(self, image: np.ndarray, onset_time: float, meta: dict) -> Any:
        """Place the response to ``image`` (uint8 RGB) at ``onset_time`` (LSL seconds) and push its markers."""


def marker_json(event_id: int, onset: float, meta: dict[str, Any], status: str = "marker-only") -> dict[str, Any]:
    """The JSON marker of an onset, in the layout of the streaming pipeline's markers.

    Uses :class:`vibe_rt.stream.events.Stimulus` so that both paths write the same keys.
    """
    frame = Frame(image=np.zeros((1, 1, 3), np.uint8), t_capture=onset, frame_id=int(meta.get("trial", event_id)),
                  source=str(meta.get("source", "psychopy")), meta=dict(meta))
    stim = Stimulus(frame=frame, onset=onset, event_id=event_id, code=int(meta.get("code", 1)), meta=dict(meta))
    return stim.marker(status=status)


class MarkerOutlets:
    """The two marker outlets alone (no signal stream): JSON strings and int32 codes.

    Parameters
    ----------
    name : str
        Stream name prefix: the outlets are ``<name>-markers`` and ``<name>-codes``.
    source_id : str | None
        Prefix of the source ids (``<source_id>-markers``, ``<source_id>-codes``); default
        ``vibe-rt-<name>-experiment``, stable across restarts so recorders reconnect.
    """

    def __init__(self, name: str = "vibe-rt", source_id: str | None = None) -> None:
        import pylsl

        self.name = name
        self.source_id = source_id or f"vibe-rt-{name}-experiment"
        minfo = pylsl.StreamInfo(f"{name}-markers", "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string,
                                 f"{self.source_id}-markers")
        minfo.desc().append_child_value("format", "json")
        self.markers = pylsl.StreamOutlet(minfo)
        cinfo = pylsl.StreamInfo(f"{name}-codes", "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_int32,
                                 f"{self.source_id}-codes")
        self.codes = pylsl.StreamOutlet(cinfo)
        self._ids = itertools.count()
        self.n_pushed = 0

    def push_marker(self, marker: dict[str, Any], timestamp: float, code: int | None) -> None:
        """Push a JSON marker and (when not None) its numeric code, both stamped ``timestamp``."""
        self.markers.push_sample([json.dumps(marker, separators=(",", ":"))], timestamp)
        if code is not None:
            self.codes.push_sample([int(code)], timestamp)
        self.n_pushed += 1

    def submit_onset(self, image: np.ndarray, onset_time: float, meta: dict) -> None:
        """Push the markers of an onset (the image is not used: there is no synthesized signal)."""
        marker = marker_json(next(self._ids), onset_time, meta)
        self.push_marker(marker, onset_time, int(meta.get("code", 1)))

    def close(self) -> None:
        """Drop the outlets."""
        self.markers = self.codes = None  # type: ignore[assignment]


def push_event_marker(sink: Any, marker: dict[str, Any], timestamp: float, code: int | None) -> bool:
    """Push a marker that is not a stimulus (a key press) on the sink's marker outlets, if it has any.

    Works with :class:`MarkerOutlets` and with a pipeline exposing its ``LslOutlets`` as ``outlets``.
    Returns False (and logs once per sink at debug level) when the sink offers no way to do it.
    """
    for target in (sink, getattr(sink, "outlets", None)):
        push = getattr(target, "push_marker", None)
        if callable(push):
            push(marker, timestamp, code)
            return True
    logger.debug("the onset sink %r has no marker outlet: key press not pushed", type(sink).__name__)
    return False


def unique_source_id(prefix: str = "vibe-rt-experiment") -> str:
    """A fresh source id (tests and benchmarks, where streams must not resolve each other)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
