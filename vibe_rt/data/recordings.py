"""Epochs grouped by image from your own recordings: any MNE-readable raw file or an XDF file.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._imports import import_optional_dependency
from .._logs import logger
from ..errors import DataError
from ..montage import Montage, get_montage
from .dataset import EpochsDataset

_CODE_RE = re.compile(r"^(?:[A-Za-z ]+/)?[A-Za-z]?\s*(\d+)(?:\.0+)?$")
_UNIT_SCALE = {"microvolts": 1e-6, "microvolt": 1e-6, "uv": 1e-6, "µv": 1e-6, "μv": 1e-6, "millivolts": 1e-3,
               "mv": 1e-3, "volts": 1.0, "volt": 1.0, "v": 1.0, "nanovolts": 1e-9, "nv": 1e-9,
               "femtotesla": 1e-15, "ft": 1e-15, "picotesla": 1e-12, "pt": 1e-12, "tesla": 1.0, "t": 1.0}


def normalise_code(code: Any) -> str:
    """Canonical event code: ``"Stimulus/S  1"``, ``"S1"``, ``1``, ``"1.0"`` -> ``"1"``; other text unchanged."""
    s = str(code).strip()
    m = _CODE_RE.match(s)
    return str(int(m.group(1))) if m else s


@dataclass
class Recording:
    """A continuous recording with its events.

    Attributes
    ----------
    raw : mne.io.BaseRaw
        Preloaded data (SI units).
    onsets : ndarray, shape (n_events,)
        Event times in seconds from the first sample.
    codes : list of str
        Normalised event codes (:func:`normalise_code`).
    t0 : float
        Time of the first sample on the recording's own clock (LSL timestamp for XDF, else 0).
    path : Path
    """

    raw: Any
    onsets: np.ndarray
    codes: list[str]
    t0: float
    path: Path


# ------------------------------------------------------------------------------------------ reading
def read_recording(path: str | os.PathLike, *, stim_channel: str | None = None,
                   signal_stream: str | None = None, marker_stream: str | None = None) -> Recording:
    """Read a raw file or an XDF file and its events.

    Parameters
    ----------
    path : path-like
        FIF, BrainVision (``.vhdr``), EDF, BDF or anything :func:`mne.io.read_raw` reads; or ``.xdf``.
    stim_channel : str | None
        Trigger channel; default: MNE's stim channels if any, else annotations (raw files) or the marker
        stream (XDF).
    signal_stream, marker_stream : str | None
        XDF stream names; default the EEG/MEG stream with most channels and the first marker stream.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"recording {path} does not exist")
    if path.suffix.lower() == ".xdf":
        return _read_xdf(path, stim_channel, signal_stream, marker_stream)
    import mne

    try:
        raw = mne.io.read_raw(path, preload=True, verbose="error")
    except Exception as err:  # noqa: BLE001
        raise DataError(f"{path}: MNE cannot read this file ({type(err).__name__}: {err})") from err
    onsets, codes = _events_from_raw(raw, stim_channel, path)
    return Recording(raw, onsets, codes, 0.0, path)


def _events_from_raw(raw: Any, stim_channel: str | None, path: Path) -> tuple[np.ndarray, list[str]]:
    import mne

    stims = [raw.ch_names[i] for i in mne.pick_types(raw.info, stim=True, exclude=[])]
    if stim_channel is not None and stim_channel not in raw.ch_names:
        raise DataError(f"{path}: no channel {stim_channel!r}; channels: {', '.join(raw.ch_names[:40])}")
    if stim_channel is not None or stims:
        ev = mne.find_events(raw, stim_channel=stim_channel or stims, shortest_event=1, initial_event=True,
                             verbose="error")
        return (ev[:, 0] - raw.first_samp) / raw.info["sfreq"], [normalise_code(c) for c in ev[:, 2]]
    if len(raw.annotations):
        keep = [i for i, d in enumerate(raw.annotations.description)
                if not str(d).lower().startswith(("bad", "edge", "new segment"))]
        onsets = np.asarray(raw.annotations.onset)[keep] - (raw.first_time if raw.annotations.orig_time else 0.0)
        return onsets, [normalise_code(raw.annotations.description[i]) for i in keep]
    raise DataError(f"{path}: no events found: no stim channel and no annotations; give stim_channel= "
                    "or record a marker/trigger")


def _xdf_channels(stream: dict) -> tuple[list[str], list[str], list[str]]:
    n = int(stream["info"]["channel_count"][0])
    labels, units, types = [f"ch{i + 1}" for i in range(n)], [""] * n, [""] * n
    try:
        chans = stream["info"]["desc"][0]["channels"][0]["channel"]
        for i, ch in enumerate(chans[:n]):
            labels[i] = str((ch.get("label") or [labels[i]])[0])
            units[i] = str((ch.get("unit") or [""])[0] or "")
            types[i] = str((ch.get("type") or [""])[0] or "")
    except (KeyError, IndexError, TypeError):
        pass
    return labels, units, types


