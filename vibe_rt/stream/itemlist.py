"""The comma-separated item lists of ``--artifacts`` and ``--faults``: ``NAME[:VALUE][@WHEN]``, values with units.

Both options share this grammar (``blinks:12/min``, ``bad-channel:flat@T7``, ``freeze:2s@30s``), so they parse
alike and fail alike: every problem is one :class:`~vibe_rt.errors.ConfigError` line that names the option, the
item and what to write instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError

_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([a-z/%]*)$", re.IGNORECASE)

#: Durations: unit -> seconds.
SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0}
#: Event rates: unit -> events per second.
RATES = {"/min": 1 / 60, "/s": 1.0}


@dataclass(frozen=True)
class Item:
    """One list item: ``name[:value][@when]`` (``raw`` is the item as written, for messages)."""

    name: str
    value: str | None
    when: str | None
    raw: str


def split_items(text: str, flag: str) -> list[Item]:
    """The items of a comma-separated list (names lower-cased; empty items refused)."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{flag} needs a comma-separated list, got {text!r}")
    items = []
    for raw in text.split(","):
        raw = raw.strip()
        if not raw:
            raise ConfigError(f"{flag} {text!r} has an empty item; separate the items with single commas")
        head, _, when = raw.partition("@")
        name, _, value = head.partition(":")
        items.append(Item(name.strip().lower(), value.strip() or None, when.strip() or None, raw))
    return items


def quantity(text: str, units: Mapping[str, float], *, flag: str, item: str, what: str,
             default_unit: str | None = None) -> float:
    """``"2.5ms"`` -> 0.0025 with ``units`` (unit -> factor); ``default_unit`` applies to a bare number.

    Raises a :class:`ConfigError` naming ``flag``, the ``item`` and the units allowed, for text that is not a
    finite number followed by one of them.
    """
    match = _NUMBER.match(text.strip())
    unit = match.group(2).lower() if match else ""
    if match and not unit and default_unit is not None:
        unit = default_unit
    factor = units.get(unit) if match else None
    if match is None or factor is None:
        raise ConfigError(f"{flag} {item!r}: {what} must be a number with a unit ({', '.join(units)}), got "
                          f"{text!r}")
    value = float(match.group(1)) * factor
    if not math.isfinite(value):
        raise ConfigError(f"{flag} {item!r}: {what} must be finite, got {text!r}")
    return value


def in_range(value: float, lo: float, hi: float, *, flag: str, item: str, what: str, shown: str) -> float:
    """``value`` if ``lo < value <= hi``, else a :class:`ConfigError` (``shown`` says the range in the user's
    units, e.g. ``"0 < rate <= 100/min"``)."""
    if not lo < value <= hi:
        raise ConfigError(f"{flag} {item!r}: {what} is out of range; use {shown}")
    return value


__all__ = ["Item", "RATES", "SECONDS", "in_range", "quantity", "split_items"]
