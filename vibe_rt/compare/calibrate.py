"""Calibration profiles: per-channel gain, latency offset and channel map fitted from a comparison session.

Model: ``live(t) ~ gain[c] * synth(t - latency)``. The latency comes from the cross-correlation of the running
ERPs (sub-sample, parabolic peak), the gain from per-channel least squares of the live ERP on the
latency-aligned synthesized ERP. :func:`apply_calibration` applies a profile to synthesized epochs (what
``vibe-rt stream --calibration PROFILE`` does before overlap-adding them onto the background).

Optionally (``adapter_model``: the ViBE model that synthesized the session) a small latent adapter is fitted
after gain and latency (:mod:`.adapter`): a per-dimension scale and shift of the Q-Former's latent, applied by
the predictor before the decoder. It is kept only when it improves the held-out ERP r.

Profile format (JSON, ``calibration/<name>.json``)::

    {"format": "vibe-rt-calibration", "version": 1 (2 with an adapter), "montage": "things-eeg2",
     "sfreq": 100.0, "channels": [...], "gain": [...], "latency_s": 0.024 (or one value per channel),
     "channel_map": {"Oz": "oz", "P8": "interpolated:spline", ...}, "created": "2026-...Z",
     "adapter": null or {"kind": "latent-affine", "model_hash": ..., "scale": [[...]], "shift": [[...]], "fit": {...}},
     "metrics_before": {...}, "metrics_after": {...}, "metrics_heldout": {...}, "n_events": ..., "n_keys": ...}

``metrics_after`` is gain and latency only; with an adapter, ``metrics_after_adapter`` is what the stream emits
(through the VAE round trip) and ``metrics_heldout["adapter"]`` its held-out scores.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from .._logs import logger
from ..errors import ConfigError, DataError
from ..montage import Montage
from . import metrics as M
from .metrics import erp_metrics
from .comparator import ErpSet

__all__ = ["FORMAT", "VERSION", "fit_calibration", "apply_calibration", "load_calibration", "resolve_calibration",
           "save_calibration", "scale_and_shift", "erp_metrics"]

FORMAT = "vibe-rt-calibration"
VERSION = 2  # 1: gain, latency, channel map; 2: + latent adapter


def _fit(live: np.ndarray, synth: np.ndarray, sfreq: float, max_lag_s: float,
         per_channel_latency: bool) -> tuple[np.ndarray, np.ndarray | float, dict[str, Any]]:
    lat = M.estimate_latency(live, synth, sfreq, max_lag_s=max_lag_s)
    if not np.isfinite(lat["latency_s"]):
        raise DataError("cannot estimate the latency: the ERPs are flat; record more events")
    latency: np.ndarray | float = float(lat["latency_s"])
    if per_channel_latency:
        per = np.array([M.estimate_latency(live[:, c], synth[:, c], sfreq, max_lag_s=max_lag_s)["latency_s"]
                        for c in range(live.shape[1])])
        latency = np.where(np.isfinite(per), per, lat["latency_s"])
    shift = np.asarray(latency) * sfreq
    aligned = M.shift_signal(synth, float(shift) if np.ndim(shift) == 0 else shift)
    gain = M.fit_gain(live, aligned)
    bad = ~np.isfinite(gain)
    if bad.any():
        gain[bad] = 1.0
    if np.any(gain < 0):
        logger.warning("negative gain on %d channel(s): polarity of live and synthesized data differ",
                       int(np.sum(gain < 0)))
    return gain, latency, lat


def fit_calibration(
    erps: ErpSet,
    montage: Montage,
    *,
    max_lag_s: float = 0.1,
    per_channel_latency: bool = False,
    channel_map: dict[str, str] | None = None,
    name: str | None = None,
    adapter_model=None,
) -> dict[str, Any]:
    """Fit a calibration profile from running ERPs.

    Parameters
    ----------
    erps : ErpSet
        Running ERPs of a comparison session (:meth:`Comparator.erps` or a report's ``erps.npz``).
    montage : Montage
        The model montage of the ERPs.
    max_lag_s : float
        Largest latency searched, seconds.
    per_channel_latency : bool
        Fit one latency per channel (noisier) instead of one overall.
    channel_map : dict | None
        Model channel -> live channel (from the session's channel match), stored in the profile.
    name : str | None
        Profile name (stored).
    adapter_model : ViBE | None
        Also fit a latent adapter for this model (the one that synthesized the session); needs keys with at
        least two repetitions (the penalty is chosen on held-out repetitions).

    Returns
    -------
    profile : dict
        See the module docstring. ``metrics_before``/``metrics_after`` are in-sample (all repetitions);
        ``metrics_heldout`` fits on the odd repetitions and evaluates on the even ones (keys with >= 2
        repetitions), an honest check that the calibration generalises beyond the noise it was fitted on.
    """
    live, synth = np.asarray(erps.live, float), np.asarray(erps.synth, float)
    if live.ndim != 3 or live.shape[1:] != (montage.n_channels, montage.n_times):
        raise DataError(f"ERPs have shape {live.shape}, expected (n_keys, {montage.n_channels}, {montage.n_times})")
    gain, latency, lat = _fit(live, synth, montage.sfreq, max_lag_s, per_channel_latency)
    profile: dict[str, Any] = {
        "format": FORMAT,
        "version": 1,  # 2 once an adapter is stored (an older vibe-rt then refuses the profile, not ignores it)
        "name": name or montage.name,
        "montage": montage.name,
        "sfreq": float(montage.sfreq),
        "channels": list(montage.ch_names),
        "ch_names": list(montage.ch_names),  # alias read by earlier vibe_rt.stream.calibration loaders
        "gain": np.round(gain, 6).tolist(),
        "latency_s": float(latency) if np.ndim(latency) == 0 else np.asarray(latency).round(6).tolist(),
        "latency_fit": {k: float(v) for k, v in lat.items()},
        "channel_map": dict(channel_map) if channel_map else {c: c for c in montage.ch_names},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "n_events": int(np.sum(erps.counts)),
        "n_keys": len(erps.keys),
        "adapter": None,
    }
    profile["metrics_before"] = erp_metrics(live, synth)
    profile["metrics_after"] = erp_metrics(live, apply_calibration(synth, montage, profile))
    two = np.asarray(erps.counts) >= 2
    if adapter_model is not None and not two.any():
        raise DataError("the latent adapter needs images shown at least twice (its strength is chosen on held-out "
                        "repetitions); record more repetitions or leave --adapter out")
    if two.any():
        odd, even, syn = erps.odd[two], erps.even[two], synth[two]
        g2, l2, _ = _fit(odd, syn, montage.sfreq, max_lag_s, per_channel_latency)
        p2 = dict(profile, gain=g2.tolist(), latency_s=l2 if np.ndim(l2) == 0 else np.asarray(l2).tolist())
        profile["metrics_heldout"] = {
            "fit_on": "odd repetitions", "evaluated_on": "even repetitions",
            "before": erp_metrics(even, syn), "after": erp_metrics(even, apply_calibration(syn, montage, p2)),
        }
        if adapter_model is not None:
            _add_adapter(profile, adapter_model, montage, live, synth, gain, latency,
                         (syn, odd, even, g2, np.asarray(l2) * montage.sfreq))
    logger.info("calibration: latency %s s, gain %.2f..%.2f; ERP r %.3f -> %.3f, RMSE %.3g -> %.3g",
                profile["latency_s"], float(np.min(gain)), float(np.max(gain)), profile["metrics_before"]["erp_r"],
                profile["metrics_after"]["erp_r"], profile["metrics_before"]["erp_rmse"],
                profile["metrics_after"]["erp_rmse"])
    return profile


def _add_adapter(profile: dict[str, Any], model, montage: Montage, live: np.ndarray, synth: np.ndarray,
                 gain: np.ndarray, latency: np.ndarray | float, heldout: tuple) -> None:
    """Choose, fit and store the latent adapter (see :mod:`.adapter`), or record why none is kept."""
    from ..checkpoint import model_hash
    from .adapter import calibrated_prediction, encode_latents, fit_latent_adapter, select_penalty

    model.eval()
    mm = model.montage
    if (mm.n_channels, mm.n_times, float(mm.sfreq)) != (montage.n_channels, montage.n_times, float(montage.sfreq)):
        raise ConfigError(f"the adapter's model has montage {mm.name!r} ({mm.n_channels} ch, {mm.n_times} samples "
                          f"at {mm.sfreq:g} Hz), the session {montage.name!r} ({montage.n_channels} ch, "
                          f"{montage.n_times} at {montage.sfreq:g} Hz); pass the model that synthesized it (--model)")
    syn2, odd, even, g2, shift2 = heldout
    penalty, report = select_penalty(model, syn2, odd, even, g2, shift2)
    profile["metrics_heldout"]["adapter"] = report
    if penalty is None:
        return
    shift = np.asarray(latency) * montage.sfreq
    z = encode_latents(model, synth)
    target = M.shift_signal(live, -shift)
    adapter = fit_latent_adapter(model, z, target, gain, penalty=penalty, model_hash=model_hash(model))
    profile["adapter"] = adapter.to_dict()
    profile["version"] = VERSION
    profile["metrics_after_adapter"] = erp_metrics(live, calibrated_prediction(model, z, adapter, gain, shift))


def save_calibration(profile: dict[str, Any], path: str | Path) -> Path:
    """Write a profile as JSON (creating the folder)."""
    path = Path(path)
    _validate(profile, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile, indent=1, allow_nan=True))
    return path


def _validate(profile: dict[str, Any], where: str) -> None:
    if not isinstance(profile, dict) or profile.get("format") != FORMAT:
        raise ConfigError(f"{where} is not a vibe-rt calibration profile (format must be {FORMAT!r}); "
                          "make one with `vibe-rt calibrate`")
    if "channels" not in profile and "ch_names" in profile:
        profile["channels"] = profile["ch_names"]
    if int(profile.get("version", 0)) > VERSION:
        raise ConfigError(f"{where}: calibration format version {profile.get('version')} is newer than this "
                          f"vibe-rt understands ({VERSION}); upgrade vibe-rt")
    for key in ("channels", "gain", "latency_s"):
        if key not in profile:
            raise ConfigError(f"{where}: calibration profile lacks {key!r}")
    if len(profile["gain"]) != len(profile["channels"]):
        raise ConfigError(f"{where}: {len(profile['gain'])} gains for {len(profile['channels'])} channels")
    lat = profile["latency_s"]
    if isinstance(lat, list) and len(lat) != len(profile["channels"]):
        raise ConfigError(f"{where}: {len(lat)} latencies for {len(profile['channels'])} channels")
    if profile.get("adapter") is not None:
        from .adapter import LatentAdapter

        LatentAdapter.from_dict(profile["adapter"], where)


def load_calibration(path: str | Path) -> dict[str, Any]:
    """Read and validate a calibration profile (raises :class:`ConfigError` naming the problem)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"calibration profile {path} does not exist; make one with `vibe-rt calibrate`")
    try:
        profile = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"calibration profile {path} is not valid JSON ({err})") from err
    _validate(profile, str(path))
    return profile


