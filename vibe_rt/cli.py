"""The ``vibe-rt`` command: argument parsing only; each subcommand lives in ``vibe_rt._commands``."""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Sequence

from . import __version__
from ._logs import LEVEL_VARIABLE, set_log_level
from .errors import ConfigError, VibeError

# One module per subcommand; each exposes ``add_parser(subparsers)`` and imports heavy libraries lazily.
_COMMANDS = ("info", "stream", "devices", "data", "train", "eval", "engines", "experiment", "compare", "calibrate",
             "bench")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors read as plain sentences with the usage line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"vibe-rt: error: {message} (see '{self.prog} --help')\n")


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    """``-v/--verbose`` and ``-q/--quiet`` on ``parser`` and every subcommand below it."""
    if "--verbose" not in parser._option_string_actions:
        parser.add_argument("-v", "--verbose", action="count", default=0,
                            help="more log output: progress details and debug messages")
    if "--quiet" not in parser._option_string_actions:
        parser.add_argument("-q", "--quiet", action="store_true",
                            help="warnings and errors only (no progress or live status line)")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _add_verbosity(sub)


def _option_flags(parser: argparse.ArgumentParser, flags: dict[str, str] | None = None) -> dict[str, str]:
    """``dest -> --flag`` of every option below ``parser`` (subcommands included)."""
    flags = {} if flags is None else flags
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _option_flags(sub, flags)
        elif action.option_strings:
            flags.setdefault(action.dest, max(action.option_strings, key=len))
    return flags


def _check_numbers(args: argparse.Namespace, flags: dict[str, str]) -> None:
    """No command-line number is NaN or infinite, and no integer option is negative (none documents a meaning
    for either); ranges beyond that are each command's own."""
    for dest, value in vars(args).items():
        if isinstance(value, bool) or dest not in flags:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{flags[dest]} must be a finite number, got {value}")
        if isinstance(value, int) and value < 0:
            raise ConfigError(f"{flags[dest]} must be >= 0, got {value}")


def _log_level(args: argparse.Namespace) -> str:
    """The CLI's log level: -v DEBUG, -q WARNING, else ``VIBE_RT_LOG_LEVEL`` or INFO (its own progress)."""
    if getattr(args, "verbose", 0):
        return "DEBUG"
    if getattr(args, "quiet", False):
        return "WARNING"
    return os.environ.get(LEVEL_VARIABLE, "INFO")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand registered."""
    parser = _Parser(
        prog="vibe-rt",
        description="Real-time visual-to-M/EEG simulation (ViBE) streamed over Lab Streaming Layer.",
    )
    parser.add_argument("--version", action="version", version=f"vibe-rt {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"vibe_rt._commands.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"vibe_rt._commands.{name}":
                raise
            continue
        module.add_parser(subparsers)
    for sub in subparsers.choices.values():
        _add_verbosity(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    set_log_level(_log_level(args))
    try:
        _check_numbers(args, _option_flags(parser))
        return int(args.func(args) or 0)
    except VibeError as err:
        print(f"vibe-rt: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vibe-rt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
