"""The synthesized side of a model-mode comparison: the continuous signal the stream would have produced.

A comparison epochs the live data around every onset, and in a rapid design (an RSVP at 5 Hz, THINGS-EEG2's
0.2 s SOA with its -0.2..0.79 s epochs) every live epoch holds the tails and beginnings of its neighbours'
responses. Comparing it with the marker image's *isolated* predicted epoch confounds the comparison (and every
gain and latency fitted on it) with that overlap. :class:`PredictedSignal` models it instead: each marker's
predicted response (a :class:`~vibe_rt.compare.session.SynthSource`, e.g. the model on the marker image) is
overlap-added at its true onset by the stream's own :class:`~vibe_rt.stream.synth.Synthesizer` (same
resampling to the output rate, same taper, same placement to the nearest output sample of a 1 kHz (or faster)
rate; no background), and the signal so rendered is epoched by an :class:`~vibe_rt.compare.epocher.EpochExtractor`
as the live data are (same window, anti-alias filter and interpolation to the model rate). A recorded or live
synthesized stream (``--synth``) goes through the same extractor, so both modes compare the same thing.

Rendering follows the live data ``lag_s`` behind (a marker that arrives up to that long after the data that
holds its onset still lands in full); :meth:`PredictedSignal.render_until` returns the new samples.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..montage import Montage
from ..stream.synth import Synthesizer, resample_factors
from .channels import ChannelMatch
from .epocher import EpochExtractor, Marker

__all__ = ["PredictedSignal", "synthesis_rate"]

#: Lowest rendering rate (Hz): the synthesizer places each response at the nearest output sample, so at this rate
#: within 0.5 ms of its onset, as a stream at the usual 1 kHz does.
MIN_RATE = 1000.0


def synthesis_rate(model_sfreq: float, live_sfreq: float) -> float:
    """The rate the predicted signal is rendered at: the smallest whole multiple of the live data's rate of at
    least :data:`MIN_RATE` (so that responses are placed as a 1 kHz stream places them, and both sides are epoched
    alike), or :data:`MIN_RATE` itself where the synthesizer cannot resample the model rate to that."""
    rate = float(live_sfreq) * max(1, int(np.ceil(MIN_RATE / float(live_sfreq) - 1e-9)))
    try:
        resample_factors(model_sfreq, rate)
    except ConfigError:
        return MIN_RATE
    return rate


class PredictedSignal:
    """Overlap-adds predicted responses at their onsets and renders the continuous signal (no background).

    Parameters
    ----------
    montage : Montage
        The model montage (channels, model rate, epoch window) of the responses.
    srate : float
        Rendering rate (Hz), see :func:`synthesis_rate`.
    margin_s : float
        Margin of the wide epochs its extractor cuts (see :class:`EpochExtractor`).
    lag_s : float
        How far rendering stays behind the time it is asked for (s).
    buffer_s : float
        Seconds of rendered signal its extractor keeps.
    """

    def __init__(self, montage: Montage, srate: float, *, margin_s: float = 0.0, lag_s: float = 0.5,
                 buffer_s: float = 30.0) -> None:
        self.montage = montage
        self.srate = float(srate)
        self.lag_s = float(lag_s)
        self.synth = Synthesizer(montage, self.srate, background=None, late_policy="clip",
                                 max_delay_s=max(60.0, 4 * (montage.tmax - montage.tmin) + self.lag_s))
        identity = ChannelMatch(np.eye(montage.n_channels), {c: c for c in montage.ch_names})
        # the synthesizer renders in output units (microvolts for EEG): the extractor takes them back to SI
        self.extractor = EpochExtractor(montage, self.srate, identity, 1.0 / self.synth.scale, buffer_s=buffer_s,
                                        margin_s=margin_s)
        self.started = False
        self.n_added = 0

    def start(self, t0: float) -> None:
        """Put output sample 0 at LSL time ``t0`` (before the first onset; on the live data's sample grid, so that
        responses are placed on the samples a stream on that grid used)."""
        self.synth.t0 = float(t0)
        self.started = True

    def add(self, marker: Marker, epoch: np.ndarray) -> str:
        """Add the predicted response (C, T) (SI, model rate) of ``marker`` at its onset; returns the
        synthesizer's status (``"ok"``; ``"clipped"`` when part of it was already rendered, i.e. the marker came
        more than ``lag_s`` late)."""
        if not self.started:
            raise ConfigError("PredictedSignal.start(t0) must come before the first response")
        self.extractor.add_marker(marker)
        self.n_added += 1
        return self.synth.add(np.asarray(epoch, dtype=np.float64), marker.time)

    def render_until(self, t: float, *, final: bool = False) -> int:
        """Render the signal up to LSL time ``t`` (``t - lag_s`` unless ``final``) into the extractor; returns the
        number of new samples."""
        if not self.started:
            return 0
        end = int(np.floor((t - (0.0 if final else self.lag_s) - self.synth.t0) * self.srate)) + 1
        n = end - self.synth.n_rendered
        if n <= 0:
            return 0
        start = self.synth.n_rendered
        data = self.synth.render(start, n)
        self.extractor.push(self.synth.t0 + np.arange(start, end) / self.srate, data)
        return n
