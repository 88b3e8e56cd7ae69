"""Physiologically motivated simulation of visual evoked M/EEG for any image, and of THINGS-like datasets.

Ground truth is computed **from the image pixels** (early vision) and from the image's **declared category**
(category-selective components), so the same model serves procedural stimuli and folders of user images.
``docs/simulator.md`` gives every property with the number it produces and the published figure it follows;
in short:

   name    generator (Di Russo et al. 2002)   peak (ms)   topography / polarity
   ======  =================================  ==========  =========================================
   C1      striate cortex (calcarine), one    60-90       midline occipito-parietal; positive for
           source per hemisphere and bank                 lower-field, negative for upper-field stimuli
   P1      dorsal extrastriate (middle        95-130      positive, lateral occipital, contralateral
           occipital gyrus)
   N1      ventral occipito-temporal          150-190     negative, lateral occipito-parietal, bilateral
           (fusiform)                                     with contralateral dominance; also driven by
                                                          fine structure and colour
   P2      parieto-occipital                  230-270     positive, bilateral
   SN      occipito-temporal, sustained       180-630     negative plateau, driven by fine structure
   P3      parietal (P300-like)               330-400     broad centro-parietal positivity; driven by
                                                          overall salience
   LPP     parietal, late positive potential  420-820     slow positive plateau, salience
   ======  =================================  ==========  =========================================

   Moments are effective values calibrated to 5-25 µV peaks for strong stimuli (see docs/simulator.md).
   Latencies shorten with contrast (``lat = lat0 + dlat * (1 - R_lat(c))``; Jeffreys & Axford 1972 and
   Albrecht 1995 for contrast-dependent latency; Musselwhite & Jeffreys 1985 for the upper/lower-field
   dependence of the earliest component) and lengthen with spatial frequency. Waveforms are Gaussian bumps.
5. **Trial-to-trial variability**: per trial, a log-normal gain (sd 0.2 overall, 0.15 per component) and
   latency jitter (6 ms overall, 4 ms per component, 20 ms for P3).
6. **Forward model**: MNE spherical head (:func:`mne.make_sphere_model`) and discrete dipoles
   (:func:`mne.make_forward_solution`), EEG (4 shells) or MEG (magnetometers/gradiometers from
   :meth:`Montage.create_info`); computed once per montage and cached in memory (:mod:`._forward`).
7. **Background**: :class:`vibe_rt.data.noise.BackgroundNoise` (1/f with spatial covariance, occipital
   alpha, sensor noise), one continuous stream from which trials are cut in random order.
8. **Epochs** like THINGS-EEG2: the montage's window (e.g. -0.2..0.79 s at 100 Hz), baseline-corrected on
   the prestimulus samples (``baseline=(None, 0)`` as in THINGS-EEG2).
=======
1. **Early vision** (:func:`contrast_maps`). The image spans ``image_deg`` degrees (THINGS-EEG2: 7 deg) and
   is placed on a mid-grey screen (so the image frame is an edge). Luminance is taken as Weber contrast
   against the mid-grey adaptation level, ``w = (L - 0.5) / 0.5`` (a linearised display). A log-Gabor bank
   (0.5-8 cycles/deg, octave steps, 4 orientations, oblique orientations weighted 0.8) gives the local
   pattern contrast per spatial-frequency channel; low-passed luminance increments and decrements give the
   ON and OFF maps; two colour-opponent maps give colour contrast.
2. **Local responses** (:class:`VisionParams`): every SF channel saturates with contrast (Naka & Rushton
   1966, ``R = c^2 / (c^2 + c50^2)``), weighted by a band-pass SF sensitivity (peak 4 cycles/deg) and
   combined by probability summation; ON and OFF responses are separate, OFF stronger, finer and earlier
   (Zemon et al. 1988; Komban et al. 2014; Norcia et al. 2020). A uniform field drives only ON or OFF.
3. **Retinotopic pooling**: each dipole pools over its part of the visual field (contralateral hemifield,
   upper or lower field for the striate banks) with areal cortical magnification ``1 / (e + e2)^2`` (e in
   degrees; Horton & Hoyt 1991), then saturates gently with the pooled response (``p50 = 0.5`` of a
   full-field, full-contrast stimulus), so amplitude keeps growing with stimulus size over the whole image.
4. **Components**: equivalent dipoles in a spherical head (:func:`default_sources`): C1 (striate, polarity
   flips between upper and lower field), P1 (dorsal extrastriate), C2 (pattern-specific negativity,
   Jeffreys' CII), N1 (ventral occipito-temporal), P2, a sustained negativity, and the category-selective
   N170 (faces, right-lateralised), N190 (bodies), scene P2 and an animacy negativity, plus small P3/LPP.
   Latencies shorten with contrast and lengthen with spatial frequency and for ON responses.
5. **Trial-to-trial variability**: per trial, a log-normal gain of mean 1 (sd 0.2 overall, 0.15 per
   component) and latency jitter (6 ms overall, 4-20 ms per component).
6. **Forward model**: MNE spherical head and discrete dipoles (:mod:`._forward`).
7. **Background**: :class:`vibe_rt.data.noise.BackgroundNoise`.
8. **Paradigm and epochs** (:mod:`.paradigm`): continuous sequences (THINGS-EEG2: 5 Hz RSVP, so epochs
   overlap their neighbours' responses) cut into the montage's window and baseline-corrected.

References
----------
Di Russo F et al. (2002). Cortical sources of the early components of the visual evoked potential. Hum Brain
Mapp 15:95-111. Jeffreys DA, Axford JG (1972). Exp Brain Res 16:1-40. Naka KI, Rushton WAH (1966). J Physiol
185:536-555. Campbell FW, Maffei L (1970). J Physiol 207:635-652. Horton JC, Hoyt WF (1991). Arch Ophthalmol
109:816-824. Zemon V, Gordon J, Welch J (1988). Vis Neurosci 1:145-150. Komban SJ et al. (2014). Neuron
82:224-234. Bentin S et al. (1996). J Cogn Neurosci 8:551-565. Odom JV et al. (2016). Doc Ophthalmol 133:1-9.
Gifford AT et al. (2022). NeuroImage 264:119754.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import erf

from .._logs import logger
from ..errors import ConfigError, DataError
from ..montage import Montage, get_montage
from ._forward import leadfield
from .categories import CATEGORIES, CategoryLabel, as_label, read_category_table
from .ceiling import noise_ceiling
from .dataset import EpochsDataset, write_header
from .noise import BackgroundNoise
from .paradigm import Paradigm, expected_epochs, get_paradigm, simulate_epochs
from .stimuli import list_images, make_stimulus, read_image, write_image

_IMAGE_PX = 128  # the image is resampled to 128 x 128 pixels ...
_CANVAS_PX = 160  # ... in the middle of a 160 x 160 mid-grey screen (the image frame is an edge)
MAP_FEATURES = ("pattern", "structure", "on", "off")
CATEGORY_FEATURES = CATEGORIES + ("animate",)
FEATURES = MAP_FEATURES + CATEGORY_FEATURES + ("salience",)


@dataclass(frozen=True)
class VisionParams:
    """Constants of the visual model: early vision and category responses (one observer; a synthetic subject
    may perturb them).

    Attributes
    ----------
    sf_channels_cpd : tuple of float
        Centre frequencies of the log-Gabor channels, cycles/deg (those above the canvas Nyquist are dropped).
    sf_peak_cpd, sf_sigma_low_oct, sf_sigma_high_oct : float
        Band-pass SF sensitivity of the channels: log-Gaussian around the peak (cycles/deg), sd in octaves
        below and above it (VEP peak at 3-6 cycles/deg: Campbell & Maffei 1970).
    c50_pattern, c50_colour, c50_luminance : float
        Naka-Rushton half-saturation contrasts of the local pattern, colour and ON/OFF responses.
    nr_exponent : float
        Naka-Rushton exponent.
    off_gain, on_gain : float
        Maxima of the OFF (decrement) and ON (increment) luminance responses (OFF dominance).
    off_sigma_deg, on_sigma_deg : float
        Spatial low-pass (Gaussian sd, deg) of the OFF and ON maps (OFF finer: Zemon et al. 1988).
    off_delay_s, on_delay_s : float
        Latency of OFF and ON responses relative to the pattern response (darks faster: Komban et al. 2014).
    sf_delay_s_per_octave : float
        Extra latency of the pattern response per octave of SF centroid above 1 cycle/deg.
    pool_p50 : float
        Pooled response (fraction of a full-field, full-contrast stimulus) that gives half the maximal drive.
    latency_c50 : float
        Half-saturation contrast of the contrast-dependent latency shortening.
    inversion_gain, inversion_delay_s : float
        Upside-down faces and bodies: category response larger by this factor and later by this delay
        (Rossion et al. 2000).
    """

    sf_channels_cpd: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    sf_peak_cpd: float = 4.0
    sf_sigma_low_oct: float = 1.2
    sf_sigma_high_oct: float = 0.9
    c50_pattern: float = 0.2
    c50_colour: float = 0.15
    c50_luminance: float = 0.35
    nr_exponent: float = 2.0
    off_gain: float = 1.0
    on_gain: float = 0.6
    off_sigma_deg: float = 0.25
    on_sigma_deg: float = 0.4
    off_delay_s: float = 0.0
    on_delay_s: float = 0.020
    sf_delay_s_per_octave: float = 0.005
    pool_p50: float = 2.0
    latency_c50: float = 0.15
    inversion_gain: float = 1.2
    inversion_delay_s: float = 0.010


@dataclass(frozen=True)
class Source:
    """One equivalent dipole of the evoked model.

    Attributes
    ----------
    name : str
        Component and hemisphere, e.g. ``"C1-R-upper"``.
    position : tuple of float
        Metres relative to the head-sphere centre (X right, Y front, Z up).
    orientation : tuple of float
        Direction of positive current (normalised internally).
    moment : float
        Dipole moment in nAm for a drive of 1.
    latency : float
        Peak latency in seconds at full contrast.
    dlatency : float
        Extra latency in seconds at vanishing contrast.
    width : float
        Standard deviation of the Gaussian waveform, seconds.
    hemifield : str
        Visual field feeding the source: ``"left"``, ``"right"`` or ``"both"``.
    vfield : str
        ``"upper"``, ``"lower"`` or ``"both"``.
    ipsi : float
        Weight of the ipsilateral hemifield (0..1).
    e2_deg : float
        Cortical magnification constant in degrees (weight ``1 / (e + e2)^2``; large = flat).
    inputs : dict
        What drives the source, feature -> weight: map features (:data:`MAP_FEATURES`), the declared
        category (:data:`CATEGORY_FEATURES`, scaled by the image's visibility) or ``"salience"``.
    jitter : float
        Per-component latency jitter (s, sd).
    duration : float
        0 for a transient (Gaussian) component; otherwise a sustained component lasting ``duration`` seconds
        from ``latency``, with edges of width ``width``.
    """

    name: str
    position: tuple[float, float, float]
    orientation: tuple[float, float, float]
    moment: float
    latency: float
    dlatency: float
    width: float
    hemifield: str = "both"
    vfield: str = "both"
    ipsi: float = 1.0
    e2_deg: float = 2.0
    inputs: dict[str, float] = field(default_factory=lambda: {"pattern": 1.0})
    jitter: float = 0.004
    duration: float = 0.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.inputs) - set(FEATURES))
        if unknown:
            raise ConfigError(f"source {self.name}: unknown inputs {unknown}; use {', '.join(FEATURES)}")


def _mirror(s: Source, moment_scale: float = 1.0) -> Source:
    """The left-hemisphere twin of a right-hemisphere source (fed by the right visual field)."""
    x, y, z = s.position
    ox, oy, oz = s.orientation
    return Source(s.name.replace("-R", "-L"), (-x, y, z), (-ox, oy, oz), s.moment * moment_scale, s.latency,
                  s.dlatency, s.width, "right", s.vfield, s.ipsi, s.e2_deg, dict(s.inputs), s.jitter, s.duration)


def default_sources() -> tuple[Source, ...]:
    """The dipoles of the evoked model (right-hemisphere sources receive the left visual field)."""
    striate = {"pattern": 1.0, "off": 0.45, "on": 0.05}  # OFF dominance in V1 (Yeh et al. 2009)
    dorsal = {"pattern": 1.0, "off": 0.1, "on": 0.4}
    right = [
        # C1: calcarine banks. Upper field -> lower bank, current pointing antero-inferior (negative at POz);
        # lower field -> upper bank, current pointing postero-superior (positive at POz). Di Russo 2002.
        # The lower-field bank is stronger, so that a full-field pattern gives a positive C1 (ISCEV).
        Source("C1-R-upper", (0.008, -0.074, 0.002), (0.0, 0.55, -0.85), 42.0, 0.066, 0.040, 0.011,
               "left", "upper", 0.0, 0.75, dict(striate)),
        Source("C1-R-lower", (0.008, -0.072, 0.012), (0.0, -0.55, 0.85), 63.0, 0.066, 0.040, 0.011,
               "left", "lower", 0.0, 0.75, dict(striate)),
        # P1: dorsal extrastriate, positive over contralateral lateral occipital sites.
        Source("P1-R", (0.035, -0.062, 0.012), (0.75, -0.6, 0.25), 35.0, 0.100, 0.035, 0.014,
               "left", "both", 0.1, 1.5, dict(dorsal)),
        # C2 and C3: pattern-specific extrastriate negativity and the positivity after it at the occipital
        # pole (Jeffreys' CII; ISCEV pattern onset C2 ~125 ms, C3 ~150 ms). Uniform fields do not drive them.
        Source("C2-R", (0.015, -0.070, 0.015), (0.0, 1.0, 0.25), 31.0, 0.116, 0.035, 0.014,
               "left", "both", 0.2, 0.75, {"pattern": 1.0}),
        Source("C3-R", (0.018, -0.068, 0.020), (0.0, -1.0, -0.1), 21.0, 0.140, 0.035, 0.016,
               "left", "both", 0.3, 0.75, {"pattern": 1.0}),
        # N1: ventral occipito-temporal, negative over lateral occipito-parietal sites (structure, colour).
        Source("N1-R", (0.042, -0.048, -0.004), (-0.7, 0.55, -0.25), 50.0, 0.155, 0.030, 0.020,
               "left", "both", 0.4, 2.0, {"structure": 1.0}),
        # P2: parieto-occipital positivity, bilateral.
        Source("P2-R", (0.022, -0.055, 0.040), (0.3, -0.5, 0.8), 21.0, 0.230, 0.040, 0.030,
               "left", "both", 0.8, 2.0, {"pattern": 0.7, "structure": 0.3}),
        # Sustained occipito-temporal negativity while the object is processed (structure and colour).
        Source("SN-R", (0.045, -0.035, -0.010), (-0.35, 0.75, -0.55), 16.8, 0.180, 0.050, 0.040,
               "left", "both", 0.6, 2.0, {"structure": 1.0}, 0.010, 0.45),
        # Category-selective components, driven by the declared category times the image's visibility.
        Source("N170-R", (0.046, -0.045, -0.012), (-0.5, 0.6, 0.6), 100.0, 0.158, 0.015, 0.016,
               "left", "both", 0.6, 3.0, {"face": 1.0}, 0.006),
        Source("N190-R", (0.050, -0.056, -0.004), (-0.65, 0.6, 0.45), 30.0, 0.178, 0.015, 0.020,
               "left", "both", 0.6, 3.0, {"body": 1.0}, 0.006),
        Source("Scene-R", (0.020, -0.052, 0.018), (0.25, -0.7, 0.65), 28.0, 0.205, 0.030, 0.030,
               "left", "both", 0.7, 3.0, {"scene": 1.0}, 0.010),
        Source("Animacy-R", (0.040, -0.032, -0.016), (-0.6, 0.6, -0.5), 16.8, 0.230, 0.030, 0.030,
               "left", "both", 0.7, 3.0, {"animate": 1.0}, 0.015, 0.18),
    ]
    lateral = {"N170-R": 0.6}  # the face N170 is larger over the right hemisphere (Bentin et al. 1996)
    out: list[Source] = []
    for s in right:
        out.append(s)
        out.append(_mirror(s, lateral.get(s.name, 1.0)))
    # P3 and late positive potential: small for task-irrelevant RSVP images, driven by overall salience.
    out.append(Source("P3", (0.0, -0.030, 0.045), (0.0, -0.3, 1.0), 21.0, 0.330, 0.070, 0.060, "both", "both",
                      1.0, 5.0, {"salience": 1.0}, 0.020))
    out.append(Source("LPP", (0.0, -0.045, 0.035), (0.0, -0.6, 0.8), 14.0, 0.420, 0.070, 0.080, "both", "both",
                      1.0, 5.0, {"salience": 1.0}, 0.020, 0.30))
    return tuple(out)


# ------------------------------------------------------------------------------------------- early vision
@lru_cache(maxsize=16)
def _filter_bank(n: int, canvas_deg: float, channels: tuple[float, ...]) -> np.ndarray:
    """Analytic log-Gabor filters on an n x n canvas of ``canvas_deg`` degrees (channels x 4 orientations),
    peak gain 2 (so that the modulus of the response is the local contrast amplitude)."""
    fx = np.fft.fftfreq(n)[None, :] * n / canvas_deg  # cycles per degree
    fy = -np.fft.fftfreq(n)[:, None] * n / canvas_deg
    f = np.hypot(fx, fy)
    f[0, 0] = 1e-9
    ang = np.arctan2(fy, fx)
    bank = []
    for f0 in channels:
        radial = np.exp(-0.5 * (np.log(f / f0) / np.log(1.55)) ** 2)  # 1.5 octaves FWHM
        for th in np.arange(4) * np.pi / 4:
            d = np.angle(np.exp(1j * (ang - th)))  # one-sided: analytic filter
            bank.append(2.0 * radial * np.exp(-0.5 * (d / (np.pi / 8)) ** 2))
    out = np.array(bank, dtype=np.complex64).reshape(len(channels), 4, n, n)
    out[..., 0, 0] = 0.0
    return out


_ORI_WEIGHT = np.array([1.0, 0.8, 1.0, 0.8], np.float32)  # cardinal vs oblique (oblique effect)


def _blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigma_px, borderType=cv2.BORDER_REPLICATE)


def _pool(a: np.ndarray) -> np.ndarray:
    """Mean over 2 x 2 blocks of the last two axes (canvas -> response grid)."""
    return 0.25 * (a[..., 0::2, 0::2] + a[..., 1::2, 0::2] + a[..., 0::2, 1::2] + a[..., 1::2, 1::2])


def _channel_energy(w: np.ndarray, canvas_deg: float, channels: tuple[float, ...]) -> np.ndarray:
    """Oriented contrast energy per SF channel on the canvas of ``w`` (sum over orientations, obliques 0.8)."""
    import scipy.fft

    if not channels:
        return np.zeros((0,) + w.shape, np.float32)
    bank = _filter_bank(w.shape[0], canvas_deg, channels)
    resp = scipy.fft.ifft2(scipy.fft.fft2(w)[None, None] * bank, workers=1)
    energy = resp.real**2 + resp.imag**2
    return np.einsum("sonm,o->snm", energy, _ORI_WEIGHT**2)


def contrast_maps(image: np.ndarray, image_deg: float = 7.0, vision: VisionParams | None = None
                  ) -> dict[str, np.ndarray]:
    """Local contrast of an image on the screen: the input of the evoked model.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3) or (H, W), uint8
        RGB image; the centre is the fixation point. Resampled to 128 x 128 pixels spanning ``image_deg``
        and placed in the middle of a mid-grey 160 x 160 canvas (the screen around the image).
    image_deg : float
        Visual angle of the image side in degrees.
    vision : VisionParams | None
        Early-vision constants (SF channels, ON/OFF blur); default :class:`VisionParams`.

    Returns
    -------
    dict
        On the 80 x 80 response grid over the canvas (:func:`response_grid`): ``luminance`` (Weber contrast re
        mid-grey), ``on`` and ``off`` (low-passed increments and decrements, >= 0), ``channels`` (n_sf, 80,
        80: local pattern contrast amplitude per SF channel), ``colour`` (colour-opponent contrast), and
        ``sf_cpd`` (n_sf,): the channel frequencies in cycles/deg (those below the canvas Nyquist frequency).
        Channels below 4 cycles/deg are filtered on the 80 x 80 grid, the others at full resolution.
    """
    import cv2

    vp = vision or VisionParams()
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype != np.uint8:
        raise DataError(f"expected an RGB uint8 image (H, W, 3), got {img.dtype} array of shape {img.shape}")
    small = cv2.resize(np.ascontiguousarray(img[..., :3]), (_IMAGE_PX, _IMAGE_PX),
                       interpolation=cv2.INTER_AREA).astype(np.float32) / np.float32(255.0)
    rgb = np.full((_CANVAS_PX, _CANVAS_PX, 3), 0.5, np.float32)
    margin = (_CANVAS_PX - _IMAGE_PX) // 2
    rgb[margin: margin + _IMAGE_PX, margin: margin + _IMAGE_PX] = small
    w_full = (rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32) - 0.5) / 0.5
    rgb_grid = _pool(rgb.transpose(2, 0, 1))
    w = _pool(w_full)
    canvas_deg = image_deg * _CANVAS_PX / _IMAGE_PX
    grid_px_per_deg = _CANVAS_PX / 2 / canvas_deg
    nyquist = 0.5 * _CANVAS_PX / canvas_deg
    sf = tuple(c for c in vp.sf_channels_cpd if c < nyquist)
    coarse = tuple(c for c in sf if c < 4.0)
    fine = tuple(c for c in sf if c >= 4.0)
    energy = np.concatenate([_channel_energy(w, canvas_deg, coarse),
                             _pool(_channel_energy(w_full, canvas_deg, fine))])
    r, g, b = rgb_grid
    sigma = 0.15 * grid_px_per_deg
    return {
        "luminance": w,
        "on": np.maximum(_blur(w, vp.on_sigma_deg * grid_px_per_deg), 0.0),
        "off": np.maximum(-_blur(w, vp.off_sigma_deg * grid_px_per_deg), 0.0),
        "channels": np.sqrt(energy).astype(np.float32),
        "colour": np.hypot(_blur(r - g, sigma), _blur(b - (r + g) / 2, sigma)),
        "sf_cpd": np.array(sf),
    }


def naka_rushton(c: np.ndarray | float, c50: float = 0.2, n: float = 2.0) -> np.ndarray:
    """Saturating contrast response ``c^n / (c^n + c50^n)`` (Naka & Rushton 1966)."""
    c = np.maximum(np.asarray(c), 0.0)
    cn = c * c if n == 2.0 else c**n
    return cn / (cn + c50**n)


def sf_sensitivity(f_cpd: np.ndarray | float, vision: VisionParams | None = None) -> np.ndarray:
    """Relative sensitivity (peak 1) of SF channels at ``f_cpd`` cycles/deg: asymmetric log-Gaussian."""
    vp = vision or VisionParams()
    octaves = np.log2(np.asarray(f_cpd, dtype=np.float64) / vp.sf_peak_cpd)
    sd = np.where(octaves < 0, vp.sf_sigma_low_oct, vp.sf_sigma_high_oct)
    return np.exp(-0.5 * (octaves / sd) ** 2)


def response_grid(image_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (deg; x right, y up) of the 80 x 80 response grid over the canvas, and the image area's mask."""
    n = _CANVAS_PX // 2
    canvas_deg = image_deg * _CANVAS_PX / _IMAGE_PX
    c = ((np.arange(n) + 0.5) / n - 0.5) * canvas_deg
    x, y = np.meshgrid(c, -c)
    half = image_deg / 2
    return x, y, (np.abs(x) < half) & (np.abs(y) < half)


