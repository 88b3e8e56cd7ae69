"""The package logger; level from the ``VIBE_RT_LOG_LEVEL`` environment variable."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("vibe_rt")


def _init_logger() -> None:
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s vibe_rt: %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(os.environ.get("VIBE_RT_LOG_LEVEL", "INFO").upper())
    logger.propagate = False


def set_log_level(level: str | int) -> None:
    """Set the package log level (``"DEBUG"``, ``"INFO"``, ``"WARNING"`` ...)."""
    logger.setLevel(level.upper() if isinstance(level, str) else level)


_init_logger()
