"""Declared options: one definition per option (flag, help, rule), validated in one place.

A config dataclass (e.g. :class:`vibe_rt.stream.config.StreamConfig`) declares each field with :func:`option`:
its command-line flag, help text and a :class:`Rule`. The CLI builds its arguments from these declarations
(:func:`add_arguments`) and fills the config from the parsed flags (:func:`values_from_namespace`);
:func:`validate_options` checks every field against its rule and raises one :class:`~vibe_rt.errors.ConfigError`
that names the flag, the value and the fix. Nothing else re-checks the values.

A leaf module: it imports only the standard library and :mod:`vibe_rt.errors`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, require_path

_KEY = "vibe_rt_option"


# ------------------------------------------------------------------------------------------------------ rules
@dataclass(frozen=True)
class Rule:
    """Base class: accepts anything."""

    def check(self, flag: str, value: Any) -> None:
        """Raise :class:`ConfigError` when ``value`` is not allowed for ``flag``."""


@dataclass(frozen=True)
class Number(Rule):
    """A finite real number in ``[lo, hi]`` (``lo_open``: strictly above ``lo``); ``None`` allowed if ``optional``.

    ``hint`` completes the message (e.g. ``"250, 500 or 1000 are typical"``).
    """

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    optional: bool = False
    integer: bool = False
    hint: str = ""

    def check(self, flag: str, value: Any) -> None:
        if value is None and self.optional:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.integer and not isinstance(
                value, int)):
            raise ConfigError(f"{flag} must be {'an integer' if self.integer else 'a number'}, got {value!r}")
        if not math.isfinite(value) or value < self.lo or value > self.hi or (self.lo_open and value == self.lo):
            raise ConfigError(f"{flag} must be {self.describe()}, got {value!r}" + (f" ({self.hint})"
                                                                                    if self.hint else ""))

    def describe(self) -> str:
        """The allowed range in words, e.g. ``"a number > 0 and <= 65536"``."""
        bounds = []
        if self.lo > -math.inf:
            bounds.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi < math.inf:
            bounds.append(f"<= {self.hi:g}")
        kind = "an integer" if self.integer else "a number"
        return f"{kind} {' and '.join(bounds)}" if bounds else f"a finite {kind.split()[-1]}"


@dataclass(frozen=True)
class Choice(Rule):
    """One of ``values``."""

    values: tuple[Any, ...] = ()

    def check(self, flag: str, value: Any) -> None:
        if value not in self.values:
            raise ConfigError(f"{flag} must be one of {', '.join(map(str, self.values))}, got {value!r}")


@dataclass(frozen=True)
class Text(Rule):
    """A non-empty single-line string of at most ``max_len`` characters (``None`` allowed if ``optional``)."""

    max_len: int = 200
    optional: bool = False

    def check(self, flag: str, value: Any) -> None:
        if value is None and self.optional:
            return
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{flag} must be a non-empty text, got {value!r}")
        if len(value) > self.max_len or any(ord(ch) < 32 for ch in value):
            raise ConfigError(f"{flag} must be one line of at most {self.max_len} printable characters, got "
                              f"{value[:40]!r}")


@dataclass(frozen=True)
class ExistingPath(Rule):
    """A path that exists and is a ``"file"`` or a ``"folder"`` (``None`` allowed if ``optional``); ``what`` names
    it in messages (e.g. ``"video file"``). See :func:`vibe_rt.errors.require_path`."""

    kind: str = "file"
    what: str = "file"
    optional: bool = True

    def check(self, flag: str, value: Any) -> None:
        if value is None and self.optional:
            return
        if not str(value).strip():
            raise ConfigError(f"{flag} needs a path, got an empty one")
        give = "an existing file" if self.kind == "file" else "a folder"
        require_path(value, self.kind, self.what, f"give {give} to {flag}", ConfigError)


@dataclass(frozen=True)
class NewFile(Rule):
    """A file to be written: a non-empty path with one of ``suffixes``, in a writable folder (created if absent),
    never under ``/proc``, ``/sys`` or ``/dev``. An existing file is refused unless ``overwrite_flag`` is given."""

    suffixes: tuple[str, ...] = ()
    overwrite_flag: str = "--overwrite"

    def check(self, flag: str, value: Any) -> None:
        if value is None:
            return
        text = str(value)
        if not text.strip():
            raise ConfigError(f"{flag} needs a file name, got an empty one")
        path = Path(text).expanduser()
        if self.suffixes and path.suffix.lower() not in self.suffixes:
            raise ConfigError(f"{flag} writes {'/'.join(self.suffixes)} files: give a name ending in "
                              f"{self.suffixes[0]}, not {path.name}")
        resolved = path.resolve()
        if resolved.parts[1:2] and resolved.parts[1] in ("proc", "sys", "dev"):
            raise ConfigError(f"{flag} {path} is inside /{resolved.parts[1]}, which holds no regular files; "
                              "give a path on a disk")
        if path.is_dir():
            raise ConfigError(f"{flag} {path} is a folder: give a file name inside it")
        folder = _existing_ancestor(resolved.parent)
        if not folder.is_dir():
            raise ConfigError(f"{flag} {path}: {folder} is a file, not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{flag} {path}: the folder {folder} is not writable (read-only or no permission); "
                              "give a path on a writable disk")


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# ---------------------------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class OptionSpec:
    """How one config field appears on the command line.

    Attributes
    ----------
    flag : str
        The long flag, e.g. ``"--srate"`` (``""``: not a command-line option, set from Python or by another flag).
    help : str
        Help text (argparse ``%(default)s`` works).
    rule : Rule
        What values are valid.
    group : str
        Argument group title in ``--help``.
    metavar : str | None
        Shown in ``--help``.
    type : callable | None
        argparse conversion (default: from the field's default value: float, int, str, Path).
    action : str | None
        argparse action (e.g. ``"store_true"``).
    choices : tuple | None
        argparse choices (shown in help; the rule still validates).
    required : bool
        The flag must be given.
    """

    flag: str
    help: str
    rule: Rule = Rule()
    group: str = "options"
    metavar: str | None = None
    type: Any = None
    action: str | None = None
    choices: tuple[Any, ...] | None = None
    required: bool = False


def option(default: Any, flag: str, help: str, rule: Rule | None = None, **kw: Any) -> Any:
    """A dataclass field declared as a command-line option (see :class:`OptionSpec`)."""
    spec = OptionSpec(flag, help, rule or Rule(), **kw)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={_KEY: spec})
    return dataclasses.field(default=default, metadata={_KEY: spec})


def option_specs(config_cls: Any) -> dict[str, OptionSpec]:
    """Field name -> :class:`OptionSpec` of every declared option of a config dataclass (in field order)."""
    return {f.name: f.metadata[_KEY] for f in dataclasses.fields(config_cls) if _KEY in f.metadata}


def validate_options(config: Any) -> None:
    """Check every declared option of ``config`` against its rule (the first invalid one raises)."""
    for name, spec in option_specs(type(config)).items():
        spec.rule.check(spec.flag or name, getattr(config, name))


def add_arguments(parser: argparse.ArgumentParser, config_cls: Any, *, only: tuple[str, ...] | None = None,
                  groups: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add an argument per declared option with a flag (only the fields in ``only``, when given) and return the
    argument groups by title (``groups`` may pass groups made beforehand, e.g. for mutually exclusive flags, or
    map a title to another group)."""
    groups = dict(groups or {})
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    for name, spec in option_specs(config_cls).items():
        if not spec.flag or (only is not None and name not in only):
            continue
        group = groups.get(spec.group)
        if group is None:
            group = groups[spec.group] = parser.add_argument_group(spec.group)
        kw: dict[str, Any] = {"dest": name, "help": spec.help}
        if spec.required:
            kw["required"] = True
        default = defaults[name]
        if spec.action is not None:
            kw["action"] = spec.action
        else:
            kw["default"] = None if default is dataclasses.MISSING else default
            kw["type"] = path_argument if spec.type is Path else (spec.type or _argparse_type(default))
            if spec.metavar:
                kw["metavar"] = spec.metavar
            if spec.choices is not None:
                kw["choices"] = spec.choices
        group.add_argument(spec.flag, **kw)
    return groups


def values_from_namespace(args: argparse.Namespace, config_cls: Any, *, only: tuple[str, ...] | None = None
                          ) -> dict[str, Any]:
    """The declared options present in parsed arguments (only the fields in ``only``, when given), as keyword
    arguments of ``config_cls``."""
    return {name: getattr(args, name) for name, spec in option_specs(config_cls).items()
            if spec.flag and hasattr(args, name) and (only is None or name in only)}


def path_argument(text: str) -> Path:
    """argparse type of a path option: an empty path is an error (``Path("")`` would silently mean ``"."``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a path, got an empty one")
    return Path(text)


def _argparse_type(default: Any) -> Any:
    if isinstance(default, bool):
        return None
    if isinstance(default, float):
        return float
    if isinstance(default, int):
        return int
    return None


__all__ = ["Choice", "ExistingPath", "NewFile", "Number", "OptionSpec", "Rule", "Text", "add_arguments", "option",
           "option_specs", "path_argument", "validate_options", "values_from_namespace"]
