"""Command-line options shared by several subcommands (``stream``, ``compare``, ``calibrate``, ``experiment``).

Only argparse here: the modules behind the options are imported when a command runs, not when the parser is
built.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# the names of vibe_rt.runtime.backends.BACKENDS plus "auto" (not imported: building the parser stays cheap)
BACKEND_CHOICES = ("auto", "torch", "onnxruntime", "tensorrt")

_Group = argparse._ActionsContainer  # an ArgumentParser or an argument group of one


def add_model_options(group: _Group, *, model_help: str | None = None, backend_help: str | None = None) -> None:
    """``--model CKPT`` (default: the embedded model) and ``--backend {auto,torch,onnxruntime,tensorrt}``."""
    group.add_argument("--model", type=Path, metavar="CKPT", help=model_help or "checkpoint (.safetensors/.json "
                       "stem); default: the embedded default model")
    group.add_argument("--backend", choices=BACKEND_CHOICES, default="auto", help=backend_help or "inference "
                       "backend (default: auto = TensorRT with a GPU, else ONNX Runtime, else torch)")


def add_stream_output_options(group: _Group, *, source_id_help: str, lookahead_help: str | None = None) -> None:
    """The LSL signal stream's ``--srate``, ``--name``, ``--source-id`` and ``--lookahead``."""
    group.add_argument("--srate", type=float, default=1000.0, help="output sampling rate in Hz, e.g. 250, 500, "
                       "1000 (default: 1000)")
    group.add_argument("--name", default="vibe-rt", help="LSL stream name (default: vibe-rt)")
    group.add_argument("--source-id", metavar="ID", default=None, help=source_id_help)
    group.add_argument("--lookahead", type=float, default=0.25, metavar="S", help=lookahead_help or "output delay "
                       "in seconds: the time budget for computing a response (default: 0.25)")


def parse_size(text: str, option: str = "--size", example: str = "640x480", minimum: int = 1) -> tuple[int, int]:
    """``"WxH"`` -> ``(W, H)``; a :class:`~vibe_rt.errors.ConfigError` naming ``option`` otherwise."""
    from ..errors import ConfigError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{option} must look like {example}, got {text!r}") from None
    if w < minimum or h < minimum:
        raise ConfigError(f"{option} must be at least {minimum}x{minimum}, got {text!r}")
    return w, h


__all__ = ["BACKEND_CHOICES", "add_model_options", "add_stream_output_options", "parse_size"]
