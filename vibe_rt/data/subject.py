"""A synthetic subject: individual differences drawn from published between-subject ranges.

:func:`draw_subject` turns a seed into one :class:`SyntheticSubject` (the same seed always gives the same one;
each parameter has its own random stream, so adding a parameter never changes the others). The template (no
subject) is :data:`TEMPLATE_SUBJECT`: the values every other part of vibe-rt uses.

==================  ==========================================  =================================================
parameter           distribution (template)                     source
==================  ==========================================  =================================================
``iaf_hz``          normal, mean 10 Hz, sd 1 Hz, truncated to   Klimesch (1999): individual alpha frequency about
                    8-12 Hz (template: 9-11 Hz per hemisphere)  10 Hz in adults, sd about 1 Hz; Haegens et al.
                                                                (2014): mean 10.3 Hz over 51 subjects (MEG)
``alpha_scale``     log-normal, median 1, sd 0.5 in ln,         a modelling choice inside the several-fold
                    truncated to 2 sd (x/ 0.37-2.7) (1)         between-subject range of alpha power (Klimesch
                                                                1999)
``latency_shift_s`` normal, mean 0, sd 6 ms, truncated to       pattern-reversal P100 latency across healthy
                    +-15 ms (0)                                 adults: sd 4.2-4.9 ms (Dotto et al. 2017, n = 54),
                                                                5.1-6.6 ms (Mewat norms, n = 130)
``amplitude_scale`` log-normal, median 1, CV 40 %, truncated    P100 amplitude across healthy adults: CV 29-45 %
                    to 2.5 sd (x/ 0.38-2.6) (1)                 (Dotto et al. 2017), 49-59 % (Mewat norms)
``head_scale``      normal, mean 1, sd 0.03, truncated to       adult head circumference: sd 1.5-1.8 cm at a mean
                    2.5 sd (0.925-1.075) (1: radius 98 mm)      of 55-58 cm, about 3 % (Bushby et al. 1992)
``brain_to_skull``  log-uniform 15-80 (82.5, MNE's default)     brain-to-skull conductivity ratio: 15 (Oostendorp
                                                                et al. 2000), 18-34 (Lai et al. 2005), 20-80
                                                                (Goncalves et al. 2003), 80 (Rush & Driscoll 1968)
==================  ==========================================  =================================================

How they act (:mod:`vibe_rt.app`): the background's alpha peaks at ``iaf_hz`` with ``alpha_scale`` times the
template power and travels through the subject's head (:class:`vibe_rt.data.noise.BackgroundNoise`); predicted
responses are shifted by ``latency_shift_s``, scaled by ``amplitude_scale`` and projected to the cap through the
subject's head (:func:`vibe_rt.data.cap.cap_projection`). The amplitude range above is the measured total, so the
head changes the topography (spread across channels) but not the overall level: the projection keeps the
template's median source-to-cap gain.

References
----------
Klimesch W (1999). EEG alpha and theta oscillations reflect cognitive and memory performance: a review and
analysis. Brain Res Rev 29:169-195.
Haegens S, Cousijn H, Wallis G, Harrison PJ, Nobre AC (2014). Inter- and intra-individual variability in alpha
peak frequency. NeuroImage 92:46-55.
de Freitas Dotto P et al. (2017). Gender-based normative values for pattern-reversal and flash visually evoked
potentials under binocular and monocular stimulation in healthy adults. Doc Ophthalmol 135:53-67.
Normative values of pattern reversal visual evoked potentials in adult population of Mewat region, North India
(2025). Int J Res Med Sci, doi:10.18203/2320-6012.ijrms20251305.
Bushby KM, Cole T, Matthews JN, Goodship JA (1992). Centiles for adult head circumference. Arch Dis Child
67:1286-1287.
Oostendorp TF, Delbeke J, Stegeman DF (2000). The conductivity of the human skull: results of in vivo and in
vitro measurements. IEEE Trans Biomed Eng 47:1487-1492.
Lai Y et al. (2005). Estimation of in vivo human brain-to-skull conductivity ratio from simultaneous extra- and
intra-cranial electrical potential recordings. Clin Neurophysiol 116:456-465.
Goncalves SI et al. (2003). In vivo measurement of the brain and skull resistivities using an EIT-based method
and realistic models for the head. IEEE Trans Biomed Eng 50:754-767.
Rush S, Driscoll DA (1968). Current distribution in the brain from surface electrodes. Anesth Analg 47:717-723.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from ..montage import TEMPLATE_HEAD_RADIUS
from ._forward import SPHERE_SIGMAS, TEMPLATE_HEAD, HeadModel

#: (mean, sd, low, high) of each normal draw; log-normal ones are drawn in ln.
IAF_HZ = (10.0, 1.0, 8.0, 12.0)
ALPHA_LN = (0.0, 0.5, -1.0, 1.0)
LATENCY_S = (0.0, 0.006, -0.015, 0.015)
AMPLITUDE_CV = 0.40
_AMP_SD = math.sqrt(math.log1p(AMPLITUDE_CV**2))
AMPLITUDE_LN = (0.0, _AMP_SD, -2.5 * _AMP_SD, 2.5 * _AMP_SD)
HEAD_SCALE = (1.0, 0.03, 0.925, 1.075)
BRAIN_TO_SKULL = (15.0, 80.0)  # log-uniform bounds
_TAGS = {"iaf_hz": 1, "alpha_scale": 2, "latency_shift_s": 3, "amplitude_scale": 4, "head_scale": 5,
         "brain_to_skull": 6}


@dataclass(frozen=True)
class SyntheticSubject:
    """One subject's individual parameters (see the module docstring for ranges and sources).

    Attributes
    ----------
    seed : int | None
        The seed it was drawn from (None: the template).
    iaf_hz : float | None
        Individual alpha peak frequency (Hz); None: the template's two hemispheric peaks in 9-11 Hz.
    alpha_scale : float
        Alpha power relative to the template.
    latency_shift_s : float
        Shift of every evoked component (s, positive = later).
    amplitude_scale : float
        Evoked amplitude relative to the template.
    head_scale : float
        Head size relative to the template (radius 98 mm).
    brain_to_skull : float
        Brain-to-skull conductivity ratio.
    """

    seed: int | None
    iaf_hz: float | None
    alpha_scale: float
    latency_shift_s: float
    amplitude_scale: float
    head_scale: float
    brain_to_skull: float

    @property
    def head(self) -> HeadModel:
        """The subject's head in the forward model."""
        return HeadModel(scale=self.head_scale, skull_conductivity=SPHERE_SIGMAS[0] / self.brain_to_skull)

    @property
    def head_radius_mm(self) -> float:
        """Radius of the subject's spherical head (mm)."""
        return 1000.0 * TEMPLATE_HEAD_RADIUS * self.head_scale

    def to_dict(self) -> dict[str, float | int | None]:
        """The drawn values (rounded for display), plus the head radius in mm."""
        out = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        out["head_radius_mm"] = round(self.head_radius_mm, 2)
        return out

    def describe(self) -> str:
        """One line for the log."""
        iaf = "template" if self.iaf_hz is None else f"{self.iaf_hz:.2f} Hz"
        return (f"subject {self.seed}: alpha peak {iaf} x{self.alpha_scale:.2f} power, evoked latency "
                f"{1e3 * self.latency_shift_s:+.1f} ms and amplitude x{self.amplitude_scale:.2f}, head radius "
                f"{self.head_radius_mm:.1f} mm, brain/skull conductivity {self.brain_to_skull:.1f}")


