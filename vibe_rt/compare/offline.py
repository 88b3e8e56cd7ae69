"""Offline comparison on recordings (FIF, BrainVision, EDF/BDF, XDF) through the same code path as live mode.

Files are read by :func:`vibe_rt.data.recordings.read_recording` (the reader of the training-data loader). The
file's samples are fed in chunks, with its markers, into the same :class:`~vibe_rt.compare.session.Session`
(epoch extractor + comparator) that live mode feeds from LSL inlets, so both modes agree on the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._logs import logger
from ..data.recordings import (
    DATA_TYPES,
    Recording,
    events_sidecar,
    read_events_sidecar,
    read_recording,
    read_stimulus_log,
)
from ..devices import DeviceProfile
from ..errors import DataError
from ..montage import Montage
from ..units import require_unit, unit_scale
from .channels import match_channels
from .comparator import Comparator
from .epocher import EpochExtractor, parse_marker
from .session import Session, SynthSource

__all__ = ["Recording", "read_recording", "read_stimulus_log", "compare_offline", "make_extractor",
           "recording_markers", "log_markers", "rec_markers_source", "session_markers", "sidecar_markers"]

ParsedMarker = tuple[float, str, dict[str, Any]]


def recording_markers(rec: Recording) -> list[ParsedMarker]:
    """The recording's markers decoded by :func:`~vibe_rt.compare.epocher.parse_marker`: ``(time, key, payload)``
    on the timeline of ``rec.times``; samples and annotations that are not events are left out."""
    out = []
    for t, value in rec.event_markers:
        parsed = parse_marker(value, rec.marker_channels)
        if parsed is not None:
            out.append((float(t), parsed[0], parsed[1]))
    return out


def log_markers(path: str | Path) -> list[ParsedMarker]:
    """Markers from a stimulus log (see :func:`vibe_rt.data.recordings.read_stimulus_log`) with an ``onset``
    (or ``time``, seconds on the recording's timeline) and ``image`` (or ``key``/``image_id``) column; every
    column goes into the payload."""
    rows = read_stimulus_log(path)
    if any(r["onset"] is None for r in rows):
        raise DataError(f"{path}: needs columns 'onset' and 'image', with an onset on every row")
    return [(r["onset"], r["image"], r["columns"]) for r in rows]


def sidecar_markers(path: str | Path) -> list[ParsedMarker]:
    """Markers from a BIDS-style events sidecar (:func:`vibe_rt.data.recordings.read_events_sidecar`): its
    stimuli whose response is in the signal, keyed by image (else by code), on the timeline of a file MNE reads
    (seconds from the first sample)."""
    out = []
    for row in read_events_sidecar(path):
        key = row["image"] if row["image"] is not None else (str(row["code"]) if row["code"] is not None else None)
        if key is None:
            continue
        payload = {k: v for k, v in row["columns"].items() if v is not None}
        if row["code"] is not None:
            payload["code"] = row["code"]
        out.append((row["onset"], key, payload))
    return out


def rec_markers_source(rec: Recording, stimulus_log: str | Path | None = None, *, sidecar: bool = True) -> str:
    """Where :func:`session_markers` takes the markers of ``rec`` from: the stimulus log, the recording's events
    sidecar (preferred to its own markers, unless ``sidecar`` is False), or its own markers."""
    if stimulus_log is not None:
        return f"stimulus log {stimulus_log}"
    found = events_sidecar(rec.path) if sidecar and rec.path is not None and rec.path.suffix.lower() != ".xdf" \
        else None
    if found is not None:
        return f"events sidecar {found}"
    return f"{rec.marker_source} of {rec.name}"


def session_markers(rec: Recording, stimulus_log: str | Path | None = None) -> list[ParsedMarker]:
    """The markers a comparison of ``rec`` uses: the stimulus log's when given, else the recording's events
    sidecar (``<stem>_events.tsv``, which names the images) when it has stimuli, else the recording's own
    (:class:`DataError` when there are none)."""
    source = rec_markers_source(rec, stimulus_log)
    if stimulus_log is not None:
        markers = log_markers(stimulus_log)
    elif source.startswith("events sidecar"):
        markers = [(rec.t0 + t, key, payload) for t, key, payload in sidecar_markers(source[len("events sidecar "):])]
        if not markers:  # a sidecar without a stimulus that names an image or a code: the file's own markers
            source = rec_markers_source(rec, None, sidecar=False)
            markers = recording_markers(rec)
    else:
        markers = recording_markers(rec)
    if not markers:
        raise DataError(f"recording {rec.name!r} has no stimulus markers ({source}); add annotations or give "
                        "--stimulus-log")
    logger.info("markers of %s: %d from the %s", rec.name, len(markers), source)
    return markers


def make_extractor(
    montage: Montage,
    sfreq: float,
    ch_names: Sequence[str],
    ch_types: Sequence[str] | None = None,
    units: Sequence[str | None] | None = None,
    positions: np.ndarray | None = None,
    *,
    interpolation: str = "auto",
    unit_override: str | None = None,
    buffer_s: float = 30.0,
    device: DeviceProfile | None = None,
    margin_s: float = 0.0,
) -> EpochExtractor:
    """An :class:`EpochExtractor` for a stream/recording described by its channels, units and rate.

    ``unit_override`` (e.g. ``"uV"``) replaces the channels' own units; one that :func:`parse_unit` does not know
    raises :class:`~vibe_rt.errors.ConfigError` listing the units it does. ``device`` (the live device's profile)
    reads the channels through it: its labels match by their 10-10 equivalents, its positions fill in where the
    stream has none (:meth:`~vibe_rt.devices.DeviceProfile.live_channels`). ``margin_s``: wide epochs (the
    synthesized side, see :class:`EpochExtractor`).
    """
    aliases = None
    if device is not None:
        aliases, positions = device.live_channels(ch_names, positions)
    if unit_override:
        require_unit(unit_override)
    n = len(ch_names)
    ch_types = list(ch_types) if ch_types is not None else ["eeg" if montage.modality == "EEG" else "mag"] * n
    units = [unit_override] * n if unit_override else (list(units) if units is not None else [None] * n)
    scale = np.array([unit_scale(u, t) for u, t in zip(units, ch_types)])
    match = match_channels(montage, list(ch_names), positions, method=interpolation, aliases=aliases)
    return EpochExtractor(montage, sfreq, match, scale, buffer_s=buffer_s, margin_s=margin_s)


def _feed(session: Session, rec: Recording, markers: list[ParsedMarker], synth_rec: Recording | None,
          chunk_s: float) -> None:
    markers = sorted(markers, key=lambda m: m[0])
    n = rec.times.size
    step = max(1, int(round(chunk_s * rec.sfreq)))
    mi = 0
    si = 0
    for i0 in range(0, n, step):
        ts = rec.times[i0 : i0 + step]
        while mi < len(markers) and markers[mi][0] <= ts[-1]:
            t, key, payload = markers[mi]
            session.add_marker(t, key, payload)
            mi += 1
        session.push_live(ts, rec.data[i0 : i0 + step])
        if synth_rec is not None:
            j = int(np.searchsorted(synth_rec.times, ts[-1], side="right"))
            if j > si:
                session.push_synth(synth_rec.times[si:j], synth_rec.data[si:j])
                si = j
        session.process()
    while mi < len(markers):  # markers after the last sample
        t, key, payload = markers[mi]
        session.add_marker(t, key, payload)
        mi += 1
    if synth_rec is not None and si < synth_rec.times.size:
        session.push_synth(synth_rec.times[si:], synth_rec.data[si:])
    session.finish()


def _is_raw(x: Any) -> bool:
    """True for an MNE Raw (without importing MNE)."""
    return hasattr(x, "info") and hasattr(x, "annotations") and hasattr(x, "get_data")


def compare_offline(
    live: str | Path | Recording,
    montage: Montage,
    synth: SynthSource | str | Path | Recording,
    *,
    stimulus_log: str | Path | None = None,
    live_stream: str | None = None,
    markers_stream: str | None = None,
    synth_stream: str | None = None,
    comparator: Comparator | None = None,
    interpolation: str = "auto",
    unit_override: str | None = None,
    chunk_s: float = 0.1,
    device: DeviceProfile | None = None,
    markers: list[ParsedMarker] | None = None,
    **comparator_kw: Any,
) -> Session:
    """Compare a recording with synthesized epochs, offline.

    Parameters
    ----------
    live : path | Recording | mne.io.BaseRaw
        The recording (see :func:`vibe_rt.data.recordings.read_recording`); its M/EEG channels are used.
    montage : Montage
        Model montage (channels, rate, epoch window).
    synth : SynthSource | path | Recording | mne.io.BaseRaw
        Predicted responses per event (overlap-added at the onsets into the signal the stream would have
        produced, see :mod:`vibe_rt.compare.predicted`), or a recording of the synthesized stream (same
        timeline and markers; e.g. the same XDF file with ``synth_stream`` naming the stream).
    stimulus_log : path | None
        CSV/TSV of markers (see :func:`log_markers`) used instead of the file's own markers.
    live_stream, markers_stream, synth_stream : str | None
        XDF stream selection (name, type or source_id).
    comparator : Comparator | None
        Comparator to feed (default: a new one with ``comparator_kw``).
    interpolation : str
        Missing-channel interpolation (see :func:`~vibe_rt.compare.channels.match_channels`).
    unit_override : str | None
        Unit of the live data when the file does not say (e.g. ``"uV"``).
    chunk_s : float
        Chunk length fed at a time (seconds), as an inlet would deliver.
    device : DeviceProfile | None
        The recording device's profile: its channels are read through it (see :func:`make_extractor`).
    markers : list of (time, key, payload) | None
        The markers, when the caller has read them already (:func:`session_markers`).

    Returns
    -------
    session : Session
        ``session.comparator`` holds the metrics.
    """
    if isinstance(live, Recording):
        rec = live
    elif isinstance(live, (str, Path)):
        rec = read_recording(live, signal_stream=live_stream, marker_stream=markers_stream)
    elif _is_raw(live):
        rec = Recording.from_raw(live)
    else:
        raise DataError(f"cannot compare a {type(live).__name__}; give a recording file, a Recording or an MNE Raw")
    rec = rec.pick_types(DATA_TYPES)
    markers = session_markers(rec, stimulus_log) if markers is None else markers
    ext = make_extractor(montage, rec.sfreq, rec.ch_names, rec.ch_types, rec.units, rec.positions,
                         interpolation=interpolation, unit_override=unit_override,
                         buffer_s=max(30.0, 4 * chunk_s), device=device)
    comp = comparator or Comparator(montage, **comparator_kw)
    synth_rec: Recording | None = None
    if isinstance(synth, Recording):
        synth_rec = synth
    elif _is_raw(synth):
        synth_rec = Recording.from_raw(synth)
    elif isinstance(synth, (str, Path)):
        synth_rec = read_recording(synth, signal_stream=synth_stream)
    if synth_rec is not None:
        synth_rec = synth_rec.pick_types(DATA_TYPES)
        src: Any = make_extractor(montage, synth_rec.sfreq, synth_rec.ch_names, synth_rec.ch_types, synth_rec.units,
                                  synth_rec.positions, margin_s=comp.margin_s)
    else:
        src = synth
    session = Session(comp, ext, src)
    _feed(session, rec, markers, synth_rec, chunk_s)
    logger.info("offline comparison of %s: %d events, %d lost", rec.name, comp.n_events, len(comp.lost))
    return session
