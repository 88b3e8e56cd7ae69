"""vibe-rt: real-time visual-to-M/EEG simulation with ViBE, streamed over LSL."""

from __future__ import annotations

from ._logs import set_log_level

__version__ = "0.1.0"
__all__ = ["__version__", "set_log_level"]
