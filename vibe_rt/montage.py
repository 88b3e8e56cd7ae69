"""Montages and device profiles: channels, types, units, positions, model rate and epoch window.

A :class:`Montage` drives the model shapes, the LSL channel metadata, resampling and the comparator's
channel matching. Presets: ``things-eeg2`` and ``things-meg``; custom ones come from any MNE built-in
montage plus a channel list (:func:`make_montage`).

The template head is MNE's ``colin27_1005`` (head coordinates of a real head, the frame of the presets and of
the forward model). :func:`template_positions` brings the positions of another MNE montage into it: MNE's
idealised spherical montages (``biosemi64``, ``easycap-M1`` ...) use a head frame of their own.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    import mne

THINGS_EEG2_CHANNELS = (
    "Pz", "P3", "P7", "O1", "Oz", "O2", "P4", "P8", "P1", "P5",
    "PO7", "PO3", "POz", "PO4", "PO8", "P6", "P2",
)  # fmt: skip
THINGS_MEG_BAD_CHANNEL = "MRO11"
THINGS_MEG_ABSENT = ("MLF25", "MRF43", "MRO13")  # CTF-275 sensors that the THINGS-MEG system does not record
_MEG_HEAD_RADIUS_M = 0.115  # sphere on which the 2-D CTF-275 layout is projected (approximate positions)
SI_UNITS = {"eeg": "V", "mag": "T", "grad": "T/m"}


@dataclass(frozen=True)
class Montage:
    """A device profile.

    Parameters
    ----------
    name : str
        Preset or user-given name.
    ch_names : tuple of str
        Channel labels, in model order.
    ch_types : tuple of str
        MNE channel types: ``"eeg"``, ``"mag"`` or ``"grad"``.
    positions : ndarray, shape (n_channels, 3)
        Sensor positions in metres, head coordinates (X right, Y front, Z up).
    sfreq : float
        Model sampling rate in Hz.
    tmin : float
        Epoch start relative to stimulus onset, in seconds.
    n_times : int
        Samples per epoch at ``sfreq``.
    positions_approximate : bool
        True where MNE ships no exact 3-D positions for this device.
    """

    name: str
    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    positions: np.ndarray = field(repr=False, compare=False)
    sfreq: float
    tmin: float
    n_times: int
    positions_approximate: bool = False

    def __post_init__(self) -> None:
        n = len(self.ch_names)
        if n == 0:
            raise ConfigError(f"montage {self.name!r} has no channels; give at least one channel name")
        if len(set(self.ch_names)) != n:
            raise ConfigError(f"montage {self.name!r} has duplicate channel names")
        if len(self.ch_types) != n:
            raise ConfigError(f"montage {self.name!r}: {len(self.ch_types)} channel types for {n} channels")
        bad = sorted(set(self.ch_types) - set(SI_UNITS))
        if bad:
            raise ConfigError(f"montage {self.name!r}: unknown channel types {bad}; use one of {sorted(SI_UNITS)}")
        if np.shape(self.positions) != (n, 3):
            raise ConfigError(f"montage {self.name!r}: positions must have shape ({n}, 3)")
        if self.sfreq <= 0 or self.n_times <= 0:
            raise ConfigError(f"montage {self.name!r}: sfreq and n_times must be positive")

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return len(self.ch_names)

    @property
    def times(self) -> np.ndarray:
        """Epoch sample times in seconds, shape (n_times,)."""
        return self.tmin + np.arange(self.n_times) / self.sfreq

    @property
    def tmax(self) -> float:
        """Time of the last epoch sample, in seconds."""
        return float(self.times[-1])

    @property
    def modality(self) -> str:
        """``"EEG"`` or ``"MEG"`` (the LSL stream type)."""
        return "EEG" if all(t == "eeg" for t in self.ch_types) else "MEG"

    @property
    def units(self) -> tuple[str, ...]:
        """SI unit per channel: ``"V"`` for EEG, ``"T"`` for magnetometers, ``"T/m"`` for gradiometers."""
        return tuple(SI_UNITS[t] for t in self.ch_types)

    @property
    def unit(self) -> str:
        """The one SI unit of all channels, or ``"SI"`` for a mixed montage (e.g. magnetometers + gradiometers)."""
        units = set(self.units)
        return units.pop() if len(units) == 1 else "SI"

    def create_info(self, sfreq: float | None = None) -> mne.Info:
        """An :class:`mne.Info` with these channels and positions, at ``sfreq`` (default: model rate)."""
        import mne

        info = mne.create_info(list(self.ch_names), sfreq or self.sfreq, list(self.ch_types))
        eeg = {n: p for n, p, t in zip(self.ch_names, self.positions, self.ch_types) if t == "eeg"}
        if eeg:
            info.set_montage(mne.channels.make_dig_montage(ch_pos=eeg, coord_frame="head"))
        with info._unlock():
            info["dev_head_t"] = mne.transforms.Transform("meg", "head")  # sensor positions are in head coords
            for ch, pos in zip(info["chs"], self.positions):
                if ch["kind"] == mne.io.constants.FIFF.FIFFV_MEG_CH:
                    ch["loc"][:3] = pos
                    ch["loc"][3:12] = _radial_orientation(pos)
        return info

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (saved in checkpoints and engine manifests)."""
        return {
            "name": self.name,
            "ch_names": list(self.ch_names),
            "ch_types": list(self.ch_types),
            "positions": np.asarray(self.positions, dtype=float).round(6).tolist(),
            "sfreq": float(self.sfreq),
            "tmin": float(self.tmin),
            "n_times": int(self.n_times),
            "positions_approximate": bool(self.positions_approximate),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Montage:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                name=str(data["name"]),
                ch_names=tuple(data["ch_names"]),
                ch_types=tuple(data["ch_types"]),
                positions=np.asarray(data["positions"], dtype=float),
                sfreq=float(data["sfreq"]),
                tmin=float(data["tmin"]),
                n_times=int(data["n_times"]),
                positions_approximate=bool(data.get("positions_approximate", False)),
            )
        except KeyError as err:
            raise ConfigError(f"montage description lacks the key {err}") from err

    def with_window(self, sfreq: float, tmin: float, n_times: int) -> Montage:
        """The same channels with another model rate and epoch window."""
        return Montage(self.name, self.ch_names, self.ch_types, self.positions, sfreq, tmin, n_times,
                       self.positions_approximate)

    def pick(self, ch_names: Sequence[str]) -> Montage:
        """A montage with a subset of channels, in the given order."""
        missing = [c for c in ch_names if c not in self.ch_names]
        if missing:
            raise ConfigError(f"channels {missing} are not in montage {self.name!r}")
        idx = [self.ch_names.index(c) for c in ch_names]
        return Montage(self.name, tuple(ch_names), tuple(self.ch_types[i] for i in idx), self.positions[idx],
                       self.sfreq, self.tmin, self.n_times, self.positions_approximate)


