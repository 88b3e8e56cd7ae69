"""Crash-safe recording of the streamed signal and markers as BrainVision (.vhdr/.vmrk/.eeg) plus a BIDS-style
events sidecar (``<stem>_events.tsv``).

The header (.vhdr), the marker file header (.vmrk) and the sidecar's header line are written when recording
starts; each pushed chunk is appended to the .eeg file (float32, multiplexed, in the streamed units) and flushed,
and each marker is appended to the .vmrk and as a row to the sidecar, both flushed, once the data it points into
is written. The files are therefore readable by :func:`mne.io.read_raw_brainvision` at any moment: after a
normal stop, after Ctrl-C, and after the process was killed (everything pushed before the kill is there, as the
OS keeps flushed data even when the process dies).

The recorder fails alone: when a write fails (disk full, device removed), it cuts the files back to their last
complete sample, marker line and row, closes them, logs one line naming the cause, and ignores what comes
after; the stream goes on. :attr:`BrainVisionWriter.failure` says what happened. A recording never replaces an
earlier one unless asked (``overwrite=True``).

Markers: responses in the signal (status ``ok`` or ``clipped``) are ``Stimulus`` markers ``S<code>``, followed by
``: <image>`` when the onset names an image (MNE annotation ``Stimulus/S  1: img003.png``; see
:func:`split_description`); onsets whose response was dropped are ``Comment`` markers naming the status
(``Comment/dropped-late`` ...). A marker whose sample was never written (the stream stopped first) is left out.

The sidecar (:data:`EVENTS_COLUMNS`, tab-separated, ``n/a`` where a value is missing) has one row per marker:
``onset`` (seconds from the first sample, the marker's exact time, not rounded to a sample), ``duration``
(seconds the image was shown, where known), ``trial_type`` (``stimulus``, ``response`` or ``comment``),
``image``, ``value`` (the numeric code) and ``status`` (the JSON marker's). ``vibe-rt compare`` and ``vibe-rt
calibrate`` read it in preference to the .vmrk (:func:`vibe_rt.data.recordings.read_events_sidecar`).
EEG is stored in microvolts (MNE converts to volts); MEG channels are stored in tesla with unit ``T`` (MNE does
not know MEG in BrainVision files and reads them as misc channels). An emulated device's recording stores its
ADC codes instead, as BrainVision Recorder does: 32-bit integers (``INT_32``) with the device's quantization step
as each channel's "Resolution in unit" (value = code x resolution).
"""

from __future__ import annotations

import datetime as _dt
import heapq
import os
import threading
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from .._logs import logger
from ..errors import ConfigError

_BV_UNITS = {"microvolts": "µV", "tesla": "T", "tesla/meter": "T/m", "volts": "V"}
#: Columns of the events sidecar, in order.
EVENTS_COLUMNS = ("onset", "duration", "trial_type", "image", "value", "status")


def recording_files(path: str | os.PathLike) -> tuple[Path, Path, Path, Path]:
    """The ``.vhdr``, ``.vmrk``, ``.eeg`` and ``_events.tsv`` files of a recording named ``path`` (``.vhdr`` or no
    suffix)."""
    path = Path(path)
    if path.suffix.lower() not in ("", ".vhdr"):
        raise ConfigError(f"--record writes BrainVision files: give a name ending in .vhdr, not {path.name}")
    stem = path.with_suffix("")
    return (stem.with_suffix(".vhdr"), stem.with_suffix(".vmrk"), stem.with_suffix(".eeg"),
            stem.with_name(stem.name + "_events.tsv"))


def marker_description(description: str, marker: dict | None) -> str:
    """The .vmrk description of a marker: ``description`` (``S  1``), with ``: <image>`` appended when the JSON
    marker names an image (commas, which separate .vmrk fields, become ``;``)."""
    image = (marker or {}).get("image")
    text = f"{description}: {image}" if image not in (None, "") and description[:1] in "SR" else description
    return text.replace(",", ";")


def _tsv_value(value: object) -> str:
    """One sidecar cell: ``n/a`` for a missing value, tabs and line breaks replaced by spaces."""
    if value is None or value == "":
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value == value else "n/a"
    return " ".join(str(value).split())


def events_row(onset_s: float, kind: str, marker: dict | None, code: int | None) -> str:
    """One sidecar line (see the module docstring) for a marker ``onset_s`` seconds after the first sample."""
    marker = marker or {}
    duration = marker.get("duration")
    cells = (f"{onset_s:.6f}", _tsv_value(duration if isinstance(duration, (int, float)) else None), kind.lower(),
             _tsv_value(marker.get("image")), _tsv_value(code if code is not None else marker.get("code")),
             _tsv_value(marker.get("status")))
    return "\t".join(cells) + "\n"