def _weight_map(s: Source, image_deg: float) -> np.ndarray:
    x, y, inside = response_grid(image_deg)
    soft = 0.02 * image_deg
    left = 1 / (1 + np.exp(x / soft))
    if s.hemifield == "left":
        hemi = left + s.ipsi * (1 - left)
    elif s.hemifield == "right":
        hemi = (1 - left) + s.ipsi * left
    else:
        hemi = np.ones_like(x)
    upper = 1 / (1 + np.exp(-y / soft))
    vert = {"upper": upper, "lower": 1 - upper, "both": np.ones_like(y)}[s.vfield]
    w = hemi * vert / (np.hypot(x, y) + s.e2_deg) ** 2
    return w / w[inside].sum()  # 1 = the whole image (the grey screen around it counts for its edges)


# ------------------------------------------------------------------------------------------- the model
class EvokedModel:
    """Ground-truth visual evoked responses for a montage.

    Parameters
    ----------
    montage : Montage | str
        Channels and epoch window (a preset name or a :class:`Montage`).
    sources : sequence of Source | None
        Dipoles; default :func:`default_sources`.
    image_deg : float | None
        Visual angle of the image side; default the montage's paradigm (things-eeg2: 7 deg, things-meg: 10).
    vision : VisionParams | None
        Early-vision constants; default :class:`VisionParams`.

    Examples
    --------
    >>> model = EvokedModel("things-eeg2")
    >>> erp = model.evoked(image)  # (17, 100) volts, one presentation, no category component
    >>> erp_face = model.evoked(image, category="face")
    """

    def __init__(self, montage: Montage | str, sources: Sequence[Source] | None = None,
                 image_deg: float | None = None, vision: VisionParams | None = None) -> None:
        self.montage = get_montage(montage) if isinstance(montage, str) else montage
        self.sources = tuple(sources or default_sources())
        self.image_deg = float(image_deg or get_paradigm(None, self.montage.name).image_deg)
        self.vision = vision or VisionParams()
        pos = np.array([s.position for s in self.sources])
        ori = np.array([s.orientation for s in self.sources], dtype=float)
        ori /= np.linalg.norm(ori, axis=1, keepdims=True)
        gain = leadfield(self.montage, pos)  # (C, n_src, 3)
        moments = np.array([s.moment for s in self.sources]) * 1e-9
        self.gain = np.einsum("cnk,nk->cn", gain, ori) * moments  # sensor signal per unit drive
        maps = np.array([_weight_map(s, self.image_deg) for s in self.sources])
        self._maps = maps.reshape(len(maps), -1).astype(np.float32)
        self._inputs = np.array([[s.inputs.get(f, 0.0) for f in FEATURES] for s in self.sources])
        self._category_weights = self._inputs[:, len(MAP_FEATURES): len(MAP_FEATURES) + len(CATEGORY_FEATURES)]
        self._lat0 = np.array([s.latency for s in self.sources])
        self._dlat = np.array([s.dlatency for s in self.sources])
        self._width = np.array([s.width for s in self.sources])
        self._jitter = np.array([s.jitter for s in self.sources])
        self._duration = np.array([s.duration for s in self.sources])
        vp = self.vision
        self._feature_delay = np.array([0.0, 0.0, vp.on_delay_s, vp.off_delay_s])
        end = self._lat0 + self._dlat + 0.05 + self._duration + 5 * np.hypot(self._width, 0.006 + self._jitter)
        self.response_samples = int(np.ceil(end.max() * self.montage.sfreq)) + 1
        self.response_times = np.arange(self.response_samples) / self.montage.sfreq

    @property
    def source_names(self) -> list[str]:
        """Names of the dipoles, in the order of :meth:`drives`."""
        return [s.name for s in self.sources]

    def drives(self, image: np.ndarray, category: CategoryLabel | str | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Amplitude (drive, 0..~1) and peak latency (s) of every source for one image.

        Parameters
        ----------
        image : ndarray, shape (H, W, 3), uint8
        category : CategoryLabel | str | None
            Declared category (:data:`vibe_rt.data.categories.CATEGORIES`); None drives no category component.

        Returns
        -------
        amplitude, latency : ndarray, shape (n_sources,)
        """
        vp = self.vision
        resp, contrast, centroid = self._local_responses(contrast_maps(image, self.image_deg, vp))
        # np.einsum, not BLAS: multi-threaded BLAS on a busy 2-core machine took 15 ms for this product
        pooled = np.einsum("sk,fk->sf", self._maps, resp).astype(np.float64)  # (n_src, 4 map features)
        c_eff = np.einsum("sk,fk->sf", self._maps, resp * contrast) / np.maximum(pooled, 1e-12)
        contrib = self._inputs[:, :len(MAP_FEATURES)] * pooled
        early = contrib.sum(1)
        share = contrib / np.maximum(early, 1e-12)[:, None]
        amp = self._saturate(early)
        c_src = (share * c_eff).sum(1)
        delay = self._feature_delay.copy()
        delay[:2] += vp.sf_delay_s_per_octave * max(np.log2(centroid), 0.0)  # pattern and structure
        shift = (share * delay).sum(1)
        # category components: declared category x visibility (the saturated pooled structure response)
        cat_gain, cat_delay = self._category_inputs(as_label(category))
        is_cat = self._category_weights.any(1)
        amp = np.where(is_cat, cat_gain * self._saturate(pooled[:, 1]), amp)
        c_src = np.where(is_cat, c_eff[:, 1], c_src)
        shift = np.where(is_cat, cat_delay, shift)
        sal = self._inputs[:, -1]
        if sal.any():  # P3/LPP: overall salience = the strongest early drive
            source = ~is_cat & (sal == 0)
            amp = np.where(sal > 0, sal * amp[source].max(initial=0.0), amp)
            c_src = np.where(sal > 0, c_src[source].max(initial=0.0), c_src)
        latency = self._lat0 + self._dlat * (1 - naka_rushton(c_src, vp.latency_c50, vp.nr_exponent)) + shift
        return amp, latency

    def _local_responses(self, m: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
        """Local responses of the map features (4, grid), the contrasts behind them (for the latency), and the
        SF centroid (cycles/deg) of the pattern response."""
        vp = self.vision
        weight = sf_sensitivity(m["sf_cpd"], vp).astype(np.float32)[:, None, None]
        r_ch = weight * naka_rushton(m["channels"], vp.c50_pattern, vp.nr_exponent)  # (n_sf, 80, 80)
        r_colour = naka_rushton(m["colour"], vp.c50_colour, vp.nr_exponent)
        pattern = 1.0 - np.prod(1.0 - r_ch, axis=0)  # probability summation over SF channels
        structure = 1.0 - (1.0 - pattern) * (1.0 - r_colour)  # pattern or colour
        on = vp.on_gain * naka_rushton(m["on"], vp.c50_luminance, vp.nr_exponent)
        off = vp.off_gain * naka_rushton(m["off"], vp.c50_luminance, vp.nr_exponent)
        c_pat = np.max(weight * m["channels"], axis=0)
        resp = np.stack([pattern, structure, on, off]).reshape(4, -1)
        contrast = np.stack([c_pat, c_pat, m["on"], m["off"]]).reshape(4, -1)
        per_channel = r_ch.reshape(len(r_ch), -1).sum(1).astype(np.float64) + 1e-12
        centroid = float(np.exp(np.sum(per_channel * np.log(m["sf_cpd"])) / per_channel.sum()))
        return resp, contrast, centroid

    def _saturate(self, pooled: np.ndarray) -> np.ndarray:
        """Population saturation of a pooled response: 1 stays 1, ``pool_p50`` gives a half of it."""
        p50 = self.vision.pool_p50
        return pooled * (1 + p50) / (pooled + p50)

    def _category_inputs(self, label: CategoryLabel | None) -> tuple[np.ndarray, np.ndarray]:
        """Gain and extra latency (s) of every source from a declared category (zero for None)."""
        vec = np.zeros(len(CATEGORY_FEATURES))
        delay = np.zeros(len(self.sources))
        if label is None:
            return np.zeros(len(self.sources)), delay
        inverted = label.inverted and label.animate  # faces and bodies upside down: larger and later
        vec[CATEGORY_FEATURES.index(label.name)] = label.strength * (self.vision.inversion_gain if inverted else 1)
        vec[CATEGORY_FEATURES.index("animate")] = label.strength if label.animate else 0.0
        if inverted:
            delay = np.where(self._inputs[:, FEATURES.index(label.name)] > 0, self.vision.inversion_delay_s, 0.0)
        return self._category_weights @ vec, delay

    def waveforms(self, amplitude: np.ndarray, latency: np.ndarray, times: np.ndarray | None = None,
                  spread: np.ndarray | float = 0.0) -> np.ndarray:
        """Source time courses, shape (..., n_sources, n_times), from amplitudes and latencies (..., n_sources).

        ``spread`` (s, per source) is the sd of a Gaussian latency jitter to average over: the expected
        waveform is the waveform convolved with it (a Gaussian widens, a plateau's edges soften).
        """
        t = self.montage.times if times is None else np.asarray(times)
        width = np.hypot(self._width, spread)[:, None]
        z = (t - latency[..., None]) / width
        wave = np.exp(-0.5 * z**2) * (self._width[:, None] / width)
        sus = self._duration > 0
        if sus.any():  # plateau with error-function edges
            d = self._duration[sus, None]
            plateau = 0.5 * (erf(z[..., sus, :] / np.sqrt(2)) - erf((z[..., sus, :] - d / width[sus]) / np.sqrt(2)))
            wave[..., sus, :] = plateau
        return amplitude[..., None] * wave

    def evoked(self, image: np.ndarray, category: CategoryLabel | str | None = None) -> np.ndarray:
        """Noise-free response to one presentation of ``image`` (no trial variability, no neighbours).

        Returns
        -------
        ndarray, shape (n_channels, n_times), float32, SI units, on the montage's epoch times
        """
        amp, lat = self.drives(image, category)
        return (self.gain @ self.waveforms(amp, lat)).astype(np.float32)

    def _jitter_sd(self, variability: float) -> np.ndarray:
        return float(variability) * np.hypot(0.006, self._jitter)

    def expected(self, amplitude: np.ndarray, latency: np.ndarray, variability: float = 1.0,
                 times: np.ndarray | None = None) -> np.ndarray:
        """Mean over trials of :meth:`trials` (exact: the gains have mean 1, the jitter is Gaussian).

        Parameters
        ----------
        amplitude, latency : ndarray, shape (n, n_sources)
        variability : float
        times : ndarray | None
            Seconds after onset; default the montage's epoch times.

        Returns
        -------
        ndarray, shape (n, n_channels, n_times)
        """
        wave = self.waveforms(amplitude, latency, times, self._jitter_sd(variability))
        return np.einsum("cs,nst->nct", self.gain, wave)

    def trials(self, amplitude: np.ndarray, latency: np.ndarray, rng: np.random.Generator,
               variability: float = 1.0, times: np.ndarray | None = None) -> np.ndarray:
        """Single-trial evoked responses with trial-to-trial variability.

        Parameters
        ----------
        amplitude, latency : ndarray, shape (n_trials, n_sources)
            From :meth:`drives`, one row per trial.
        rng : numpy.random.Generator
        variability : float
            Scales the gain and latency jitter (0 = identical trials). Gains are log-normal with mean 1.
        times : ndarray | None
            Seconds after onset; default the montage's epoch times.

        Returns
        -------
        ndarray, shape (n_trials, n_channels, n_times), float32
        """
        n, k = amplitude.shape
        v = float(variability)
        log_gain = v * (0.2 * rng.standard_normal((n, 1)) + 0.15 * rng.standard_normal((n, k)))
        gain = np.exp(log_gain - 0.5 * v**2 * (0.2**2 + 0.15**2))
        shift = v * (0.006 * rng.standard_normal((n, 1)) + self._jitter * rng.standard_normal((n, k)))
        wave = self.waveforms(amplitude * gain, latency + shift, times)
        return np.einsum("cs,nst->nct", self.gain, wave).astype(np.float32)


# ------------------------------------------------------------------------------------------ datasets
_PRESET_SIZES = {  # montage -> (n_train, train_reps, n_test, test_reps)
    "things-eeg2": (3000, 4, 200, 80),
    "things-meg": (1000, 1, 100, 12),
}


@dataclass
class SimulationConfig:
    """What :func:`simulate_dataset` builds.

    Parameters
    ----------
    montage : str | dict
        Preset name or a :meth:`Montage.to_dict` description.
    n_train, train_reps, n_test, test_reps : int | None
        Images and repetitions per split; None = the montage's default (things-eeg2: 3000 x 4 and 200 x 80,
        like THINGS-EEG2 with fewer images; things-meg: 1000 x 1 and 100 x 12, like THINGS-MEG).
    seed : int
        Seed of images, variability and noise: same seed, same dataset.
    image_dir : str | None
        Folder of user images to use instead of procedural ones (split at random into test and training).
    categories : str | None
        Category table (TSV: ``image``, ``category``, optional ``strength``, ``inverted``) of the images in
        ``image_dir``; without it user images drive no category-selective component.
    paradigm : str | dict | None
        Presentation: ``things-eeg2`` (5 Hz RSVP), ``things-meg`` (500 ms, 1.5 +- 0.2 s), ``isolated``, or a
        dict of :class:`~vibe_rt.data.paradigm.Paradigm` fields; None = the montage's (things-meg for
        things-meg, else things-eeg2).
    image_size : int
        Side of procedural images in pixels.
    noise_scale : float
        Multiplies the background activity (1.0, the default = realistic levels of :mod:`vibe_rt.data.noise`:
        single-trial rms about 14 uV for things-eeg2; the embedded model is trained at 0.1, see
        docs/simulator.md).
    variability : float
        Scales trial-to-trial amplitude/latency jitter.
    """

    montage: str | dict = "things-eeg2"
    n_train: int | None = None
    train_reps: int | None = None
    n_test: int | None = None
    test_reps: int | None = None
    seed: int = 0
    image_dir: str | None = None
    categories: str | None = None
    paradigm: str | dict | None = None
    image_size: int = 128
    noise_scale: float = 1.0
    variability: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def get_montage(self) -> Montage:
        """The montage object."""
        return get_montage(self.montage) if isinstance(self.montage, str) else Montage.from_dict(self.montage)

    def get_paradigm(self) -> Paradigm:
        """The presentation paradigm (the montage's default when None)."""
        return get_paradigm(self.paradigm, self.get_montage().name)

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        """``(n_train, train_reps, n_test, test_reps)``, the montage's defaults where None."""
        name = self.montage if isinstance(self.montage, str) else self.get_montage().name
        d = _PRESET_SIZES.get(name, _PRESET_SIZES["things-eeg2"])
        given = (self.n_train, self.train_reps, self.n_test, self.test_reps)
        n_train, train_reps, n_test, test_reps = (d[k] if v is None else int(v) for k, v in enumerate(given))
        return n_train, train_reps, n_test, test_reps

    def resolved(self) -> SimulationConfig:
        """A copy with the per-montage defaults filled in and values checked."""
        out = SimulationConfig(**{**asdict(self)})
        out.n_train, out.train_reps, out.n_test, out.test_reps = self.sizes
        for k in ("n_train", "train_reps", "n_test", "test_reps"):
            if getattr(out, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(out, k)}")
        if out.noise_scale < 0 or out.variability < 0:
            raise ConfigError("noise_scale and variability must be >= 0")
        if out.categories and not out.image_dir:
            raise ConfigError("categories labels the images of image_dir; give image_dir too (procedural images "
                              "carry their own category)")
        out.paradigm = self.get_paradigm().to_dict()
        return out


def _image_sets(cfg: SimulationConfig, out_dir: Path
                ) -> tuple[list[Path], list[Path], list[dict], list[CategoryLabel | None]]:
    """Write (or list) the images of both splits; returns train paths, test paths, per-image parameters and
    category labels (test first, then train, as the parameters)."""
    n_train, _, n_test, _ = cfg.sizes
    if cfg.image_dir:
        files = list_images(cfg.image_dir)
        need = n_test + 1
        if len(files) < need:
            raise DataError(f"{cfg.image_dir} has {len(files)} images; need at least n_test + 1 = {need}")
        order = np.random.default_rng([cfg.seed, 10]).permutation(len(files))
        test = [files[i] for i in order[:n_test]]
        train = [files[i] for i in order[n_test: n_test + n_train]]
        labels: list[CategoryLabel | None] = (
            read_category_table(cfg.categories, cfg.image_dir, test + train) if cfg.categories
            else [None] * (len(test) + len(train)))
        params = [{"kind": "user", "split": split, "file": p.name, "category": lab.to_dict() if lab else None}
                  for split, p, lab in zip(["test"] * len(test) + ["train"] * len(train), test + train, labels)]
        return train, test, params, labels
    params = []
    paths: dict[str, list[Path]] = {"train": [], "test": []}
    for split, n, tag in (("test", n_test, 11), ("train", n_train, 12)):
        for i in range(n):
            img, p = make_stimulus(np.random.default_rng([cfg.seed, tag, i]), cfg.image_size)
            path = out_dir / "images" / split / f"{split}_{i + 1:05d}.png"
            write_image(path, img)
            paths[split].append(path)
            params.append({"split": split, "file": path.name, **p})
    return paths["train"], paths["test"], params, [as_label(p["category"]) for p in params]


def simulate_dataset(config: SimulationConfig | None = None, out_dir: str | os.PathLike = "data/simulated",
                     ) -> tuple[EpochsDataset, EpochsDataset]:
    """Simulate a THINGS-like dataset: images, training and test epochs, noise ceiling.

    Parameters
    ----------
    config : SimulationConfig | None
        What to build; default ``SimulationConfig()`` (things-eeg2, 3000 x 4 training, 200 x 80 test trials,
        5 Hz RSVP).
    out_dir : path-like
        Output folder. Layout::

            images/{train,test}/*.png     procedural stimuli (not written for a user image_dir)
            images.json                   drawn stimulus parameters and category per image
            train/epochs.npy, dataset.json   EpochsDataset (n_train, train_reps, C, T), SI units
            test/epochs.npy, dataset.json    EpochsDataset (n_test, test_reps, C, T)
            test/evoked_true.npy          expected epoch per test image under the paradigm (n_test, C, T)
            test/evoked_isolated.npy      expected response to the test image shown alone (n_test, C, T)
            test/noise_ceiling.npz        lower/upper maps (C, T), the split-half protocol of data.ceiling
            simulation.json               config, paradigm, model, timings, noise-ceiling means

    Returns
    -------
    train, test : EpochsDataset
        Memory-mapped from the written files.
    """
    cfg = (config or SimulationConfig()).resolved()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    montage = cfg.get_montage()
    paradigm = cfg.get_paradigm()
    t0 = time.perf_counter()
    logger.info("simulating %s (%s paradigm): %d x %d training, %d x %d test trials into %s", montage.name,
                paradigm.name, cfg.n_train, cfg.train_reps, cfg.n_test, cfg.test_reps, out_dir)
    train_paths, test_paths, params, labels = _image_sets(cfg, out_dir)
    (out_dir / "images.json").write_text(json.dumps(params))
    t_images = time.perf_counter() - t0

    model = EvokedModel(montage, image_deg=paradigm.image_deg)
    unit = montage.unit
    timings = {"images_s": t_images}
    noise = BackgroundNoise(montage, montage.sfreq, seed=cfg.seed, scale=cfg.noise_scale)
    rng = np.random.default_rng([cfg.seed, 20])
    result = {}
    _, train_reps, _, test_reps = cfg.sizes
    splits = (("test", test_paths, test_reps, labels[: len(test_paths)]),
              ("train", train_paths, train_reps, labels[len(test_paths):]))
    for split, paths, reps, split_labels in splits:
        t1 = time.perf_counter()
        drives = [model.drives(read_image(p), lab) for p, lab in zip(paths, split_labels)]
        amp = np.array([d[0] for d in drives])
        lat = np.array([d[1] for d in drives])
        split_dir = out_dir / split
        split_dir.mkdir(exist_ok=True)
        shape = (len(paths), reps, montage.n_channels, montage.n_times)
        arr = np.lib.format.open_memmap(split_dir / "epochs.npy", mode="w+", dtype=np.float32, shape=shape)
        simulate_epochs(model, noise, paradigm, amp, lat, reps, arr, rng, cfg.variability)
        arr.flush()
        meta = {"simulated": True, "seed": cfg.seed, "sources": model.source_names, "paradigm": paradigm.name}
        if split == "test":
            truth, isolated = expected_epochs(model, paradigm, amp, lat, reps, cfg.variability)
            np.save(split_dir / "evoked_true.npy", truth, allow_pickle=False)
            np.save(split_dir / "evoked_isolated.npy", isolated, allow_pickle=False)
            nc = noise_ceiling(arr, n_splits=100, seed=cfg.seed)
            np.savez(split_dir / "noise_ceiling.npz", lower=nc["lower"], upper=nc["upper"])
            post = montage.times >= 0
            meta["noise_ceiling"] = {"lower_mean": nc["lower_mean"], "upper_mean": nc["upper_mean"],
                                     "lower_mean_post": float(nc["lower"][:, post].mean()),
                                     "upper_mean_post": float(nc["upper"][:, post].mean())}
        del arr
        write_header(split_dir, montage, paths, split, unit, meta, shape)
        result[split] = EpochsDataset.load(split_dir)
        timings[f"{split}_s"] = time.perf_counter() - t1
    timings["total_s"] = time.perf_counter() - t0
    summary = {
        "config": asdict(cfg),
        "montage": montage.to_dict(),
        "paradigm": paradigm.to_dict(),
        "image_deg": model.image_deg,
        "vision": asdict(model.vision),
        "sources": [asdict(s) for s in model.sources],
        "noise_ceiling": result["test"].meta["noise_ceiling"],
        "timings": timings,
        "unit": unit,
    }
    (out_dir / "simulation.json").write_text(json.dumps(summary, indent=1))
    logger.info("simulated in %.1f s; test noise ceiling lower %.3f upper %.3f (post-stimulus %.3f / %.3f)",
                timings["total_s"], *[summary["noise_ceiling"][k] for k in
                                      ("lower_mean", "upper_mean", "lower_mean_post", "upper_mean_post")])
    return result["train"], result["test"]


def load_simulated(out_dir: str | os.PathLike) -> tuple[EpochsDataset, EpochsDataset]:
    """The (train, test) datasets of a folder written by :func:`simulate_dataset`."""
    out_dir = Path(out_dir)
    return EpochsDataset.load(out_dir / "train"), EpochsDataset.load(out_dir / "test")
