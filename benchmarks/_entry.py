"""Shared entry point of the thin benchmark scripts: run ``vibe-rt bench <name>`` with the script's arguments."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def run(name: str) -> int:
    """``vibe-rt bench <name> <argv...>`` (works from a checkout without ``pip install -e .``)."""
    if importlib.util.find_spec("vibe_rt") is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from vibe_rt.cli import main

    return main(["bench", name, *sys.argv[1:]])
