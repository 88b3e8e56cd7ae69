"""Crash-safe recording of the streamed signal and markers as BrainVision (.vhdr/.vmrk/.eeg).

The header (.vhdr) and marker file header (.vmrk) are written when recording starts; each pushed chunk is
appended to the .eeg file (float32, multiplexed, in the streamed units) and flushed, and each marker is
appended to the .vmrk and flushed. The files are therefore readable by :func:`mne.io.read_raw_brainvision`
at any moment: after a normal stop, after Ctrl-C, and after the process was killed (everything pushed before
the kill is there, as the OS keeps flushed data even when the process dies).

Markers: responses in the signal (status ``ok`` or ``clipped``) are ``Stimulus`` markers ``S<code>`` (MNE
annotation ``Stimulus/S  1``); onsets whose response was dropped are ``Comment`` markers naming the status
(``Comment/dropped-late`` ...). EEG is stored in microvolts (MNE converts to volts); MEG channels are stored in
tesla with unit ``T`` (MNE does not know MEG in BrainVision files and reads them as misc channels).
"""

from __future__ import annotations

import datetime as _dt
import threading
from pathlib import Path

import numpy as np

from ..errors import ConfigError

_BV_UNITS = {"microvolts": "µV", "tesla": "T", "tesla/meter": "T/m", "volts": "V"}


def _paths(path: str | Path) -> tuple[Path, Path, Path]:
    path = Path(path)
    if path.suffix.lower() not in ("", ".vhdr"):
        raise ConfigError(f"--record writes BrainVision files: give a name ending in .vhdr, not {path.name}")
    stem = path.with_suffix("")
    return stem.with_suffix(".vhdr"), stem.with_suffix(".vmrk"), stem.with_suffix(".eeg")


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
    """

    def __init__(self, path: str | Path, ch_names: list[str], units: list[str], srate: float, t0: float) -> None:
        self.vhdr, self.vmrk, self.eeg = _paths(path)
        self.vhdr.parent.mkdir(parents=True, exist_ok=True)
        self.srate, self.t0 = float(srate), float(t0)
        self.n_channels = len(ch_names)
        self.n_samples = 0
        self._n_markers = 1
        self._lock = threading.Lock()
        now = _dt.datetime.now()
        lines = [
            "Brain Vision Data Exchange Header File Version 1.0",
            f"; Written by vibe-rt on {now.isoformat(timespec='seconds')}; appended while streaming",
            "", "[Common Infos]", "Codepage=UTF-8", f"DataFile={self.eeg.name}", f"MarkerFile={self.vmrk.name}",
            "DataFormat=BINARY", "DataOrientation=MULTIPLEXED", f"NumberOfChannels={self.n_channels}",
            "; Sampling interval in microseconds", f"SamplingInterval={1e6 / self.srate:.10g}",
            "", "[Binary Infos]", "BinaryFormat=IEEE_FLOAT_32", "", "[Channel Infos]",
            "; Ch<n>=<Name>,<Reference>,<Resolution in unit>,<Unit>",
        ]
        for i, (name, unit) in enumerate(zip(ch_names, units), 1):
            safe = name.replace(",", "\\1")  # BrainVision escapes commas in names as \1
            lines.append(f"Ch{i}={safe},,1,{_BV_UNITS.get(unit, unit)}")
        self.vhdr.write_text("\n".join(lines) + "\n", encoding="utf-8")
        stamp = now.strftime("%Y%m%d%H%M%S%f")
        self._mrk = open(self.vmrk, "w", encoding="utf-8")
        self._mrk.write("Brain Vision Data Exchange Marker File, Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\n"
                        f"DataFile={self.eeg.name}\n\n[Marker Infos]\n"
                        "; Mk<n>=<Type>,<Description>,<Position in data points>,<Size>,<Channel (0 = all)>\n"
                        f"Mk1=New Segment,,1,1,0,{stamp}\n")
        self._mrk.flush()
        self._eeg = open(self.eeg, "wb")

    def write(self, chunk: np.ndarray) -> None:
        """Append (n, C) samples and flush."""
        data = np.ascontiguousarray(chunk, dtype="<f4")
        with self._lock:
            if self._eeg.closed:
                return
            self._eeg.write(data.data)  # the array's buffer, no bytes copy
            self._eeg.flush()
            self.n_samples += data.shape[0]

    def marker(self, onset: float, description: str, kind: str = "Stimulus") -> None:
        """Append a marker at LSL time ``onset`` and flush."""
        pos = int(round((onset - self.t0) * self.srate)) + 1
        if pos < 1:
            return
        description = description.replace(",", ";")
        with self._lock:
            if self._mrk.closed:
                return
            self._n_markers += 1
            self._mrk.write(f"Mk{self._n_markers}={kind},{description},{pos},1,0\n")
            self._mrk.flush()

    def close(self) -> None:
        """Close the files (they are complete at every moment anyway)."""
        with self._lock:
            self._eeg.close()
            self._mrk.close()
