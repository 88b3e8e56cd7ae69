"""Lazy import of optional dependencies with an install hint."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Literal, overload

from .errors import MissingDependencyError

_EXTRAS = {"tensorrt": "tensorrt", "psychopy": "psychopy", "mne_lsl": "replay", "ot": "test"}


@overload
def import_optional_dependency(name: str, *, raise_error: Literal[True] = ...) -> ModuleType: ...
@overload
def import_optional_dependency(name: str, *, raise_error: bool) -> ModuleType | None: ...


def import_optional_dependency(name: str, *, raise_error: bool = True) -> ModuleType | None:
    """Import ``name`` or explain how to install it.

    Parameters
    ----------
    name : str
        Module name, e.g. ``"tensorrt"`` or ``"psychopy"``.
    raise_error : bool
        If False, return None instead of raising when the module is missing.
    """
    try:
        return importlib.import_module(name)
    except ImportError as err:
        if not raise_error:
            return None
        extra = _EXTRAS.get(name)
        hint = f"pip install 'vibe-rt[{extra}]'" if extra else f"pip install {name}"
        raise MissingDependencyError(f"{name} is not installed ({err}). Install it with: {hint}") from err
