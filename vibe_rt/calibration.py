"""Calibration profiles: how a live recording differs from vibe-rt's synthesized signal, typed and validated.

A profile models ``live(t) ~ gain[c] * synth(t - latency)`` per channel, optionally with a :class:`LatentAdapter`
(a per-dimension scale and shift of the model's latent, applied by the predictor before the decoder). It is
fitted from a comparison session by ``vibe-rt calibrate`` (:func:`vibe_rt.compare.calibrate.fit_calibration`)
and consumed by ``vibe-rt stream --calibration PROFILE``: :meth:`CalibrationProfile.load` reads and validates
it, :meth:`CalibrationProfile.resolve` matches it once to the streamed channels, :meth:`ResolvedCalibration.apply_gain`
scales every predicted batch and :attr:`ResolvedCalibration.latency_s` is the onset delay per channel that the
synthesizer applies to the whole (tapered) response, so that a latency never cuts it. This module needs only numpy
and vibe-rt's errors, logger and montage, so the streamer reads profiles without importing the comparator.

Profile format (JSON, ``calibration/<name>.json``)::

    {"format": "vibe-rt-calibration", "version": 1 (2 with an adapter), "name": "lab-eeg",
     "montage": "things-eeg2", "sfreq": 100.0, "channels": [...], "gain": [...],
     "latency_s": 0.024 (or one value per channel), "latency_fit": {"latency_s": ..., "method": ..., ...},
     "uncertainty": {"method": "block bootstrap over events", "n_boot": 200, "gain_se": [...],
                     "latency_se_s": 0.0004 (or one per channel), ...} or {},
     "model_hash": "0123456789abcdef" or null (the model that synthesized the session, when known),
     "channel_map": {"Oz": "oz", "P8": "interpolated:spline", ...}, "created": "2026-...Z",
     "adapter": null or {"kind": "latent-affine", "latent_shape": [8, 32], "model_hash": ...,
                         "scale": [[...]], "shift": [[...]], "fit": {...}},
     "metrics_before": {...}, "metrics_after": {...}, "metrics_heldout": {...}, "n_events": ..., "n_keys": ...}

Versions: 1 holds gain, latency and channel map; 2 adds the latent adapter, and is written only for a profile
that has one (so that a vibe-rt older than the adapter refuses such a profile instead of ignoring it). Profiles
of earlier vibe-rt versions name the channels ``ch_names``: still read, no longer written. Unknown keys are
ignored. ``metrics_<key>`` entries are :attr:`CalibrationProfile.metrics` ``[<key>]``: ``metrics_after`` is
gain and latency only; with an adapter, ``metrics_after_adapter`` is what the stream emits (through the VAE
round trip) and ``metrics_heldout["adapter"]`` its held-out scores.

Valid values (checked whenever a profile is built, loaded or saved; a :class:`~vibe_rt.errors.ConfigError`
names the field and the fix):

* ``channels``: at least one label, non-empty strings, unique ignoring case (labels are matched ignoring case);
* ``gain``: one finite number per channel with ``GAIN_RANGE[0] <= |gain| <= GAIN_RANGE[1]`` (1e-3 to 1e3;
  negative: reversed polarity). Live and synthesized data in the same unit differ by a factor of a few; 1e6 is
  microvolts read as volts;
* ``latency_s``: one finite number of seconds, or one per channel, with ``|latency_s| <= MAX_LATENCY_S`` (1 s,
  about an epoch: a larger offset moves the response out of the window);
* ``sfreq`` (Hz, of the fitted ERPs) positive when given, ``n_events`` and ``n_keys`` counts >= 0,
  ``channel_map`` strings to strings;
* ``uncertainty`` a mapping whose ``gain_se`` (one per channel) and ``latency_se_s`` (one, or one per channel)
  are finite numbers >= 0 when present; ``model_hash`` a string or null.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ._logs import logger
from .errors import ConfigError, require_path
from .montage import Montage

__all__ = ["ADAPTER_KIND", "FORMAT", "GAIN_RANGE", "MAX_LATENCY_S", "VERSION", "AcceptsLatentAdapter",
           "CalibrationProfile", "LatentAdapter", "ResolvedCalibration", "SplineSignal", "shift_signal"]

FORMAT = "vibe-rt-calibration"
VERSION = 2  # 1: gain, latency, channel map; 2: + latent adapter
ADAPTER_KIND = "latent-affine"
GAIN_RANGE = (1e-3, 1e3)  # |gain| bounds: outside them the live data's unit is wrong, not the subject
MAX_LATENCY_S = 1.0
_REFIT = "refit the profile with `vibe-rt calibrate` or correct the file"


@dataclass(frozen=True, eq=False)
class LatentAdapter:
    """``z -> scale * z + shift`` on latents ``(..., latent_tokens, latent_dim)``, for one model.

    Fitted by :func:`vibe_rt.compare.adapter.fit_latent_adapter`; applied by a predictor that implements
    :class:`AcceptsLatentAdapter`.

    Attributes
    ----------
    scale, shift : ndarray, shape (latent_tokens, latent_dim), float32, read-only
    model_hash : str
        :func:`vibe_rt.checkpoint.model_hash` of the model it was fitted for (checked before streaming).
    info : dict
        How it was fitted (penalty, steps, loss), stored with it.
    """

    scale: np.ndarray
    shift: np.ndarray
    model_hash: str
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("scale", "shift"):
            value = np.array(getattr(self, name), dtype=np.float32)
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        if self.scale.ndim != 2 or self.scale.shape != self.shift.shape:
            raise ConfigError(f"latent adapter: scale {self.scale.shape} and shift {self.shift.shape} must be "
                              "equal 2-D shapes (latent_tokens, latent_dim)")
        if not (np.all(np.isfinite(self.scale)) and np.all(np.isfinite(self.shift))):
            raise ConfigError("latent adapter: scale and shift must be finite; refit with `vibe-rt calibrate "
                              "--adapter`")

    @property
    def latent_shape(self) -> tuple[int, int]:
        """``(latent_tokens, latent_dim)``."""
        return tuple(self.scale.shape)

    def require_model(self, model_hash: str) -> None:
        """Raise :class:`ConfigError` unless the adapter was fitted for the model with this hash."""
        if self.model_hash != model_hash:
            raise ConfigError(f"the calibration's latent adapter was fitted for model {self.model_hash}, the model "
                              f"streamed is {model_hash}; refit it for this model (`vibe-rt calibrate --adapter "
                              "--model CHECKPOINT`) or use a profile without adapter")

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Adapt latents ``(B, latent_tokens, latent_dim)`` (float32 out)."""
        z = np.asarray(z, dtype=np.float32)
        if z.shape[-2:] != self.latent_shape:
            raise ConfigError(f"latent adapter for latents {self.latent_shape} got {z.shape[-2:]}; the profile "
                              "was fitted for another model")
        return z * self.scale + self.shift

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored under ``"adapter"`` in a calibration profile."""
        return {"kind": ADAPTER_KIND, "latent_shape": list(self.latent_shape), "model_hash": self.model_hash,
                "scale": np.round(self.scale.astype(float), 6).tolist(),
                "shift": np.round(self.shift.astype(float), 6).tolist(), "fit": self.info}

    @classmethod
    def from_dict(cls, data: Any, where: str = "calibration profile") -> LatentAdapter:
        """Read :meth:`to_dict`'s form (a :class:`ConfigError` names what is wrong)."""
        if not isinstance(data, dict) or data.get("kind") != ADAPTER_KIND:
            raise ConfigError(f"{where}: adapter kind must be {ADAPTER_KIND!r}, got "
                              f"{data.get('kind') if isinstance(data, dict) else type(data).__name__!r}")
        for key in ("scale", "shift", "model_hash"):
            if key not in data:
                raise ConfigError(f"{where}: the adapter lacks {key!r}; refit with `vibe-rt calibrate --adapter`")
        try:
            return cls(np.asarray(data["scale"], float), np.asarray(data["shift"], float), str(data["model_hash"]),
                       dict(data.get("fit") or {}))
        except (TypeError, ValueError) as err:  # ragged lists, strings
            raise ConfigError(f"{where}: malformed adapter ({err}); refit with `vibe-rt calibrate --adapter`") \
                from err