def _read_xdf(path: Path, stim_channel: str | None, signal_stream: str | None, marker_stream: str | None
              ) -> Recording:
    import mne

    pyxdf = import_optional_dependency("pyxdf")
    try:
        streams, _ = pyxdf.load_xdf(str(path))
    except Exception as err:  # noqa: BLE001
        raise DataError(f"{path}: pyxdf cannot read this file ({type(err).__name__}: {err})") from err

    def name(s: dict) -> str:
        return str(s["info"]["name"][0])

    def rate(s: dict) -> float:
        return float(s["info"]["nominal_srate"][0])

    signals = [s for s in streams if rate(s) > 0 and len(s["time_stamps"])]
    markers = [s for s in streams if rate(s) == 0]
    if signal_stream is not None:
        signals = [s for s in signals if name(s) == signal_stream]
    if not signals:
        named = f" named {signal_stream!r}" if signal_stream else ""
        raise DataError(f"{path}: no regularly sampled signal stream{named}; streams: {[name(s) for s in streams]}")
    typed = [s for s in signals if str(s["info"]["type"][0]).upper() in ("EEG", "MEG")]
    sig = max(typed or signals, key=lambda s: int(s["info"]["channel_count"][0]))
    labels, units, types = _xdf_channels(sig)
    kind = str(sig["info"]["type"][0]).upper()
    data = np.asarray(sig["time_series"], dtype=np.float64)
    ts = np.asarray(sig["time_stamps"], dtype=np.float64)
    sfreq = float(sig["info"].get("effective_srate") or 0) or rate(sig)
    ch_types = []
    for i, (lab, unit, typ) in enumerate(zip(labels, units, types)):
        t = typ.lower()
        if lab == stim_channel or t in ("stim", "trigger", "markers"):
            ch_types.append("stim")
            continue
        ch_types.append("mag" if (t in ("mag", "meg") or (not t and kind == "MEG")) else "eeg")
        key = unit.strip().lower()
        default = 1e-6 if ch_types[-1] == "eeg" else 1e-15
        scale = _UNIT_SCALE.get(key, default)
        if key and key not in _UNIT_SCALE:
            logger.warning("%s: unknown unit %r of channel %s; assuming %g", path, unit, lab, default)
        data[:, i] *= scale
    info = mne.create_info(labels, sfreq, ch_types)
    raw = mne.io.RawArray(data.T, info, verbose="error")
    t0 = float(ts[0])
    if "stim" in ch_types:
        onsets, codes = _events_from_raw(raw, stim_channel, path)
    else:
        if marker_stream is not None:
            markers = [s for s in markers if name(s) == marker_stream]
        markers = [s for s in markers if len(s["time_stamps"])]
        if not markers:
            raise DataError(f"{path}: no marker stream{f' named {marker_stream!r}' if marker_stream else ''} with "
                            f"events and no trigger channel; streams: {[name(s) for s in streams]}")
        mk = next((s for s in markers if str(s["info"]["type"][0]).lower() == "markers"), markers[0])
        values = mk["time_series"]
        codes = [normalise_code(v[0] if isinstance(v, (list, tuple, np.ndarray)) else v) for v in values]
        onsets = np.asarray(mk["time_stamps"], dtype=float) - t0
    return Recording(raw, np.asarray(onsets, float), list(codes), t0, path)


def read_stimulus_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a CSV/TSV stimulus log as dicts with ``image`` (str), ``event`` (str | None), ``onset``
    (float | None)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"stimulus log {path} does not exist")
    text = path.read_text(encoding="utf-8-sig")
    delim = "\t" if path.suffix.lower() == ".tsv" or text.split("\n", 1)[0].count("\t") else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delim)
    fields = {f.strip().lower(): f for f in (reader.fieldnames or [])}
    if "image" not in fields:
        raise DataError(f"{path}: a stimulus log needs an 'image' column (and 'event' and/or 'onset'); "
                        f"found columns {list(fields)}")
    rows = []
    for n, row in enumerate(reader, start=2):
        try:
            onset = row.get(fields.get("onset", ""), "")
            rows.append({
                "image": row[fields["image"]].strip(),
                "event": normalise_code(row[fields["event"]]) if "event" in fields else None,
                "onset": float(onset) if onset not in (None, "") else None,
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


def _pick_channels(raw: Any, montage: Montage | None, path: Path) -> tuple[list[str], Montage]:
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
        return names, Montage(f"recording-{path.stem}", tuple(names), types, pos, float(raw.info["sfreq"]), -0.2,
                              n, positions_approximate=not np.any(pos))
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
    unit = montage.units[0] if len(set(montage.units)) == 1 else "SI"
    return EpochsDataset(out, montage, paths, split, unit, {"source": str(rec.path), "log": str(log_path)
                                                             if log_path else None, "ragged": ragged})
