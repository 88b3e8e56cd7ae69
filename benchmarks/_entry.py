"""Shared entry point of the thin benchmark scripts: run ``vibe-rt bench <name>`` with the script's arguments."""

from __future__ import annotations

import sys
from pathlib import Path


def run(name: str) -> int:
    """``vibe-rt bench <name> <argv...>`` with the code of this checkout (installed or not)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from vibe_rt.cli import main

    return main(["bench", name, *sys.argv[1:]])