@runtime_checkable
class AcceptsLatentAdapter(Protocol):
    """A predictor that applies a calibration's latent adapter between its latent and its decoder
    (:class:`vibe_rt.runtime.predictor.Predictor`)."""

    def set_latent_adapter(self, adapter: LatentAdapter | None) -> None:
        """Apply ``adapter`` from the next prediction on (None removes it); raise ConfigError if it cannot."""


@dataclass(frozen=True, kw_only=True)
class CalibrationProfile:
    """A calibration profile (see the module docstring for the JSON form and the valid values).

    Attributes
    ----------
    channels : tuple of str
        Model channel labels the gains and latencies belong to.
    gain : tuple of float, one per channel
        ``live / synthesized`` amplitude.
    latency_s : float | tuple of float
        Delay of the live response (s, > 0: live later), overall or one per channel.
    name : str
    montage : str | None
        Name of the model montage it was fitted on (informative: profiles apply by channel label).
    sfreq : float | None
        Rate of the ERPs it was fitted on (Hz).
    channel_map : dict of str to str
        Model channel -> live device label (``"interpolated:<method>"`` where the device lacks it).
    adapter : LatentAdapter | None
    created : str | None
        ISO 8601 time of the fit.
    metrics : dict
        ERP metrics (``"before"``, ``"after"``, ``"heldout"``, ``"after_adapter"``), stored as
        ``metrics_<key>``.
    latency_fit : dict
        Details of the latency estimate (method, residual, r at zero lag ...).
    uncertainty : dict
        Standard errors of the fit (``gain_se`` per channel, ``latency_se_s``), from a bootstrap over the
        session's events (``method``, ``n_boot``); empty when the session kept no events to resample.
    model_hash : str | None
        :func:`vibe_rt.checkpoint.model_hash` of the model that synthesized the session, when known.
    n_events, n_keys : int | None
        Events and images of the session it was fitted on.
    where : str
        (Init only.) How error messages name the profile, e.g. its file.
    """

    channels: tuple[str, ...]
    gain: tuple[float, ...]
    latency_s: float | tuple[float, ...]
    name: str = ""
    montage: str | None = None
    sfreq: float | None = None
    channel_map: Mapping[str, str] = field(default_factory=dict)
    adapter: LatentAdapter | None = None
    created: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    latency_fit: Mapping[str, Any] = field(default_factory=dict)
    uncertainty: Mapping[str, Any] = field(default_factory=dict)
    model_hash: str | None = None
    n_events: int | None = None
    n_keys: int | None = None
    where: InitVar[str] = "calibration profile"

    def __post_init__(self, where: str) -> None:
        self.validate(where)

    # ------------------------------------------------------------------------------------------ checks
    def validate(self, where: str = "calibration profile") -> None:
        """Check every field (see the module docstring) and store the numbers as floats, the lists as tuples.

        Raises
        ------
        ConfigError
            Naming ``where``, the field and the fix.
        """
        def put(name: str, value: Any) -> None:  # a frozen dataclass stores its normalised fields so
            object.__setattr__(self, name, value)

        channels = self.channels
        if isinstance(channels, str) or not isinstance(channels, Sequence) or not channels or \
                not all(isinstance(c, str) and c.strip() for c in channels):
            raise ConfigError(f"{where}: channels must be a non-empty list of channel labels, got {channels!r}; "
                              f"{_REFIT}")
        lower = [c.lower() for c in channels]
        dups = sorted({c for c in channels if lower.count(c.lower()) > 1})
        if dups:
            raise ConfigError(f"{where}: channels {dups} appear more than once (labels match ignoring case); "
                              f"{_REFIT}")
        put("channels", tuple(channels))
        put("gain", _numbers(self.gain, "gain", len(channels), where))
        for c, g in zip(channels, self.gain):
            if not GAIN_RANGE[0] <= abs(g) <= GAIN_RANGE[1]:
                raise ConfigError(f"{where}: gain {g:g} of channel {c} is outside the plausible range (|gain| "
                                  f"{GAIN_RANGE[0]:g} to {GAIN_RANGE[1]:g}); live and synthesized data in one unit "
                                  "differ by a factor of a few, so this is a unit error (1e6: microvolts read as "
                                  "volts): give the live unit (--live-unit) and refit with `vibe-rt calibrate`, or "
                                  "correct the file")
        latency = self.latency_s
        if isinstance(latency, Sequence | np.ndarray) and not isinstance(latency, str) and np.ndim(latency) > 0:
            put("latency_s", _numbers(latency, "latency_s", len(channels), where))
        else:  # one value for all channels
            put("latency_s", _number(latency.item() if isinstance(latency, np.ndarray) else latency, "latency_s",
                                     where))
        for lat in np.atleast_1d(self.latency_s):
            if abs(lat) > MAX_LATENCY_S:
                raise ConfigError(f"{where}: latency_s {lat:g} s is outside +-{MAX_LATENCY_S:g} s (the response "
                                  f"would leave the epoch); {_REFIT}")
        if not isinstance(self.name, str):
            raise ConfigError(f"{where}: name must be a string, got {self.name!r}; {_REFIT}")
        for key in ("montage", "created", "model_hash"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                raise ConfigError(f"{where}: {key} must be a string, got {getattr(self, key)!r}; {_REFIT}")
        if self.sfreq is not None:
            put("sfreq", _number(self.sfreq, "sfreq", where))
            if not self.sfreq > 0:
                raise ConfigError(f"{where}: sfreq must be a positive number of Hz, got {self.sfreq:g}; {_REFIT}")
        for key in ("n_events", "n_keys"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer)
                                      or value < 0):
                raise ConfigError(f"{where}: {key} must be a count >= 0, got {value!r}; {_REFIT}")
        cmap = self.channel_map
        if not isinstance(cmap, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in cmap.items()):
            raise ConfigError(f"{where}: channel_map must map model channel labels to device labels (strings), "
                              f"got {cmap!r}; {_REFIT}")
        put("channel_map", dict(cmap))
        for key in ("metrics", "latency_fit", "uncertainty"):
            if not isinstance(getattr(self, key), Mapping):
                raise ConfigError(f"{where}: {key} must be a mapping, got {getattr(self, key)!r}; {_REFIT}")
            put(key, dict(getattr(self, key)))
        for key, n in (("gain_se", len(channels)), ("latency_se_s", None)):
            value = self.uncertainty.get(key)
            if value is None:
                continue
            if n is not None or (np.ndim(value) > 0 and not isinstance(value, str)):
                values = _numbers(value, f"uncertainty.{key}", len(channels), where)
            else:
                values = (_number(value, f"uncertainty.{key}", where),)
            if min(values) < 0:
                raise ConfigError(f"{where}: uncertainty.{key} must be >= 0 (a standard error); {_REFIT}")
        if self.adapter is not None and not isinstance(self.adapter, LatentAdapter):
            raise ConfigError(f"{where}: adapter must be a LatentAdapter or None, got "
                              f"{type(self.adapter).__name__}")

    @property
    def version(self) -> int:
        """The format version this profile is written with (2 with an adapter, else 1)."""
        return VERSION if self.adapter is not None else 1

    # ---------------------------------------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        """The JSON form (see the module docstring)."""
        out: dict[str, Any] = {
            "format": FORMAT, "version": self.version, "name": self.name, "montage": self.montage,
            "sfreq": self.sfreq, "channels": list(self.channels), "gain": list(self.gain),
            "latency_s": self.latency_s if isinstance(self.latency_s, float) else list(self.latency_s),
            "latency_fit": dict(self.latency_fit), "uncertainty": dict(self.uncertainty),
            "model_hash": self.model_hash, "channel_map": dict(self.channel_map), "created": self.created,
            "n_events": self.n_events, "n_keys": self.n_keys,
            "adapter": self.adapter.to_dict() if self.adapter is not None else None,
        }
        out.update({f"metrics_{key}": value for key, value in self.metrics.items()})
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "calibration profile") -> CalibrationProfile:
        """A profile from its JSON form (also those of earlier versions); :class:`ConfigError` names the problem."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{where} is not a vibe-rt calibration profile (format must be {FORMAT!r}); "
                              "make one with `vibe-rt calibrate`")
        version = data.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ConfigError(f"{where}: calibration format version must be 1..{VERSION}, got {version!r}; "
                              f"{_REFIT}")
        if version > VERSION:
            raise ConfigError(f"{where}: calibration format version {version} is newer than this vibe-rt "
                              f"understands ({VERSION}); upgrade vibe-rt")
        if "channels" not in data and "ch_names" in data:  # the name of earlier versions
            data = {**data, "channels": data["ch_names"]}
        for key in ("channels", "gain", "latency_s"):
            if key not in data:
                raise ConfigError(f"{where}: calibration profile lacks {key!r}; {_REFIT}")
        adapter = data.get("adapter")
        return cls(
            channels=data["channels"], gain=data["gain"], latency_s=data["latency_s"],
            name=data.get("name") or "", montage=data.get("montage"), sfreq=data.get("sfreq"),
            channel_map=data.get("channel_map") or {}, created=data.get("created"),
            adapter=LatentAdapter.from_dict(adapter, where) if adapter is not None else None,
            metrics={k[len("metrics_"):]: v for k, v in data.items() if k.startswith("metrics_")},
            latency_fit=data.get("latency_fit") or {}, uncertainty=data.get("uncertainty") or {},
            model_hash=data.get("model_hash"), n_events=data.get("n_events"), n_keys=data.get("n_keys"),
            where=where)

    @classmethod
    def load(cls, path: str | Path) -> CalibrationProfile:
        """Read and validate a profile file (raises :class:`ConfigError` naming the problem)."""
        path = require_path(path, "file", "calibration profile", "give a JSON profile made with `vibe-rt "
                            "calibrate`", ConfigError)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"calibration profile {path} is not valid JSON ({err}); make one with `vibe-rt "
                              "calibrate`") from err
        return cls.from_dict(data, str(path))

    def save(self, path: str | Path) -> Path:
        """Write the profile as JSON (creating the folder); returns the path."""
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"calibration profile {path} is a folder, expected a file; give a file name such as "
                              f"{path / (self.name or 'profile')}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=True))
        return path

    # ------------------------------------------------------------------------------------------ resolve
    def resolve(self, montage: Montage) -> ResolvedCalibration:
        """The profile for the channels of ``montage``, matched by label ignoring case.

        Montage channels absent from the profile keep gain 1 and no shift (logged once). A profile that covers
        none of them (one fitted for another montage) raises :class:`ConfigError`.
        """
        index = {c.lower(): i for i, c in enumerate(self.channels)}
        latency = np.broadcast_to(np.asarray(self.latency_s, float), (len(self.channels),))
        gain, latency_s = np.ones(montage.n_channels), np.zeros(montage.n_channels)
        missing = []
        for m, c in enumerate(montage.ch_names):
            i = index.get(c.lower())
            if i is None:
                missing.append(c)
            else:
                gain[m], latency_s[m] = self.gain[i], latency[i]
        if len(missing) == montage.n_channels:
            raise ConfigError(f"the calibration profile {self.name!r} (montage {self.montage!r}) has none of the "
                              f"streamed channels ({', '.join(montage.ch_names[:5])}...); use a profile fitted for "
                              f"montage {montage.name!r} (vibe-rt calibrate) or leave --calibration out")
        if missing:
            logger.warning("the calibration profile has no entry for %s: gain 1, no shift", missing)
        if self.montage not in (None, montage.name):
            logger.info("applying calibration for montage %r to montage %r (matched by channel label)",
                        self.montage, montage.name)
        for array in (gain, latency_s):
            array.setflags(write=False)
        return ResolvedCalibration(montage=montage, gain=gain, latency_s=latency_s, missing=tuple(missing),
                                   labels=_device_labels(montage, self.channel_map), adapter=self.adapter,
                                   name=self.name, model_hash=self.model_hash)


@dataclass(frozen=True, eq=False, kw_only=True)
class ResolvedCalibration:
    """A profile resolved for one montage's channels (:meth:`CalibrationProfile.resolve`).

    The stream scales every predicted batch with :meth:`apply_gain` and delays each channel's whole response by
    :attr:`latency_s` when it places it in the signal (the synthesizer's onset delay), so that a latency never
    cuts the response at the epoch's edge.

    Attributes
    ----------
    montage : Montage
        The channels it was resolved for.
    gain : ndarray, shape (C,)
        Per-channel gain in montage order (1 where the profile lacks the channel).
    latency_s : ndarray, shape (C,)
        Per-channel latency in seconds (> 0: later; 0 where the profile lacks the channel).
    missing : tuple of str
        Montage channels the profile lacks.
    labels : tuple of str
        Output label of each channel: the live device's label from the profile's channel map, the model's for
        interpolated channels and where the map would give two channels one label.
    adapter : LatentAdapter | None
    name : str
        The profile's name.
    model_hash : str | None
        The model the profile was fitted against, when it says.
    """

    montage: Montage
    gain: np.ndarray
    latency_s: np.ndarray
    missing: tuple[str, ...]
    labels: tuple[str, ...]
    adapter: LatentAdapter | None = None
    name: str = ""
    model_hash: str | None = None

    @property
    def output_montage(self) -> Montage:
        """:attr:`montage` with the device labels (what a stream standing in for the device carries)."""
        if self.labels == tuple(self.montage.ch_names):
            return self.montage
        return dataclasses.replace(self.montage, ch_names=self.labels)

    def apply_gain(self, epochs: np.ndarray) -> np.ndarray:
        """``gain[c] * x`` on epochs ``(..., C, T)`` in montage order (the latency is the synthesizer's onset
        delay, :attr:`latency_s`). Same shape; float dtypes are kept (others become float64)."""
        x = np.asarray(epochs)
        if x.ndim < 2 or x.shape[-2] != self.montage.n_channels:
            raise ConfigError(f"epochs have {x.shape[-2] if x.ndim >= 2 else '?'} channels, montage "
                              f"{self.montage.name!r} has {self.montage.n_channels}")
        return (x * self.gain[:, None]).astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)

    def describe(self) -> dict[str, str]:
        """What a calibrated stream declares (``desc/vibe_rt/calibration``) and logs at start: ``name``,
        ``latency_s`` and ``gain`` (comma-separated, montage order), ``channels``, ``adapter`` and
        ``model_hash`` (``""`` when unknown)."""
        def numbers(values: np.ndarray) -> str:
            return ",".join(f"{v:.6g}" for v in values)

        lat = self.latency_s
        return {"name": self.name, "channels": ",".join(self.montage.ch_names),
                "latency_s": f"{lat[0]:.6g}" if np.all(lat == lat[0]) else numbers(lat), "gain": numbers(self.gain),
                "adapter": "latent-affine" if self.adapter is not None else "none",
                "model_hash": self.model_hash or (self.adapter.model_hash if self.adapter is not None else "")}

    def summary(self) -> str:
        """One line for the startup log: name, latency, gain range, adapter, model hash."""
        lat, g = 1e3 * self.latency_s, self.gain
        lat_txt = f"{lat[0]:+.1f} ms" if np.all(lat == lat[0]) else f"{lat.min():+.1f}..{lat.max():+.1f} ms"
        d = self.describe()
        return (f"calibration {self.name or '(unnamed)'!r}: latency {lat_txt} (an onset delay), gain "
                f"{g.min():.3g}..{g.max():.3g} over {len(g)} channels, adapter {d['adapter']}, model "
                f"{d['model_hash'] or 'unknown'}")

    def install_adapter(self, predictor: object | None) -> None:
        """Give ``predictor`` the profile's latent adapter (nothing to do without one).

        Raises :class:`ConfigError` when the profile has an adapter and the predictor cannot apply it (it does
        not implement :class:`AcceptsLatentAdapter`) or refuses it (another model, a fused chain).
        """
        if self.adapter is None:
            return
        if not isinstance(predictor, AcceptsLatentAdapter):
            raise ConfigError("the calibration profile has a latent adapter, which only a ViBE predictor can apply; "
                              "use a profile without adapter (vibe-rt calibrate without --adapter)")
        predictor.set_latent_adapter(self.adapter)


def _number(value: Any, name: str, where: str) -> float:
    """``value`` as a finite float, or a ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"{where}: {name} must be a number, got {value!r}; {_REFIT}")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {name} is {value}, not a finite number; {_REFIT}")
    return float(value)