class BrainVisionWriter:
    """Appends signal chunks and markers to a BrainVision recording, flushed as they come.

    Parameters
    ----------
    path : path-like
        ``.vhdr`` file name (the .vmrk and .eeg files go beside it).
    ch_names : list of str
        Channel names.
    units : list of str
        Unit words per channel (``"microvolts"``, ``"tesla"``, ...).
    srate : float
        Sampling rate in Hz.
    t0 : float
        LSL time of the first sample (for marker positions).
    overwrite : bool
        Replace an existing recording of that name (default: :class:`ConfigError` if any of its files exists).
    resolution : float | None
        Quantization step of the data in its unit (an emulated device's): the data are stored as integer
        multiples of it (``INT_32``); None: stored as they are (``IEEE_FLOAT_32``, resolution 1).
    """

    def __init__(self, path: str | Path, ch_names: list[str], units: list[str], srate: float, t0: float, *,
                 overwrite: bool = False, resolution: float | None = None) -> None:
        self.vhdr, self.vmrk, self.eeg, self.events = recording_files(path)
        self.srate, self.t0 = float(srate), float(t0)
        self.resolution = resolution
        self.n_channels = len(ch_names)
        self.n_samples = 0
        self.failure: str | None = None
        self._n_markers = 1
        self._pending: list[tuple[int, int, str, str]] = []  # (position, order, .vmrk entry, sidecar row)
        self._order = 0
        self._lock = threading.Lock()
        now = _dt.datetime.now()
        lines = [
            "Brain Vision Data Exchange Header File Version 1.0",
            f"; Written by vibe-rt on {now.isoformat(timespec='seconds')}; appended while streaming",
            "", "[Common Infos]", "Codepage=UTF-8", f"DataFile={self.eeg.name}", f"MarkerFile={self.vmrk.name}",
            "DataFormat=BINARY", "DataOrientation=MULTIPLEXED", f"NumberOfChannels={self.n_channels}",
            "; Sampling interval in microseconds", f"SamplingInterval={1e6 / self.srate:.10g}",
            "", "[Binary Infos]", f"BinaryFormat={'INT_32' if resolution else 'IEEE_FLOAT_32'}", "",
            "[Channel Infos]", "; Ch<n>=<Name>,<Reference>,<Resolution in unit>,<Unit>",
        ]
        for i, (name, unit) in enumerate(zip(ch_names, units), 1):
            safe = name.replace(",", "\\1")  # BrainVision escapes commas in names as \1
            lines.append(f"Ch{i}={safe},,{resolution or 1:.10g},{_BV_UNITS.get(unit, unit)}")
        header = ("Brain Vision Data Exchange Marker File, Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\n"
                  f"DataFile={self.eeg.name}\n\n[Marker Infos]\n"
                  "; Mk<n>=<Type>,<Description>,<Position in data points>,<Size>,<Channel (0 = all)>\n"
                  f"Mk1=New Segment,,1,1,0,{now.strftime('%Y%m%d%H%M%S%f')}\n").encode()
        mode: Literal["wb", "xb"] = "wb" if overwrite else "xb"
        try:
            self.vhdr.parent.mkdir(parents=True, exist_ok=True)
            with open(self.vhdr, mode) as f:
                f.write(("\n".join(lines) + "\n").encode())
            self._mrk: BinaryIO = open(self.vmrk, mode)
            self._mrk.write(header)
            self._mrk.flush()
            self._mrk_bytes = len(header)  # bytes of complete marker lines written
            self._tsv: BinaryIO = open(self.events, mode)
            columns = ("\t".join(EVENTS_COLUMNS) + "\n").encode()
            self._tsv.write(columns)
            self._tsv.flush()
            self._tsv_bytes = len(columns)  # bytes of complete sidecar rows written
            self._eeg: BinaryIO = open(self.eeg, mode)
        except FileExistsError as err:
            raise ConfigError(f"--record {self.vhdr}: {err.filename} exists already (an earlier session); give a "
                              "new name, or --overwrite to replace it") from None
        except OSError as err:
            raise ConfigError(f"--record {self.vhdr}: cannot create the recording ({err.strerror}); give a path "
                              "on a writable disk") from None

    def write(self, chunk: np.ndarray) -> None:
        """Append (n, C) samples and flush; then the markers that point into them."""
        if self.resolution:
            data = np.ascontiguousarray(np.rint(np.asarray(chunk, np.float64) / self.resolution), dtype="<i4")
        else:
            data = np.ascontiguousarray(chunk, dtype="<f4")
        with self._lock:
            if self.failure is not None or self._eeg.closed:
                return
            if not self._flushed(self._eeg, data.data, self.eeg):  # the array's buffer, no bytes copy
                return
            self.n_samples += data.shape[0]
            ready = []
            while self._pending and self._pending[0][0] <= self.n_samples:
                ready.append(heapq.heappop(self._pending)[2:])
            if ready:
                self._append_markers(ready)

    def marker(self, onset: float, description: str, kind: str = "Stimulus", marker: dict | None = None,
               code: int | None = None, *, duration_s: float | None = None, channel: int = 0) -> None:
        """Add a marker at LSL time ``onset``; it is written (to the .vmrk and the sidecar) once the data holds
        its sample.

        Parameters
        ----------
        onset : float
            LSL time.
        description : str
            The .vmrk description (``S  1``, ``dropped-late`` ...); :func:`marker_description` adds the image.
        kind : str
            ``Stimulus``, ``Response`` or ``Comment``.
        marker : dict | None
            The JSON marker (its ``image``, ``status`` and ``duration`` go into the sidecar).
        code : int | None
            The numeric code (the sidecar's ``value``; default the JSON marker's ``code``).
        duration_s : float | None
            Its duration (BrainVision ``Size`` in samples, at least 1; MNE reads it as the annotation's duration).
        channel : int
            The 1-based channel it concerns (0: all).
        """
        pos = int(round((onset - self.t0) * self.srate)) + 1
        if pos < 1:
            return
        size = max(1, int(round(duration_s * self.srate))) if duration_s else 1
        row = events_row(onset - self.t0, kind, marker, code)
        with self._lock:
            if self.failure is not None or self._mrk.closed:
                return
            entry = f"{kind},{marker_description(description, marker)},{pos},{size},{int(channel)}"
            if pos <= self.n_samples:
                self._append_markers([(entry, row)])
            else:
                self._order += 1
                heapq.heappush(self._pending, (pos, self._order, entry, row))

    def _append_markers(self, entries: list[tuple[str, str]]) -> None:
        """Write ``Mk<n>=<entry>`` lines, numbered as they are written (so numbers have no gaps), and their
        sidecar rows."""
        first = self._n_markers + 1
        data = "".join(f"Mk{first + i}={e}\n" for i, (e, _) in enumerate(entries)).encode()
        rows = "".join(r for _, r in entries).encode()
        if not self._flushed(self._mrk, data, self.vmrk):
            return
        self._n_markers += len(entries)
        self._mrk_bytes += len(data)
        if self._flushed(self._tsv, rows, self.events):
            self._tsv_bytes += len(rows)

    def _flushed(self, handle: BinaryIO, data: bytes | memoryview, path: Path) -> bool:
        """Append ``data`` to ``handle`` and flush; False (the recording stopped, see :meth:`_fail`) if that fails."""
        try:
            handle.write(data)
            handle.flush()
        except OSError as err:
            self._fail(err, path)
            return False
        return True

    def _fail(self, err: OSError, where: Path) -> None:
        """Stop recording after a failed write: cut the files back to their last complete sample, marker line and
        sidecar row (so that they stay readable), close them, and say so once."""
        self.failure = (f"the recording {self.vhdr} stopped after {self.n_samples / self.srate:.1f} s: cannot "
                        f"write {where.name} ({err.strerror or err}); the stream went on, and the recording keeps "
                        "what was written before (readable)")
        for handle, path, size in ((self._eeg, self.eeg, self.n_samples * self.n_channels * 4),
                                   (self._mrk, self.vmrk, self._mrk_bytes), (self._tsv, self.events, self._tsv_bytes)):
            try:
                handle.close()  # may fail again flushing its buffer: the truncation below repairs that
            except OSError:
                pass
            try:
                os.truncate(path, size)
            except OSError as trunc_err:  # pragma: no cover - e.g. the device is gone
                logger.debug("could not cut %s back to %d bytes: %r", path, size, trunc_err)
        logger.error(self.failure)

    def close(self) -> None:
        """Close the files (they are complete at every moment anyway); markers beyond the data are left out."""
        with self._lock:
            if self._pending and self.failure is None:
                logger.info("%d marker(s) after the last recorded sample left out of %s", len(self._pending),
                            self.vmrk.name)
            self._pending = []
            for handle, path in ((self._eeg, self.eeg), (self._mrk, self.vmrk), (self._tsv, self.events)):
                try:
                    handle.close()
                except OSError as err:
                    if self.failure is None:
                        self._fail(err, path)
