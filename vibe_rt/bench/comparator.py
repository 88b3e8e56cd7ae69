"""Question: does the comparator recover a known latency and gain, what does calibration gain in and out of
sample, and what does a comparison cost per event as images accumulate?

Ground truth (:func:`vibe_rt.compare.groundtruth.make_ground_truth`): the synthesized run of 12 images x 8
repetitions as the stream renders it (responses overlap-added at their onsets), recorded as ``gain[c] * run(t -
latency)`` plus 1/f noise at 500 Hz, compared offline (the live mode shares the code path) with the images'
isolated responses as the model's predictions (which the comparator overlap-adds at the onsets itself), over a
grid of latencies and noise levels at an SOA of 0.9 s (epochs apart) and at 0.6 and 0.2 s (each epoch holds its
neighbours' responses; 0.2 s is THINGS-EEG2's 5 Hz RSVP). Each row also calibrates (gain + latency, no
bootstrap) and reports the ERP r after it. Then:

- calibration (gain + latency) fitted on one session: ERP r before/after in sample and held out (fit on odd,
  scored on even repetitions);
- the latent adapter on responses that differ from the embedded model's in its latent (as ``tests/test_adapter.py``);
- the cost of :meth:`Comparator.update` per event with 10, 100 and 1000 distinct images (one core).

Writes ``<out>/comparator-<machine>.json``. ``quick``: one session (24 ms, 3 uV), one cost point and no adapter
(its fit alone takes a minute on 2 cores): a smoke check of the code path, not a result.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import percentiles, write_result

NAME = "comparator"
#: The ground-truth grid (latency in s, noise in V, SOA in s) and the session the calibration is fitted on.
LATENCIES = (0.0, 0.012, 0.024, 0.048)
NOISES = (1e-6, 3e-6, 6e-6)
SOA = 0.9
OVERLAP_SOAS = (0.6, 0.2)
OVERLAP_LATENCY = 0.024
CALIBRATION_SESSION = (0.024, 3e-6, SOA)


def recovery(latency_s: float, noise: float, seed: int, soa: float = SOA) -> dict[str, Any]:
    """Latency, gain and ERP r recovered from one ground-truth session (12 images x 8 repetitions, 500 Hz)."""
    from ..compare import DictSynth, compare_offline, fit_calibration
    from ..compare.groundtruth import make_ground_truth
    from ..montage import get_montage

    montage = get_montage("things-eeg2")
    gt = make_ground_truth(montage, n_images=12, n_reps=8, latency_s=latency_s, gain=(0.7, 1.4), noise=noise,
                           sfreq=500.0, isi=soa, jitter=0.05 if soa > 0.5 else 0.0, seed=seed)
    session = compare_offline(gt.raw, montage, DictSynth(gt.synth))
    s = session.comparator.summary()
    gain = np.asarray(s["gain_per_channel"])
    erps = session.comparator.erps()
    calibrated = fit_calibration(erps, montage, n_boot=0).metrics["after"]["erp_r"]
    return {"soa_s": soa, "latency_true_ms": 1e3 * latency_s, "noise_uv": 1e6 * noise,
            "latency_est_ms": 1e3 * s["latency_s"], "latency_error_ms": 1e3 * (s["latency_s"] - latency_s),
            "gain_error_max_pct": float(100 * np.max(np.abs(gain / gt.gain - 1))),
            "erp_r": s["erp_r"], "erp_r_aligned": s["erp_r_aligned"], "erp_r_calibrated": calibrated,
            "expected_r_noise_free": gt.expected_r, "noise_ceiling": s["noise_ceiling"], "n_events": s["n_events"],
            "n_lost": s["n_lost"], "_erps": erps}


def calibration(erps, montage) -> dict[str, Any]:
    """Gain + latency profile of one session: ERP r and RMSE before/after, in sample and held out."""
    from ..compare import fit_calibration

    prof = fit_calibration(erps, montage)
    held = prof.metrics["heldout"]
    pick = ("erp_r", "erp_rmse")
    return {"latency_s": prof.latency_s,
            "in_sample": {"before": {k: prof.metrics["before"][k] for k in pick},
                          "after": {k: prof.metrics["after"][k] for k in pick}},
            "held_out": {"before": {k: held["before"][k] for k in pick}, "after": {k: held["after"][k] for k in pick}}}


def adapter(seed: int = 1) -> dict[str, Any]:
    """The latent adapter where the live responses are the embedded model's decoded from a distorted latent."""
    import torch

    from ..calibration import shift_signal
    from ..checkpoint import load_default_model
    from ..compare import ErpSet, fit_calibration
    from ..compare import metrics as M
    from ..compare.adapter import decode_latents

    model = load_default_model()
    rng = np.random.default_rng(seed)
    frames = (rng.random((24, 64, 64, 3)) * 255).astype(np.uint8)
    with torch.no_grad():
        z = model.predict_latent(torch.as_tensor(model.encoder.preprocess_frames(frames))).numpy()
    scale = 1 + 0.6 * rng.standard_normal(z.shape[1:])
    shift = 0.8 * rng.standard_normal(z.shape[1:])
    gain = rng.uniform(0.7, 1.4, model.montage.n_channels)
    clean = shift_signal(decode_latents(model, z * scale + shift), 0.02 * model.montage.sfreq) * gain[:, None]
    odd, even = (clean + 0.5 * clean.std() * rng.standard_normal(clean.shape) for _ in range(2))
    erps = ErpSet([f"img{k}" for k in range(len(z))], (odd + even) / 2, decode_latents(model, z),
                  np.full(len(z), 4), odd, even)
    t0 = time.perf_counter()
    prof = fit_calibration(erps, model.montage, adapter_model=model)
    fit = prof.metrics["heldout"]["adapter"]
    return {"n_images": len(z), "fit_seconds": time.perf_counter() - t0, "kept": fit["kept"],
            "penalty": fit["chosen"], "ceiling_r": M.overall_r(erps.live, clean),
            "in_sample_r": {"before": prof.metrics["before"]["erp_r"], "gain_latency": prof.metrics["after"]["erp_r"],
                            "adapter": prof.metrics.get("after_adapter", {}).get("erp_r")},
            "held_out_r": {"before": prof.metrics["heldout"]["before"]["erp_r"],
                           "gain_latency": prof.metrics["heldout"]["after"]["erp_r"],
                           "identity_round_trip": fit["identity_r"],
                           "adapter": max(fit["penalty_r"].values())}}