def _numbers(values: Any, name: str, n: int, where: str) -> tuple[float, ...]:
    """``values`` as ``n`` finite floats (one per channel), or a ConfigError naming ``name``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray) or np.ndim(values) != 1:
        raise ConfigError(f"{where}: {name} must be a list of numbers, one per channel, got {values!r}; {_REFIT}")
    if len(values) != n:
        raise ConfigError(f"{where}: {name} has {len(values)} values for {n} channels; give one per channel "
                          f"({_REFIT})")
    return tuple(_number(v, f"{name}[{i}]", where) for i, v in enumerate(values))


def _device_labels(montage: Montage, channel_map: Mapping[str, str]) -> tuple[str, ...]:
    """Each montage channel's live device label from a channel map (model channel -> live channel; interpolated
    channels keep the model's label, and all do where the map would give two channels one label)."""
    model = tuple(montage.ch_names)
    if not channel_map:
        return model
    lower = {k.lower(): v for k, v in channel_map.items()}
    names = [lower.get(c.lower(), c) for c in model]
    names = [n if n and not n.startswith("interpolated") else c for n, c in zip(names, model)]
    if len(set(names)) != len(names):
        logger.warning("the calibration's channel map gives several channels one label; streaming the model's")
        return model
    if tuple(names) != model:
        logger.info("streaming with the device's channel labels from the calibration profile: %s",
                    ", ".join(f"{c}->{n}" for c, n in zip(model, names) if c != n))
    return tuple(names)


