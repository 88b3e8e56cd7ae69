"""Shared helper of the model config dataclasses."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from ..errors import ConfigError

T = TypeVar("T")


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build the dataclass ``cls`` from a dict, naming unknown or missing keys in a :class:`ConfigError`."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown keys {unknown}; valid keys: {sorted(names)}")
    try:
        return cls(**data)
    except TypeError as err:
        raise ConfigError(f"{cls.__name__}: {err}") from err
