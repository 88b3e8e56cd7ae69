"""Ground-truth recordings for testing the comparator: known ERPs + known latency, gain and noise.

:func:`make_ground_truth` builds a continuous recording (an :class:`mne.io.RawArray` with one annotation per
stimulus, whose description is a vibe-rt JSON marker) in which every event's response is
``gain[c] * erp_image(t - onset - latency)`` plus background noise, and returns the *unshifted, unscaled*
ERPs as the "synthesized" epochs. The ERPs come from the simulator's ``EvokedModel`` when given one, else from
smooth component templates (P1/N1/P2-like Gaussians with per-image amplitudes and latencies and smooth
spatial patterns). MNE-LSL's ``PlayerLSL`` replays the raw (annotations as a marker stream) for live tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.interpolate import CubicSpline

from ..calibration import shift_signal
from ..montage import Montage

__all__ = ["GroundTruth", "template_erps", "make_ground_truth"]


@dataclass
class GroundTruth:
    """A recording with known truth.

    Attributes
    ----------
    raw : mne.io.RawArray
        Continuous data (V) with annotations ``{"image": key, "frame_id": i, "source": "groundtruth"}``.
    synth : dict of str -> ndarray (C, T)
        The unshifted, unscaled ERP per image (model rate, SI): what a perfect model would predict.
    latency_s : float
    gain : ndarray, shape (C,)
    onsets : ndarray
        Event onsets (s, recording time).
    keys : list of str
        Image of each event.
    expected_r : float
        Pearson r between the noise-free live ERPs (``gain * shift(erp)``) and the synthesized ERPs.
    """

    raw: Any
    synth: dict[str, np.ndarray]
    latency_s: float
    gain: np.ndarray
    onsets: np.ndarray
    keys: list[str]
    expected_r: float


def template_erps(montage: Montage, n_images: int, *, amplitude: float = 5e-6, seed: int = 0) -> np.ndarray:
    """Smooth, image-specific ERPs ``(n_images, C, T)`` in volts at the model rate, zero before onset."""
    rng = np.random.default_rng(seed)
    t = montage.times
    pos = np.asarray(montage.positions, float)
    centre = pos.mean(axis=0)
    comps = [(0.10, 0.020, 1.0), (0.17, 0.028, -1.3), (0.26, 0.040, 0.9)]  # latency, width, sign/size
    out = np.zeros((n_images, montage.n_channels, t.size))
    for i in range(n_images):
        for lat, width, amp in comps:
            c = centre + rng.normal(0, 0.03, 3)
            pattern = np.exp(-np.sum((pos - c) ** 2, axis=1) / (2 * 0.05**2))
            pattern = 0.3 + pattern / pattern.max()
            lat_i = lat + rng.normal(0, 0.012)
            a = amp * rng.uniform(0.6, 1.4)
            out[i] += a * pattern[:, None] * np.exp(-0.5 * ((t - lat_i) / width) ** 2)[None, :]
    out[:, :, t < 0] = 0.0
    return amplitude * out


def _noise(n: int, c: int, sfreq: float, scale: float, rng: np.random.Generator) -> np.ndarray:
    """1/f background, spatially correlated, plus white sensor noise (V)."""
    white = rng.standard_normal((n, c))
    f = np.fft.rfftfreq(n, 1 / sfreq)
    spec = np.fft.rfft(white, axis=0) / np.sqrt(np.maximum(f, 1.0))[:, None]
    pink = np.fft.irfft(spec, n=n, axis=0)
    mix = 0.6 * np.eye(c) + 0.4 / c
    pink = pink @ mix
    pink *= 1.0 / pink.std()
    return scale * (pink + 0.3 * rng.standard_normal((n, c)))


def make_ground_truth(
    montage: Montage,
    *,
    n_images: int = 6,
    n_reps: int = 6,
    latency_s: float = 0.024,
    gain: np.ndarray | tuple[float, float] = (0.7, 1.4),
    noise: float = 3e-6,
    sfreq: float = 500.0,
    isi: float = 0.5,
    jitter: float = 0.05,
    lead_s: float = 0.5,
    erps: np.ndarray | None = None,
    ch_names: list[str] | None = None,
    seed: int = 0,
) -> GroundTruth:
    """Build a recording with known latency and per-channel gain.

    Parameters
    ----------
    montage : Montage
        Channels, model rate and epoch window of the ERPs.
    n_images, n_reps : int
        Images and repetitions of each (events = ``n_images * n_reps``, shuffled).
    latency_s : float
        Delay of the live responses relative to the synthesized ones (s).
    gain : ndarray (C,) | (low, high)
        Per-channel gain, or a range from which gains are spread evenly (shuffled).
    noise : float
        Background noise scale (V).
    sfreq : float
        Recording rate (Hz).
    isi, jitter : float
        Inter-stimulus interval and uniform jitter (s).
    lead_s : float
        Silence before the first onset (s), longer than ``-tmin``.
    erps : ndarray (n_images, C, T) | None
        Known ERPs (e.g. from the simulator's ``EvokedModel``); default :func:`template_erps`.
    ch_names : list of str | None
        Channel labels written to the recording (e.g. other case / a subset); default montage labels.
    seed : int
    """
    import mne

    rng = np.random.default_rng(seed)
    if erps is None:
        erps = template_erps(montage, n_images, seed=seed)
    erps = np.asarray(erps, float)
    n_images = erps.shape[0]
    c = montage.n_channels
    if isinstance(gain, tuple):
        g = np.linspace(gain[0], gain[1], c)
        rng.shuffle(g)
    else:
        g = np.asarray(gain, float)
    keys = [f"img{i:03d}.png" for i in range(n_images)]
    order = np.repeat(np.arange(n_images), n_reps)
    rng.shuffle(order)
    onsets = lead_s + np.arange(order.size) * isi + rng.uniform(0, jitter, order.size)
    duration = onsets[-1] + montage.tmax + lead_s
    n = int(np.ceil(duration * sfreq))
    times = np.arange(n) / sfreq
    data = _noise(n, c, sfreq, noise, rng)
    # each response at the recording rate: cubic interpolation of the model-rate ERP (zero outside the window)
    splines = [CubicSpline(montage.times, e, axis=1) for e in erps]
    for k, (onset, img) in enumerate(zip(onsets, order)):
        rel = times - onset - latency_s
        m = (rel >= montage.times[0]) & (rel <= montage.times[-1])
        data[m] += (splines[img](rel[m]) * g[:, None]).T
    names = list(ch_names) if ch_names is not None else list(montage.ch_names)
    sel = [i for i, ch in enumerate(montage.ch_names) if ch.lower() in {x.lower() for x in names}]
    by_lower = {x.lower(): x for x in names}
    info = mne.create_info([by_lower[montage.ch_names[i].lower()] for i in sel], sfreq, "eeg")
    raw = mne.io.RawArray(data[:, sel].T, info, verbose="error")
    desc = [json.dumps({"image": keys[i], "frame_id": k, "source": "groundtruth"}) for k, i in enumerate(order)]
    raw.set_annotations(mne.Annotations(onsets, np.zeros(onsets.size), desc))
    from . import metrics as M

    live_true = shift_signal(erps, latency_s * montage.sfreq) * g[:, None]
    b = montage.times <= 0
    live_true = live_true - live_true[:, :, b].mean(axis=2, keepdims=True)
    synth = {keys[i]: erps[i] for i in range(n_images)}
    expected = M.overall_r(live_true, erps - erps[:, :, b].mean(axis=2, keepdims=True))
    return GroundTruth(raw, synth, float(latency_s), g, onsets, [keys[i] for i in order], expected)

