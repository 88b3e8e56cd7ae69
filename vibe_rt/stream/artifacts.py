"""Artifacts of real EEG recordings injected into the stream (``--artifacts``), each announced on the marker stream.

Each artifact is switched on by name and has documented, seeded parameters; every injected event is also a JSON
marker (``{"kind": "artifact", "artifact": "blink", "onset": ..., "duration": ..., ...}``) on ``<name>-markers``
and a ``Comment`` in the recording (with its duration), so that a pipeline can be scored on rejecting them.

=============  =============================================  ==================================================
item           model (defaults)                               source of the numbers
=============  =============================================  ==================================================
``blinks``     15/min (``blinks:R/min``); 100-200 uV at       Doughty (2001): 8-21 blinks/min in primary gaze,
               Fp1/Fp2 (linked mastoids), 0.2-0.4 s, rise     1.4-14.4 reading; Iwasaki et al. (2005): positive,
               40 % / fall 60 % (raised cosine); intervals    maximal at Fp1/Fp2, the lid's movement; topography
               0.5 s + exponential                            from eye dipoles (:mod:`vibe_rt.data.artifacts`)
``saccades``   30/min (``saccades:R/min``) or after each      EOG linear in the angle (Geddes et al. 1973);
               stimulus onset (``saccades:scene``, latency    main sequence D = 2.2 A + 21 ms (Carpenter 1988);
               0.15-0.3 s); horizontal, amplitude exp. mean   10 uV/deg at F7/F8 (issue spec: 10-20 uV/deg at
               4 deg (0.5-15), gaze kept within +-15 deg;     F7/F8-like sites); corneo-retinal dipoles at the
               the EOG step stays until the next saccade      eyes (Berg & Scherg 1991)
``emg``        2/min; 0.3-1.5 s, 10-50 uV rms at T7 or T8     Goncharova et al. (2003): broadband EMG, largest
               (or both), 20-200 Hz (below 0.45 x srate),     at temporal (temporalis) and frontal sites, from
               decaying exp(-d / 30 mm) along the scalp       20 Hz up past 100 Hz; tens of uV
``drift``      1/min; sweat/electrode episodes 5-20 s,        Kappenman & Luck (2010) / Tatum et al. (2011):
               50-200 uV peak, three components below 0.5 Hz  sweat and skin potentials are slow (< 0.5 Hz)
               under a Hann window, decaying exp(-d / 50 mm)  waves of tens to hundreds of uV over a region
               from a random channel
``pops``       0.5/min; one random channel, a step of         Tatum et al. (2011): electrode pop = abrupt step
               100-300 uV (either sign), exponential          on a single electrode with a slower exponential
               recovery tau 0.2-1 s (marker duration 5 tau)   decay
``bad-channel`` ``flat`` (constant 0) or ``noisy`` (50 uV     a disconnected or bridged electrode (flat), a
               rms white noise) on one channel (random, or    high-impedance one (noisy)
               ``@CH``), for the whole stream
``line``       50 Hz (``line:60``): 5 uV peak per channel     amplitude stated here, not measured: mains
               (x 0.5-1.5), 2nd harmonic 20 %, 3rd 40 %       pick-up varies with impedances and the room; odd
               (components at or above Nyquist left out)      harmonics dominate mains distortion
=============  =============================================  ==================================================

``realistic`` is the mix :data:`REALISTIC`: blinks 10/min (watching stimuli: between Doughty's reading and
primary-gaze rates), a saccade after each stimulus onset, EMG 2/min, drifts 1/min, pops 0.5/min, one noisy
channel and 50 Hz line noise with harmonics. Items combine, and a later item replaces an earlier one of the same
kind (``realistic,line:60``).

Spatial models: blinks and saccades go through the head model (dipoles at the eyes,
:func:`vibe_rt.data.artifacts.ocular_topographies`); EMG and drifts use a distance-decay rule along the scalp
(the muscles and the skin lie outside the skull, where the sphere model admits no sources), with distances from
:func:`vibe_rt.data.artifacts.scalp_distances`. Both arrive as plain arrays (``topographies``); pops and the bad
channel need none.

Randomness: every artifact kind has its own random streams (event times, event parameters) from ``seed``, so
the same seed gives the same artifacts whatever the push chunks, and switching one kind on or off does not move
the others. Saccades at scene changes follow the onsets, which come in real time.

References
----------
Doughty MJ (2001). Optom Vis Sci 78:712-725. Iwasaki M et al. (2005). Clin Neurophysiol 116:878-885. Berg P,
Scherg M (1991). Electroencephalogr Clin Neurophysiol 79:36-44. Geddes LA et al. (1973). Med Biol Eng 11:73-77.
Carpenter RHS (1988). Movements of the Eyes, 2nd ed., Pion. Goncharova II, McFarland DJ, Vaughan TM, Wolpaw JR
(2003). EMG contamination of EEG: spectral and topographical characteristics. Clin Neurophysiol 114:1580-1593.
Kappenman ES, Luck SJ (2010). The effects of electrode impedance on data quality and statistical significance in
ERP recordings. Psychophysiology 47:888-904. Tatum WO, Dworetzky BA, Schomer DL (2011). Artifact and recording
concepts in EEG. J Clin Neurophysiol 28:252-263.
"""