def _radial_orientation(pos: np.ndarray) -> np.ndarray:
    """A coil frame (ex, ey, ez) whose normal points away from the head centre."""
    ez = pos / (np.linalg.norm(pos) or 1.0)
    helper = np.array([0.0, 0.0, 1.0]) if abs(ez[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    ex = np.cross(helper, ez)
    ex /= np.linalg.norm(ex)
    ey = np.cross(ez, ex)
    return np.concatenate([ex, ey, ez])


@lru_cache(maxsize=16)
def _mne_eeg_positions(mne_montage: str) -> dict[str, np.ndarray]:
    import mne

    valid = mne.channels.get_builtin_montages()
    if mne_montage not in valid:
        raise ConfigError(f"unknown MNE montage {mne_montage!r}; valid names: {', '.join(valid)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        dig = mne.channels.make_standard_montage(mne_montage)
    info = mne.create_info(dig.ch_names, 100.0, "eeg")
    info.set_montage(dig)  # transforms to head coordinates through the montage's fiducials
    return {ch["ch_name"]: ch["loc"][:3].copy() for ch in info["chs"]}


TEMPLATE_MONTAGE = "colin27_1005"
#: Sphere fitted (least squares) to the 340 positions of the template montage in head coordinates: centre
#: (-1, 15, 39) mm, radius 98 mm (the EEG head of :mod:`vibe_rt.data._forward`).
TEMPLATE_HEAD_CENTRE = np.array([0.0, 0.015, 0.039])
TEMPLATE_HEAD_RADIUS = 0.098


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares ``dst ~ s R src + t`` (Umeyama 1991): scale, rotation (3, 3) and translation (3,)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sv, vt = np.linalg.svd(b.T @ a)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sv) @ d) / (a**2).sum())
    return scale, rot, mu_d - scale * rot @ mu_s


