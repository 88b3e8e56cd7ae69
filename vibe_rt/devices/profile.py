"""A device profile: what an amplifier and its LSL app look like to a pipeline, read from a JSON document.

A profile is data, one JSON file per device (``vibe_rt/devices/profiles/*.json``; users add their own, see
:mod:`vibe_rt.devices`). :func:`parse_profile` checks every field once, with one-line errors naming the file, the
field and the fix; nothing else checks a profile again. The format (``"format": "vibe-rt-device", "version": 1``)::

    name               "brainamp-64": what --device takes (lower-case letters, digits, '-', '_', '.')
    manufacturer, model
    channels           EEG channel labels, in the order the device's LSL app sends them
    equivalents        optional: the 10-10 name of each channel (BioSemi's A1..B32 caps), used for positions and
                       by the comparator
    positions          {"mne_montage": NAME, "frame": NAME|null}: positions of the channels (or their equivalents)
                       in an MNE built-in montage, moved onto the template head (:func:`vibe_rt.montage.
                       template_positions`); or {"head_mm": [[x, y, z], ...]}: one per channel, template head
                       coordinates in millimetres (X right, Y front, Z up)
    reference, ground  electrode names or descriptions (e.g. "FCz", "CMS/DRL", "SRB2 (ear clip)")
    rates_hz           sampling rates the device offers; default_rate_hz: the usual one (one of them)
    resolution         quantization step in the output unit (e.g. 0.1 for 0.1 uV)
    unit               output unit word ("microvolts")
    range              largest magnitude the device reports, in the unit (values beyond are clipped)
    precision_bits     ADC bits (the XDF acquisition/precision field)
    transport_delay_s  typical delay between a sample's true time and its LSL timestamp (s), or null: unknown
    transport_delay_note, sources   where the numbers come from
    lsl                {"name", "type", "channel_format" ("float32"), "chunk_size" (samples per push) or
                       "chunk_s" (seconds per push), "desc": extra meta-data children as the app writes them,
                       "source": the app's source the shape was read from}
    extra_channels     optional: the app's other channels, in groups {"labels": [...], "type", "unit",
                       "place": "first" | "last" (before or after the EEG channels), "content": "zero" (an
                       unconnected input) | "trigger" (the stimulus code of each onset for "pulse_s" seconds, as
                       a trigger input records it; one channel at most)}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..montage import TEMPLATE_HEAD_CENTRE, Montage, template_positions

FORMAT = "vibe-rt-device"
VERSION = 1
#: Highest sampling rate a profile may offer (Hz): above every EEG amplifier's (BioSemi 16 kHz, g.tec 38.4 kHz).
MAX_RATE_HZ = 65536.0
#: Longest transport delay a profile may state (s).
MAX_DELAY_S = 1.0
UNITS = ("microvolts",)
CHANNEL_FORMATS = ("float32",)
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_RESERVED_DESC = ("channels", "synchronization", "vibe_rt")  # vibe-rt writes these itself
_FIX = "see vibe_rt/devices/profile.py for the format, or copy a built-in profile (vibe-rt devices --json NAME)"


@dataclass(frozen=True)
class LslShape:
    """The signal stream as the device's own LSL app sends it.

    Attributes
    ----------
    name, type : str
        Stream name and type (e.g. ``"BrainAmpSeries-Dev_1"``, ``"EEG"``).
    channel_format : str
        ``"float32"``.
    chunk_size : int | None
        Samples per push, where the app pushes fixed chunks.
    chunk_s : float | None
        Seconds per push, where the app pushes what arrived in a fixed interval (BioSemi: 13 ms).
    desc : dict
        Extra ``desc`` children (nested str -> str | dict) the app writes, e.g. ``{"amplifier": {"settings":
        {"resolution": "100 nV"}}}``; ``acquisition`` and ``cap`` entries join vibe-rt's own children of those.
    source : str
        Where the shape was read from (the app's source file).
    """

    name: str
    type: str
    channel_format: str
    chunk_size: int | None
    chunk_s: float | None
    desc: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def chunk_samples(self, srate: float) -> int:
        """Samples per push at ``srate``."""
        if self.chunk_size is not None:
            return self.chunk_size
        return max(1, int(round(float(self.chunk_s or 0.0) * srate)))


@dataclass(frozen=True)
class ExtraChannels:
    """A group of non-EEG channels the device's LSL app sends (see the module docstring)."""

    labels: tuple[str, ...]
    type: str
    unit: str
    place: str
    content: str
    pulse_s: float = 0.0


@dataclass(frozen=True)
class DeviceProfile:
    """An amplifier, its cap and its LSL app (see the module docstring for the fields)."""

    name: str
    manufacturer: str
    model: str
    channels: tuple[str, ...]
    positions: np.ndarray = field(repr=False, compare=False)
    equivalents: tuple[str, ...] | None
    reference: str
    ground: str
    rates_hz: tuple[float, ...]
    default_rate_hz: float
    resolution: float
    unit: str
    range: float
    precision_bits: int
    transport_delay_s: float | None
    transport_delay_note: str
    lsl: LslShape
    sources: tuple[str, ...]
    positions_from: str
    path: Path | None = None
    extra_channels: tuple[ExtraChannels, ...] = ()

    @property
    def n_channels(self) -> int:
        """Number of EEG channels."""
        return len(self.channels)

    @property
    def builtin(self) -> bool:
        """True for a profile shipped with vibe-rt."""
        return self.path is not None and self.path.parent == Path(__file__).parent / "profiles"

    def cap_for(self, model: Montage) -> Montage:
        """The cap as a :class:`Montage` with ``model``'s rate and epoch window (what the synthesizer takes)."""
        return Montage(self.name, self.channels, ("eeg",) * self.n_channels, self.positions, model.sfreq,
                       model.tmin, model.n_times)

    def require_rate(self, srate: float, flag: str = "--srate") -> None:
        """A :class:`ConfigError` unless the device offers ``srate``."""
        if not any(math.isclose(srate, r, rel_tol=1e-9) for r in self.rates_hz):
            raise ConfigError(f"{flag} {srate:g}: the {self.name} device samples at {_rates(self.rates_hz)} Hz; "
                              f"give one of them (default {self.default_rate_hz:g})")

    def live_channels(self, names: Sequence[str], positions: np.ndarray | None = None
                      ) -> tuple[dict[str, str], np.ndarray]:
        """A live stream's channels read through this profile: the 10-10 equivalent of each of its labels that
        the profile has one for (label -> equivalent, matched case-insensitively), and its positions with the
        profile's filled in where the stream has none (``nan``).

        Parameters
        ----------
        names : sequence of str
            The live labels.
        positions : ndarray, shape (n, 3) | None
            The live positions in metres (``nan``: unknown); None: none known.
        """
        index = {c.lower(): i for i, c in enumerate(self.channels)}
        pos = np.full((len(names), 3), np.nan) if positions is None else np.array(positions, dtype=float)
        aliases = {}
        for k, name in enumerate(names):
            i = index.get(name.lower())
            if i is None:
                continue
            if self.equivalents:
                aliases[name] = self.equivalents[i]
            if not np.all(np.isfinite(pos[k])):
                pos[k] = self.positions[i]
        return aliases, pos

    def extras(self, place: str) -> tuple[ExtraChannels, ...]:
        """The extra channel groups before (``"first"``) or after (``"last"``) the EEG channels."""
        return tuple(g for g in self.extra_channels if g.place == place)

    @property
    def n_extra(self) -> int:
        """Number of non-EEG channels."""
        return sum(len(g.labels) for g in self.extra_channels)

    def summary(self) -> dict[str, Any]:
        """One row of ``vibe-rt devices``."""
        return {
            "name": self.name, "manufacturer": self.manufacturer, "model": self.model,
            "channels": self.n_channels, "extra_channels": self.n_extra, "rates_hz": list(self.rates_hz),
            "default_rate_hz": self.default_rate_hz,
            "resolution": self.resolution, "unit": self.unit, "reference": self.reference, "ground": self.ground,
            "lsl": {"name": self.lsl.name, "type": self.lsl.type, "channel_format": self.lsl.channel_format,
                    "chunk_size": self.lsl.chunk_size, "chunk_s": self.lsl.chunk_s},
            "transport_delay_s": self.transport_delay_s, "positions": self.positions_from,
            "origin": "built-in" if self.builtin else str(self.path) if self.path else "python",
        }


def _rates(rates: tuple[float, ...]) -> str:
    return ", ".join(f"{r:g}" for r in rates)


# ------------------------------------------------------------------------------------------------ parsing
class _Reader:
    """Reads one profile document; every error names the document, the field and the fix."""

    def __init__(self, data: Any, where: str) -> None:
        self.where = where
        if not isinstance(data, dict):
            self.fail("", f"must be a JSON object, got {type(data).__name__}")
        self.data = data

    def fail(self, key: str, problem: str) -> None:
        raise ConfigError(f"device profile {self.where}: {key + ' ' if key else ''}{problem}; {_FIX}")

    def get(self, key: str, default: Any = ..., obj: Mapping[str, Any] | None = None, prefix: str = "") -> Any:
        obj = self.data if obj is None else obj
        if key not in obj:
            if default is ...:
                self.fail(prefix + key, "is missing")
            return default
        return obj[key]

    def text(self, key: str, value: Any, max_len: int = 200) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be a non-empty text, got {value!r}")
        if len(value) > max_len or any(ord(ch) < 32 for ch in value):
            self.fail(key, f"must be one line of at most {max_len} printable characters, got {value[:40]!r}")
        return value.strip()

    def number(self, key: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"must be a number, got {value!r}")
        if not math.isfinite(value) or value < lo or value > hi or (lo_open and value == lo):
            self.fail(key, f"must be a finite number {'>' if lo_open else '>='} {lo:g} and <= {hi:g}, got {value!r}")
        return float(value)

    def integer(self, key: str, value: Any, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.fail(key, f"must be an integer from {lo} to {hi}, got {value!r}")
        return int(value)

    def labels(self, key: str, value: Any, n: int | None = None) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or len(value) > 1024:
            self.fail(key, f"must be a list of 1 to 1024 channel labels, got {str(value)[:60]}")
        if n is not None and len(value) != n:
            self.fail(key, f"has {len(value)} names for {n} channels; give one per channel")
        labels = tuple(self.text(f"{key}[{i}]", v, 64) for i, v in enumerate(value))
        dups = sorted({c for c in labels if labels.count(c) > 1})
        if dups:
            self.fail(key, f"lists {dups[:5]} more than once; name each channel once")
        return labels


def parse_profile(data: Any, where: str, path: Path | None = None) -> DeviceProfile:
    """Validate a profile document (parsed JSON) into a :class:`DeviceProfile`.

    Parameters
    ----------
    data : dict
        The document.
    where : str
        Names it in errors (its path).
    path : Path | None
        The file it was read from.
    """
    r = _Reader(data, where)
    if r.get("format") != FORMAT:
        r.fail("format", f"must be {FORMAT!r}, got {r.get('format')!r}")
    version = r.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION:
        r.fail("version", f"must be 1..{VERSION}, got {version!r}")
    name = r.text("name", r.get("name"), 64)
    if not _NAME.match(name):
        r.fail("name", f"{name!r} must be lower-case letters, digits, '.', '-' or '_' (it is what --device takes)")
    channels = r.labels("channels", r.get("channels"))
    equivalents = r.get("equivalents", None)
    if equivalents is not None:
        equivalents = r.labels("equivalents", equivalents, len(channels))
    positions, positions_from = _positions(r, channels, equivalents)
    rates = r.get("rates_hz")
    if not isinstance(rates, list) or not rates:
        r.fail("rates_hz", f"must be a list of sampling rates in Hz, got {rates!r}")
    rates_hz = tuple(sorted({r.number(f"rates_hz[{i}]", v, 0, MAX_RATE_HZ, lo_open=True)
                             for i, v in enumerate(rates)}))
    default_rate = r.number("default_rate_hz", r.get("default_rate_hz"), 0, MAX_RATE_HZ, lo_open=True)
    if default_rate not in rates_hz:
        r.fail("default_rate_hz", f"{default_rate:g} is not one of rates_hz ({_rates(rates_hz)})")
    unit = r.get("unit")
    if unit not in UNITS:
        r.fail("unit", f"must be one of {', '.join(UNITS)} (the EEG output unit of vibe-rt), got {unit!r}")
    resolution = r.number("resolution", r.get("resolution"), 0, 1000.0, lo_open=True)
    value_range = r.number("range", r.get("range"), 0, 1e7, lo_open=True)
    if value_range < 100 * resolution:
        r.fail("range", f"{value_range:g} {unit} holds fewer than 100 resolution steps of {resolution:g}; give the "
                        "largest magnitude the device reports")
    if value_range < 100.0:
        r.fail("range", f"{value_range:g} {unit} is below the amplitude of ordinary EEG; give the largest magnitude "
                        "the device reports")
    bits = r.integer("precision_bits", r.get("precision_bits"), 8, 32)
    delay = r.get("transport_delay_s")
    if delay is not None:
        delay = r.number("transport_delay_s", delay, 0, MAX_DELAY_S)
    return DeviceProfile(
        name=name, manufacturer=r.text("manufacturer", r.get("manufacturer")),
        model=r.text("model", r.get("model")), channels=channels, positions=positions, equivalents=equivalents,
        reference=r.text("reference", r.get("reference")), ground=r.text("ground", r.get("ground")),
        rates_hz=rates_hz, default_rate_hz=default_rate, resolution=resolution, unit=unit, range=value_range,
        precision_bits=bits, transport_delay_s=delay,
        transport_delay_note=r.text("transport_delay_note", r.get("transport_delay_note", "unknown"), 400),
        lsl=_lsl(r), sources=tuple(r.text(f"sources[{i}]", s, 400) for i, s in enumerate(_list(r, "sources"))),
        positions_from=positions_from, path=path, extra_channels=_extra_channels(r, channels))


def _extra_channels(r: _Reader, channels: tuple[str, ...]) -> tuple[ExtraChannels, ...]:
    groups = []
    for i, spec in enumerate(_list(r, "extra_channels")):
        key = f"extra_channels[{i}]"
        if not isinstance(spec, dict):
            r.fail(key, "must be an object with labels, type, unit, place and content")
        place, content = r.get("place", obj=spec, prefix=f"{key}."), r.get("content", obj=spec, prefix=f"{key}.")
        if place not in ("first", "last"):
            r.fail(f"{key}.place", f"must be 'first' or 'last' (before or after the EEG channels), got {place!r}")
        if content not in ("zero", "trigger"):
            r.fail(f"{key}.content", f"must be 'zero' or 'trigger', got {content!r}")
        labels = r.labels(f"{key}.labels", r.get("labels", obj=spec, prefix=f"{key}."))
        pulse = 0.0
        if content == "trigger":
            if len(labels) != 1:
                r.fail(f"{key}.labels", "a trigger group is one channel")
            pulse = r.number(f"{key}.pulse_s", r.get("pulse_s", obj=spec, prefix=f"{key}."), 0, 1.0, lo_open=True)
        groups.append(ExtraChannels(labels, r.text(f"{key}.type", r.get("type", obj=spec, prefix=f"{key}."), 32),
                                    r.text(f"{key}.unit", r.get("unit", obj=spec, prefix=f"{key}."), 32), place,
                                    content, pulse))
    every = list(channels) + [c for g in groups for c in g.labels]
    dups = sorted({c for c in every if every.count(c) > 1})
    if dups:
        r.fail("extra_channels", f"repeat the channel labels {dups[:5]}; name each channel once")
    if sum(g.content == "trigger" for g in groups) > 1:
        r.fail("extra_channels", "have more than one trigger channel; give one")
    return tuple(groups)


def _list(r: _Reader, key: str) -> list[Any]:
    value = r.get(key, [])
    if not isinstance(value, list):
        r.fail(key, f"must be a list, got {value!r}")
    return value


def _positions(r: _Reader, channels: tuple[str, ...], equivalents: tuple[str, ...] | None
               ) -> tuple[np.ndarray, str]:
    spec = r.get("positions")
    if not isinstance(spec, dict) or len(spec.keys() & {"mne_montage", "head_mm"}) != 1:
        r.fail("positions", 'must be {"mne_montage": NAME} or {"head_mm": [[x, y, z], ...]}')
    if "mne_montage" in spec:
        import mne

        montage = r.text("positions.mne_montage", spec["mne_montage"], 64)
        frame = spec.get("frame")
        for key, value in (("mne_montage", montage), ("frame", frame)):
            if value is not None and value not in mne.channels.get_builtin_montages():
                r.fail(f"positions.{key}", f"{value!r} is not an MNE built-in montage (e.g. "
                                           f"{', '.join(mne.channels.get_builtin_montages()[:6])} ...)")
        try:
            pos, _ = template_positions(montage, equivalents or channels, frame)
        except ConfigError as err:
            r.fail("positions", str(err))
        return pos, f"MNE {montage}" + (f" (placed via {frame})" if frame else "")
    rows = spec["head_mm"]
    arr = np.asarray(rows, dtype=object)
    if arr.shape != (len(channels), 3) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  for v in arr.ravel()):
        r.fail("positions.head_mm", f"must be {len(channels)} rows of three numbers (x, y, z in mm), one per "
                                    "channel")
    mm = arr.astype(float)
    if not np.all(np.isfinite(mm)):
        r.fail("positions.head_mm", "holds a value that is not a finite number")
    dist = np.linalg.norm(mm - 1000.0 * TEMPLATE_HEAD_CENTRE, axis=1)
    bad = np.flatnonzero((dist < 40) | (dist > 160))
    if bad.size:
        r.fail("positions.head_mm", f"channel {channels[bad[0]]} lies {dist[bad[0]]:.0f} mm from the head centre "
                                    "(0, 15, 39) mm; scalp electrodes lie 40-160 mm from it (give millimetres, head "
                                    "coordinates)")
    return mm / 1000.0, "head_mm"


def _lsl(r: _Reader) -> LslShape:
    spec = r.get("lsl")
    if not isinstance(spec, dict):
        r.fail("lsl", "must be an object with name, type, channel_format and chunk_size or chunk_s")
    fmt = r.get("channel_format", obj=spec, prefix="lsl.")
    if fmt not in CHANNEL_FORMATS:
        r.fail("lsl.channel_format", f"must be {', '.join(CHANNEL_FORMATS)} (the format vibe-rt streams), got {fmt!r}")
    if ("chunk_size" in spec) == ("chunk_s" in spec):
        r.fail("lsl", "needs exactly one of chunk_size (samples per push) and chunk_s (seconds per push)")
    chunk_size = r.integer("lsl.chunk_size", spec["chunk_size"], 1, 65536) if "chunk_size" in spec else None
    chunk_s = r.number("lsl.chunk_s", spec["chunk_s"], 0, 1.0, lo_open=True) if "chunk_s" in spec else None
    desc = spec.get("desc", {})
    _check_desc(r, desc, "lsl.desc", 0)
    reserved = sorted(set(desc) & set(_RESERVED_DESC))
    if reserved:
        r.fail("lsl.desc", f"may not set {reserved} (vibe-rt writes them); give the app's other children")
    return LslShape(name=r.text("lsl.name", r.get("name", obj=spec, prefix="lsl."), 100),
                    type=r.text("lsl.type", r.get("type", obj=spec, prefix="lsl."), 32), channel_format=fmt,
                    chunk_size=chunk_size, chunk_s=chunk_s, desc=desc,
                    source=r.text("lsl.source", spec.get("source", "unknown"), 400))


def _check_desc(r: _Reader, desc: Any, key: str, depth: int) -> None:
    if not isinstance(desc, dict) or depth > 4:
        r.fail(key, "must be an object of names to texts or objects, at most 4 levels deep")
    for name, value in desc.items():
        if not _XML_NAME.match(name):
            r.fail(key, f"child name {name!r} is not an XML element name")
        if isinstance(value, dict):
            _check_desc(r, value, f"{key}.{name}", depth + 1)
        else:
            r.text(f"{key}.{name}", value, 200)


__all__ = ["CHANNEL_FORMATS", "DeviceProfile", "ExtraChannels", "FORMAT", "LslShape", "MAX_DELAY_S", "MAX_RATE_HZ",
           "UNITS", "VERSION", "parse_profile"]