def resolve_calibration(profile: dict[str, Any], montage: Montage) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-channel gain and latency shift (in ``montage`` samples) of a profile, in ``montage`` channel order.

    Profile channels are matched by label, case-insensitively; montage channels absent from the profile keep
    gain 1 and no shift and are returned in ``missing``. A streaming caller resolves once and applies
    :func:`scale_and_shift` per batch.
    """
    _validate(profile, "profile")
    idx = {c.lower(): i for i, c in enumerate(profile["channels"])}
    gain = np.ones(montage.n_channels)
    lat_ch = np.zeros(montage.n_channels)
    lat = profile["latency_s"]
    missing = []
    for m, c in enumerate(montage.ch_names):
        i = idx.get(c.lower())
        if i is None:
            missing.append(c)
            continue
        gain[m] = float(profile["gain"][i])
        lat_ch[m] = float(lat[i]) if isinstance(lat, list) else float(lat)
    return gain, lat_ch * montage.sfreq, missing


def scale_and_shift(epochs: np.ndarray, gain: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``gain[c] * x(t - shift[c])`` on epochs ``(..., C, T)`` (shift in samples; see :func:`apply_calibration`)."""
    x = np.asarray(epochs)
    if np.all(shift == shift[0]):
        y = M.shift_signal(x, float(shift[0]))
    else:
        y = M.shift_signal(x, np.broadcast_to(shift, x.shape[:-1]))
    return (y * gain[:, None]).astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)


