"""Offline comparison on recordings (FIF, BrainVision, EDF/BDF, XDF) through the same code path as live mode.

The file's samples are fed in chunks, with its markers, into the same :class:`~vibe_rt.compare.session.Session`
(epoch extractor + comparator) that live mode feeds from LSL inlets, so both modes agree on the same data.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._logs import logger
from ..errors import DataError
from ..montage import Montage
from .channels import match_channels, unit_scale
from .comparator import Comparator
from .epocher import EpochExtractor, parse_marker
from .session import Session, SynthSource

__all__ = ["Recording", "read_recording", "recording_from_raw", "read_stimulus_log", "compare_offline",
           "make_extractor"]

_MNE_EXTS = {".fif": "fif", ".gz": "fif", ".vhdr": "brainvision", ".edf": "edf", ".bdf": "bdf"}


@dataclass
class Recording:
    """A continuous recording, as the comparator sees a stream.

    Attributes
    ----------
    data : ndarray, shape (n_samples, n_channels)
        Samples in ``units`` (per channel).
    times : ndarray, shape (n_samples,)
        Sample times in seconds (file time or LSL time for XDF).
    sfreq : float
    ch_names, ch_types, units : list of str
    positions : ndarray, shape (n_channels, 3)
        Metres, ``nan`` where unknown.
    markers : list of (float, str, dict)
        ``(time, key, payload)`` on the same timeline as ``times``.
    name : str
    """

    data: np.ndarray
    times: np.ndarray
    sfreq: float
    ch_names: list[str]
    ch_types: list[str]
    units: list[str]
    positions: np.ndarray
    markers: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    name: str = ""

    @property
    def scale(self) -> np.ndarray:
        """Per-channel factor to SI units."""
        return np.array([unit_scale(u, t) for u, t in zip(self.units, self.ch_types)])


def _read_mne(path: Path) -> Recording:
    import mne

    return recording_from_raw(mne.io.read_raw(path, preload=True, verbose="error"), name=path.name)


def recording_from_raw(raw: Any, name: str = "") -> Recording:
    """A :class:`Recording` from an MNE Raw: M/EEG channels in SI units, annotations as markers."""
    import mne

    picks = mne.pick_types(raw.info, meg=True, eeg=True, ref_meg=False, exclude=())
    names = [raw.ch_names[i] for i in picks]
    types = [raw.get_channel_types()[i] for i in picks]
    pos = np.array([raw.info["chs"][i]["loc"][:3] for i in picks], dtype=float)
    pos[~np.isfinite(pos).all(axis=1) | (np.abs(pos).sum(axis=1) == 0)] = np.nan
    data = raw.get_data(picks=picks).T  # SI
    ann = raw.annotations
    offset = raw.first_time if ann.orig_time is not None else 0.0
    markers = []
    for onset, desc in zip(ann.onset - offset, ann.description):
        parsed = parse_marker(str(desc))
        if parsed is not None:
            markers.append((float(onset), parsed[0], parsed[1]))
    units = ["T/m" if t == "grad" else "T" if t == "mag" else "V" for t in types]
    return Recording(data, raw.times.copy(), float(raw.info["sfreq"]), names, types, units, pos, markers,
                     name=name or str(raw.filenames[0] if raw.filenames and raw.filenames[0] else "raw"))


def _xdf_channels(stream: dict[str, Any]) -> tuple[list[str], list[str], list[str], np.ndarray]:
    n = int(stream["info"]["channel_count"][0])
    names, types, units, pos = [f"ch{i}" for i in range(n)], ["eeg"] * n, [None] * n, np.full((n, 3), np.nan)
    try:
        chans = stream["info"]["desc"][0]["channels"][0]["channel"]
    except (KeyError, IndexError, TypeError):
        chans = []
    for i, ch in enumerate(chans[:n]):
        names[i] = (ch.get("label") or [names[i]])[0]
        t = (ch.get("type") or ["eeg"])[0].lower()
        types[i] = t if t in ("eeg", "mag", "grad") else "eeg"
        units[i] = (ch.get("unit") or [None])[0]
        try:
            loc = ch["location"][0]
            pos[i] = [float(loc[a][0]) / 1000.0 for a in ("X", "Y", "Z")]
        except (KeyError, IndexError, TypeError, ValueError):
            pass
    return names, types, units, pos


def _pick_xdf(streams: list[dict[str, Any]], name: str | None, signal: bool) -> dict[str, Any] | None:
    for s in streams:
        info = s["info"]
        rate = float(info["nominal_srate"][0])
        if (rate > 0) != signal:
            continue
        if name is None or name.lower() in (info["name"][0].lower(), info["type"][0].lower(),
                                            (info.get("source_id") or [""])[0].lower()):
            return s
    return None


def _read_xdf(path: Path, stream: str | None, markers: str | None) -> Recording:
    import pyxdf

    streams, _ = pyxdf.load_xdf(str(path))
    sig = _pick_xdf(streams, stream, True)
    if sig is None:
        raise DataError(f"{path}: no signal stream {stream or ''!s} found; streams: "
                        f"{[s['info']['name'][0] for s in streams]}")
    names, types, units, pos = _xdf_channels(sig)
    mk = _pick_xdf(streams, markers, False)
    out = []
    if mk is not None:
        mnames = None
        try:
            mnames = [c["label"][0] for c in mk["info"]["desc"][0]["channels"][0]["channel"]]
        except (KeyError, IndexError, TypeError):
            pass
        for t, v in zip(mk["time_stamps"], mk["time_series"]):
            parsed = parse_marker(list(v), mnames)
            if parsed is not None:
                out.append((float(t), parsed[0], parsed[1]))
    return Recording(np.asarray(sig["time_series"], dtype=np.float64), np.asarray(sig["time_stamps"], dtype=float),
                     float(sig["info"]["nominal_srate"][0]), names, types, units, pos, out,
                     name=sig["info"]["name"][0])


def read_recording(path: str | Path, *, stream: str | None = None, markers: str | None = None) -> Recording:
    """Read a recording with its markers.

    Parameters
    ----------
    path : path
        ``.fif`` (also ``.fif.gz``), ``.vhdr`` (BrainVision), ``.edf``, ``.bdf`` (annotations as markers) or
        ``.xdf`` (a signal stream and a marker stream).
    stream, markers : str | None
        XDF only: name, type or source_id of the signal and marker streams (default: first of each kind).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"recording {path} does not exist; give a FIF/BrainVision/EDF/BDF/XDF file")
    ext = path.suffix.lower()
    if ext == ".xdf":
        return _read_xdf(path, stream, markers)
    if ext in _MNE_EXTS:
        return _read_mne(path)
    raise DataError(f"unsupported recording format {ext!r} ({path}); use .fif, .vhdr, .edf, .bdf or .xdf")