from __future__ import annotations

import collections
import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, TypeAlias

import numpy as np

from ..errors import ConfigError
from ..montage import Montage
from .itemlist import RATES, Item, in_range, quantity, split_items

FLAG = "--artifacts"


# ------------------------------------------------------------------------------------------------- the specs
@dataclass(frozen=True)
class Blinks:
    """Eye blinks: rate (per minute), peak at Fp1/Fp2 (uV, linked mastoids), duration (s)."""

    rate_per_min: float = 15.0
    amplitude_uv: tuple[float, float] = (100.0, 200.0)
    duration_s: tuple[float, float] = (0.2, 0.4)
    name: ClassVar[str] = "blinks"
    max_rate: ClassVar[float] = 100.0
    dead_s: ClassVar[float] = 0.5  # shortest interval: the longest blink plus 0.1 s


@dataclass(frozen=True)
class Saccades:
    """Horizontal saccades: a rate (per minute), or one after each stimulus onset (``at_onsets``)."""

    rate_per_min: float = 30.0
    at_onsets: bool = False
    uv_per_degree: float = 10.0
    mean_amplitude_deg: float = 4.0
    amplitude_deg: tuple[float, float] = (0.5, 15.0)
    max_gaze_deg: float = 15.0
    latency_s: tuple[float, float] = (0.15, 0.3)
    name: ClassVar[str] = "saccades"
    max_rate: ClassVar[float] = 300.0
    dead_s: ClassVar[float] = 0.1  # longer than the longest saccade (54 ms)


@dataclass(frozen=True)
class MuscleBursts:
    """EMG bursts over the temporal muscles: rate (per minute), rms at T7/T8 (uV), duration (s), band (Hz)."""

    rate_per_min: float = 2.0
    rms_uv: tuple[float, float] = (10.0, 50.0)
    duration_s: tuple[float, float] = (0.3, 1.5)
    band_hz: tuple[float, float] = (20.0, 200.0)
    name: ClassVar[str] = "emg"
    max_rate: ClassVar[float] = 30.0
    dead_s: ClassVar[float] = 0.0


@dataclass(frozen=True)
class Drifts:
    """Slow sweat/electrode drifts: rate of episodes (per minute), peak (uV), duration (s), highest frequency."""

    rate_per_min: float = 1.0
    amplitude_uv: tuple[float, float] = (50.0, 200.0)
    duration_s: tuple[float, float] = (5.0, 20.0)
    max_hz: float = 0.5
    name: ClassVar[str] = "drift"
    max_rate: ClassVar[float] = 10.0
    dead_s: ClassVar[float] = 0.0


@dataclass(frozen=True)
class Pops:
    """Electrode pops: rate (per minute), step (uV), recovery time constant (s)."""

    rate_per_min: float = 0.5
    amplitude_uv: tuple[float, float] = (100.0, 300.0)
    recovery_s: tuple[float, float] = (0.2, 1.0)
    name: ClassVar[str] = "pops"
    max_rate: ClassVar[float] = 60.0
    dead_s: ClassVar[float] = 0.0


@dataclass(frozen=True)
class BadChannel:
    """One bad channel for the whole stream: ``"flat"`` or ``"noisy"`` (``noise_uv`` rms), random unless named."""

    mode: str = "flat"
    channel: str | None = None
    noise_uv: float = 50.0
    name: ClassVar[str] = "bad-channel"


