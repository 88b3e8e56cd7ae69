"""Subcommands of the ``vibe-rt`` CLI, one module each (see :mod:`vibe_rt.cli`)."""
