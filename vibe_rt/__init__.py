"""vibe-rt: real-time visual-to-M/EEG simulation with ViBE, streamed over LSL."""

from __future__ import annotations

__version__ = "0.1.0"
