"""Fitting the optional latent adapter of a calibration profile: a per-dimension scale and shift on the ViBE
latent (:class:`vibe_rt.calibration.LatentAdapter`).

The Q-Former predicts a latent ``z`` of shape ``(latent_tokens, latent_dim)``; the adapter replaces it by
``scale * z + shift`` before the VAE decoder. Per-channel gain and one latency (the rest of a profile) cannot
change the *shape* of a waveform; a systematic difference in shape between a subject or device and the model
(a component earlier, smaller or of another topography) can be absorbed where the model represents shapes.

Fitting (signal space, full batch, Adam). With ``z_k`` the VAE posterior mean of the synthesized ERP of key
``k`` and the live ERP aligned by the profile's latency, minimise over ``scale`` and ``shift``::

    mean_k,c,t ((gain_c * decode(scale * z_k + shift) - live_k(t + latency)) / sigma_c)^2
        + penalty * mean((scale - 1)^2 + shift^2)

where ``sigma_c`` is the model's per-channel training standard deviation (so channels weigh alike). The penalty
is chosen on held-out repetitions (fit on the odd, score on the even ones); an adapter whose held-out ERP r does
not beat the identity (the same VAE round trip without adapter) by ``MIN_GAIN`` is not kept. 100 Adam steps
converge (tiny model, 24 ERPs: loss within 0.3 % of 600 steps, about 3 s on 2 CPU cores).

Caveat: the adapter is fitted on posterior means of synthesized ERPs and applied, when streaming, to Q-Former
latents; the two agree as far as the VAE's round trip does (its reconstruction r), not exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._logs import logger
from ..calibration import LatentAdapter, shift_signal
from . import metrics as M

__all__ = ["calibrated_prediction", "decode_latents", "encode_latents", "fit_latent_adapter", "select_penalty"]

PENALTIES = (0.001, 0.01, 0.1, 1.0)
MIN_GAIN = 0.005  # held-out r an adapter must add over the identity to be kept (smaller is noise)


def _normalisation(model) -> tuple[np.ndarray, np.ndarray]:
    """The model's per-channel training mean and std ``(C, 1)`` (float64)."""
    return (model.norm_mean.detach().cpu().double().numpy()[:, None],
            model.norm_std.detach().cpu().double().numpy()[:, None])


def encode_latents(model, erps: np.ndarray) -> np.ndarray:
    """VAE posterior means ``(K, latent_tokens, latent_dim)`` of ERPs ``(K, C, T)`` (SI units, model montage)."""
    from ..training.stage2 import vae_latents

    mean, std = _normalisation(model)
    return vae_latents(model.vae, (np.asarray(erps, float) - mean) / std)


def decode_latents(model, z: np.ndarray) -> np.ndarray:
    """Epochs ``(K, C, T)`` in SI units from latents (the VAE decoder, de-normalised)."""
    from ..training import stage2

    mean, std = _normalisation(model)
    return stage2.decode_latents(model.vae, np.asarray(z, np.float32)) * std + mean


def fit_latent_adapter(model, z: np.ndarray, target: np.ndarray, gain: np.ndarray, *, penalty: float,
                       steps: int = 100, lr: float = 0.1, model_hash: str = "") -> LatentAdapter:
    """Fit scale and shift (see the module docstring) for latents ``z`` and aligned live ERPs ``target``.

    Parameters
    ----------
    model : ViBE
        Its decoder and normalisation (frozen).
    z : ndarray, shape (K, latent_tokens, latent_dim)
    target : ndarray, shape (K, C, T)
        Live ERPs shifted back by the profile's latency (SI units).
    gain : ndarray, shape (C,)
        The profile's per-channel gain (applied to the decoded epochs in the loss, as when streaming).
    penalty : float
        Weight of the pull towards the identity.
    """
    import torch

    decoder = model.vae.decoder.eval()
    mean, std = _normalisation(model)
    # target in the decoder's normalised units, per channel; gain applied to the decoded SI epoch
    g = np.asarray(gain, float)[:, None]
    tgt = torch.as_tensor((np.asarray(target, float) - g * mean) / std, dtype=torch.float32)
    gn = torch.as_tensor(g, dtype=torch.float32)
    zt = torch.as_tensor(np.asarray(z, np.float32))
    scale = torch.ones(zt.shape[1:], requires_grad=True)
    shift = torch.zeros(zt.shape[1:], requires_grad=True)
    opt = torch.optim.Adam([scale, shift], lr=lr)
    for p in decoder.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(int(steps)):
            opt.zero_grad()
            pred = gn * decoder(zt * scale + shift)
            loss = torch.mean((pred - tgt) ** 2) + penalty * torch.mean((scale - 1) ** 2 + shift ** 2)
            loss.backward()
            opt.step()
    finally:
        for p in decoder.parameters():
            p.requires_grad_(True)
    return LatentAdapter(scale.detach().numpy(), shift.detach().numpy(), model_hash,
                         {"penalty": float(penalty), "steps": int(steps), "loss": float(loss.detach())})


def calibrated_prediction(model, z: np.ndarray, adapter: LatentAdapter | None, gain: np.ndarray,
                          shift_samples: float | np.ndarray) -> np.ndarray:
    """What a calibrated stream emits for latents ``z`` ``(K, L, D)``: decode(adapter(z)), delayed, times gain."""
    y = decode_latents(model, adapter(z) if adapter is not None else z)
    return shift_signal(y, shift_samples) * np.asarray(gain, float)[:, None]


def select_penalty(model, synth: np.ndarray, odd: np.ndarray, even: np.ndarray, gain: np.ndarray,
                   shift_samples: float | np.ndarray, *,
                   penalties: tuple[float, ...] = PENALTIES) -> tuple[float | None, dict[str, Any]]:
    """The penalty whose adapter, fitted on the odd repetitions, best predicts the even ones.

    Parameters
    ----------
    model : ViBE
    synth, odd, even : ndarray, shape (K, C, T)
        Synthesized ERPs and the live odd/even-repetition ERPs of the same keys (model montage, SI).
    gain, shift_samples :
        Gain and latency (in model samples) fitted on the odd repetitions.

    Returns
    -------
    penalty : float | None
        None when no adapter beats the identity (the same VAE round trip without adapter) on the even ones by
        ``MIN_GAIN``.
    report : dict
        ``{"identity_r", "penalty_r": {penalty: r}, "chosen", "kept"}`` (held-out ERP r).
    """
    z = encode_latents(model, synth)
    target = shift_signal(np.asarray(odd, float), -np.asarray(shift_samples, float))
    identity = M.overall_r(even, calibrated_prediction(model, z, None, gain, shift_samples))
    scores = {}
    for penalty in penalties:
        adapter = fit_latent_adapter(model, z, target, gain, penalty=penalty)
        scores[penalty] = M.overall_r(even, calibrated_prediction(model, z, adapter, gain, shift_samples))
    best = max(scores, key=scores.__getitem__)
    kept = scores[best] > identity + MIN_GAIN
    report = {"identity_r": identity, "penalty_r": {str(k): v for k, v in scores.items()},
              "chosen": best if kept else None, "kept": bool(kept)}
    if not kept:
        logger.info("latent adapter not kept: held-out r %.4f does not beat the identity's %.4f by %g",
                    scores[best], identity, MIN_GAIN)
    return (best if kept else None), report
