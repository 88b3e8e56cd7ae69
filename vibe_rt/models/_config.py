"""Shared helpers of the config dataclasses: building one from a JSON dict, with every field's type checked."""

from __future__ import annotations

import math
import numbers
import types
from dataclasses import MISSING, fields
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import numpy as np

from ..errors import ConfigError

T = TypeVar("T")


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _matches(value: Any, hint: Any) -> bool:
    """True when a JSON value fits a field annotation (int, float, str, bool, None, unions, tuple[X, ...],
    dict, ndarray of numbers); other annotations (nested configs) are left to their own ``from_dict``."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return _integer(value)
    if hint is float:
        return _finite_number(value)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        item = get_args(hint)[0]
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is np.ndarray:
        try:
            return bool(np.isfinite(np.asarray(value, dtype=float)).all())
        except (TypeError, ValueError):
            return False
    return True


def _describe(hint: Any) -> str:
    """The expected JSON value of an annotation, in words (``"a list of integers"``)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in get_args(hint))
    if origin is tuple:
        return f"a list of {_describe(get_args(hint)[0]).split(' ', 1)[1]}s"
    words = {type(None): "null", bool: "a boolean (true/false)", int: "an integer", float: "a finite number",
             str: "a string", np.ndarray: "an array of finite numbers"}
    return words.get(hint, "an object" if origin is dict or hint is dict else getattr(hint, "__name__", str(hint)))


def check_fields(cls: type, data: Any, where: str) -> None:
    """Raise :class:`ConfigError` naming the first field of ``data`` whose JSON type does not fit ``cls``.

    Parameters
    ----------
    cls : dataclass type
        The config (or any dataclass) the dict describes.
    data : Any
        The dict read from JSON.
    where : str
        How the message names the dict (``"config.vae"``): fields are named ``<where>.<field>``.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where} is {data!r}, expected an object with the fields of {cls.__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; valid keys: {sorted(names)}")
    missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING
               and f.default_factory is MISSING]
    if missing:
        raise ConfigError(f"{where} lacks the keys {missing}")
    hints = get_type_hints(cls)
    for f in fields(cls):
        if f.name in data and not _matches(data[f.name], hints[f.name]):
            raise ConfigError(f"{where}.{f.name} is {data[f.name]!r}, expected {_describe(hints[f.name])}")


def config_from_dict(cls: type[T], data: dict[str, Any], where: str | None = None) -> T:
    """Build the dataclass ``cls`` from a dict, naming unknown, missing or mistyped keys in a :class:`ConfigError`
    (``where`` names the dict in messages; default the class name)."""
    check_fields(cls, data, where or cls.__name__)
    return cls(**data)