def template_positions(mne_montage: str, names: Sequence[str], frame: str | None = None
                       ) -> tuple[np.ndarray, float]:
    """Positions of ``names`` (case-insensitive) in an MNE montage, moved into the template head's frame.

    The move is the similarity transform (scale, rotation, translation) that best maps the electrodes that
    ``frame`` (default: the montage itself) shares by name with the template (``colin27_1005``) onto the
    template's; MNE's ``biosemi128`` has no 10-10 names, so its frame is ``biosemi64`` (the same sphere).

    Returns
    -------
    positions : ndarray, shape (n, 3)
        Metres, template head coordinates.
    residual : float
        RMS distance (m) between the moved shared electrodes and the template's (0 for the template itself).
    """
    source = _mne_eeg_positions(mne_montage)
    by_lower = {k.lower(): v for k, v in source.items()}
    missing = [n for n in names if n.lower() not in by_lower]
    if missing:
        raise ConfigError(f"channels {missing[:8]} are not in MNE montage {mne_montage!r}; use its names "
                          f"({', '.join(list(source)[:12])} ...)")
    pos = np.array([by_lower[n.lower()] for n in names])
    template = _mne_eeg_positions(TEMPLATE_MONTAGE)
    reference = _mne_eeg_positions(frame or mne_montage)
    shared = [k for k in reference if k in template]
    if len(shared) < 8:
        raise ConfigError(f"MNE montage {frame or mne_montage!r} shares {len(shared)} electrode names with the "
                          f"template {TEMPLATE_MONTAGE}, too few to place it on the template head; give a frame "
                          "montage with 10-10 names")
    src = np.array([reference[k] for k in shared])
    dst = np.array([template[k] for k in shared])
    scale, rot, shift = _similarity(src, dst)
    residual = float(np.sqrt(np.mean(np.sum((scale * src @ rot.T + shift - dst) ** 2, axis=1))))
    return scale * pos @ rot.T + shift, residual


def _eeg_channels(mne_montage: str) -> list[str]:
    """The EEG channels of an MNE built-in montage (fiducials and EOG-like extras left out)."""
    return [n for n in _mne_eeg_positions(mne_montage) if not n.upper().startswith(("EXG", "EOG", "ECG", "A1", "A2",
                                                                                   "M1", "M2"))]


def make_montage(
    mne_montage: str,
    ch_names: Sequence[str],
    *,
    sfreq: float,
    tmin: float,
    n_times: int,
    name: str | None = None,
) -> Montage:
    """A custom EEG montage from an MNE built-in montage name and a channel list.

    Parameters
    ----------
    mne_montage : str
        Any name from :func:`mne.channels.get_builtin_montages`, e.g. ``"colin27_1005"``, ``"biosemi64"``.
    ch_names : sequence of str
        Channels to use, in model order. Matched case-insensitively.
    sfreq, tmin, n_times : float, float, int
        Model rate (Hz), epoch start (s) and samples per epoch.
    name : str | None
        Name of the montage; default ``"<mne_montage>-<n>ch"``.
    """
    positions = _mne_eeg_positions(mne_montage)
    by_lower = {k.lower(): k for k in positions}
    missing = [c for c in ch_names if c.lower() not in by_lower]
    if missing:
        raise ConfigError(
            f"channels {missing} are not in MNE montage {mne_montage!r}; "
            f"pick from: {', '.join(sorted(positions)[:60])}{' ...' if len(positions) > 60 else ''}"
        )
    pos = np.array([positions[by_lower[c.lower()]] for c in ch_names])
    return Montage(name or f"{mne_montage}-{len(ch_names)}ch", tuple(ch_names), ("eeg",) * len(ch_names), pos,
                   float(sfreq), float(tmin), int(n_times))


