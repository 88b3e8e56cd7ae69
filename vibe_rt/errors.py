"""User-facing errors: each names the problem and the fix; the CLI prints them in one line."""

from __future__ import annotations

import os
from pathlib import Path


class VibeError(Exception):
    """Base class of every error that a user can cause and fix."""


class ConfigError(VibeError, ValueError):
    """An invalid option, montage, channel set or configuration value."""


class CheckpointError(VibeError):
    """A checkpoint that is missing, corrupt, tampered with or does not match."""


class DataError(VibeError):
    """A dataset file that is missing, malformed or has an unexpected layout."""


class EngineError(VibeError):
    """An inference engine that is missing, corrupt or built for another model/GPU/library."""


class SourceError(VibeError):
    """A frame source (camera, video, image folder) that cannot be opened or read."""


class StreamError(VibeError):
    """An LSL stream that cannot be found or has gone away."""


class MissingDependencyError(VibeError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require_path(path: str | os.PathLike, kind: str, what: str, fix: str,
                 error: type[VibeError] = DataError) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it is an existing file (``kind="file"``) or folder (``"folder"``).

    Otherwise raises ``error`` in one line: ``"<what> <path> does not exist; <fix>"``, or, where the path is the
    other kind, ``"<what> <path> is a folder, expected a file; <fix>"`` (or the reverse).
    """
    p = Path(path)
    if p.is_file() if kind == "file" else p.is_dir():
        return p
    if p.exists():
        found = "folder" if p.is_dir() else "file" if p.is_file() else "special file"
        raise error(f"{what} {p} is a {found}, expected a {kind}; {fix}")
    raise error(f"{what} {p} does not exist; {fix}")
