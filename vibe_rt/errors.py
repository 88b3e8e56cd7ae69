"""User-facing errors: each names the problem and the fix; the CLI prints them in one line."""

from __future__ import annotations


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