@dataclass(frozen=True)
class LineHum:
    """Power-line noise: frequency (Hz), fundamental peak (uV, mean over channels), harmonics relative to it."""

    freq_hz: float = 50.0
    amplitude_uv: float = 5.0
    harmonics: tuple[float, ...] = (0.2, 0.4)
    name: ClassVar[str] = "line"


ArtifactSpec: TypeAlias = Blinks | Saccades | MuscleBursts | Drifts | Pops | BadChannel | LineHum
_KINDS: tuple[type[ArtifactSpec], ...] = (Blinks, Saccades, MuscleBursts, Drifts, Pops, BadChannel, LineHum)
#: Item names of ``--artifacts``, in the order the artifacts are rendered.
ARTIFACT_NAMES = tuple(k.name for k in _KINDS)
#: ``--artifacts realistic`` (see the module docstring).
REALISTIC: tuple[ArtifactSpec, ...] = (Blinks(10.0), Saccades(at_onsets=True), MuscleBursts(2.0), Drifts(1.0),
                                       Pops(0.5), BadChannel("noisy"), LineHum(50.0))


# ------------------------------------------------------------------------------------------------ the parser
def parse_artifacts(text: str | None) -> tuple[ArtifactSpec, ...]:
    """``--artifacts`` text -> artifact specs in :data:`ARTIFACT_NAMES` order (None or ``"none"``: none).

    Grammar: ``realistic`` or ``NAME[:VALUE][@CHANNEL]`` items separated by commas; VALUE is a rate (``12/min``,
    ``0.2/s``) for blinks, saccades (or ``scene``), emg, drift and pops; ``flat``/``noisy`` for bad-channel
    (``@CH`` names the channel); 50 or 60 (Hz) for line. A later item replaces an earlier one of the same kind.
    """
    if text is None or text.strip().lower() == "none":
        return ()
    chosen: dict[str, ArtifactSpec] = {}
    for item in split_items(text, FLAG):
        if item.name == "realistic":
            if item.value or item.when:
                raise ConfigError(f"{FLAG} {item.raw!r}: realistic takes no value; add items after it to change "
                                  "one kind, e.g. realistic,line:60")
            chosen.update({spec.name: spec for spec in REALISTIC})
            continue
        spec = _parse_item(item)
        chosen.pop(spec.name, None)
        chosen[spec.name] = spec
    return tuple(chosen[n] for n in ARTIFACT_NAMES if n in chosen)


def _parse_item(item: Item) -> ArtifactSpec:
    kind = {k.name: k for k in _KINDS}.get(item.name)
    if kind is None:
        raise ConfigError(f"{FLAG}: unknown artifact {item.name!r}; use {', '.join(ARTIFACT_NAMES)} or realistic")
    if item.when is not None and kind is not BadChannel:
        raise ConfigError(f"{FLAG} {item.raw!r}: only bad-channel takes @CHANNEL")
    if issubclass(kind, BadChannel):
        mode = (item.value or "flat").lower()
        if mode not in ("flat", "noisy"):
            raise ConfigError(f"{FLAG} {item.raw!r}: bad-channel is flat or noisy, e.g. bad-channel:flat@T7")
        return BadChannel(mode, item.when)
    if issubclass(kind, LineHum):
        if item.value is None:
            return LineHum()
        freq = item.value.lower().removesuffix("hz")
        if freq not in ("50", "60"):
            raise ConfigError(f"{FLAG} {item.raw!r}: line is line:50 or line:60 (the mains frequency in Hz)")
        return LineHum(float(freq))
    if kind is Saccades and item.value is not None and item.value.lower() == "scene":
        return Saccades(at_onsets=True)
    if item.value is None:
        return kind()
    per_s = quantity(item.value, RATES, flag=FLAG, item=item.raw, what="the rate")
    rate = in_range(per_s * 60, 0.0, kind.max_rate, flag=FLAG, item=item.raw, what="the rate",
                    shown=f"a rate above 0 and at most {kind.max_rate:g}/min")
    return kind(rate)


