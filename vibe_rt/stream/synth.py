"""The synthesizer: evoked epochs (model rate) overlap-added onto continuous background activity (device rate).

Pure and single-threaded (the pipeline serialises calls with a lock):

- :meth:`Synthesizer.add` resamples an epoch from the model rate to the output rate
  (:func:`scipy.signal.resample_poly` with the exact rational factor ``up/down``), keeps its post-onset part
  (``t >= 0``; the pre-stimulus part of a model epoch describes ongoing activity, which the background already
  provides; ``include_prestimulus=True`` keeps it), fades its first and last ``taper_s`` seconds in/out (a
  half-Hann ramp, so that no step appears where an epoch starts or ends), converts it to output units and adds
  it into a ring buffer of pending additions at its onset's position.
- :meth:`Synthesizer.render` returns the next ``n`` output samples: background + pending additions + optional
  line noise, and forgets them.

Timing: sample ``n`` of the output has the time ``t0 + n / srate``. Epoch sample ``j`` (output rate) belongs to
the time ``onset + tmin + j / srate``; its output index is ``round((onset + tmin - t0) * srate) + j``. The
rounding places each response within half an output sample (0.5 ms at 1 kHz) of its exact time, well below
the model rate's own resolution (5-10 ms); no fractional-delay filter is applied to onsets.

Delays: ``response_delay_s`` places every response that much later (an emulated device's transport delay, a
synthetic subject's latency shift); a negative one moves it earlier, with its part that would precede the onset
left out. ``delay_s`` (one per channel, from a calibration profile's latency) moves each channel's response later
(earlier when negative) as a whole: the tapered epoch is padded and shifted, so a delay never cuts the response
(what a shift inside the fixed epoch window would do). The common whole-sample part moves the start index, the
remainder is a cubic-spline fractional shift of the padded epoch at the output rate.

Late responses: an epoch whose first sample index has already been rendered is *late* (counted). With
``late_policy="drop"`` it is discarded; with ``"clip"`` the samples that are still to come are added (the
emitted part is lost). A response is never shifted in time.

Units: EEG channels are output in microvolts (unit word ``"microvolts"``, the LSL/XDF convention that MNE-LSL
parses); MEG magnetometers in tesla (``"tesla"``) and gradiometers in tesla per metre (``"tesla/meter"``), i.e.
SI, because MNE-LSL parses unit words only for volts and otherwise assumes SI. float32 holds 1e-13 T with a
relative precision of 1e-7.

Non-finite values never reach the output: an epoch with NaN/inf is dropped (``nonfinite_dropped``) and any
non-finite output sample (e.g. from a background generator) is replaced by 0 (``nonfinite_samples``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

import numpy as np
from scipy.ndimage import shift as _ndi_shift
from scipy.signal import firwin, resample_poly  # imported with the module: the first response must not wait

from ..errors import ConfigError
from ..montage import Montage

if TYPE_CHECKING:
    from .artifacts import ArtifactInjector

LATE_POLICIES = ("drop", "clip")
_MAX_LINE_TABLE = 1 << 22  # values (32 MiB) of one line-noise period kept per stream
_UNIT_SCALE = {"eeg": (1e6, "microvolts"), "mag": (1.0, "tesla"), "grad": (1.0, "tesla/meter")}


class Background(Protocol):
    """Continuous background activity: ``generate(n) -> (n, C)`` float32 in SI units, continuous across calls."""

    def generate(self, n_samples: int) -> np.ndarray:
        """The next ``n_samples`` samples."""


def output_units(montage: Montage) -> tuple[np.ndarray, list[str]]:
    """Scale from SI to output units per channel, and the unit words (see the module docstring)."""
    scale = np.array([_UNIT_SCALE[t][0] for t in montage.ch_types], dtype=np.float64)
    return scale, [_UNIT_SCALE[t][1] for t in montage.ch_types]


def resample_factors(src: float, dst: float, max_denominator: int = 1000) -> tuple[int, int]:
    """Integers ``(up, down)`` with ``dst / src == up / down`` (e.g. 100 -> 250 Hz: ``(5, 2)``)."""
    if src <= 0 or dst <= 0:
        raise ConfigError(f"sampling rates must be positive, got {src} and {dst}")
    ratio = Fraction(dst).limit_denominator(max_denominator) / Fraction(src).limit_denominator(max_denominator)
    if abs(float(ratio) - dst / src) > 1e-9 * dst / src:
        raise ConfigError(f"cannot resample {src} Hz to {dst} Hz with a rational factor; use rates like 250/500/1000")
    return ratio.numerator, ratio.denominator


@lru_cache(maxsize=16)
def _resampling_filter(up: int, down: int) -> np.ndarray:
    """The anti-aliasing FIR ``resample_poly`` designs by default for ``up/down`` (Kaiser window, beta 5), made
    once per ratio instead of once per response (the design cost as much as the filtering)."""
    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def resample_epochs(epochs: np.ndarray, up: int, down: int) -> np.ndarray:
    """Polyphase resampling along the last axis (``scipy.signal.resample_poly`` with its default filter, designed
    once per ratio), float64 out; ``up`` and ``down`` coprime (:func:`resample_factors`)."""
    if up == down == 1:
        return np.asarray(epochs, dtype=np.float64)
    return resample_poly(np.asarray(epochs, dtype=np.float64), up, down, axis=-1,
                         window=_resampling_filter(up, down))


def fade_window(n: int, n_fade: int) -> np.ndarray:
    """Ones with half-Hann ramps of ``n_fade`` samples at both ends."""
    w = np.ones(n)
    n_fade = min(n_fade, n // 2)
    if n_fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n_fade) + 0.5) / n_fade)
        w[:n_fade] = ramp
        w[n - n_fade:] = ramp[::-1]
    return w


class PinkBackground:
    """A simple continuous 1/f background with spatially correlated channels (used when
    :mod:`vibe_rt.data.noise` is not available).

    Per channel, white noise through Kellet's pink filter (-3 dB/octave) with kept filter state, mixed across
    channels with the Cholesky factor of ``exp(-distance / 5 cm)``, scaled to ``rms`` SI units.
    """

    _B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
    _A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])

    def __init__(self, montage: Montage, sfreq: float, *, seed: int | None = None, rms: float | None = None) -> None:
        from scipy.signal import lfilter_zi

        self.n_channels = montage.n_channels
        self.rng = np.random.default_rng(seed)
        d = np.linalg.norm(montage.positions[:, None] - montage.positions[None], axis=-1)
        cov = np.exp(-d / 0.05) + 1e-6 * np.eye(self.n_channels)
        self._mix = np.linalg.cholesky(cov)
        default = 10e-6 if montage.modality == "EEG" else 300e-15
        self.rms = default if rms is None else rms
        self._zi = np.outer(lfilter_zi(self._B, self._A), np.zeros(self.n_channels))
        # filter gain for unit white noise (measured once, deterministic)
        from scipy.signal import lfilter

        probe = lfilter(self._B, self._A, np.random.default_rng(0).standard_normal(200_000))
        self._gain = 1.0 / probe[10_000:].std()
        # warm the filter state up so that the start is stationary
        self.generate(4096)

    def generate(self, n_samples: int) -> np.ndarray:
        """The next ``n_samples`` (n, C) float32 samples in SI units."""
        from scipy.signal import lfilter

        white = self.rng.standard_normal((n_samples, self.n_channels))
        pink, self._zi = lfilter(self._B, self._A, white, axis=0, zi=self._zi)
        return ((pink @ self._mix.T) * (self._gain * self.rms)).astype(np.float32)


class ZeroBackground:
    """Silence (for tests and for streaming evoked responses alone)."""

    def __init__(self, n_channels: int) -> None:
        self.n_channels = n_channels

    def generate(self, n_samples: int) -> np.ndarray:
        """Zeros, (n_samples, C)."""
        return np.zeros((n_samples, self.n_channels), np.float32)


def make_background(montage: Montage, sfreq: float, *, seed: int | None = None, scale: float = 1.0) -> Background:
    """The stream's own background: :class:`PinkBackground` at ``scale`` times its level; ``scale=0`` gives
    :class:`ZeroBackground`. The realistic one, :class:`vibe_rt.data.noise.BackgroundNoise` (1/f sources through the
    forward model, alpha, sensor noise), is physiology: :func:`vibe_rt.app.build_stream` passes it in."""
    if scale == 0:
        return ZeroBackground(montage.n_channels)
    bg = PinkBackground(montage, sfreq, seed=seed)
    bg.rms *= scale
    return bg


class BlockBackground:
    """Draws from a background generator in blocks of ``block`` samples and hands them out in any sizes.

    The output sequence is exactly the generator's (continuous); the cost of a generator call is paid once per
    block instead of once per pushed chunk (for ``BackgroundNoise`` with 64 channels at 1 kHz: 0.37 ms per call
    of 5 samples, 0.50 ms per call of 50).
    """

    def __init__(self, background: Background, block: int) -> None:
        self.background = background
        self.block = max(1, int(block))
        self._buf = np.zeros((0, 0), np.float32)
        self._pos = 0

    def generate(self, n_samples: int) -> np.ndarray:
        """The next ``n_samples`` samples of the wrapped generator."""
        avail = self._buf.shape[0] - self._pos
        if avail >= n_samples:
            out = self._buf[self._pos:self._pos + n_samples]
            self._pos += n_samples
            return out
        parts = [self._buf[self._pos:]] if avail > 0 else []
        need = n_samples - avail
        fresh = np.asarray(self.background.generate(max(need, self.block)), dtype=np.float32)
        parts.append(fresh[:need])
        self._buf, self._pos = fresh, need
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


class LineNoise:
    """Power-line interference at ``freq`` Hz and optional harmonics, phase-continuous from the absolute sample
    index.

    Parameters
    ----------
    freq : float
        50 or 60 Hz.
    srate : float
        Output rate.
    amplitude : ndarray, shape (C,)
        Peak amplitude of the fundamental per channel in SI units.
    seed : int | None
        Seeds the per-channel phases.
    harmonics : sequence of float
        Amplitudes of the 2nd, 3rd, ... harmonic relative to the fundamental (each with its own phases); those
        at or above the Nyquist frequency are left out (they would alias).
    """

    def __init__(self, freq: float, srate: float, amplitude: np.ndarray, seed: int | None = None,
                 harmonics: Sequence[float] = ()) -> None:
        self.freq, self.srate = float(freq), float(srate)
        self.amplitude = np.asarray(amplitude, dtype=np.float64)
        rng = np.random.default_rng(seed)
        self.phase = rng.uniform(0, 2 * np.pi, self.amplitude.shape[0])
        #: (frequency in Hz, per-channel peak amplitude) of the fundamental and each harmonic below Nyquist.
        self.components = [(self.freq, self.amplitude)]
        self._phases = [self.phase]
        for k, rel in enumerate(harmonics, start=2):
            phase = rng.uniform(0, 2 * np.pi, self.amplitude.shape[0])
            if k * self.freq < self.srate / 2:
                self.components.append((k * self.freq, self.amplitude * float(rel)))
                self._phases.append(phase)
        self._int = float(freq).is_integer() and float(srate).is_integer()
        # integer rates: the sum repeats every srate / gcd(freq, srate) samples; rendered once, then sliced
        self._period: np.ndarray | None = None
        if self._int:
            period = int(srate) // math.gcd(int(freq), int(srate))
            if period * self.amplitude.shape[0] <= _MAX_LINE_TABLE:
                self._period = self._compute(0, period)

    def render(self, start: int, n: int) -> np.ndarray:
        """(n, C) SI-unit line noise for samples ``start .. start + n - 1``."""
        table = self._period
        if table is None:
            return self._compute(start, n)
        period = table.shape[0]
        idx = (start + np.arange(n)) % period if n > period - start % period else None
        if idx is not None:
            return table[idx]
        i = start % period
        return table[i:i + n].copy()

    def _compute(self, start: int, n: int) -> np.ndarray:
        idx = np.arange(start, start + n, dtype=np.int64)
        out = np.zeros((n, self.amplitude.shape[0]))
        for (freq, amp), phase in zip(self.components, self._phases):
            if self._int:  # exact cycle position: no loss of precision after hours
                frac = ((idx * int(freq)) % int(self.srate)) / self.srate
            else:
                frac = np.mod(idx * (freq / self.srate), 1.0)
            out += np.sin(2 * np.pi * frac[:, None] + phase) * amp
        return out


class Synthesizer:
    """Overlap-adds evoked responses onto background activity; renders output samples on demand.

    Parameters
    ----------
    montage : Montage
        Channels, model rate (``montage.sfreq``) and epoch start (``montage.tmin``).
    srate : float
        Output (device) sampling rate in Hz.
    background : Background | None
        ``generate(n) -> (n, C)`` SI units; None for silence.
    t0 : float
        Time (LSL clock) of output sample 0; set it before the first :meth:`add`.
    late_policy : {"clip", "drop"}
        What to do with a response whose first samples were already emitted.
    line_noise : float
        0 (off), 50 or 60 Hz.
    line_noise_amplitude : float | None
        Peak amplitude in SI units (default 2 uV for EEG, 100 fT for MEG), varied +-50% across channels.
    include_prestimulus : bool
        Add the epoch's ``t < 0`` part too (default False).
    taper_s : float
        Fade-in/out duration at the epoch edges (s).
    max_delay_s : float
        Largest distance (s) ahead of the output for which additions are accepted (onsets further in the
        future are refused and counted as ``too_far``).
    seed : int | None
        Seed of the line-noise amplitudes and phases.
    background_block_s : float
        The background is drawn in blocks of this duration (see :class:`BlockBackground`); 0 draws per render.
    model_scale : float
        SI units per unit of the epochs added (1: they are in SI; see :class:`vibe_rt.stream.config.SynthSpec`).
    response_delay_s : float
        Every response is placed this many seconds later than its onset says (negative: earlier).
    artifacts : ArtifactInjector | None
        Recording artifacts added with the background (:mod:`vibe_rt.stream.artifacts`; a flat channel is made
        flat after everything else).
    delay_s : float | array of float, shape (C,)
        Onset delay of each channel's response (s; a calibration's latency, > 0 later), applied without cutting
        the response (see the module docstring).
    """

    def __init__(self, montage: Montage, srate: float, *, background: Background | None = None, t0: float = 0.0,
                 late_policy: str = "clip", line_noise: float = 0.0, line_noise_amplitude: float | None = None,
                 include_prestimulus: bool = False, taper_s: float = 0.02, max_delay_s: float = 60.0,
                 seed: int | None = None, background_block_s: float = 0.05, model_scale: float = 1.0,
                 response_delay_s: float = 0.0, artifacts: ArtifactInjector | None = None,
                 delay_s: float | np.ndarray = 0.0) -> None:
        if late_policy not in LATE_POLICIES:
            raise ConfigError(f"unknown late policy {late_policy!r}; use one of {', '.join(LATE_POLICIES)}")
        if line_noise not in (0, 50, 60):
            raise ConfigError(f"line noise must be 0 (off), 50 or 60 Hz, got {line_noise}")
        self.montage, self.srate, self.t0 = montage, float(srate), float(t0)
        self.n_channels = montage.n_channels
        self.up, self.down = resample_factors(montage.sfreq, srate)
        self.scale, self.units = output_units(montage)
        self._epoch_scale = self.scale * float(model_scale)  # model units -> output units
        if background is not None and not isinstance(background, ZeroBackground) and background_block_s > 0:
            background = BlockBackground(background, int(round(background_block_s * self.srate)))
        self.background = background
        self.artifacts = artifacts
        self.late_policy = late_policy
        self.include_prestimulus = include_prestimulus
        self.n_fade = int(round(taper_s * self.srate))
        self._fade: np.ndarray | None = None  # fade window of the epoch length (computed once)
        self.line: LineNoise | None = None
        if line_noise:
            amp = line_noise_amplitude or (2e-6 if montage.modality == "EEG" else 100e-15)
            amps = amp * np.random.default_rng(seed).uniform(0.5, 1.5, self.n_channels)
            self.line = LineNoise(line_noise, self.srate, amps, seed)
        # epoch geometry at the output rate
        self.tmin_samples = montage.tmin * self.srate
        self.response_delay_s = float(response_delay_s)
        self._delay_samples = self.response_delay_s * self.srate
        n_out = int(math.ceil(montage.n_times * self.up / self.down))
        # the post-onset part; moved earlier (a negative delay), it still starts at the onset, not before it
        first = -self.tmin_samples - min(self._delay_samples, 0.0)
        self.j0 = 0 if include_prestimulus else max(0, int(math.ceil(first - 1e-6)))
        self.epoch_samples = n_out - self.j0
        delay = np.broadcast_to(np.asarray(delay_s, dtype=np.float64), (self.n_channels,)) * self.srate
        if not np.all(np.isfinite(delay)):
            raise ConfigError(f"onset delays must be finite seconds, got {delay_s!r}")
        delay = np.round(delay, 6)  # output samples; finer fractions are rounding noise of the seconds given
        self.delay_start = int(math.floor(float(delay.min())))  # the common whole samples: a later start
        self._delay_rest = delay - self.delay_start  # per channel, >= 0: a shift of the padded epoch
        fractional = bool(np.any(self._delay_rest % 1.0))
        self._delay_pad = int(math.ceil(float(self._delay_rest.max()))) + (2 if fractional else 0)
        self.max_delay = int(max_delay_s * self.srate)
        cap = 1 << int(math.ceil(math.log2(max(4 * n_out, int(2 * self.srate), 1024))))
        self._buf = np.zeros((cap, self.n_channels), np.float64)
        self.n_rendered = 0
        self.pending_end = 0
        self.counters = {"responses": 0, "late": 0, "late_dropped": 0, "late_clipped": 0, "nonfinite_dropped": 0,
                         "nonfinite_samples": 0, "too_far": 0}

    # geometry -----------------------------------------------------------------------------------------------
    def onset_index(self, onset: float) -> int:
        """Output index of the first added sample of a response with this onset (see the module docstring)."""
        return (int(round((onset - self.t0) * self.srate + self.tmin_samples + self._delay_samples)) + self.j0
                + self.delay_start)

    def prepare(self, epochs: np.ndarray) -> np.ndarray:
        """Model-rate SI epochs (B, C, T) -> output-rate, output-unit additions (B, L, C) float64 (faded, then
        padded and shifted by the channels' onset delays)."""
        ep = resample_epochs(np.asarray(epochs), self.up, self.down)[..., self.j0:]
        if self._fade is None or self._fade.shape[0] != ep.shape[-1]:
            self._fade = fade_window(ep.shape[-1], self.n_fade)
        ep = ep * (self._epoch_scale[:, None] * self._fade)  # one pass: fade and unit scale
        if self._delay_pad:
            ep = self._delayed(ep)
        return np.transpose(ep, (0, 2, 1))

    def _delayed(self, ep: np.ndarray) -> np.ndarray:
        """(B, C, L) faded epochs -> (B, C, L + pad), each channel delayed by its remaining delay (whole samples
        by copying, fractions by a cubic spline over the zero-padded, tapered epoch: nothing is cut)."""
        n = ep.shape[-1]
        out = np.zeros(ep.shape[:-1] + (n + self._delay_pad,))
        for rest in np.unique(self._delay_rest):
            chans = np.flatnonzero(self._delay_rest == rest)
            whole = int(math.floor(rest))
            out[:, chans, whole:whole + n] = ep[:, chans]
            frac = rest - whole
            if frac > 1e-9:
                out[:, chans] = _ndi_shift(out[:, chans], (0, 0, frac), order=3, mode="constant", cval=0.0)
        return out

    # adding -------------------------------------------------------------------------------------------------
    def _ensure_capacity(self, end: int) -> None:
        need = end - self.n_rendered
        cap = self._buf.shape[0]
        if need <= cap:
            return
        new_cap = 1 << int(math.ceil(math.log2(need)))
        new = np.zeros((new_cap, self.n_channels), np.float64)
        idx = np.arange(self.n_rendered, self.n_rendered + cap)
        new[idx % new_cap] = self._buf[idx % cap]
        self._buf = new

    def add_prepared(self, addition: np.ndarray, start: int) -> str:
        """Add one prepared (L, C) response starting at output index ``start``; returns its status:
        ``"ok"``, ``"clipped"``, ``"late"`` (dropped), ``"nonfinite"`` or ``"too_far"``."""
        if not np.all(np.isfinite(addition)):
            self.counters["nonfinite_dropped"] += 1
            return "nonfinite"
        end = start + addition.shape[0]
        if start < self.n_rendered:
            self.counters["late"] += 1
            if self.late_policy == "drop" or end <= self.n_rendered:
                self.counters["late_dropped"] += 1
                return "late"
            addition = addition[self.n_rendered - start:]
            start = self.n_rendered
            status = "clipped"
            self.counters["late_clipped"] += 1
        else:
            status = "ok"
        if end - self.n_rendered > self.max_delay:
            self.counters["too_far"] += 1
            return "too_far"
        self._ensure_capacity(end)
        idx = np.arange(start, end) % self._buf.shape[0]
        self._buf[idx] += addition
        self.pending_end = max(self.pending_end, end)
        self.counters["responses"] += 1
        return status

    def add(self, epoch: np.ndarray, onset: float) -> str:
        """Add one model-rate SI epoch (C, T) at ``onset`` (LSL seconds); returns its status (see
        :meth:`add_prepared`)."""
        return self.add_batch(np.asarray(epoch)[None], [onset])[0]

    def add_batch(self, epochs: np.ndarray, onsets: list[float]) -> list[str]:
        """Add (B, C, T) epochs at their onsets; returns one status per epoch."""
        return self.add_prepared_batch(self.prepare_batch(epochs), onsets)

    def prepare_batch(self, epochs: np.ndarray) -> np.ndarray:
        """:meth:`prepare` with a shape check and floating-point warnings silenced (non-finite epochs are
        dropped when added). Reads only constant state: a threaded caller runs it outside its lock."""
        epochs = np.asarray(epochs)
        if epochs.ndim != 3 or epochs.shape[1] != self.n_channels:
            raise ConfigError(f"epochs must have shape (B, {self.n_channels}, T), got {epochs.shape}")
        with np.errstate(all="ignore"):
            return self.prepare(epochs)

    def add_prepared_batch(self, prepared: np.ndarray, onsets: list[float]) -> list[str]:
        """Add the (B, L, C) output of :meth:`prepare_batch` at their onsets; one status per response."""
        return [self.add_prepared(p, self.onset_index(t)) for p, t in zip(prepared, onsets)]

    # rendering ----------------------------------------------------------------------------------------------
    def _take(self, start: int, n: int) -> np.ndarray:
        """Pending additions of samples ``start .. start + n - 1`` as a new (n, C) array; their slots are
        zeroed. At most two contiguous slices of the ring (no index arrays); samples more than one ring length
        ahead cannot hold additions (see :meth:`_ensure_capacity`) and are zero."""
        buf = self._buf
        cap = buf.shape[0]
        out = np.empty((n, self.n_channels), np.float64)
        m = min(n, cap)
        i = start % cap
        a = min(m, cap - i)
        out[:a] = buf[i:i + a]
        buf[i:i + a] = 0.0
        if a < m:
            out[a:m] = buf[:m - a]
            buf[:m - a] = 0.0
        if m < n:
            out[m:] = 0.0
        return out

    def render(self, start: int, n: int) -> np.ndarray:
        """Output samples ``start .. start + n - 1`` as (n, C) float32 in output units: :meth:`take` then
        :meth:`finish`.

        Calls must be sequential (``start`` equal to the number of samples rendered so far).
        """
        return self.finish(self.take(start, n), start)

    def take(self, start: int, n: int) -> np.ndarray:
        """The pending responses of the next ``n`` samples as (n, C) float64, advancing :attr:`n_rendered`: the
        only part of rendering that touches state shared with :meth:`add_prepared` (a threaded caller holds its
        lock for this, not for :meth:`finish`)."""
        if start != self.n_rendered:
            raise ValueError(f"render must continue at sample {self.n_rendered}, got {start}")
        out = self._take(start, n)
        self.n_rendered += n
        return out

    def finish(self, out: np.ndarray, start: int) -> np.ndarray:
        """Add background, line noise and artifacts to :meth:`take`'s samples (from ``start``), cast to float32
        and zero non-finite values (counted). Used by the one rendering thread only."""
        n = out.shape[0]
        si = None  # background + line noise + artifacts in SI units, scaled to output units once
        if self.background is not None:
            si = np.array(self.background.generate(n), dtype=np.float64)  # a copy: may be a view of its buffer
        for extra in (self.line.render(start, n) if self.line is not None else None,
                      self.artifacts.render(start, n) if self.artifacts is not None else None):
            if extra is not None:
                si = extra if si is None else np.add(si, extra, out=si)
        if si is not None:
            si *= self.scale
            out += si
        with np.errstate(all="ignore"):
            out32 = out.astype(np.float32)  # checked after the cast: float32 overflow gives inf too
        bad = ~np.isfinite(out32)
        if bad.any():
            self.counters["nonfinite_samples"] += int(bad.sum())
            out32[bad] = 0.0
        if self.artifacts is not None:
            self.artifacts.mask(out32)
        return out32

    @property
    def idle(self) -> bool:
        """True when every added response has been rendered."""
        return self.pending_end <= self.n_rendered
