"""Units: the words and symbols vibe-rt reads, and their factor to SI (V, T, T/m). A leaf module.

Recordings, LSL streams and users name units in many ways (``microvolts``, ``uV``, ``µV``, MNE-LSL's power-of-ten
integers such as ``-6``); :func:`parse_unit` reads them all. A unit a user gives is never guessed:
:func:`require_unit` refuses one it does not know, naming the known ones.
"""

from __future__ import annotations

import re

from ._logs import logger
from .errors import ConfigError

_UNIT_WORDS = {  # word -> (factor to SI, SI unit)
    "v": (1.0, "V"), "volt": (1.0, "V"), "volts": (1.0, "V"),
    "mv": (1e-3, "V"), "millivolt": (1e-3, "V"), "millivolts": (1e-3, "V"),
    "uv": (1e-6, "V"), "µv": (1e-6, "V"), "μv": (1e-6, "V"), "microvolt": (1e-6, "V"), "microvolts": (1e-6, "V"),
    "nv": (1e-9, "V"), "nanovolt": (1e-9, "V"), "nanovolts": (1e-9, "V"),
    "t": (1.0, "T"), "tesla": (1.0, "T"), "pt": (1e-12, "T"), "picotesla": (1e-12, "T"), "ft": (1e-15, "T"),
    "femtotesla": (1e-15, "T"),
    "t/m": (1.0, "T/m"), "ft/cm": (1e-13, "T/m"), "ft/m": (1e-15, "T/m"),
}  # fmt: skip

UNIT_SYMBOLS = ("V", "mV", "uV", "nV", "T", "pT", "fT", "T/m", "fT/cm", "fT/m")
"""The units :func:`parse_unit` knows, by symbol (it also reads them spelt out, in any case, and ``µV``)."""


def parse_unit(unit: str | None) -> float | None:
    """Factor from ``unit`` to SI (V, T or T/m), or None when the unit is missing or unknown.

    Understands unit words and symbols (``microvolts``, ``uV``, ``µV``, ``V``, ``fT`` ...) and MNE-LSL's
    power-of-ten integers (``"0"`` = SI, ``"-6"`` = micro).
    """
    if unit is None:
        return None
    u = str(unit).strip().lower()
    if re.fullmatch(r"[+-]?\d+", u):
        return float(10.0 ** int(u))
    known = _UNIT_WORDS.get(u)
    return known[0] if known is not None else None


def unit_dimension(unit: str | None) -> str | None:
    """The SI unit a known unit measures in (``"V"``, ``"T"`` or ``"T/m"``), None when unknown."""
    known = _UNIT_WORDS.get(str(unit or "").strip().lower())
    return known[1] if known is not None else None


def parse_quantity(text: str, option: str) -> tuple[float, str]:
    """``"2 uV"`` / ``"2uV"`` / ``"1.5e-6 V"`` -> ``(value in SI, SI unit)``; a :class:`ConfigError` naming
    ``option`` when the number is not a finite positive number or the unit is unknown."""
    m = re.fullmatch(r"\s*([-+0-9.eE]+)\s*([^\s0-9.+-][^\s]*)\s*", str(text))
    try:
        value = float(m.group(1)) if m else float("nan")
    except ValueError:
        value = float("nan")
    if m is None or not (value > 0 and value < float("inf")):
        raise ConfigError(f"{option} must be a positive number and a unit, e.g. '2 uV' or '500 fT', got {text!r}")
    factor = require_unit(m.group(2), option)
    return value * factor, str(unit_dimension(m.group(2)))


def require_unit(unit: str, option: str = "--live-unit") -> float:
    """The factor to SI of a unit that a user gave (``option`` names where); a :class:`ConfigError` listing the
    known units when :func:`parse_unit` does not know it (a given unit is never guessed)."""
    scale = parse_unit(unit)
    if scale is None:
        raise ConfigError(f"{option} {unit!r} is not a unit vibe-rt knows; give one of {', '.join(UNIT_SYMBOLS)} "
                          "(or spelt out, e.g. microvolts, or a power of ten of SI, e.g. -6)")
    return scale


def unit_scale(unit: str | None, ch_type: str = "eeg", default: float | None = None) -> float:
    """Factor that converts a value in ``unit`` to SI (V, T or T/m), see :func:`parse_unit`.

    Unknown or missing units are taken as ``default`` (None: the LSL convention for the type, microvolts for
    EEG and tesla for MEG), with a warning.
    """
    scale = parse_unit(unit)
    if scale is not None:
        return scale
    if default is None:
        default = 1e-6 if ch_type == "eeg" else 1.0
    logger.warning("unknown channel unit %r; assuming %g x SI", unit, default)
    return default