def _things_eeg2() -> Montage:
    return make_montage("colin27_1005", THINGS_EEG2_CHANNELS, sfreq=100.0, tmin=-0.2, n_times=100,
                        name="things-eeg2")


def _things_meg() -> Montage:
    """CTF-275 layout without the three sensors the THINGS-MEG system lacks (MLF25, MRF43, MRO13: its recordings
    have 272 MEG channels, named ``<sensor>-1609``) and without its malfunctioning MRO11 (dropped in the published
    preprocessing): 271 magnetometers. Positions are approximate.

    MNE ships only a 2-D layout for CTF systems, so positions are the layout projected onto a sphere
    (radius 11.5 cm): good for topographies and channel matching, not for source modelling. The THINGS-MEG
    loader reads the exact channel names and positions from the published files.
    """
    import mne

    layout = mne.channels.read_layout("CTF275")
    names = [n for n in layout.names if n not in THINGS_MEG_ABSENT and n != THINGS_MEG_BAD_CHANNEL]
    xy = layout.pos[: len(layout.names), :2] + layout.pos[: len(layout.names), 2:4] / 2
    xy = {n: p for n, p in zip(layout.names, xy)}
    centre = np.mean(list(xy.values()), axis=0)
    span = np.max(np.abs(np.array(list(xy.values())) - centre))
    pos = []
    for n in names:
        x, y = (xy[n] - centre) / span  # unit disc, azimuthal equidistant projection
        theta = min(np.hypot(x, y), 1.0) * np.pi / 2
        phi = np.arctan2(y, x)
        pos.append(_MEG_HEAD_RADIUS_M * np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi),
                                                  np.cos(theta)]))
    return Montage("things-meg", tuple(names), ("mag",) * len(names), np.array(pos), 200.0, -0.1, 281,
                   positions_approximate=True)


_PRESETS = {"things-eeg2": _things_eeg2, "things-meg": _things_meg}


def list_montages() -> list[str]:
    """Names of the preset montages."""
    return sorted(_PRESETS)


@lru_cache(maxsize=8)
def get_montage(name: str) -> Montage:
    """A preset montage, or a custom EEG one written ``MNE_MONTAGE[:CH1,CH2,...]``.

    The custom form takes the channels (all of them when none are listed) and positions of an MNE built-in
    montage (:func:`mne.channels.get_builtin_montages`, e.g. ``biosemi64`` or ``standard_1020:O1,Oz,O2``) with
    the things-eeg2 rate and window (100 Hz, -0.2 s, 100 samples); use :func:`make_montage` for another window.
    Unknown names raise :class:`ConfigError` listing the valid ones.
    """
    factory = _PRESETS.get(name)
    if factory is not None:
        return factory()
    import mne

    mne_name, _, channels = name.partition(":")
    if mne_name not in mne.channels.get_builtin_montages():
        raise ConfigError(
            f"unknown montage {name!r}; valid presets: {', '.join(list_montages())}, or MNE_MONTAGE[:CH1,CH2,...] "
            f"with an MNE montage ({', '.join(mne.channels.get_builtin_montages()[:8])}, ...)"
        )
    names = [c.strip() for c in channels.split(",") if c.strip()] or _eeg_channels(mne_name)
    preset = _things_eeg2()
    return make_montage(mne_name, names, sfreq=preset.sfreq, tmin=preset.tmin, n_times=preset.n_times,
                        name=name if channels else mne_name)