def apply_calibration(epochs: np.ndarray, montage: Montage, profile: dict[str, Any]) -> np.ndarray:
    """Apply a calibration profile to synthesized epochs.

    Parameters
    ----------
    epochs : ndarray, shape (..., C, T)
        Epochs in ``montage`` channel order at ``montage.sfreq`` (SI units).
    montage : Montage
        The epochs' montage. Profile channels are matched by label, case-insensitively; montage channels
        absent from the profile keep gain 1 and no shift.
    profile : dict
        From :func:`load_calibration` / :func:`fit_calibration`.

    Returns
    -------
    epochs : ndarray, same shape and dtype
        ``gain[c] * x(t - latency)``: the latency shift is ``latency_s * montage.sfreq`` samples, fractional
        shifts by cubic-spline interpolation; samples shifted in from outside the window repeat the edge.
        (A streaming synthesizer may instead delay the onset by ``latency_s``, which loses nothing at the edge.)
    """
    x = np.asarray(epochs)
    if x.shape[-2:-1] != (montage.n_channels,):
        raise ConfigError(f"epochs have {x.shape[-2] if x.ndim >= 2 else '?'} channels, montage "
                          f"{montage.name!r} has {montage.n_channels}")
    if profile.get("montage") not in (None, montage.name):
        logger.info("applying calibration for montage %r to montage %r (matched by channel label)",
                    profile.get("montage"), montage.name)
    gain, shift, missing = resolve_calibration(profile, montage)
    if missing:
        logger.warning("calibration profile has no entry for %s: gain 1, no shift", missing)
    return scale_and_shift(x, gain, shift)