def update_cost(n_images: int, n_events: int, seed: int = 0) -> dict[str, Any]:
    """Milliseconds per :meth:`Comparator.update` over ``n_events`` events cycling through ``n_images`` images."""
    from ..compare import Comparator
    from ..montage import get_montage

    montage = get_montage("things-eeg2")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((montage.n_channels, montage.n_times)) * 1e-6
    comp = Comparator(montage)
    samples = []
    for i in range(n_events):
        live = x + 1e-7 * rng.standard_normal(x.shape)
        t = time.perf_counter()
        comp.update(live, x, f"img{i % n_images}")
        samples.append(time.perf_counter() - t)
    return {"n_images": n_images, "n_events": n_events, "snapshots": len(comp.history),
            "ms": percentiles(samples[n_images:] if n_events > 2 * n_images else samples, scale=1e3)}


def run(*, quick: bool = False, out_dir: str | Path | None = None, write: bool = True
        ) -> tuple[dict[str, Any], Path | None]:
    """Run the comparator benchmark; returns the payload and the written JSON path (None without ``write``).

    Parameters
    ----------
    quick : bool
        One ground-truth session and one cost point, no adapter (a few seconds).
    out_dir : path-like | None
        Result folder (default :func:`~vibe_rt.bench.common.default_out_dir`).
    write : bool
        Write the JSON result.
    """
    from ..montage import get_montage

    t0 = time.perf_counter()
    cells = [CALIBRATION_SESSION] if quick else (
        [(lat, noise, SOA) for noise in NOISES for lat in LATENCIES]
        + [(OVERLAP_LATENCY, noise, soa) for soa in OVERLAP_SOAS for noise in NOISES])
    grid = [recovery(lat, noise, seed=k, soa=soa) for k, (lat, noise, soa) in enumerate(cells)]
    erps = [row.pop("_erps") for row in grid][cells.index(CALIBRATION_SESSION)]
    costs = [(10, 30)] if quick else [(n, max(3 * n, 300)) for n in (10, 100, 1000)]
    payload: dict[str, Any] = {
        "question": __doc__.splitlines()[0],
        "config": {"montage": "things-eeg2", "n_images": 12, "n_reps": 8, "sfreq_recording": 500.0,
                   "stream_rate": 1000.0, "gain_range": [0.7, 1.4], "soa_s": [SOA, *OVERLAP_SOAS],
                   "calibration_session": {"latency_ms": 24.0, "noise_uv": 3.0, "soa_s": SOA}, "quick": quick},
        "recovery": grid,
        "calibration": calibration(erps, get_montage("things-eeg2")),
        "adapter": None if quick else adapter(),
        "update_cost": [update_cost(n, events) for n, events in costs],
    }
    payload["wall_s"] = time.perf_counter() - t0
    payload["summary"] = {"latency_error_ms_max": max(abs(r["latency_error_ms"]) for r in grid),
                          "gain_error_max_pct": max(r["gain_error_max_pct"] for r in grid),
                          "held_out_r_after_calibration": payload["calibration"]["held_out"]["after"]["erp_r"],
                          "update_ms_mean": {u["n_images"]: u["ms"].get("mean") for u in payload["update_cost"]}}
    path = write_result(NAME, payload, out_dir=out_dir) if write else None
    return payload, path