TEMPLATE_SUBJECT = SyntheticSubject(seed=None, iaf_hz=None, alpha_scale=1.0, latency_shift_s=0.0,
                                    amplitude_scale=1.0, head_scale=TEMPLATE_HEAD.scale,
                                    brain_to_skull=TEMPLATE_HEAD.brain_to_skull_ratio)


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float) -> float:
    """A normal draw restricted to [lo, hi] by inverting the CDF (one uniform number: no rejection loop)."""
    a, b = ndtr((lo - mean) / sd), ndtr((hi - mean) / sd)
    return float(mean + sd * ndtri(a + (b - a) * rng.uniform()))


def draw_subject(seed: int) -> SyntheticSubject:
    """The subject of ``seed`` (an integer >= 0): same seed, same subject."""
    seed = int(seed)

    def rng(name: str) -> np.random.Generator:
        return np.random.default_rng([seed, 0x5B1EC7, _TAGS[name]])

    lo, hi = BRAIN_TO_SKULL
    return SyntheticSubject(
        seed=seed,
        iaf_hz=_truncated_normal(rng("iaf_hz"), *IAF_HZ),
        alpha_scale=math.exp(_truncated_normal(rng("alpha_scale"), *ALPHA_LN)),
        latency_shift_s=_truncated_normal(rng("latency_shift_s"), *LATENCY_S),
        amplitude_scale=math.exp(_truncated_normal(rng("amplitude_scale"), *AMPLITUDE_LN)),
        head_scale=_truncated_normal(rng("head_scale"), *HEAD_SCALE),
        brain_to_skull=float(math.exp(rng("brain_to_skull").uniform(math.log(lo), math.log(hi)))),
    )


__all__ = ["SyntheticSubject", "TEMPLATE_SUBJECT", "draw_subject"]
