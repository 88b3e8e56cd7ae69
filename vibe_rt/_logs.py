"""The package logger ``vibe_rt``: WARNING by default for library use, INFO for the CLI's own progress.

The level comes from, in order: :func:`set_log_level` (the CLI calls it for ``-v/--verbose`` and ``-q/--quiet``),
the ``VIBE_RT_LOG_LEVEL`` environment variable (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``), and the default,
WARNING. Messages go to stderr as ``HH:MM:SS LEVEL vibe_rt: message``.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("vibe_rt")

#: Environment variable that sets the level (library and CLI alike).
LEVEL_VARIABLE = "VIBE_RT_LOG_LEVEL"


def _init_logger() -> None:
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s vibe_rt: %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(os.environ.get(LEVEL_VARIABLE, "WARNING").upper())
    logger.propagate = False


def set_log_level(level: str | int) -> None:
    """Set the level of vibe-rt's log messages: ``"DEBUG"``, ``"INFO"``, ``"WARNING"``, ``"ERROR"`` or a
    :mod:`logging` level number."""
    logger.setLevel(level.upper() if isinstance(level, str) else level)


_init_logger()