def format_artifacts(specs: Sequence[ArtifactSpec]) -> str:
    """The ``--artifacts`` text of ``specs`` (parses back to the same items; ``"none"`` when empty)."""
    items = []
    for s in specs:
        if isinstance(s, BadChannel):
            items.append(f"bad-channel:{s.mode}" + (f"@{s.channel}" if s.channel else ""))
        elif isinstance(s, LineHum):
            items.append(f"line:{s.freq_hz:g}")
        elif isinstance(s, Saccades) and s.at_onsets:
            items.append("saccades:scene")
        else:
            items.append(f"{s.name}:{s.rate_per_min:g}/min")
    return ",".join(items) or "none"


#: Topography keys each artifact needs (from :mod:`vibe_rt.data.artifacts`).
NEEDS = {"blinks": ("blink",), "saccades": ("saccade",), "emg": ("emg-left", "emg-right"), "drift": ("arc_mm",)}


def check_artifacts(specs: Sequence[ArtifactSpec], montage: Montage, srate: float) -> None:
    """Refuse artifacts that cannot be made for this montage and rate, in one line (before any model loads)."""
    if not specs:
        return
    if montage.modality != "EEG":
        raise ConfigError(f"{FLAG} models EEG artifacts (blinks at Fp1/Fp2, EMG at T7/T8 ...); the montage "
                          f"{montage.name!r} is MEG")
    for spec in specs:
        if isinstance(spec, BadChannel) and spec.channel is not None and spec.channel not in montage.ch_names:
            raise ConfigError(f"{FLAG} bad-channel@{spec.channel}: no such streamed channel; pick one of "
                              f"{', '.join(montage.ch_names[:12])}{' ...' if montage.n_channels > 12 else ''}")
        if isinstance(spec, LineHum) and spec.freq_hz >= srate / 2:
            raise ConfigError(f"{FLAG} line:{spec.freq_hz:g} needs --srate above {2 * spec.freq_hz:g} Hz (the line "
                              f"frequency is at or above the Nyquist frequency of {srate:g} Hz)")
        if isinstance(spec, MuscleBursts) and 0.45 * srate <= spec.band_hz[0]:
            raise ConfigError(f"{FLAG} emg needs --srate above {spec.band_hz[0] / 0.45:.0f} Hz (EMG starts at "
                              f"{spec.band_hz[0]:g} Hz)")


# ---------------------------------------------------------------------------------------------- the injector
class ArtifactEvent(NamedTuple):
    """One injected artifact: its first output sample, its length in samples (None: to the end of the stream)
    and its marker content (the pipeline adds ``onset`` and ``duration`` in seconds)."""

    start: int
    n_samples: int | None
    marker: dict[str, Any]


@dataclass
class _Burst:
    """A finite artifact in the output: ``wave`` (L,) times ``spatial`` (C,), or (L, k) into columns ``cols``."""

    start: int
    wave: np.ndarray
    spatial: np.ndarray | None = None
    cols: np.ndarray | None = None

    @property
    def end(self) -> int:
        return self.start + self.wave.shape[0]

    def add_to(self, out: np.ndarray, start: int) -> None:
        a, b = max(start, self.start), min(start + out.shape[0], self.end)
        if a >= b:
            return
        seg = self.wave[a - self.start:b - self.start]
        if self.spatial is not None:
            out[a - start:b - start] += seg[:, None] * self.spatial
        else:
            out[a - start:b - start, self.cols] += seg


class _Train:
    """Onsets (output sample indices) of a renewal process: intervals of ``dead_s`` plus an exponential, so that
    the mean rate is exactly ``rate_per_min`` (``dead_s`` must be shorter than the mean interval)."""

    def __init__(self, rate_per_min: float, srate: float, rng: np.random.Generator, dead_s: float = 0.0) -> None:
        self.mean = 60.0 / rate_per_min * srate
        self.dead = dead_s * srate
        self.rng = rng
        self._next = self._interval()

    def _interval(self) -> float:
        return self.dead + self.rng.exponential(self.mean - self.dead)

    def onsets_before(self, end: int) -> list[int]:
        """The onsets before sample ``end`` not returned yet."""
        out = []
        while self._next < end:
            out.append(int(self._next))
            self._next += self._interval()
        return out


