"""Your own recordings (any MNE-readable raw file or an XDF file): one reader, and epochs grouped by image.

:func:`read_recording` returns a :class:`Recording` (continuous data, timestamps, channel names/types/units/
positions and marker events); :func:`read_stimulus_log` reads a CSV/TSV log of what was shown. Both serve
:func:`load_recording` (training data, below) and the offline comparator (:mod:`vibe_rt.compare.offline`).

Supported inputs:

* raw files that :func:`mne.io.read_raw` opens (FIF, BrainVision ``.vhdr``, EDF, BDF, ...), with events from
  a trigger (stim) channel or from annotations (BrainVision/EDF markers);
* XDF files (:mod:`pyxdf`): one regularly sampled signal stream (EEG/MEG) plus an irregular marker stream
  (string or numeric markers) or a trigger channel inside the signal stream.

An optional **stimulus log** (CSV or TSV) maps events to images. Columns (case-insensitive):

* ``image`` (required): image file (relative paths are relative to ``image_root`` or the log's folder);
* ``event``: the trigger value / marker text of the presentation (BrainVision ``Stimulus/S  1`` matches
  ``1``);
* ``onset``: seconds from the recording's first sample (for XDF also LSL timestamps, recognised by being
  larger than the recording's duration).

Rows are paired with recording events in order when the sequences of event codes agree; otherwise by onset
(nearest event with the same code within ``onset_tolerance``). Without a log, each distinct event code is
one "image" (id ``event-<code>``).

Epochs are cut at the montage's rate (the recording is resampled) and window, baseline-corrected on the
prestimulus samples (as THINGS-EEG2), and grouped by image in order of first appearance. Images shown a
different number of times: ``ragged="min"`` (default) keeps the first ``min`` repetitions of every image,
``ragged="nan"`` keeps all and pads with NaN (``EpochsDataset.average`` and the noise ceiling ignore NaN).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._imports import import_optional_dependency
from .._logs import logger
from ..errors import DataError, require_path
from ..montage import SI_UNITS, Montage, get_montage
from ..units import parse_unit, unit_scale
from .dataset import EpochsDataset

_CODE_RE = re.compile(r"^(?:[A-Za-z ]+/)?[A-Za-z]?\s*(\d+)(?:\.0+)?(?::\s.*)?$")
#: A BrainVision stimulus or response marker that names its image, as vibe-rt writes them: ``Stimulus/S  3: a.png``.
_BV_IMAGE_RE = re.compile(r"^(?:(?:Stimulus|Response)/)?[SR]\s*(\d+):\s(.+)$")
_NOT_EVENTS = ("bad", "edge", "new segment")  # annotation prefixes that mark data, not stimuli
DATA_TYPES = ("eeg", "mag", "grad")
"""Channel types that carry M/EEG data (what the comparator and the epoch loader use)."""


def normalise_code(code: Any) -> str:
    """Canonical event code: ``"Stimulus/S  1"``, ``"S1"``, ``1``, ``"1.0"``, ``"Stimulus/S  1: a.png"`` -> ``"1"``;
    other text unchanged."""
    s = str(code).strip()
    m = _CODE_RE.match(s)
    return str(int(m.group(1))) if m else s


class Recording:
    """A continuous recording: samples, timestamps, channels and marker events.

    Read with :func:`read_recording` (files) or :meth:`Recording.from_raw` (an MNE Raw). The epoch loader
    (:func:`load_recording`) uses :attr:`raw`, :attr:`onsets` and :attr:`codes`; the comparator
    (:func:`vibe_rt.compare.compare_offline`) feeds :attr:`data`, :attr:`times` and :attr:`markers` chunk by
    chunk, as an LSL inlet would.

    Parameters
    ----------
    data : ndarray, shape (n_samples, n_channels) | None
        Samples in ``units`` (per channel); None when ``raw`` is given (read from it when first used).
    times : ndarray, shape (n_samples,)
        Sample times in seconds on the recording's own clock: from the first sample for files that MNE reads,
        LSL timestamps for XDF.
    sfreq : float
        Nominal sampling rate (Hz).
    ch_names, ch_types : list of str
        Channel names and MNE channel types (``eeg``, ``mag``, ``grad``, ``stim`` ...).
    units : list of (str | None)
        Unit of each channel (``"V"``, ``"microvolts"``, ...; None when the file does not say).
    positions : ndarray, shape (n_channels, 3) | None
        Metres (head coordinates), ``nan`` where unknown.
    markers : list of (float, object)
        ``(time, value)`` on the timeline of ``times``: annotation descriptions (str) or marker-stream samples
        (list of the stream's channel values).
    marker_channels : list of str | None
        Channel labels of the marker stream (MNE-LSL's one-hot annotation streams).
    name : str
        Name for messages (file name or stream name).
    path : Path | None
        The file.
    raw : mne.io.BaseRaw | None
        Preloaded MNE Raw (SI units) the data came from.
    stim_channel : str | None
        Trigger channel for :attr:`onsets` / :attr:`codes` (default: MNE's stim channels, else the markers).
    effective_sfreq : float | None
        Measured rate (XDF), used for :attr:`raw`.
    marker_source : {"annotations", "stream"}
        Where :attr:`markers` come from (annotations of ``BAD``/``EDGE``/``New Segment`` are not events).
    streams : list of str
        XDF: names of all streams in the file (for messages).
    """

    def __init__(self, data: np.ndarray | None, times: np.ndarray, sfreq: float, ch_names: Sequence[str],
                 ch_types: Sequence[str], units: Sequence[str | None], positions: np.ndarray | None = None,
                 markers: Sequence[tuple[float, Any]] = (), *, marker_channels: Sequence[str] | None = None,
                 name: str = "", path: str | os.PathLike | None = None, raw: Any = None,
                 stim_channel: str | None = None, effective_sfreq: float | None = None,
                 marker_source: str = "stream", streams: Sequence[str] = ()) -> None:
        if data is None and raw is None:
            raise DataError("a Recording needs data or an MNE Raw")
        self._data = data
        self.times = np.asarray(times, dtype=float)
        self.sfreq = float(sfreq)
        self.ch_names, self.ch_types, self.units = list(ch_names), list(ch_types), list(units)
        n = len(self.ch_names)
        self.positions = (np.full((n, 3), np.nan) if positions is None
                          else np.asarray(positions, dtype=float).reshape(n, 3))
        self.markers = list(markers)
        self.marker_channels = list(marker_channels) if marker_channels is not None else None
        self.path = Path(path) if path is not None else None
        self.name = name or (self.path.name if self.path is not None else "")
        self.stim_channel = stim_channel
        self.effective_sfreq = effective_sfreq
        self.marker_source = marker_source
        self.streams = list(streams)
        self._raw = raw
        self._events: tuple[np.ndarray, list[str]] | None = None

    # ------------------------------------------------------------------------------------- construction
    @classmethod
    def from_raw(cls, raw: Any, name: str = "", path: str | os.PathLike | None = None,
                 stim_channel: str | None = None) -> Recording:
        """A recording from a preloaded MNE Raw: all channels (SI units), annotations as markers."""
        types = raw.get_channel_types()
        pos = np.array([ch["loc"][:3] for ch in raw.info["chs"]], dtype=float).reshape(-1, 3)
        pos[~np.isfinite(pos).all(axis=1) | (np.abs(pos).sum(axis=1) == 0)] = np.nan
        ann = raw.annotations
        offset = raw.first_time if ann.orig_time is not None else 0.0
        markers = [(float(onset), str(desc)) for onset, desc in zip(ann.onset - offset, ann.description)]
        if not name:
            name = Path(path).name if path is not None else str(raw.filenames[0] if raw.filenames and
                                                                raw.filenames[0] else "raw")
        return cls(None, raw.times.copy(), float(raw.info["sfreq"]), raw.ch_names, types,
                   [SI_UNITS.get(t) for t in types], pos, markers, name=name, path=path, raw=raw,
                   stim_channel=stim_channel, marker_source="annotations")

    # ------------------------------------------------------------------------------------------ access
    @property
    def event_markers(self) -> list[tuple[float, Any]]:
        """:attr:`markers` without the annotations that mark data, not events (``BAD...`` such as the
        ``BAD_ACQ_SKIP`` that pads an EDF's last record, ``EDGE...``, BrainVision's ``New Segment``)."""
        if self.marker_source != "annotations":
            return list(self.markers)
        return [(t, v) for t, v in self.markers if not str(v).lower().startswith(_NOT_EVENTS)]

    @property
    def data(self) -> np.ndarray:
        """(n_samples, n_channels) samples in :attr:`units`."""
        if self._data is None:
            self._data = self._raw.get_data().T
        return self._data

    @property
    def t0(self) -> float:
        """Time of the first sample on the recording's own clock (LSL timestamp for XDF, else 0)."""
        return float(self.times[0]) if self.times.size else 0.0

    @property
    def scale(self) -> np.ndarray:
        """Per-channel factor to SI units (:func:`unit_scale`)."""
        return np.array([unit_scale(u, t) for u, t in zip(self.units, self.ch_types)])

    def pick_types(self, types: Sequence[str] = DATA_TYPES) -> Recording:
        """The channels of the given types only (default: the M/EEG data channels)."""
        idx = [i for i, t in enumerate(self.ch_types) if t in types]
        if self._data is None:
            data = self._raw.get_data(picks=idx).T if idx else np.zeros((self.times.size, 0))
        else:
            data = self.data[:, idx]
        return Recording(data, self.times, self.sfreq, [self.ch_names[i] for i in idx],
                         [self.ch_types[i] for i in idx], [self.units[i] for i in idx], self.positions[idx],
                         self.markers, marker_channels=self.marker_channels, name=self.name, path=self.path,
                         stim_channel=self.stim_channel, effective_sfreq=self.effective_sfreq,
                         marker_source=self.marker_source, streams=self.streams)

    @property
    def raw(self) -> Any:
        """The data as a preloaded MNE Raw in SI units (built from the stream for XDF, at its measured rate)."""
        if self._raw is None:
            self._raw = self._to_raw()
        return self._raw

    def _to_raw(self) -> Any:
        import mne

        data = np.array(self.data, dtype=np.float64).T  # (n_channels, n_samples), a copy scaled below
        for i, (lab, unit, typ) in enumerate(zip(self.ch_names, self.units, self.ch_types)):
            if typ not in DATA_TYPES:
                continue
            default = 1e-6 if typ == "eeg" else 1e-15
            key = (unit or "").strip()
            scale = parse_unit(key) if key else default
            if scale is None:
                logger.warning("%s: unknown unit %r of channel %s; assuming %g", self.path or self.name, unit, lab,
                               default)
                scale = default
            data[i] *= scale
        info = mne.create_info(self.ch_names, self.effective_sfreq or self.sfreq, self.ch_types)
        for ch, pos in zip(info["chs"], self.positions):
            if np.all(np.isfinite(pos)):
                ch["loc"][:3] = pos
        return mne.io.RawArray(data, info, verbose="error")

    # ------------------------------------------------------------------------------------------ events
    @property
    def onsets(self) -> np.ndarray:
        """Event times in seconds from the first sample (trigger channel, else the markers)."""
        return self._get_events()[0]

    @property
    def codes(self) -> list[str]:
        """Normalised event codes (:func:`normalise_code`), one per onset."""
        return self._get_events()[1]

    def _get_events(self) -> tuple[np.ndarray, list[str]]:
        if self._events is None:
            self._events = self._find_events()
        return self._events

    def _find_events(self) -> tuple[np.ndarray, list[str]]:
        where = self.path or self.name
        if self.stim_channel is not None and self.stim_channel not in self.ch_names:
            raise DataError(f"{where}: no channel {self.stim_channel!r}; channels: {', '.join(self.ch_names[:40])}")
        if self.stim_channel is not None or "stim" in self.ch_types:
            return _stim_events(self.raw, self.stim_channel)
        keep = self.event_markers
        if self.marker_source == "annotations":
            if not keep:
                raise DataError(f"{where}: no events found: no stim channel and no annotations; give "
                                "stim_channel= or record a marker/trigger")
        else:
            if not keep:
                raise DataError(f"{where}: no marker stream with events and no trigger channel; streams: "
                                f"{self.streams}")
        onsets = np.array([t for t, _ in keep], dtype=float) - self.t0
        codes = [normalise_code(v[0] if isinstance(v, (list, tuple, np.ndarray)) else v) for _, v in keep]
        return onsets, codes


def _stim_events(raw: Any, stim_channel: str | None) -> tuple[np.ndarray, list[str]]:
    import mne

    stims = [raw.ch_names[i] for i in mne.pick_types(raw.info, stim=True, exclude=[])]
    ev = mne.find_events(raw, stim_channel=stim_channel or stims, shortest_event=1, initial_event=True,
                         verbose="error")
    return (ev[:, 0] - raw.first_samp) / raw.info["sfreq"], [normalise_code(c) for c in ev[:, 2]]


# ------------------------------------------------------------------------------------------ reading
def read_recording(path: str | os.PathLike, *, stim_channel: str | None = None,
                   signal_stream: str | None = None, marker_stream: str | None = None) -> Recording:
    """Read a raw file or an XDF file with its channels and markers.

    Parameters
    ----------
    path : path-like
        FIF (also ``.fif.gz``), BrainVision (``.vhdr``), EDF, BDF or anything :func:`mne.io.read_raw` reads
        (annotations are the markers); or ``.xdf`` (a signal stream and a marker stream).
    stim_channel : str | None
        Trigger channel for :attr:`Recording.onsets`; default: MNE's stim channels if any, else annotations
        (raw files) or the marker stream (XDF).
    signal_stream, marker_stream : str | None
        XDF only: name, type or source_id (case-insensitive) of the signal and marker streams; default the
        EEG/MEG stream with most channels and the first stream of type ``Markers`` (else any marker stream).
    """
    path = require_path(path, "file", "recording", "give a FIF/BrainVision/EDF/BDF/XDF file")
    if path.suffix.lower() == ".xdf":
        return _read_xdf(path, stim_channel, signal_stream, marker_stream)
    import mne

    try:
        raw = mne.io.read_raw(path, preload=True, verbose="error")
    except Exception as err:  # noqa: BLE001
        raise DataError(f"{path}: MNE cannot read this file ({type(err).__name__}: {err})") from err
    return Recording.from_raw(raw, path=path, stim_channel=stim_channel)


def _xdf_channels(stream: dict, stim_channel: str | None) -> tuple[list[str], list[str], list[str | None],
                                                                  np.ndarray]:
    n = int(stream["info"]["channel_count"][0])
    kind = str(stream["info"]["type"][0]).upper()
    labels, types = [f"ch{i + 1}" for i in range(n)], [""] * n
    units: list[str | None] = [None] * n
    pos = np.full((n, 3), np.nan)
    try:
        chans = stream["info"]["desc"][0]["channels"][0]["channel"]
    except (KeyError, IndexError, TypeError):
        chans = []
    for i, ch in enumerate(chans[:n]):
        labels[i] = str((ch.get("label") or [labels[i]])[0])
        units[i] = (ch.get("unit") or [None])[0] or None
        types[i] = str((ch.get("type") or [""])[0] or "").lower()
        try:
            loc = ch["location"][0]
            pos[i] = [float(loc[a][0]) / 1000.0 for a in ("X", "Y", "Z")]  # LSL: millimetres
        except (KeyError, IndexError, TypeError, ValueError):
            pass
    ch_types = []
    for lab, t in zip(labels, types):
        if lab == stim_channel or t in ("stim", "trigger", "markers"):
            ch_types.append("stim")
        elif t == "grad":
            ch_types.append("grad")
        else:
            ch_types.append("mag" if (t in ("mag", "meg") or (not t and kind == "MEG")) else "eeg")
    return labels, ch_types, units, pos


def _stream_matches(stream: dict, wanted: str) -> bool:
    info = stream["info"]
    keys = (info["name"][0], info["type"][0], (info.get("source_id") or [""])[0])
    return wanted.lower() in (str(k).lower() for k in keys)


def _read_xdf(path: Path, stim_channel: str | None, signal_stream: str | None, marker_stream: str | None
              ) -> Recording:
    pyxdf = import_optional_dependency("pyxdf")
    try:
        streams, _ = pyxdf.load_xdf(str(path))
    except Exception as err:  # noqa: BLE001
        raise DataError(f"{path}: pyxdf cannot read this file ({type(err).__name__}: {err})") from err

    def name(s: dict) -> str:
        return str(s["info"]["name"][0])

    def rate(s: dict) -> float:
        return float(s["info"]["nominal_srate"][0])

    names = [name(s) for s in streams]
    signals = [s for s in streams if rate(s) > 0 and len(s["time_stamps"])]
    if signal_stream is not None:
        signals = [s for s in signals if _stream_matches(s, signal_stream)]
    if not signals:
        named = f" named {signal_stream!r}" if signal_stream else ""
        raise DataError(f"{path}: no regularly sampled signal stream{named}; streams: {names}")
    typed = [s for s in signals if str(s["info"]["type"][0]).upper() in ("EEG", "MEG")]
    sig = max(typed or signals, key=lambda s: int(s["info"]["channel_count"][0]))
    labels, ch_types, units, pos = _xdf_channels(sig, stim_channel)
    markers = [s for s in streams if rate(s) == 0 and len(s["time_stamps"])]
    if marker_stream is not None:
        markers = [s for s in markers if _stream_matches(s, marker_stream)]
    events: list[tuple[float, Any]] = []
    mnames = None
    if markers:
        mk = next((s for s in markers if str(s["info"]["type"][0]).lower() == "markers"), markers[0])
        try:
            mnames = [str(c["label"][0]) for c in mk["info"]["desc"][0]["channels"][0]["channel"]]
        except (KeyError, IndexError, TypeError):
            mnames = None
        events = [(float(t), list(v)) for t, v in zip(mk["time_stamps"], mk["time_series"])]
    effective = float(sig["info"].get("effective_srate") or 0) or None
    return Recording(np.asarray(sig["time_series"], dtype=np.float64), np.asarray(sig["time_stamps"], float),
                     rate(sig), labels, ch_types, units, pos, events, marker_channels=mnames, name=name(sig),
                     path=path, stim_channel=stim_channel, effective_sfreq=effective, marker_source="stream",
                     streams=names)


def split_description(text: str) -> tuple[int, str] | None:
    """``(code, image)`` of a BrainVision marker description that names its image (``Stimulus/S  3: a.png``, as
    ``vibe-rt stream --record`` writes them), else None."""
    m = _BV_IMAGE_RE.match(str(text).strip())
    return (int(m.group(1)), m.group(2).strip()) if m else None


def events_sidecar(path: str | os.PathLike) -> Path | None:
    """The BIDS-style events sidecar of a recording, if there is one: ``<stem>_events.tsv`` (what ``vibe-rt stream
    --record`` writes), else BIDS's ``<stem without its _eeg/_meg/_ieeg suffix>_events.tsv``."""
    path = Path(path)
    stem = path.name[: -len(".fif.gz")] if path.name.lower().endswith(".fif.gz") else path.stem
    candidates = [path.with_name(f"{stem}_events.tsv")]
    base, _, suffix = stem.rpartition("_")
    if base and suffix.lower() in ("eeg", "meg", "ieeg", "raw"):
        candidates.append(path.with_name(f"{base}_events.tsv"))
    return next((c for c in candidates if c.is_file()), None)


#: Sidecar statuses whose response is in the synthesized signal (see :func:`read_events_sidecar`).
_IN_SIGNAL = ("ok", "clipped", "n/a", "")


def read_events_sidecar(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The stimulus events of a BIDS-style events file: rows with ``onset`` (seconds from the first sample) and,
    from the optional columns, ``trial_type``, ``image``, ``value`` (the code), ``status`` and ``duration``.

    Rows that are not stimuli (``trial_type`` ``response`` or ``comment``) and stimuli whose response was dropped
    (``status`` other than ``ok``/``clipped``/``n/a``) are left out. Each row is ``{"onset": float, "image": str
    | None, "code": int | None, "columns": dict}`` (``n/a`` cells become None).
    """
    path = require_path(path, "file", "events file", "give a BIDS-style _events.tsv")
    lines = [x for x in path.read_text(encoding="utf-8-sig").splitlines() if x.strip()]
    reader = csv.DictReader(lines, delimiter="\t")
    if "onset" not in (reader.fieldnames or []):
        raise DataError(f"{path}: an events file needs an 'onset' column (seconds from the first sample); found "
                        f"{reader.fieldnames}")
    rows = []
    for n, row in enumerate(reader, start=2):
        cells = {k: (None if v is None or v.strip() in ("", "n/a") else v.strip()) for k, v in row.items() if k}
        if (cells.get("trial_type") or "stimulus").lower() != "stimulus" or \
                (cells.get("status") or "").lower() not in _IN_SIGNAL:
            continue
        try:
            onset = float(cells["onset"])  # type: ignore[arg-type]
            value = cells.get("value")
            code = int(float(value)) if value is not None else None
        except (TypeError, ValueError) as err:
            raise DataError(f"{path}, line {n}: {err}; onset must be seconds and value a number (or n/a)") from err
        rows.append({"onset": onset, "image": cells.get("image"), "code": code, "columns": cells})
    return rows


def read_stimulus_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a CSV/TSV stimulus log.

    Each row is a dict with ``image`` (str; column ``image``, else ``key`` or ``image_id``), ``event``
    (normalised code; column ``event``, else ``code`` or ``trigger``; None without one), ``onset`` (float, or
    None; column ``onset``, else ``time``) and ``columns`` (all columns of the row, as read). Lines starting
    with ``#`` are comments: a ``vibe-rt experiment rsvp`` log reads as it is (its ``code``
    column matches the trigger codes of the recording; its onsets are on the LSL clock, so they are not used).
    """
    path = require_path(path, "file", "stimulus log", "give a CSV/TSV file with an image column")
    lines = [x for x in path.read_text(encoding="utf-8-sig").splitlines() if not x.lstrip().startswith("#")]
    delim = "\t" if path.suffix.lower() == ".tsv" or (lines and lines[0].count("\t")) else ","
    reader = csv.DictReader(lines, delimiter=delim)
    fields = {f.strip().lower(): f for f in (reader.fieldnames or [])}
    icol = next((fields[k] for k in ("image", "key", "image_id") if k in fields), None)
    tcol = next((fields[k] for k in ("onset", "time") if k in fields), None)
    ecol = next((fields[k] for k in ("event", "code", "trigger") if k in fields), None)
    if icol is None:
        raise DataError(f"{path}: a stimulus log needs an 'image' column (and 'event' and/or 'onset'); "
                        f"found columns {list(fields)}")
    rows = []
    for n, row in enumerate(reader, start=2):
        try:
            onset = row.get(tcol, "") if tcol is not None else ""
            rows.append({
                "image": row[icol].strip(),
                "event": normalise_code(row[ecol]) if ecol is not None else None,
                "onset": float(onset) if onset not in (None, "") else None,
                "columns": dict(row),
            })
        except (ValueError, AttributeError) as err:
            raise DataError(f"{path}, line {n}: {err}") from err
    if not rows:
        raise DataError(f"{path}: the stimulus log has no rows")
    return rows


# ------------------------------------------------------------------------------------------ matching
def _match(rec: Recording, rows: list[dict[str, Any]] | None, tolerance: float, log_path: Path | None
           ) -> tuple[np.ndarray, list[str]]:
    """Onsets (s) and image keys of the presentations to epoch."""
    if rows is None:
        return rec.onsets, [f"event-{c}" for c in rec.codes]
    codes = np.array(rec.codes, dtype=object)
    onsets = rec.onsets
    has_event = rows[0]["event"] is not None
    has_onset = all(r["onset"] is not None for r in rows)
    log_codes = [r["event"] for r in rows]
    if has_event:
        keep = np.isin(codes, list(set(log_codes)))
        codes, onsets = codes[keep], onsets[keep]
        if list(codes) == log_codes:
            return onsets, [r["image"] for r in rows]
    elif len(onsets) == len(rows) and not has_onset:
        return onsets, [r["image"] for r in rows]
    if not has_onset:
        raise DataError(f"{log_path}: {len(rows)} log rows but {len(onsets)} matching events in {rec.path} "
                        "and no 'onset' column to pair them by time; fix the log or add onsets")
    log_on = np.array([r["onset"] for r in rows])
    duration = rec.raw.times[-1] if len(rec.raw.times) else 0.0
    if rec.t0 and np.all(log_on > duration + 1.0):
        log_on = log_on - rec.t0  # LSL timestamps
    out_on, out_img, unmatched = [], [], 0
    for r, t in zip(rows, log_on):
        cand = np.flatnonzero(codes == r["event"]) if has_event else np.arange(len(onsets))
        if len(cand) == 0:
            unmatched += 1
            continue
        j = cand[np.argmin(np.abs(onsets[cand] - t))]
        if abs(onsets[j] - t) > tolerance:
            unmatched += 1
            continue
        out_on.append(onsets[j])
        out_img.append(r["image"])
    if unmatched:
        logger.warning("%s: %d of %d log rows have no event within %.3f s in %s", log_path, unmatched, len(rows),
                       tolerance, rec.path)
    if not out_on:
        raise DataError(f"{log_path}: no log row matches an event of {rec.path} within {tolerance} s; check the "
                        "onset column's time base (seconds from the first sample)")
    return np.array(out_on), out_img


def _pick_channels(raw: Any, montage: Montage | None, path: Path | None) -> tuple[list[str], Montage]:
    import mne

    if montage is None:
        picks = mne.pick_types(raw.info, meg=True, eeg=True, ref_meg=False, exclude="bads")
        if len(picks) == 0:
            raise DataError(f"{path}: no EEG or MEG channels")
        names = [raw.ch_names[i] for i in picks]
        pos = np.array([raw.info["chs"][i]["loc"][:3] for i in picks], dtype=float)
        pos = np.nan_to_num(pos)
        types = tuple(mne.channel_type(raw.info, i) for i in picks)
        n = int(round(raw.info["sfreq"]))
        stem = path.stem if path is not None else "raw"  # a Recording made from an MNE Raw may have no file
        return names, Montage(f"recording-{stem}", tuple(names), types, pos, float(raw.info["sfreq"]), -0.2, n,
                              positions_approximate=not np.any(pos))
    lower = {c.lower(): c for c in raw.ch_names}
    missing = [c for c in montage.ch_names if c.lower() not in lower]
    if missing:
        raise DataError(f"{path}: channels {missing} of montage {montage.name!r} are not in the recording "
                        f"(it has {', '.join(raw.ch_names[:40])}); pick another montage or montage=None")
    return [lower[c.lower()] for c in montage.ch_names], montage


def load_recording(
    path: str | os.PathLike,
    log: str | os.PathLike | None = None,
    *,
    montage: Montage | str | None = "things-eeg2",
    split: str = "train",
    image_root: str | os.PathLike | None = None,
    stim_channel: str | None = None,
    signal_stream: str | None = None,
    marker_stream: str | None = None,
    ragged: str = "min",
    onset_tolerance: float = 0.05,
    events: Sequence[str] | None = None,
) -> EpochsDataset:
    """Epochs of a recording, grouped by image.

    Parameters
    ----------
    path : path-like
        Raw file (FIF, BrainVision, EDF, BDF, ...) or XDF file.
    log : path-like | None
        Stimulus log (CSV/TSV with ``image`` and ``event`` and/or ``onset``); see the module docstring.
    montage : Montage | str | None
        Channels (matched case-insensitively), model rate and window; None uses the recording's EEG/MEG
        channels, its own rate and a -0.2..0.8 s window.
    split : str
        ``"train"`` or ``"test"``.
    image_root : path-like | None
        Base of relative image paths in the log (default: the log's folder).
    stim_channel, signal_stream, marker_stream : str | None
        See :func:`read_recording`.
    ragged : str
        ``"min"`` or ``"nan"``, for images with different numbers of repetitions.
    onset_tolerance : float
        Seconds, for pairing log rows with events by onset.
    events : sequence of str | None
        Without a log: only these event codes.

    Returns
    -------
    EpochsDataset
        (n_images, n_reps, n_channels, n_times) in SI units.
    """
    import mne

    if ragged not in ("min", "nan"):
        raise DataError(f"ragged must be 'min' or 'nan', got {ragged!r}")
    rec = read_recording(path, stim_channel=stim_channel, signal_stream=signal_stream,
                         marker_stream=marker_stream)
    log_path = Path(log) if log is not None else None
    rows = read_stimulus_log(log_path) if log_path is not None else None
    onsets, keys = _match(rec, rows, onset_tolerance, log_path)
    if rows is None and events is not None:
        allowed = {normalise_code(e) for e in events}
        sel = [i for i, k in enumerate(keys) if k[len("event-"):] in allowed]
        onsets, keys = onsets[sel], [keys[i] for i in sel]
    if len(onsets) == 0:
        raise DataError(f"{rec.path}: no events to epoch")
    montage = get_montage(montage) if isinstance(montage, str) else montage
    names, montage = _pick_channels(rec.raw, montage, rec.path)
    raw = rec.raw.copy().pick(names)
    if abs(raw.info["sfreq"] - montage.sfreq) > 1e-6:
        raw.resample(montage.sfreq, verbose="error")
    sf = raw.info["sfreq"]
    ev = np.c_[np.round(onsets * sf).astype(int) + raw.first_samp, np.zeros(len(onsets), int),
               np.arange(1, len(onsets) + 1)]
    tmin = montage.tmin
    tmax = montage.tmin + (montage.n_times - 1) / montage.sfreq
    ep = mne.Epochs(raw, ev, tmin=tmin, tmax=tmax, baseline=(None, 0) if tmin < 0 else None, preload=True,
                    reject=None, flat=None, reject_by_annotation=False, event_repeated="drop", verbose="error")
    data = ep.get_data(copy=False)[..., : montage.n_times]
    if data.shape[-1] != montage.n_times:
        raise DataError(f"{rec.path}: epochs have {data.shape[-1]} samples, expected {montage.n_times}")
    kept = ep.events[:, 2] - 1
    if len(kept) < len(onsets):
        logger.warning("%s: %d of %d events too close to the recording's edges were dropped", rec.path,
                       len(onsets) - len(kept), len(onsets))
    order: dict[str, list[int]] = {}
    for row, k in enumerate(kept):
        order.setdefault(keys[k], []).append(row)
    counts = [len(v) for v in order.values()]
    reps = min(counts) if ragged == "min" else max(counts)
    if ragged == "min" and max(counts) != reps:
        logger.info("%s: images shown %d..%d times; keeping the first %d repetitions of each (ragged='min')",
                    rec.path, min(counts), max(counts), reps)
    out = np.full((len(order), reps, len(names), montage.n_times), np.nan, np.float32)
    for i, rows_i in enumerate(order.values()):
        take = rows_i[:reps]
        out[i, : len(take)] = data[take]
    base = Path(image_root) if image_root is not None else (log_path.parent if log_path is not None else None)
    paths: list = []
    for k in order:
        if rows is None or base is None or re.match(r"^[a-z]+://", k):
            paths.append(k)
        else:
            p = Path(k)
            paths.append(p if p.is_absolute() else base / p)
    unit = montage.unit
    return EpochsDataset(out, montage, paths, split, unit, {"source": str(rec.path), "log": str(log_path)
                                                             if log_path else None, "ragged": ragged})
