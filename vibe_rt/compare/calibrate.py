"""Fitting calibration profiles (:class:`vibe_rt.calibration.CalibrationProfile`) from a comparison session.

Model: ``live(t) ~ gain[c] * synth(t - latency)``. The latency comes from the cross-correlation of the running
ERPs (sub-sample, parabolic peak), the gain from per-channel least squares of the live ERP on the
latency-aligned synthesized ERP. ``profile.resolve(montage).apply(epochs)`` applies a profile to synthesized
epochs (what ``vibe-rt stream --calibration PROFILE`` does before overlap-adding them onto the background); the
metrics stored in the profile are computed the same way.

Optionally (``adapter_model``: the ViBE model that synthesized the session) a small latent adapter is fitted
after gain and latency (:mod:`.adapter`): a per-dimension scale and shift of the Q-Former's latent, applied by
the predictor before the decoder. It is kept only when it improves the held-out ERP r.

The profile format is described in :mod:`vibe_rt.calibration`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any, Sequence

import numpy as np

from .._logs import logger
from ..calibration import GAIN_RANGE, CalibrationProfile, LatentAdapter, shift_signal
from ..errors import ConfigError, DataError
from ..montage import Montage
from . import metrics as M
from .comparator import ErpSet
from .metrics import erp_metrics

__all__ = ["fit_calibration"]


def _fit(live: np.ndarray, synth: np.ndarray, sfreq: float, max_lag_s: float, per_channel_latency: bool,
         channels: Sequence[str]) -> tuple[np.ndarray, np.ndarray | float, dict[str, Any]]:
    lat = M.estimate_latency(live, synth, sfreq, max_lag_s=max_lag_s)
    if not np.isfinite(lat["latency_s"]):
        raise DataError("cannot estimate the latency: the ERPs are flat; record more events")
    latency: np.ndarray | float = float(lat["latency_s"])
    if per_channel_latency:
        per = np.array([M.estimate_latency(live[:, c], synth[:, c], sfreq, max_lag_s=max_lag_s)["latency_s"]
                        for c in range(live.shape[1])])
        latency = np.where(np.isfinite(per), per, lat["latency_s"])
    shift = np.asarray(latency) * sfreq
    aligned = shift_signal(synth, float(shift) if np.ndim(shift) == 0 else shift)
    gain = M.fit_gain(live, aligned)
    bad = ~np.isfinite(gain)
    if bad.any():
        gain[bad] = 1.0
    far = np.flatnonzero((np.abs(gain) < GAIN_RANGE[0]) | (np.abs(gain) > GAIN_RANGE[1]))
    if far.size:
        raise DataError(f"the live data are {np.median(np.abs(gain[far])):.3g} times the synthesized ones on "
                        f"{far.size} channel(s) ({', '.join(channels[i] for i in far[:5])}): a unit error, not a "
                        "subject; give the live data's unit (--live-unit, e.g. uV) and compare again")
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
) -> CalibrationProfile:
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
    adapter_model : LoadedModel | ViBE | None
        Also fit a latent adapter for this model (the one that synthesized the session); needs keys with at
        least two repetitions (the penalty is chosen on held-out repetitions).

    Returns
    -------
    profile : CalibrationProfile
        ``metrics["before"]``/``metrics["after"]`` are in-sample (all repetitions); ``metrics["heldout"]`` fits on
        the odd repetitions and evaluates on the even ones (keys with >= 2 repetitions), an honest check that the
        calibration generalises beyond the noise it was fitted on.
    """
    live, synth = np.asarray(erps.live, float), np.asarray(erps.synth, float)
    if live.ndim != 3 or live.shape[1:] != (montage.n_channels, montage.n_times):
        raise DataError(f"ERPs have shape {live.shape}, expected (n_keys, {montage.n_channels}, {montage.n_times})")
    if not erps.keys:
        raise DataError("the session compared no events, so there is nothing to calibrate; compare a session with "
                        "events first (vibe-rt compare)")
    gain, latency, lat = _fit(live, synth, montage.sfreq, max_lag_s, per_channel_latency, montage.ch_names)
    profile = CalibrationProfile(
        name=name or montage.name, montage=montage.name, sfreq=float(montage.sfreq), channels=montage.ch_names,
        gain=np.round(gain, 6), latency_s=latency if np.ndim(latency) == 0 else np.asarray(latency).round(6),
        latency_fit={k: float(v) for k, v in lat.items()},
        channel_map=dict(channel_map) if channel_map else {c: c for c in montage.ch_names},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        n_events=int(np.sum(erps.counts)), n_keys=len(erps.keys))
    metrics: dict[str, Any] = {"before": erp_metrics(live, synth),
                               "after": erp_metrics(live, profile.resolve(montage).apply(synth))}
    adapter = None
    two = np.asarray(erps.counts) >= 2
    if adapter_model is not None and not two.any():
        raise DataError("the latent adapter needs images shown at least twice (its strength is chosen on held-out "
                        "repetitions); record more repetitions or leave --adapter out")
    if two.any():
        odd, even, syn = erps.odd[two], erps.even[two], synth[two]
        g2, l2, _ = _fit(odd, syn, montage.sfreq, max_lag_s, per_channel_latency, montage.ch_names)
        held = dataclasses.replace(profile, gain=g2, latency_s=l2)
        metrics["heldout"] = {
            "fit_on": "odd repetitions", "evaluated_on": "even repetitions",
            "before": erp_metrics(even, syn), "after": erp_metrics(even, held.resolve(montage).apply(syn)),
        }
        if adapter_model is not None:
            heldout = (syn, odd, even, g2, np.asarray(l2) * montage.sfreq)
            adapter, metrics["heldout"]["adapter"], after = _fit_adapter(adapter_model, montage, live, synth, gain,
                                                                         latency, heldout)
            if after is not None:
                metrics["after_adapter"] = after
    profile = dataclasses.replace(profile, metrics=metrics, adapter=adapter)
    logger.info("calibration: latency %s s, gain %.2f..%.2f; ERP r %.3f -> %.3f, RMSE %.3g -> %.3g",
                profile.latency_s, float(np.min(gain)), float(np.max(gain)), metrics["before"]["erp_r"],
                metrics["after"]["erp_r"], metrics["before"]["erp_rmse"], metrics["after"]["erp_rmse"])
    return profile