def _rngs(seed: int | None, kind: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent generators (event times, event parameters) per artifact kind."""
    seq = np.random.SeedSequence(seed, spawn_key=(0xA27, kind))
    times, params = seq.spawn(2)
    return np.random.default_rng(times), np.random.default_rng(params)


def _raised_cosine(n: int) -> np.ndarray:
    """Half a cosine period rising over ``n`` samples, ending at exactly 1."""
    return 0.5 * (1 - np.cos(np.pi * (np.arange(n) + 1) / max(n, 1)))


class _Part:
    """One artifact kind: adds its samples into ``out`` (allocated on demand) and reports its events."""

    label = ""

    def __init__(self, injector: ArtifactInjector, kind: int) -> None:
        self.inj = injector
        self.srate = injector.srate
        self.times, self.rng = _rngs(injector.seed, kind)
        self.bursts: list[_Burst] = []

    def render(self, start: int, n: int, out: np.ndarray | None) -> np.ndarray | None:
        self.schedule(start, n)
        if self.bursts:
            out = self.inj.block(out, n)
            for burst in self.bursts:
                burst.add_to(out, start)
            self.bursts = [b for b in self.bursts if b.end > start + n]
        return out

    def schedule(self, start: int, n: int) -> None:
        """Create the events that start before ``start + n``."""

    def emit(self, start: int, n_samples: int | None, **marker: Any) -> None:
        self.inj.emit(self.label, start, n_samples, marker)


class _BlinkPart(_Part):
    label = "blink"

    def __init__(self, injector: ArtifactInjector, kind: int, spec: Blinks) -> None:
        super().__init__(injector, kind)
        self.spec = spec
        self.train = _Train(spec.rate_per_min, self.srate, self.times, spec.dead_s)
        self.topo = injector.topography("blink")
        self.channels = injector.names_where(np.abs(self.topo) >= 0.1)

    def schedule(self, start: int, n: int) -> None:
        for onset in self.train.onsets_before(start + n):
            dur = self.rng.uniform(*self.spec.duration_s)
            amp = self.rng.uniform(*self.spec.amplitude_uv)
            n_total = max(2, int(round(dur * self.srate)))
            rise = max(1, int(round(0.4 * n_total)))
            wave = np.concatenate([_raised_cosine(rise), 1 - _raised_cosine(n_total - rise)]) * (amp * 1e-6)
            self.bursts.append(_Burst(onset, wave, spatial=self.topo))
            self.emit(onset, n_total, amplitude_uV=round(amp, 2), channels=self.channels)


class _SaccadePart(_Part):
    """Horizontal gaze as a level that saccades move; the potential is gaze x topography (a DC-coupled EOG)."""

    label = "saccade"

    def __init__(self, injector: ArtifactInjector, kind: int, spec: Saccades) -> None:
        super().__init__(injector, kind)
        self.spec = spec
        self.train = None if spec.at_onsets else _Train(spec.rate_per_min, self.srate, self.times, spec.dead_s)
        topo = injector.topography("saccade")
        self.per_degree = topo * (spec.uv_per_degree * 1e-6)
        self.channels = injector.names_where(np.abs(topo) >= 0.1)
        self.triggers: collections.deque[int] = collections.deque()  # onset samples (appended by other threads)
        self._waiting: list[int] = []  # heap of saccade starts
        self.active: collections.deque[tuple[int, int, float, float]] = collections.deque()  # start, n, g0, delta
        self.gaze = 0.0  # after the saccades rendered so far (deg, + right)
        self._planned_gaze = 0.0  # after every saccade created
        self._free_from = 0  # the next saccade starts after the last one ends

    def stimulus_onset(self, index: int) -> None:
        if self.spec.at_onsets:
            self.triggers.append(index)

    def schedule(self, start: int, n: int) -> None:
        end = start + n
        if self.train is not None:
            for onset in self.train.onsets_before(end):
                heapq.heappush(self._waiting, onset)
        while self.triggers:
            latency = self.rng.uniform(*self.spec.latency_s)
            heapq.heappush(self._waiting, self.triggers.popleft() + int(round(latency * self.srate)))
        while self._waiting and self._waiting[0] < end:
            onset = max(heapq.heappop(self._waiting), start, self._free_from)
            lo, hi = self.spec.amplitude_deg
            amp = float(np.clip(self.rng.exponential(self.spec.mean_amplitude_deg), lo, hi))
            sign = 1.0 if self.rng.random() < 0.5 else -1.0
            if abs(self._planned_gaze + sign * amp) > self.spec.max_gaze_deg:
                sign = -sign
            n_sac = max(1, int(round((2.2 * amp + 21.0) * 1e-3 * self.srate)))
            self.active.append((onset, n_sac, self._planned_gaze, sign * amp))
            self._planned_gaze += sign * amp
            self._free_from = onset + n_sac
            self.emit(onset, n_sac, degrees=round(sign * amp, 3), gaze_deg=round(self._planned_gaze, 3),
                      trigger="onset" if self.spec.at_onsets else "random", channels=self.channels)

    def render(self, start: int, n: int, out: np.ndarray | None) -> np.ndarray | None:
        self.schedule(start, n)
        if not self.active and self.gaze == 0.0:
            return out
        gaze = np.full(n, self.gaze)
        while self.active and self.active[0][0] < start + n:
            s, n_sac, g0, delta = self.active[0]
            i0, i1 = s - start, s + n_sac - start
            idx = np.arange(max(i0, 0), min(i1, n))
            gaze[idx] = g0 + delta * 0.5 * (1 - np.cos(np.pi * (idx - i0 + 0.5) / n_sac))
            if i1 > n:
                break
            gaze[i1:] = g0 + delta
            self.gaze = g0 + delta
            self.active.popleft()
        out = self.inj.block(out, n)
        out += gaze[:, None] * self.per_degree
        return out


class _EmgPart(_Part):
    label = "emg"

    def __init__(self, injector: ArtifactInjector, kind: int, spec: MuscleBursts) -> None:
        from scipy.signal import butter

        super().__init__(injector, kind)
        self.spec = spec
        self.train = _Train(spec.rate_per_min, self.srate, self.times, spec.dead_s)
        self.band = (spec.band_hz[0], min(spec.band_hz[1], 0.45 * self.srate))
        self.sos = butter(4, self.band, btype="bandpass", fs=self.srate, output="sos")
        left, right = injector.topography("emg-left"), injector.topography("emg-right")
        self.sides = {"left": left, "right": right, "both": np.maximum(left, right)}

    def schedule(self, start: int, n: int) -> None:
        from scipy.signal import sosfilt
        from scipy.signal.windows import tukey

        for onset in self.train.onsets_before(start + n):
            side = str(self.rng.choice(["left", "right", "both"], p=[0.4, 0.4, 0.2]))
            weights = self.sides[side]
            cols = np.flatnonzero(weights >= 0.02)
            dur, rms = self.rng.uniform(*self.spec.duration_s), self.rng.uniform(*self.spec.rms_uv)
            n_total, pad = max(4, int(round(dur * self.srate))), int(round(0.1 * self.srate))
            noise = sosfilt(self.sos, self.rng.standard_normal((n_total + pad, cols.size)), axis=0)[pad:]
            noise /= noise.std(axis=0) + 1e-30
            wave = noise * (tukey(n_total, 0.2)[:, None] * weights[cols] * (rms * 1e-6))
            self.bursts.append(_Burst(onset, wave, cols=cols))
            self.emit(onset, n_total, side=side, rms_uV=round(rms, 2), band_hz=[round(b, 1) for b in self.band],
                      channels=self.inj.names_where(weights >= 0.1))


class _DriftPart(_Part):
    label = "drift"

    def __init__(self, injector: ArtifactInjector, kind: int, spec: Drifts) -> None:
        super().__init__(injector, kind)
        self.spec = spec
        self.train = _Train(spec.rate_per_min, self.srate, self.times, spec.dead_s)
        self.arc = injector.topography("arc_mm")

    def schedule(self, start: int, n: int) -> None:
        for onset in self.train.onsets_before(start + n):
            dur, amp = self.rng.uniform(*self.spec.duration_s), self.rng.uniform(*self.spec.amplitude_uv)
            centre = int(self.rng.integers(self.inj.n_channels))
            freqs = self.rng.uniform(0.05, self.spec.max_hz, 3)
            phases = self.rng.uniform(0, 2 * np.pi, 3)
            n_total = max(2, int(round(dur * self.srate)))
            t = np.arange(n_total) / self.srate
            shape = np.sin(2 * np.pi * freqs[None] * t[:, None] + phases).sum(axis=1) * np.hanning(n_total)
            shape /= np.abs(shape).max() + 1e-30
            weights = np.exp(-self.arc[centre] / 50.0)
            self.bursts.append(_Burst(onset, shape * (amp * 1e-6), spatial=weights))
            self.emit(onset, n_total, amplitude_uV=round(amp, 2), channel=self.inj.ch_names[centre],
                      channels=self.inj.names_where(weights >= 0.1))


class _PopPart(_Part):
    label = "pop"

    def __init__(self, injector: ArtifactInjector, kind: int, spec: Pops) -> None:
        super().__init__(injector, kind)
        self.spec = spec
        self.train = _Train(spec.rate_per_min, self.srate, self.times, spec.dead_s)

    def schedule(self, start: int, n: int) -> None:
        for onset in self.train.onsets_before(start + n):
            ch = int(self.rng.integers(self.inj.n_channels))
            amp = self.rng.uniform(*self.spec.amplitude_uv) * (1.0 if self.rng.random() < 0.5 else -1.0)
            tau = self.rng.uniform(*self.spec.recovery_s)
            n_total = max(1, int(math.ceil(5 * tau * self.srate)))
            wave = (amp * 1e-6) * np.exp(-np.arange(n_total) / (tau * self.srate))
            self.bursts.append(_Burst(onset, wave[:, None], cols=np.array([ch])))
            self.emit(onset, n_total, channel=self.inj.ch_names[ch], amplitude_uV=round(amp, 2),
                      tau_s=round(tau, 4))


class _BadChannelPart(_Part):
    label = "bad-channel"

    def __init__(self, injector: ArtifactInjector, kind: int, spec: BadChannel) -> None:
        super().__init__(injector, kind)
        self.spec = spec
        names = injector.ch_names
        self.col = names.index(spec.channel) if spec.channel else int(self.rng.integers(len(names)))
        self.announced = False

    def render(self, start: int, n: int, out: np.ndarray | None) -> np.ndarray | None:
        if not self.announced:
            self.announced = True
            self.emit(start, None, mode=self.spec.mode, channel=self.inj.ch_names[self.col])
        if self.spec.mode == "noisy":
            out = self.inj.block(out, n)
            out[:, self.col] += self.rng.standard_normal(n) * (self.spec.noise_uv * 1e-6)
        return out

    def mask(self, block: np.ndarray) -> None:
        if self.spec.mode == "flat":
            block[:, self.col] = 0.0


class _LinePart(_Part):
    label = "line"

    def __init__(self, injector: ArtifactInjector, kind: int, spec: LineHum) -> None:
        from .synth import LineNoise

        super().__init__(injector, kind)
        amps = spec.amplitude_uv * 1e-6 * self.rng.uniform(0.5, 1.5, injector.n_channels)
        self.noise = LineNoise(spec.freq_hz, self.srate, amps, int(self.rng.integers(2**32)),
                               harmonics=spec.harmonics)
        self.spec = spec
        self.announced = False

    def render(self, start: int, n: int, out: np.ndarray | None) -> np.ndarray | None:
        if not self.announced:
            self.announced = True
            comp = self.noise.components
            self.emit(start, None, freq_hz=self.spec.freq_hz, harmonics_hz=[round(f, 3) for f, _ in comp[1:]],
                      amplitude_uV=[round(float(a.mean()) * 1e6, 3) for _, a in comp])
        out = self.inj.block(out, n)
        out += self.noise.render(start, n)
        return out


#: Part per artifact kind; each takes the spec of its own kind.
_PARTS: dict[type, Callable[[ArtifactInjector, int, Any], _Part]] = {
    Blinks: _BlinkPart, Saccades: _SaccadePart, MuscleBursts: _EmgPart, Drifts: _DriftPart, Pops: _PopPart,
    BadChannel: _BadChannelPart, LineHum: _LinePart}


class ArtifactInjector:
    """Renders the artifacts of ``specs`` for the streamed channels, sample-exact and seeded.

    Parameters
    ----------
    specs : sequence of ArtifactSpec
        What to inject (:func:`parse_artifacts`).
    montage : Montage
        The streamed (EEG) channels.
    srate : float
        Output rate (Hz).
    topographies : mapping of str to ndarray | None
        Spatial patterns from :func:`vibe_rt.data.artifacts.artifact_topographies` (``blink``, ``saccade``: (C,);
        ``emg-left``, ``emg-right``: (C,) weights; ``arc_mm``: (C, C) distances along the scalp); only those of
        the artifacts in ``specs`` are needed (:data:`NEEDS`).
    seed : int | None
        Seed of every random choice (None: fresh entropy).

    Used by one thread (the synthesizer's :meth:`~vibe_rt.stream.synth.Synthesizer.finish`), except
    :meth:`stimulus_onset`, which any thread may call.
    """

    def __init__(self, specs: Sequence[ArtifactSpec], montage: Montage, srate: float, *,
                 topographies: Mapping[str, np.ndarray] | None = None, seed: int | None = None) -> None:
        check_artifacts(specs, montage, srate)
        self.specs = tuple(specs)
        self.srate = float(srate)
        self.topographies = dict(topographies or {})
        self.ch_names = list(montage.ch_names)
        self.n_channels = len(self.ch_names)
        self.seed = int(np.random.SeedSequence().generate_state(1)[0]) if seed is None else int(seed)
        self.counts: dict[str, int] = {}
        self._events: list[ArtifactEvent] = []
        self.parts = [_PARTS[type(spec)](self, _KINDS.index(type(spec)), spec) for spec in self.specs]

    # helpers of the parts -----------------------------------------------------------------------------------
    def topography(self, key: str) -> np.ndarray:
        """A spatial pattern of ``topographies``, checked for this montage."""
        if key not in self.topographies:
            users = [n for n, keys in NEEDS.items() if key in keys]
            raise ConfigError(f"{FLAG} {users[0] if users else key} needs the {key!r} topography: pass "
                              "topographies=vibe_rt.data.artifacts.artifact_topographies(montage) (the CLI and "
                              "vibe_rt.app.build_stream do)")
        value = np.asarray(self.topographies[key], dtype=np.float64)
        if value.shape[0] != self.n_channels or not np.all(np.isfinite(value)):
            raise ConfigError(f"the {key!r} topography has shape {value.shape} or non-finite values; it must have "
                              f"one finite value per streamed channel ({self.n_channels})")
        return value

    def names_where(self, mask: np.ndarray) -> list[str]:
        """The channel names where ``mask`` is true."""
        return [self.ch_names[i] for i in np.flatnonzero(mask)]

    def block(self, out: np.ndarray | None, n: int) -> np.ndarray:
        """``out``, or a new (n, C) zero block."""
        return np.zeros((n, self.n_channels)) if out is None else out

    def emit(self, label: str, start: int, n_samples: int | None, marker: dict[str, Any]) -> None:
        """Record an injected artifact (its marker is pushed by the pipeline)."""
        self.counts[label] = self.counts.get(label, 0) + 1
        self._events.append(ArtifactEvent(start, n_samples, {"kind": "artifact", "artifact": label, **marker}))

    # the interface ------------------------------------------------------------------------------------------
    def render(self, start: int, n: int) -> np.ndarray | None:
        """The artifacts of samples ``start .. start + n - 1``: (n, C) float64 volts, or None when there are none.

        Calls must be sequential (each ``start`` the previous ``start + n``)."""
        out = None
        for part in self.parts:
            out = part.render(start, n, out)
        return out

    def mask(self, block: np.ndarray) -> None:
        """Make a flat channel flat in a finished (n, C) output block (in place)."""
        for part in self.parts:
            if isinstance(part, _BadChannelPart):
                part.mask(block)

    def stimulus_onset(self, index: int) -> None:
        """A stimulus onset at output sample ``index``: a saccade follows when saccades are ``scene``."""
        for part in self.parts:
            if isinstance(part, _SaccadePart):
                part.stimulus_onset(index)

    def take_events(self) -> list[ArtifactEvent]:
        """The artifacts injected since the last call, by onset."""
        events, self._events = self._events, []
        return sorted(events, key=lambda e: e.start)


__all__ = ["ARTIFACT_NAMES", "ArtifactEvent", "ArtifactInjector", "ArtifactSpec", "BadChannel", "Blinks",
           "Drifts", "LineHum", "MuscleBursts", "NEEDS", "Pops", "REALISTIC", "Saccades", "check_artifacts",
           "format_artifacts", "parse_artifacts"]
