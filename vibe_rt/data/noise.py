"""Continuous background activity for simulated M/EEG: 1/f cortical noise, occipital alpha, sensor noise.

:class:`BackgroundNoise` is a stateful generator used both by the offline simulator (epochs cut from one
continuous stream) and by the real-time synthesizer (chunk by chunk). Every part is white Gaussian noise
shaped by an IIR filter whose state is kept between calls, and the random numbers are drawn sample-major, so
``generate(500); generate(500)`` returns exactly ``generate(1000)`` of a twin generator with the same seed.

Model (per montage, SI units):

* **1/f background**: ``n_sources`` (default 32) random dipoles in a cortical shell (45-75 mm from the head
  centre, random orientations) projected through the spherical-head forward model of
  :mod:`vibe_rt.data._forward`, so the sensor covariance has the smooth spatial structure of real brain noise.
  Each source is white noise through a cascade of real pole/zero pairs log-spaced between 0.3 Hz and the
  Nyquist band (bilinear transform with pre-warping), giving a power spectrum ``1/f**exponent`` (default 1.5;
  resting EEG shows 1-2) over 0.5-0.4·fs Hz. Levels are set as spectral densities at 10 Hz, so the spectrum
  does not depend on the sampling rate: EEG 1 µV²/Hz (10-20 µV rms per channel with the
  flat part below 0.3 Hz), MEG (20 fT)²/Hz.
* **Alpha**: two occipito-parietal sources (one per hemisphere, 9-11 Hz, individual peak frequency drawn from
  the seed) of narrow-band noise (4th-order Butterworth band-pass, 3 Hz wide), which waxes and wanes like
  real alpha; about 8 µV / 250 fT rms on the best occipital channel.
* **Sensor noise**: white, 0.1 µV/√Hz for EEG, 5 fT/√Hz (magnetometers) or 5 fT/cm/√Hz (gradiometers).

A :class:`~vibe_rt.data.subject.SyntheticSubject` individualises it: both alpha sources peak within 0.2 Hz of the
subject's alpha frequency, with ``alpha_scale`` times the power, and every source reaches the sensors through
the subject's head (size, skull conductivity). Levels stay normalised as above, so the head changes the spatial
structure, not the level.

References: He (2014) "Scale-free brain activity", Trends Cogn Sci 18:480 (1/f exponents of 1-2); Donoghue
et al. (2020) Nat Neurosci 23:1655 (aperiodic + periodic spectral parametrisation); Hämäläinen et al. (1993)
Rev Mod Phys 65:413 (MEG noise levels).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from ..errors import ConfigError
from ..montage import Montage
from ._forward import TEMPLATE_HEAD, leadfield
from .subject import SyntheticSubject

# Spectral levels at 10 Hz (unit/sqrt(Hz)) and target alpha rms (unit) per channel type.
_PINK_DENSITY = {"eeg": 1.0e-6, "mag": 20e-15, "grad": 4e-13}
_ALPHA_RMS = {"eeg": 8e-6, "mag": 250e-15, "grad": 5e-12}
_SENSOR_DENSITY = {"eeg": 0.1e-6, "mag": 5e-15, "grad": 5e-13}
_F_LOW = 0.3  # Hz, where the 1/f spectrum flattens
_ALPHA_SITES = np.array([[-0.025, -0.068, 0.015], [0.025, -0.068, 0.015]])  # m, relative to head centre
_WARMUP_S = 10.0


def pink_sos(sfreq: float, exponent: float = 1.5, f_low: float = _F_LOW) -> np.ndarray:
    """Second-order sections of a filter with power response ``(10/f)**exponent``, unit gain at 10 Hz.

    Parameters
    ----------
    sfreq : float
        Sampling rate in Hz.
    exponent : float
        Spectral exponent of the power, between 0 and 2 (1 = pink, 2 = brown).
    f_low : float
        Frequency in Hz below which the spectrum is flat (keeps the variance finite).
    """
    if not 0.0 < exponent <= 2.0:
        raise ConfigError(f"1/f exponent must be in (0, 2], got {exponent}")
    f_high = 0.45 * sfreq
    step = 0.5  # decades between successive poles
    n = int(np.ceil(np.log10(f_high / f_low) / step)) + 1
    poles = f_low * 10 ** (step * np.arange(n))
    zeros = poles * 10 ** (step * exponent / 2)  # a zero after each pole: slope -exponent/2 in amplitude
    keep = zeros < 0.49 * sfreq
    poles, zeros = poles, zeros[keep]

    def warp(f: np.ndarray) -> np.ndarray:
        return -2 * sfreq * np.tan(np.pi * np.minimum(f, 0.49 * sfreq) / sfreq)

    z, p, k = signal.bilinear_zpk(warp(zeros), warp(poles), 1.0, sfreq)
    sos = signal.zpk2sos(z, p, k)
    _, h = signal.sosfreqz(sos, worN=[10.0], fs=sfreq)
    sos[0, :3] /= np.abs(h[0])
    return sos


class BackgroundNoise:
    """Continuous, stateful background M/EEG activity in SI units.

    Parameters
    ----------
    montage : Montage
        Channels and positions; the forward model is computed once per montage (cached).
    sfreq : float | None
        Output sampling rate in Hz; default the montage's model rate.
    seed : int | None
        Seed of the source layout, alpha frequencies and the noise itself.
    scale : float
        Multiplies every part (1.0 = the documented levels).
    alpha : bool
        Include occipital alpha.
    exponent : float
        Power-law exponent of the 1/f part.
    n_sources : int
        Number of random cortical sources of the 1/f part.
    subject : SyntheticSubject | None
        Individual alpha frequency and power and head (see the module docstring); None: the template.

    Examples
    --------
    >>> noise = BackgroundNoise(get_montage("things-eeg2"), 1000.0, seed=0)
    >>> chunk = noise.generate(100)  # (100, 17) float32, volts
    """

    def __init__(
        self,
        montage: Montage,
        sfreq: float | None = None,
        *,
        seed: int | None = None,
        scale: float = 1.0,
        alpha: bool = True,
        exponent: float = 1.5,
        n_sources: int = 32,
        subject: SyntheticSubject | None = None,
    ) -> None:
        self.montage = montage
        self.sfreq = float(sfreq or montage.sfreq)
        if self.sfreq < 30.0:
            raise ConfigError(f"BackgroundNoise needs a sampling rate of at least 30 Hz, got {self.sfreq}")
        self.scale = float(scale)
        self.alpha = bool(alpha)
        self.exponent = float(exponent)
        layout_rng = np.random.default_rng(None if seed is None else [int(seed), 1])
        self._rng = np.random.default_rng(None if seed is None else [int(seed), 2])
        types = np.array(montage.ch_types)

        # 1/f sources: random points in a cortical shell (upper part of the brain), random orientations
        n_sources = int(n_sources)
        direction = layout_rng.standard_normal((n_sources, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        direction[:, 2] = np.abs(direction[:, 2]) * 0.8 - 0.1
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        rr = direction * layout_rng.uniform(0.045, 0.075, (n_sources, 1))
        ori = layout_rng.standard_normal((n_sources, 3))
        ori /= np.linalg.norm(ori, axis=1, keepdims=True)
        sites = np.vstack([rr, _ALPHA_SITES])
        gain = leadfield(montage, sites, subject.head if subject is not None else TEMPLATE_HEAD)  # (C, n, 3)
        g_pink = np.einsum("cnk,nk->cn", gain[:, :n_sources], ori)
        alpha_ori = np.array([[-0.3, -0.8, 0.5], [0.3, -0.8, 0.5]])
        alpha_ori /= np.linalg.norm(alpha_ori, axis=1, keepdims=True)
        g_alpha = np.einsum("cnk,nk->cn", gain[:, n_sources:], alpha_ori)

        # pink: unit input density -> density 1 at 10 Hz; scale so the median channel has the target density
        per_ch = np.sqrt((g_pink**2).sum(1))
        target = np.array([_PINK_DENSITY[t] for t in types])
        ref = np.median(per_ch[per_ch > 0]) if np.any(per_ch > 0) else 1.0
        self._mix_pink = np.ascontiguousarray(
            (g_pink * (target / ref)[:, None]).T * np.sqrt(self.sfreq / 2), dtype=np.float32)  # (K, C)
        self._sos_pink = pink_sos(self.sfreq, self.exponent)
        self._zi_pink = np.zeros((self._sos_pink.shape[0], 2, n_sources))

        # alpha: band-pass noise, unit variance per source; best channel gets the target rms
        self._alpha_f = layout_rng.uniform(9.0, 11.0, 2)
        if subject is not None and subject.iaf_hz is not None:  # the same draw, mapped to +-0.2 Hz around it
            self._alpha_f = subject.iaf_hz + 0.2 * (self._alpha_f - 10.0)
        self._sos_alpha = [signal.butter(2, [f - 1.5, f + 1.5], btype="band", fs=self.sfreq, output="sos")
                           for f in self._alpha_f]
        bw_gain = [np.sqrt(np.sum(signal.sosfilt(s, self._unit_impulse()) ** 2)) for s in self._sos_alpha]
        per_ch_a = np.sqrt((g_alpha**2).sum(1))
        target_a = np.array([_ALPHA_RMS[t] for t in types]) * np.sqrt(subject.alpha_scale if subject else 1.0)
        ref_a = per_ch_a.max() if per_ch_a.max() > 0 else 1.0
        self._mix_alpha = ((g_alpha * (target_a / ref_a)[:, None]).T / np.array(bw_gain)[:, None]).astype(
            np.float32)  # (2, C)
        self._zi_alpha = [np.zeros((s.shape[0], 2, 1)) for s in self._sos_alpha]

        self._sensor_sd = (np.array([_SENSOR_DENSITY[t] for t in types]) * np.sqrt(self.sfreq / 2)).astype(
            np.float32)
        self._n_pink = n_sources
        self._n_samples = 0
        self._warm_up(np.random.default_rng(None if seed is None else [int(seed), 3]))

    def _unit_impulse(self) -> np.ndarray:
        x = np.zeros(int(self.sfreq * 20))
        x[0] = 1.0
        return x

    def _warm_up(self, rng: np.random.Generator) -> None:
        """Run the filters on independent noise so the first samples are already stationary."""
        n = int(_WARMUP_S * self.sfreq)
        white = rng.standard_normal((n, self._n_pink + 2))
        _, self._zi_pink = signal.sosfilt(self._sos_pink, white[:, : self._n_pink], axis=0, zi=self._zi_pink)
        for i, sos in enumerate(self._sos_alpha):
            _, self._zi_alpha[i] = signal.sosfilt(sos, white[:, self._n_pink + i: self._n_pink + i + 1], axis=0,
                                                  zi=self._zi_alpha[i])

    @property
    def n_channels(self) -> int:
        """Number of output channels."""
        return self.montage.n_channels

    @property
    def n_generated(self) -> int:
        """Samples generated so far."""
        return self._n_samples

    def generate(self, n_samples: int) -> np.ndarray:
        """The next ``n_samples`` of background activity.

        Parameters
        ----------
        n_samples : int
            Number of samples.

        Returns
        -------
        data : ndarray, shape (n_samples, n_channels), float32
            Volts (EEG) or tesla (MEG), continuing seamlessly from the previous call.
        """
        n = int(n_samples)
        if n < 0:
            raise ConfigError(f"n_samples must be >= 0, got {n_samples}")
        c = self.n_channels
        if n == 0:
            return np.zeros((0, c), np.float32)
        k = self._n_pink
        white = self._rng.standard_normal((n, k + 2 + c))
        pink, self._zi_pink = signal.sosfilt(self._sos_pink, white[:, :k], axis=0, zi=self._zi_pink)
        out = _mix(pink.astype(np.float32), self._mix_pink)
        if self.alpha:
            for i, sos in enumerate(self._sos_alpha):
                a, self._zi_alpha[i] = signal.sosfilt(sos, white[:, k + i: k + i + 1], axis=0,
                                                      zi=self._zi_alpha[i])
                out += a.astype(np.float32) * self._mix_alpha[i]
        out += white[:, k + 2:].astype(np.float32) * self._sensor_sd
        if self.scale != 1.0:
            out *= np.float32(self.scale)
        self._n_samples += n
        return out


def _mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` computed row by row (``np.einsum``, no BLAS).

    Two reasons: each output row depends only on its input row, so chunked generation is bit-identical to
    one long call; and multi-threaded OpenBLAS on a busy 2-core machine made a (1000, 32) x (32, 64) product
    take 12 ms instead of ~1 ms.
    """
    return np.einsum("nk,kc->nc", a, b)