def read_stimulus_log(path: str | Path) -> list[tuple[float, str, dict[str, Any]]]:
    """Markers from a CSV with a header: ``onset`` (or ``time``, seconds on the recording's timeline) and
    ``image`` (or ``key``/``image_id``); other columns go into the payload."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"stimulus log {path} does not exist")
    out = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = {c.lower(): c for c in reader.fieldnames or []}
        tcol = fields.get("onset") or fields.get("time")
        kcol = fields.get("image") or fields.get("key") or fields.get("image_id")
        if tcol is None or kcol is None:
            raise DataError(f"{path}: needs columns 'onset' and 'image' (found {reader.fieldnames})")
        for row in reader:
            out.append((float(row[tcol]), str(row[kcol]), dict(row)))
    return out


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
) -> EpochExtractor:
    """An :class:`EpochExtractor` for a stream/recording described by its channels, units and rate."""
    n = len(ch_names)
    ch_types = list(ch_types) if ch_types is not None else ["eeg" if montage.modality == "EEG" else "mag"] * n
    units = [unit_override] * n if unit_override else (list(units) if units is not None else [None] * n)
    scale = np.array([unit_scale(u, t) for u, t in zip(units, ch_types)])
    match = match_channels(montage, list(ch_names), positions, method=interpolation)
    return EpochExtractor(montage, sfreq, match, scale, buffer_s=buffer_s)


def _feed(session: Session, rec: Recording, synth_rec: Recording | None, chunk_s: float) -> None:
    markers = sorted(rec.markers, key=lambda m: m[0])
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
    **comparator_kw: Any,
) -> Session:
    """Compare a recording with synthesized epochs, offline.

    Parameters
    ----------
    live : path | Recording | mne.io.BaseRaw
        The recording (see :func:`read_recording`).
    montage : Montage
        Model montage (channels, rate, epoch window).
    synth : SynthSource | path | Recording
        Synthesized epochs per event, or a recording of the synthesized stream (same timeline and markers;
        e.g. the same XDF file with ``synth_stream`` naming the stream).
    stimulus_log : path | None
        CSV of markers (see :func:`read_stimulus_log`) used instead of the file's own markers.
    live_stream, markers_stream, synth_stream : str | None
        XDF stream selection.
    comparator : Comparator | None
        Comparator to feed (default: a new one with ``comparator_kw``).
    interpolation : str
        Missing-channel interpolation (see :func:`~vibe_rt.compare.channels.match_channels`).
    unit_override : str | None
        Unit of the live data when the file does not say (e.g. ``"uV"``).
    chunk_s : float
        Chunk length fed at a time (seconds), as an inlet would deliver.

    Returns
    -------
    session : Session
        ``session.comparator`` holds the metrics.
    """
    if isinstance(live, Recording):
        rec = live
    elif isinstance(live, (str, Path)):
        rec = read_recording(live, stream=live_stream, markers=markers_stream)
    else:  # an MNE Raw
        rec = recording_from_raw(live)
    if stimulus_log is not None:
        rec.markers = read_stimulus_log(stimulus_log)
    if not rec.markers:
        raise DataError(f"recording {rec.name!r} has no markers; add annotations or give --stimulus-log")
    ext = make_extractor(montage, rec.sfreq, rec.ch_names, rec.ch_types, rec.units, rec.positions,
                         interpolation=interpolation, unit_override=unit_override,
                         buffer_s=max(30.0, 4 * chunk_s))
    synth_rec = None
    if isinstance(synth, (str, Path, Recording)):
        synth_rec = synth if isinstance(synth, Recording) else read_recording(synth, stream=synth_stream)
        src: Any = make_extractor(montage, synth_rec.sfreq, synth_rec.ch_names, synth_rec.ch_types, synth_rec.units,
                                  synth_rec.positions)
    else:
        src = synth
    comp = comparator or Comparator(montage, **comparator_kw)
    session = Session(comp, ext, src)
    _feed(session, rec, synth_rec, chunk_s)
    logger.info("offline comparison of %s: %d events, %d lost", rec.name, comp.n_events, len(comp.lost))
    return session
