"""Fitting calibration profiles (:class:`vibe_rt.calibration.CalibrationProfile`) from a comparison session.

Model: ``live(t) ~ gain[c] * synth(t - latency)``, fitted jointly by least squares on the running ERPs
(:func:`vibe_rt.compare.metrics.fit_latency_gain`): an intercept per image and channel absorbs the baseline, the
synthesized ERPs are the session's *wide* ones (the overlap-added signal cut at ``onset - latency``, never a
window shifted with invented edges), and the latency (one overall or one per channel) is found to a fraction of
a sample. The uncertainty of every gain and latency is a bootstrap over the session's events
(:func:`~vibe_rt.compare.metrics.bootstrap_latency_gain`), stored in the profile. ``vibe-rt stream
--calibration PROFILE`` then scales every predicted response by the gain and delays it as a whole by the latency;
the metrics stored in the profile are computed the same way (gain times the synthesized ERPs aligned by the
latency).

Optionally (``adapter_model``: the ViBE model that synthesized the session) a small latent adapter is fitted
after gain and latency (:mod:`.adapter`): a per-dimension scale and shift of the Q-Former's latent, applied by
the predictor before the decoder. It is kept only when it improves the held-out ERP r.

The profile format is described in :mod:`vibe_rt.calibration`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._logs import logger
from ..calibration import GAIN_RANGE, CalibrationProfile, LatentAdapter, shift_signal
from ..errors import ConfigError, DataError
from ..montage import Montage
from . import metrics as M
from .comparator import ErpSet, baseline_mask
from .metrics import erp_metrics

__all__ = ["calibrated_erps", "fit_calibration"]

#: Bootstrap replicates of the uncertainty.
N_BOOT = 200


def _fit(live: np.ndarray, wide: np.ndarray, margin: int, sfreq: float, max_lag_s: float,
         per_channel_latency: bool, channels: Sequence[str]) -> M.LatencyGainFit:
    fit = M.fit_latency_gain(live, wide, margin, sfreq, max_lag_s=max_lag_s, per_channel=per_channel_latency)
    if not np.isfinite(fit.r):
        raise DataError("cannot estimate the latency: the ERPs are flat; record more events")
    gain = fit.gain
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
    return fit


def calibrated_erps(erps: ErpSet, montage: Montage, gain: np.ndarray, latency_s: float | np.ndarray,
                    synth_wide: np.ndarray | None = None) -> np.ndarray:
    """The synthesized ERPs a calibrated stream gives: ``gain`` times the wide ERPs aligned by the latency (cut at
    ``onset - latency``), baseline-corrected as the comparison was (``synth_wide`` in place of the session's)."""
    wide, margin = (synth_wide, erps.margin) if synth_wide is not None else erps.wide
    if margin == 0:  # no context beyond the window: repeat its edges
        margin = int(np.ceil(np.max(np.abs(np.asarray(latency_s))) * montage.sfreq)) + 3
        wide = np.pad(wide, [(0, 0), (0, 0), (margin, margin)], mode="edge")
    aligned = M.align(wide, margin, np.asarray(latency_s) * montage.sfreq, montage.n_times)
    mask = baseline_mask(montage.times, erps.baseline)
    if mask is not None:
        aligned = aligned - aligned[..., mask].mean(axis=-1, keepdims=True)
    return aligned * np.asarray(gain, float)[:, None]


def fit_calibration(
    erps: ErpSet,
    montage: Montage,
    *,
    max_lag_s: float = 0.1,
    per_channel_latency: bool = False,
    channel_map: dict[str, str] | None = None,
    name: str | None = None,
    adapter_model=None,
    model_hash: str | None = None,
    n_boot: int = N_BOOT,
) -> CalibrationProfile:
    """Fit a calibration profile from running ERPs.

    Parameters
    ----------
    erps : ErpSet
        Running ERPs of a comparison session (:meth:`Comparator.erps` or a report's ``erps.npz``); its wide
        synthesized ERPs are what the latency is fitted on, its single events what the bootstrap resamples.
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
    model_hash : str | None
        The model that synthesized the session (stored; the adapter's model otherwise).
    n_boot : int
        Bootstrap replicates of the uncertainty (0: none).

    Returns
    -------
    profile : CalibrationProfile
        ``metrics["before"]``/``metrics["after"]`` are in-sample (all repetitions); ``metrics["heldout"]`` fits on
        the odd repetitions and evaluates on the even ones (keys with >= 2 repetitions), an honest check that the
        calibration generalises beyond the noise it was fitted on; ``uncertainty`` the bootstrap's standard errors
        (empty when the session kept no single events).
    """
    live, synth = np.asarray(erps.live, float), np.asarray(erps.synth, float)
    if live.ndim != 3 or live.shape[1:] != (montage.n_channels, montage.n_times):
        raise DataError(f"ERPs have shape {live.shape}, expected (n_keys, {montage.n_channels}, {montage.n_times})")
    if not erps.keys:
        raise DataError("the session compared no events, so there is nothing to calibrate; compare a session with "
                        "events first (vibe-rt compare)")
    wide, margin = erps.wide
    if erps.synth_wide is None:
        logger.warning("these ERPs have no synthesized context beyond the window (ERPs made by hand, or the report "
                       "of an earlier vibe-rt): the latency fit repeats the window's edges; compare the session "
                       "again (vibe-rt compare) for an unbiased fit")
    fit = _fit(live, wide, margin, montage.sfreq, max_lag_s, per_channel_latency, montage.ch_names)
    latency = fit.latency_s
    uncertainty: dict[str, Any] = {}
    if erps.events is not None and n_boot > 1 and erps.events.live.shape[0] > 1:
        ev = erps.events
        span = montage.tmax - montage.tmin + 2 * margin / montage.sfreq
        uncertainty = M.bootstrap_latency_gain(ev.live, ev.synth_wide, ev.key_index, margin, montage.sfreq,
                                               times=ev.times, span_s=span, n_total=ev.n_total, n_boot=n_boot,
                                               max_lag_s=max_lag_s, per_channel=per_channel_latency)
    adapter_hash = None
    if adapter_model is not None:
        from ..checkpoint import as_loaded

        adapter_hash = as_loaded(adapter_model).model_hash
    profile = CalibrationProfile(
        name=name or montage.name, montage=montage.name, sfreq=float(montage.sfreq), channels=montage.ch_names,
        gain=tuple(np.round(fit.gain, 6).tolist()),
        latency_s=float(latency) if np.ndim(latency) == 0 else tuple(np.asarray(latency).round(7).tolist()),
        latency_fit=fit.to_dict(), uncertainty=uncertainty, model_hash=model_hash or adapter_hash,
        channel_map=dict(channel_map) if channel_map else {c: c for c in montage.ch_names},
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        n_events=int(np.sum(erps.counts)), n_keys=len(erps.keys))
    metrics: dict[str, Any] = {"before": erp_metrics(live, synth),
                               "after": erp_metrics(live, calibrated_erps(erps, montage, fit.gain, latency))}
    adapter = None
    two = np.asarray(erps.counts) >= 2
    if adapter_model is not None and not two.any():
        raise DataError("the latent adapter needs images shown at least twice (its strength is chosen on held-out "
                        "repetitions); record more repetitions or leave --adapter out")
    if two.any():
        odd, even, syn = erps.odd[two], erps.even[two], synth[two]
        held_fit = _fit(odd, wide[two], margin, montage.sfreq, max_lag_s, per_channel_latency, montage.ch_names)
        held_erps = dataclasses.replace(erps, synth=syn)
        metrics["heldout"] = {
            "fit_on": "odd repetitions", "evaluated_on": "even repetitions",
            "before": erp_metrics(even, syn),
            "after": erp_metrics(even, calibrated_erps(held_erps, montage, held_fit.gain, held_fit.latency_s,
                                                       wide[two])),
        }
        if adapter_model is not None:
            heldout = (syn, odd, even, held_fit.gain, np.asarray(held_fit.latency_samples))
            adapter, metrics["heldout"]["adapter"], after = _fit_adapter(adapter_model, montage, live, synth,
                                                                         fit.gain, latency, heldout)
            if after is not None:
                metrics["after_adapter"] = after
    profile = dataclasses.replace(profile, metrics=metrics, adapter=adapter)
    se = uncertainty.get("gain_se")
    logger.info("calibration: latency %s s, gain %.2f..%.2f%s; ERP r %.3f -> %.3f, RMSE %.3g -> %.3g",
                profile.latency_s, float(np.min(fit.gain)), float(np.max(fit.gain)),
                f" (se up to {max(se):.3f})" if se else "", metrics["before"]["erp_r"], metrics["after"]["erp_r"],
                metrics["before"]["erp_rmse"], metrics["after"]["erp_rmse"])
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
