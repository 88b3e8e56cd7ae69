"""The experiment log: one TSV row per presented image (and per key press), flushed as the run goes.

Each row is written and flushed (and ``os.fsync``-ed) when its trial ends, so the file is intact up to the last
finished trial after Ctrl-C or a crash. A header of ``# key: value`` comment lines (run settings, clock
offset) precedes the column names.

Columns
-------
trial
    Running number (0-based); empty for a key press.
sequence, position
    Sequence number and position within it.
image
    Image file name (``<key>`` for a key press).
is_target
    1 for a target image, 0 otherwise.
code
    Numeric marker code (the int32 marker stream value).
planned_onset
    Planned onset on the LSL clock (seconds): the sequence's first frame (its first onset with vsync, the
    emulated frame grid when pacing by the clock) plus whole frames; a dropped frame delays the rest of the
    sequence, as on a real display.
actual_onset_lsl
    Flip time of the onset frame converted to the LSL clock (seconds); also the marker timestamp.
flip_interval
    Seconds from the previous flip to the onset flip.
on_duration
    Seconds from the onset flip to the flip that removed the image.
dropped
    Frames missed during the trial (onset flip through the last blank frame).
marker
    ``stim`` for an image onset, ``target`` for a target image onset, ``response`` for a key press.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError

COLUMNS = ("trial", "sequence", "position", "image", "is_target", "code", "planned_onset", "actual_onset_lsl",
           "flip_interval", "on_duration", "dropped", "marker")


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6f}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"))
    return str(value).replace("\t", " ").replace("\n", " ")


class ExperimentLog:
    """Append-only TSV log that survives interruption.

    Parameters
    ----------
    path : str | Path
        Output file (parent folders are created; an existing file is replaced).
    header : mapping
        ``# key: value`` lines written first (settings, clock offset, versions).
    fsync : bool
        Also ``os.fsync`` after each row (default True; the cost is well under a millisecond on local disks
        and is paid after the trial's last flip, not before an onset).
    """

    def __init__(self, path: str | Path, header: Mapping[str, Any] | None = None, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = bool(fsync)
        self.n_rows = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", encoding="utf-8", newline="")
        except OSError as err:
            raise ConfigError(f"cannot write the experiment log {str(self.path)!r} ({err}): choose a writable "
                              "path with --log") from err
        for key, value in (header or {}).items():
            self._fh.write(f"# {key}: {_fmt(value)}\n")
        self._fh.write("\t".join(COLUMNS) + "\n")
        self._flush()

    def _flush(self) -> None:
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    def comment(self, key: str, value: Any) -> None:
        """Append a ``# key: value`` line (e.g. the clock offset re-measured at the end)."""
        self._fh.write(f"# {key}: {_fmt(value)}\n")
        self._flush()

    def write(self, **row: Any) -> None:
        """Append one row (missing columns are left empty; unknown ones raise) and flush it to disk."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ConfigError(f"unknown experiment-log columns {sorted(unknown)}; known: {', '.join(COLUMNS)}")
        self._fh.write("\t".join(_fmt(row.get(c)) for c in COLUMNS) + "\n")
        self.n_rows += 1
        self._flush()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._fh.closed:
            self._flush()
            self._fh.close()

    def __enter__(self) -> ExperimentLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_log(path: str | Path) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Read an experiment log back.

    Returns
    -------
    header : dict
        The ``# key: value`` lines.
    rows : list of dict
        One dict per row with numbers parsed (empty cells become None).
    """
    header: dict[str, str] = {}
    lines: list[str] = []
    with open(path, encoding="utf-8", newline="") as fh:
        for line in fh:
            if line.startswith("# "):
                key, _, value = line[2:].rstrip("\n").partition(": ")
                header[key] = value
            else:
                lines.append(line)
    ints = {"trial", "sequence", "position", "is_target", "code", "dropped"}
    floats = {"planned_onset", "actual_onset_lsl", "flip_interval", "on_duration"}
    rows: list[dict[str, Any]] = []
    for rec in csv.DictReader(lines, delimiter="\t"):
        row: dict[str, Any] = {}
        for key, value in rec.items():
            if value in ("", None):
                row[key] = None
            elif key in ints:
                row[key] = int(value)
            elif key in floats:
                row[key] = float(value)
            else:
                row[key] = value
        rows.append(row)
    return header, rows