# ---------------------------------------------------------------------------------------- the latency shift
_PAD = 12  # edge samples added before the spline prefilter, as scipy.ndimage does for mode="nearest"


@lru_cache(maxsize=16)
def _spline_coefficients(n: int) -> np.ndarray:
    """The ``(n + 2 * _PAD, n)`` matrix taking ``n`` samples to the cubic B-spline coefficients of the signal
    extended by ``_PAD`` copies of each edge sample (mirror boundary: solves the interpolation condition)."""
    m = n + 2 * _PAD
    i = np.arange(m)
    a = np.zeros((m, m))
    a[i, i] = 4 / 6
    a[i[:-1], i[:-1] + 1] = a[i[1:], i[1:] - 1] = 1 / 6
    a[0, 1] = a[-1, -2] = 2 / 6
    pad = np.zeros((m, n))
    pad[i, np.clip(i - _PAD, 0, n - 1)] = 1.0
    out = np.linalg.solve(a, pad)
    out.setflags(write=False)
    return out


def _cubic_bspline_weights(f: np.ndarray) -> np.ndarray:
    """Weights ``(..., 4)`` of the four coefficients ``floor(p) - 1 .. floor(p) + 2`` of a cubic B-spline at
    positions ``p`` with fractional parts ``f``."""
    f2, f3 = f * f, f * f * f
    return np.stack([(1 - f) ** 3, 3 * f3 - 6 * f2 + 4, -3 * f3 + 3 * f2 + 3 * f + 1, f3], axis=-1) / 6


