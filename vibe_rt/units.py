"""Units: the words and symbols vibe-rt reads, and their factor to SI (V, T, T/m). A leaf module.

Recordings, LSL streams and users name units in many ways (``microvolts``, ``uV``, ``µV``, MNE-LSL's power-of-ten
integers such as ``-6``); :func:`parse_unit` reads them all. A unit a user gives is never guessed:
:func:`require_unit` refuses one it does not know, naming the known ones.
"""

from __future__ import annotations

import re

from ._logs import logger
from .errors import ConfigError

_UNIT_WORDS = {
    "v": 1.0, "volt": 1.0, "volts": 1.0,
    "mv": 1e-3, "millivolt": 1e-3, "millivolts": 1e-3,
    "uv": 1e-6, "µv": 1e-6, "μv": 1e-6, "microvolt": 1e-6, "microvolts": 1e-6,
    "nv": 1e-9, "nanovolt": 1e-9, "nanovolts": 1e-9,
    "t": 1.0, "tesla": 1.0, "pt": 1e-12, "picotesla": 1e-12, "ft": 1e-15, "femtotesla": 1e-15,
    "t/m": 1.0, "ft/cm": 1e-13, "ft/m": 1e-15,
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
    return _UNIT_WORDS.get(u)


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
