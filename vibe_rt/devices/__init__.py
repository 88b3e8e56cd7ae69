"""Device profiles: the amplifiers ``vibe-rt stream --device`` emulates (``vibe-rt devices`` lists them).

A profile is a JSON document (the format: :mod:`vibe_rt.devices.profile`). Where they are found:

- built in: ``vibe_rt/devices/profiles/*.json`` (BrainAmp, actiCHamp, BioSemi, OpenBCI Cyton);
- the user's: every ``*.json`` in the folders of the ``VIBE_RT_DEVICES`` environment variable (separated like
  ``PATH``), else in ``~/.config/vibe-rt/devices`` (``$XDG_CONFIG_HOME/vibe-rt/devices``); a user profile of the
  same name replaces the built-in one;
- any file: ``--device path/to/my-amp.json``.

Every profile is validated when it is read; a bad one is one :class:`~vibe_rt.errors.ConfigError` line naming
the file, the field and the fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ConfigError
from .profile import FORMAT, DeviceProfile, LslShape, parse_profile

BUILTIN_FOLDER = Path(__file__).parent / "profiles"
USER_FOLDERS_VARIABLE = "VIBE_RT_DEVICES"


def user_folders() -> list[Path]:
    """The folders searched for user profiles (see the module docstring), whether they exist or not."""
    value = os.environ.get(USER_FOLDERS_VARIABLE)
    if value:
        return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [Path(config) / "vibe-rt" / "devices"]


def read_profile(path: str | os.PathLike) -> DeviceProfile:
    """Read and validate one profile file."""
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "missing"
        raise ConfigError(f"device profile {path} is {what}; give a JSON profile file or a device name (vibe-rt "
                          "devices lists them)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"device profile {path} is not valid JSON ({err}); fix the file") from None
    except OSError as err:
        raise ConfigError(f"device profile {path} cannot be read ({err.strerror}); check its permissions") from None
    return parse_profile(data, str(path), path)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _files() -> dict[str, Path]:
    """Device name (file stem) -> profile file, user folders overriding the built-in ones."""
    files = {p.stem: p for p in sorted(BUILTIN_FOLDER.glob("*.json"))}
    for folder in reversed(user_folders()):
        if folder.is_dir():
            files.update({p.stem: p for p in sorted(folder.glob("*.json"))})
    return files


def device_names() -> list[str]:
    """Names of the built-in and user profiles."""
    return sorted(_files())


def load_device(spec: str | os.PathLike) -> DeviceProfile:
    """The profile named ``spec`` (built-in or user), or read from the file ``spec`` (a path or ``*.json``)."""
    text = os.fspath(spec)
    files = _files()
    if text in files:
        profile = read_profile(files[text])
        if profile.name != text:
            raise ConfigError(f"device profile {files[text]} is named {profile.name!r}; name the file "
                              f"{profile.name}.json or the profile {text!r}")
        return profile
    if text.lower().endswith(".json") or os.sep in text or Path(text).exists():
        return read_profile(text)
    raise ConfigError(f"unknown device {text!r}; give one of {', '.join(sorted(files))} (vibe-rt devices lists "
                      "them) or a profile file (FILE.json)")


def list_devices() -> list[DeviceProfile]:
    """Every built-in and user profile, validated, by name."""
    return [load_device(name) for name in device_names()]


__all__ = ["BUILTIN_FOLDER", "DeviceProfile", "FORMAT", "LslShape", "USER_FOLDERS_VARIABLE", "device_names",
           "list_devices", "load_device", "parse_profile", "read_profile", "user_folders"]