def _fit_adapter(adapter_model, montage: Montage, live: np.ndarray, synth: np.ndarray, gain: np.ndarray,
                 latency: np.ndarray | float, heldout: tuple
                 ) -> tuple[LatentAdapter | None, dict[str, Any], dict[str, Any] | None]:
    """Choose and fit the latent adapter (see :mod:`.adapter`) for a ViBE or LoadedModel: the adapter (None when
    it is not kept), the held-out report of the choice, and the in-sample metrics with it."""
    from ..checkpoint import as_loaded
    from .adapter import calibrated_prediction, encode_latents, fit_latent_adapter, select_penalty

    loaded = as_loaded(adapter_model)
    model = loaded.model
    model.eval()
    mm = model.montage
    if (mm.n_channels, mm.n_times, float(mm.sfreq)) != (montage.n_channels, montage.n_times, float(montage.sfreq)):
        raise ConfigError(f"the adapter's model has montage {mm.name!r} ({mm.n_channels} ch, {mm.n_times} samples "
                          f"at {mm.sfreq:g} Hz), the session {montage.name!r} ({montage.n_channels} ch, "
                          f"{montage.n_times} at {montage.sfreq:g} Hz); pass the model that synthesized it (--model)")
    syn2, odd, even, g2, shift2 = heldout
    penalty, report = select_penalty(model, syn2, odd, even, g2, shift2)
    if penalty is None:
        return None, report, None
    shift = np.asarray(latency) * montage.sfreq
    z = encode_latents(model, synth)
    target = shift_signal(live, -shift)
    adapter = fit_latent_adapter(model, z, target, gain, penalty=penalty, model_hash=loaded.model_hash)
    return adapter, report, erp_metrics(live, calibrated_prediction(model, z, adapter, gain, shift))