def shift_signal(x: np.ndarray, shift_samples: float | np.ndarray) -> np.ndarray:
    """Delay ``x`` along its last axis by a (fractional) number of samples.

    ``y[..., t] = x[..., t - shift]`` by cubic B-spline interpolation; samples that come from outside the window
    repeat the edge value. The same numbers as ``scipy.ndimage.shift(x, shift, order=3, mode="nearest")`` (to
    rounding within a few samples of the window, to 1e-8 of the signal beyond), in numpy alone.

    Parameters
    ----------
    x : ndarray, shape (..., T)
    shift_samples : float | ndarray
        One shift, or one per row of ``x`` (shape ``x.shape[:-1]`` or broadcastable, e.g. ``(C,)`` for
        ``(B, C, T)`` input); > 0 delays.

    Returns
    -------
    ndarray, the shape of ``x``; float dtypes are kept (others become float64). Rows shifted by 0 are copies.
    """
    x = np.asarray(x)
    if not np.any(shift_samples):
        return x.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64, copy=True)
    return SplineSignal(x).shifted(shift_samples)


class SplineSignal:
    """The cubic B-spline of a signal (edges repeated beyond it) along its last axis, from which any number of
    (fractional) shifts are evaluated: the prefilter is solved once, each shift costs four taps per sample.

    Parameters
    ----------
    x : ndarray, shape (..., T)
    """

    def __init__(self, x: np.ndarray) -> None:
        x = np.asarray(x)
        self.shape = x.shape
        self.dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        n = x.shape[-1]
        self.rows = x.reshape(-1, n).astype(np.float64)
        self.coef = self.rows @ _spline_coefficients(n).T  # (rows, n + 2 * _PAD)

    def shifted(self, shift_samples: float | np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples ``start .. stop - 1`` of ``x[..., t - shift]`` (see :func:`shift_signal`), shape
        ``x.shape[:-1] + (stop - start,)``; ``shift_samples`` is one shift or one per row (broadcastable to
        ``x.shape[:-1]``). Rows shifted by 0 are the samples themselves."""
        n = self.shape[-1]
        stop = n if stop is None else stop
        rows, coef = self.rows, self.coef
        m = coef.shape[1]
        shift = np.broadcast_to(np.asarray(shift_samples, dtype=np.float64), self.shape[:-1]).reshape(-1)
        # for each distinct shift: where each output sample reads, and the four coefficients around it (mirrored)
        shifts, row_shift = np.unique(shift, return_inverse=True)
        pos = np.clip(np.arange(start, stop) - shifts[:, None] + _PAD, 0, m - 1)
        base = np.floor(pos)
        weights = _cubic_bspline_weights(pos - base)  # (shifts, stop - start, 4)
        taps = np.abs(base.astype(int)[..., None] + np.arange(-1, 3))
        taps = np.where(taps > m - 1, 2 * (m - 1) - taps, taps)
        width = stop - start
        if len(shifts) == 1:
            y = np.einsum("rnk,nk->rn", coef[:, taps[0]], weights[0])
        else:
            gathered = np.take_along_axis(coef, taps[row_shift].reshape(len(rows), -1), axis=1)
            y = np.einsum("rnk,rnk->rn", gathered.reshape(len(rows), width, 4), weights[row_shift])
        y = np.where((shift == 0)[:, None], rows[:, start:stop], y)
        return y.reshape(self.shape[:-1] + (width,)).astype(self.dtype)
