"""Ground-truth sessions for testing the comparator: a synthesized run as the stream makes it, and a "live"
recording of it with known latency, gains and noise.

:func:`make_ground_truth` builds what a lab would: the synthesized run the stream produces for a sequence of
onsets (every image's response overlap-added at its onset by the stream's own
:class:`~vibe_rt.stream.synth.Synthesizer`, at the stream's rate; responses overlap whenever the SOA is shorter
than the epoch), then ``live(t) = gain[c] * synth(t - latency[c]) + noise``, resampled to the live device's rate,
with the channels in another order and case and extra channels if asked, and one annotation per onset whose
description is a vibe-rt JSON marker naming the image. The per-image *isolated* responses (what a perfect model
predicts from the image) are returned for the model mode (:class:`~vibe_rt.compare.session.DictSynth`), the
synthesized run itself as a recording for the ``--synth`` mode. The ERPs come from the simulator's
``EvokedModel`` when given, else from smooth component templates (P1/N1/P2-like Gaussians with per-image
amplitudes and latencies and smooth spatial patterns). MNE-LSL's ``PlayerLSL`` replays the raw (annotations as a
marker stream) for live tests.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import shift as _ndi_shift
from scipy.signal import resample_poly

from ..montage import Montage
from ..stream.synth import Synthesizer, resample_factors

__all__ = ["GroundTruth", "lab_recording", "make_ground_truth", "template_erps"]


@dataclass
class GroundTruth:
    """A recording with known truth.

    Attributes
    ----------
    raw : mne.io.RawArray
        The live recording (V) with annotations ``{"image": key, "frame_id": i, "source": "groundtruth"}``.
    synth_raw : mne.io.RawArray
        The synthesized run (V, montage channels, the stream's rate, no noise), with the same annotations: what
        ``vibe-rt stream --record`` would have written.
    synth : dict of str -> ndarray (C, T)
        The isolated response per image (model rate, SI): what a perfect model predicts from the image.
    latency_s : float | ndarray
        One latency, or one per montage channel.
    gain : ndarray, shape (C,)
        Per montage channel.
    onsets : ndarray
        Event onsets (s, recording time).
    keys : list of str
        Image of each event.
    expected_r : float
        Pearson r between the noise-free live and the synthesized running ERPs (baseline-corrected, as compared).
    """

    raw: Any
    synth_raw: Any
    synth: dict[str, np.ndarray]
    latency_s: float | np.ndarray
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


def _delayed(x: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """(N, C) signal with channel c delayed by ``samples[c]`` (fractional: cubic spline; zero before the start)."""
    out = np.empty_like(x)
    for d in np.unique(samples):
        cols = np.flatnonzero(samples == d)
        out[:, cols] = _ndi_shift(x[:, cols], (d, 0), order=3, mode="constant", cval=0.0)
    return out


def lab_recording(run: np.ndarray, rate: float, *, latency_s: float | np.ndarray, gain: np.ndarray, noise: float,
                  sfreq: float, rng: np.random.Generator) -> np.ndarray:
    """What a lab records of a synthesized run ``(N, C)`` (SI, at ``rate``): ``gain[c] * run(t - latency[c])``,
    resampled to ``sfreq`` (:func:`scipy.signal.resample_poly`), plus 1/f and white noise of scale ``noise``
    (V); ``(N * sfreq / rate, C)`` out, sample ``k`` at ``k / sfreq`` s like the run's."""
    c = run.shape[1]
    latency = np.broadcast_to(np.asarray(latency_s, float), (c,))
    clean = _delayed(run, latency * rate) * np.asarray(gain, float)
    up, down = resample_factors(rate, sfreq)
    live = resample_poly(clean, up, down, axis=0) if (up, down) != (1, 1) else clean
    return live + _noise(live.shape[0], c, sfreq, noise, rng)


def _erps_at(signal: np.ndarray, rate: float, onsets: np.ndarray, order: np.ndarray, n_keys: int,
             montage: Montage) -> np.ndarray:
    """Baseline-corrected average epochs per image of a continuous (N, C) signal, by linear interpolation."""
    t = np.arange(signal.shape[0]) / rate
    out = np.zeros((n_keys, montage.n_channels, montage.n_times))
    for onset, img in zip(onsets, order):
        at = onset + montage.times
        out[img] += np.stack([np.interp(at, t, signal[:, c]) for c in range(signal.shape[1])])
    out /= np.bincount(order, minlength=n_keys)[:, None, None]
    b = montage.times <= 0
    return out - out[:, :, b].mean(axis=2, keepdims=True)


def make_ground_truth(
    montage: Montage,
    *,
    n_images: int = 6,
    n_reps: int = 6,
    latency_s: float | Sequence[float] = 0.024,
    gain: np.ndarray | tuple[float, float] = (0.7, 1.4),
    noise: float = 3e-6,
    sfreq: float = 500.0,
    isi: float = 0.5,
    jitter: float = 0.05,
    lead_s: float = 0.5,
    erps: np.ndarray | None = None,
    ch_names: list[str] | None = None,
    shuffle_channels: bool = False,
    extra_channels: Sequence[str] = (),
    stream_rate: float = 1000.0,
    seed: int = 0,
) -> GroundTruth:
    """Build a synthesized run and its live recording with known latency and per-channel gain.

    Parameters
    ----------
    montage : Montage
        Channels, model rate and epoch window of the ERPs.
    n_images, n_reps : int
        Images and repetitions of each (events = ``n_images * n_reps``, in random order).
    latency_s : float | sequence of float
        Delay of the live responses relative to the synthesized ones (s), one or one per montage channel.
    gain : ndarray (C,) | (low, high)
        Per-channel gain, or a range from which gains are spread evenly (shuffled).
    noise : float
        Background noise scale (V): 1/f plus white, spatially correlated.
    sfreq : float
        Live recording rate (Hz).
    isi, jitter : float
        Onset interval (SOA) and its uniform jitter (s); an SOA shorter than the epoch overlaps the responses.
    lead_s : float
        Silence before the first onset (s), longer than ``-tmin``.
    erps : ndarray (n_images, C, T) | None
        Known responses (e.g. from the simulator's ``EvokedModel``); default :func:`template_erps`.
    ch_names : list of str | None
        Labels of the montage channels written to the live recording (other case, or a subset); default the
        montage's.
    shuffle_channels : bool
        Write the live channels in a random order.
    extra_channels : sequence of str
        Live channels the montage lacks (noise only), e.g. ``("Fz", "Cz")``.
    stream_rate : float
        Rate of the synthesized run (the stream's ``--srate``).
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
    latency = np.broadcast_to(np.asarray(latency_s, float), (c,))
    keys = [f"img{i:03d}.png" for i in range(n_images)]
    order = np.repeat(np.arange(n_images), n_reps)
    rng.shuffle(order)
    onsets = lead_s + np.arange(order.size) * isi + rng.uniform(0, jitter, order.size)
    duration = onsets[-1] + montage.tmax + float(latency.max(initial=0.0)) + lead_s
    # the synthesized run, as the stream renders it (output units back to SI)
    synth = Synthesizer(montage, stream_rate, background=None, t0=0.0, max_delay_s=duration + 1.0)
    synth.add_batch(erps[order], list(onsets))
    n_stream = int(np.ceil(duration * stream_rate))
    run = synth.render(0, n_stream).astype(np.float64) / synth.scale
    data = lab_recording(run, stream_rate, latency_s=latency, gain=g, noise=noise, sfreq=sfreq, rng=rng)
    names = list(ch_names) if ch_names is not None else list(montage.ch_names)
    by_lower = {x.lower(): x for x in names}
    sel = [i for i, ch in enumerate(montage.ch_names) if ch.lower() in by_lower]
    labels = [by_lower[montage.ch_names[i].lower()] for i in sel]
    columns = [data[:, i] for i in sel]
    for name in extra_channels:
        labels.append(name)
        columns.append(_noise(data.shape[0], 1, sfreq, max(noise, 1e-6), rng)[:, 0])
    perm = rng.permutation(len(labels)) if shuffle_channels else np.arange(len(labels))
    info = mne.create_info([labels[i] for i in perm], sfreq, "eeg")
    raw = mne.io.RawArray(np.stack([columns[i] for i in perm]), info, verbose="error")
    desc = [json.dumps({"image": keys[i], "frame_id": k, "source": "groundtruth"}) for k, i in enumerate(order)]
    annotations = mne.Annotations(onsets, np.zeros(onsets.size), desc)
    raw.set_annotations(annotations)
    synth_raw = mne.io.RawArray(run.T, mne.create_info(list(montage.ch_names), stream_rate, "eeg"), verbose="error")
    synth_raw.set_annotations(annotations)
    from . import metrics as M

    clean = _delayed(run, latency * stream_rate) * g
    expected = M.overall_r(_erps_at(clean, stream_rate, onsets, order, n_images, montage),
                           _erps_at(run, stream_rate, onsets, order, n_images, montage))
    return GroundTruth(raw, synth_raw, {keys[i]: erps[i] for i in range(n_images)},
                       float(latency[0]) if np.ndim(latency_s) == 0 else latency.copy(), g, onsets,
                       [keys[i] for i in order], expected)
