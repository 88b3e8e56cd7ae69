"""Physiologically motivated simulation of visual evoked M/EEG for any image, and of THINGS-like datasets.

Ground truth is computed **from the image pixels**, so the same model serves procedural stimuli and any
folder of user images. See ``docs/simulator.md`` for the full description; in short:

1. **Early vision** (:func:`contrast_maps`). The image (centre = fixation, row 0 = upper field, column 0 =
   left field) is reduced to 64 x 64 and converted to luminance contrast against the mid-grey adaptation
   level, ``w = (L - 0.5) / 0.5``, plus two colour-opponent maps (L-M ~ R-G, S-(L+M) ~ B-(R+G)/2). A
   log-Gabor filter bank (3 scales: 2.5, 6 and 14 cycles per image; 4 orientations, analytic filters so
   that the modulus is the local amplitude) gives oriented contrast energy; with the low-pass luminance
   step it forms the local contrast map ``c(x, y)`` (oblique orientations weighted 0.8: the oblique effect).
2. **Contrast response**. Local responses saturate with contrast following Naka & Rushton (1966):
   ``R(c) = c^n / (c^n + c50^n)``, n = 2, c50 = 0.15 (Albrecht & Hamilton 1982 for V1 values).
3. **Retinotopic pooling**. Each dipole source pools ``R(c(x, y))`` over its part of the visual field with a
   weight map: contralateral hemifield (left field -> right hemisphere), upper or lower field for the striate
   sources, and cortical magnification ``1 / (e + e2)`` (e = eccentricity; Horton & Hoyt 1991). Pooled
   responses ``P`` (1 = full field at full contrast) saturate with stimulus area, ``D = P (1 + p50) / (P + p50)``
   with p50 = 0.04, which gives the size effect (spatial summation saturates: a 2-3 deg patch already
   evokes a robust VEP).
4. **Components** (dipoles in a spherical head, positions relative to its centre, moments in nAm for a
   full-field, full-contrast stimulus):

   ======  =================================  ==========  =========================================
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

References
----------
Di Russo F, Martinez A, Sereno MI, Pitzalis S, Hillyard SA (2002). Cortical sources of the early components
of the visual evoked potential. Hum Brain Mapp 15:95-111.
Jeffreys DA, Axford JG (1972). Source locations of pattern-specific components of human visual evoked
potentials. I/II. Exp Brain Res 16:1-40.
Naka KI, Rushton WAH (1966). S-potentials from colour units in the retina of fish. J Physiol 185:536-555.
Albrecht DG, Hamilton DB (1982). Striate cortex of monkey and cat: contrast response function.
J Neurophysiol 48:217-237.
Horton JC, Hoyt WF (1991). The representation of the visual field in human striate cortex. Arch Ophthalmol
109:816-824.
Polich J (2007). Updating P300: an integrative theory of P3a and P3b. Clin Neurophysiol 118:2128-2148.
Gifford AT, Dwivedi K, Roig G, Cichy RM (2022). A large and rich EEG dataset for modeling human visual object
recognition. NeuroImage 264:119754 (the THINGS-EEG2 layout reproduced here).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.special import erf

from .._logs import logger
from ..errors import ConfigError, DataError
from ..montage import Montage, get_montage
from ._forward import leadfield
from .ceiling import noise_ceiling
from .dataset import EpochsDataset, write_header
from .noise import BackgroundNoise
from .stimuli import _grid, list_images, make_stimulus, read_image, write_image

_FEATURE_SIZE = 64
_NR_N = 2.0
_NR_C50 = 0.15
_LAT_C50 = 0.2
_AREA_P50 = 0.04  # pooled response (fraction of a full-field, full-contrast one) giving half the drive


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
        Dipole moment in nAm for a drive of 1 (full-field, full-contrast stimulus).
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
    e2 : float
        Cortical magnification constant (normalised eccentricity units).
    feature : str
        ``"contrast"``, ``"structure"`` (oriented fine-scale energy and colour) or ``"salience"``.
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
    e2: float = 0.5
    feature: str = "contrast"
    jitter: float = 0.004
    duration: float = 0.0


def _mirror(s: Source, name: str, hemifield: str) -> Source:
    x, y, z = s.position
    ox, oy, oz = s.orientation
    return Source(name, (-x, y, z), (-ox, oy, oz), s.moment, s.latency, s.dlatency, s.width, hemifield,
                  s.vfield, s.ipsi, s.e2, s.feature, s.jitter, s.duration)


def default_sources() -> tuple[Source, ...]:
    """The dipoles of the evoked model (right-hemisphere sources receive the left visual field)."""
    right = [
        # C1: calcarine banks. Upper field -> lower bank, current pointing antero-inferior (negative at POz);
        # lower field -> upper bank, current pointing postero-superior (positive at POz). Di Russo 2002.
        Source("C1-R-upper", (0.008, -0.074, 0.002), (0.0, 0.55, -0.85), 88.0, 0.068, 0.030, 0.011,
               "left", "upper", 0.0, 0.3),
        Source("C1-R-lower", (0.008, -0.072, 0.012), (0.0, -0.55, 0.85), 64.0, 0.068, 0.030, 0.011,
               "left", "lower", 0.0, 0.3),
        # P1: dorsal extrastriate, positive over contralateral lateral occipital sites.
        Source("P1-R", (0.035, -0.062, 0.012), (0.75, -0.6, 0.25), 88.0, 0.098, 0.035, 0.016,
               "left", "both", 0.1, 0.6),
        # N1: ventral occipito-temporal, negative over lateral occipito-parietal sites.
        Source("N1-R", (0.042, -0.048, -0.004), (-0.7, 0.55, -0.25), 128.0, 0.160, 0.040, 0.022,
               "left", "both", 0.4, 1.0, "structure"),
        # P2: parieto-occipital positivity, bilateral.
        Source("P2-R", (0.022, -0.055, 0.040), (0.3, -0.5, 0.8), 64.0, 0.230, 0.040, 0.030,
               "left", "both", 0.8, 1.5),
        # Sustained occipito-temporal negativity while the object is processed (structure and colour).
        Source("SN-R", (0.045, -0.035, -0.010), (-0.35, 0.75, -0.55), 72.0, 0.180, 0.050, 0.040,
               "left", "both", 0.6, 1.0, "structure", 0.010, 0.45),
    ]
    out: list[Source] = []
    for s in right:
        out.append(s)
        out.append(_mirror(s, s.name.replace("-R", "-L"), "right"))
    out.append(Source("P3", (0.0, -0.030, 0.045), (0.0, -0.3, 1.0), 72.0, 0.330, 0.070, 0.060, "both", "both",
                      1.0, 2.0, "salience", 0.020))
    # Late positive potential: slow parietal positivity following P3.
    out.append(Source("LPP", (0.0, -0.045, 0.035), (0.0, -0.6, 0.8), 48.0, 0.420, 0.070, 0.080, "both", "both",
                      1.0, 2.0, "salience", 0.020, 0.40))
    return tuple(out)


# ---------------------------------------------------------------------------------------------- features
def _filter_bank(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Analytic log-Gabor filters (3 scales x 4 orientations) in the frequency domain, peak gain 2."""
    fx = np.fft.fftfreq(n)[None, :] * n  # cycles per image
    fy = -np.fft.fftfreq(n)[:, None] * n
    f = np.hypot(fx, fy)
    f[0, 0] = 1e-9
    ang = np.arctan2(fy, fx)
    bank = []
    scale = []
    for f0 in (2.5, 6.0, 14.0):
        radial = np.exp(-0.5 * (np.log(f / f0) / np.log(1.8)) ** 2)
        for th in np.arange(4) * np.pi / 4:
            d = np.angle(np.exp(1j * (ang - th)))  # one-sided: analytic filter
            bank.append(2.0 * radial * np.exp(-0.5 * (d / (np.pi / 8)) ** 2))
            scale.append(f0)
    bank = np.array(bank)
    bank[:, 0, 0] = 0.0
    return bank, np.array(scale)


_BANK, _BANK_SCALE = _filter_bank(_FEATURE_SIZE)
_ORI_WEIGHT = np.tile([1.0, 0.8, 1.0, 0.8], 3)  # cardinal vs oblique (oblique effect)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def contrast_maps(image: np.ndarray) -> dict[str, np.ndarray]:
    """Local contrast maps of an image (the input of the evoked model).

    Parameters
    ----------
    image : ndarray, shape (H, W, 3) or (H, W), uint8
        RGB image; the centre is the fixation point.

    Returns
    -------
    dict
        ``contrast`` (64, 64): luminance contrast energy; ``structure`` (64, 64): oriented energy at the two
        finer scales plus colour contrast; ``colour`` (64, 64); ``sf_high``: share of oriented energy at the
        finest scale (0..1).
    """
    import cv2

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype != np.uint8:
        raise DataError(f"expected an RGB uint8 image (H, W, 3), got {img.dtype} array of shape {img.shape}")
    img = cv2.resize(np.ascontiguousarray(img[..., :3]), (_FEATURE_SIZE, _FEATURE_SIZE),
                     interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    w = ((0.2126 * r + 0.7152 * g + 0.0722 * b) - 0.5) / 0.5
    spec = np.fft.fft2(w)
    resp = np.abs(np.fft.ifft2(spec[None] * _BANK))  # (12, n, n) local amplitude
    energy = (resp**2) * _ORI_WEIGHT[:, None, None] ** 2
    step = _blur(w, 2.0)
    coarse = energy.sum(0)
    fine = energy[_BANK_SCALE > 3].sum(0)
    contrast = np.sqrt(step**2 + coarse)
    colour = np.sqrt(_blur(r - g, 2.0) ** 2 + _blur(b - (r + g) / 2, 2.0) ** 2)
    structure = np.sqrt(fine + 0.5 * colour**2)
    total = energy.sum() + 1e-12
    return {
        "contrast": _blur(contrast.astype(np.float32), 1.0),
        "structure": _blur(structure.astype(np.float32), 1.5),
        "colour": colour.astype(np.float32),
        "sf_high": np.float32(energy[_BANK_SCALE > 10].sum() / total),
    }


def naka_rushton(c: np.ndarray | float, c50: float = _NR_C50, n: float = _NR_N) -> np.ndarray:
    """Saturating contrast response ``c^n / (c^n + c50^n)`` (Naka & Rushton 1966)."""
    c = np.maximum(np.asarray(c, dtype=np.float64), 0.0)
    return c**n / (c**n + c50**n)


def _weight_map(s: Source, n: int = _FEATURE_SIZE) -> np.ndarray:
    x, y = _grid(n)
    soft = 0.04
    left = 1 / (1 + np.exp(x / soft))
    if s.hemifield == "left":
        hemi = left + s.ipsi * (1 - left)
    elif s.hemifield == "right":
        hemi = (1 - left) + s.ipsi * left
    else:
        hemi = np.ones_like(x)
    upper = 1 / (1 + np.exp(-y / soft))
    vert = {"upper": upper, "lower": 1 - upper, "both": np.ones_like(y)}[s.vfield]
    ecc = np.hypot(x, y)
    return hemi * vert / (ecc + s.e2)


# ------------------------------------------------------------------------------------------- the model
class EvokedModel:
    """Ground-truth visual evoked responses for a montage.

    Parameters
    ----------
    montage : Montage | str
        Channels and epoch window (a preset name or a :class:`Montage`).
    sources : sequence of Source | None
        Dipoles; default :func:`default_sources`.

    Examples
    --------
    >>> model = EvokedModel("things-eeg2")
    >>> erp = model.evoked(image)  # (17, 100) volts
    """

    def __init__(self, montage: Montage | str, sources: Sequence[Source] | None = None) -> None:
        self.montage = get_montage(montage) if isinstance(montage, str) else montage
        self.sources = tuple(sources or default_sources())
        pos = np.array([s.position for s in self.sources])
        ori = np.array([s.orientation for s in self.sources], dtype=float)
        ori /= np.linalg.norm(ori, axis=1, keepdims=True)
        gain = leadfield(self.montage, pos)  # (C, n_src, 3)
        moments = np.array([s.moment for s in self.sources]) * 1e-9
        self.gain = np.einsum("cnk,nk->cn", gain, ori) * moments  # sensor signal per unit drive
        maps = np.array([_weight_map(s) for s in self.sources])
        self._maps = maps / maps.reshape(len(maps), -1).sum(1)[:, None, None]
        self._lat0 = np.array([s.latency for s in self.sources])
        self._dlat = np.array([s.dlatency for s in self.sources])
        self._width = np.array([s.width for s in self.sources])
        self._jitter = np.array([s.jitter for s in self.sources])
        self._feature = [s.feature for s in self.sources]
        self._duration = np.array([s.duration for s in self.sources])

    @property
    def source_names(self) -> list[str]:
        """Names of the dipoles, in the order of :meth:`drives`."""
        return [s.name for s in self.sources]

    def drives(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Amplitude (0..1) and peak latency (s) of every source for one image.

        Parameters
        ----------
        image : ndarray, shape (H, W, 3), uint8

        Returns
        -------
        amplitude, latency : ndarray, shape (n_sources,)
        """
        f = contrast_maps(image)
        resp = {"contrast": naka_rushton(f["contrast"]), "structure": naka_rushton(f["structure"])}
        cmap = {"contrast": f["contrast"], "structure": f["structure"]}
        amp = np.zeros(len(self.sources))
        c_eff = np.zeros(len(self.sources))
        for i, kind in enumerate(self._feature):
            key = "contrast" if kind == "salience" else kind
            r, w = resp[key], self._maps[i]
            pooled = float((w * r).sum())
            if kind == "structure":  # N1: fine structure plus luminance contrast
                pooled = 0.6 * pooled + 0.4 * float((w * resp["contrast"]).sum())
            amp[i] = pooled / (pooled + _AREA_P50) * (1 + _AREA_P50)
            wr = w * r
            c_eff[i] = float((wr * cmap[key]).sum() / (wr.sum() + 1e-12))
        early = [i for i, k in enumerate(self._feature) if k != "salience"]
        for i, kind in enumerate(self._feature):
            if kind == "salience" and early:  # P3/LPP: overall salience = strongest early drive
                amp[i] = amp[early].max()
        latency = self._lat0 + self._dlat * (1 - naka_rushton(c_eff, _LAT_C50)) + 0.012 * float(f["sf_high"])
        return amp, latency

    def waveforms(self, amplitude: np.ndarray, latency: np.ndarray, times: np.ndarray | None = None
                  ) -> np.ndarray:
        """Source time courses, shape (..., n_sources, n_times), from amplitudes and latencies (..., n_sources)."""
        t = self.montage.times if times is None else np.asarray(times)
        w = self._width[:, None]
        z = (t - latency[..., None]) / w
        wave = np.exp(-0.5 * z**2)
        sus = self._duration > 0
        if sus.any():  # plateau with error-function edges
            d = self._duration[sus, None]
            plateau = 0.5 * (erf(z[..., sus, :] / np.sqrt(2)) - erf((z[..., sus, :] - d / w[sus]) / np.sqrt(2)))
            wave[..., sus, :] = plateau
        return amplitude[..., None] * wave

    def evoked(self, image: np.ndarray) -> np.ndarray:
        """Noise-free evoked response to ``image``, shape (n_channels, n_times), float32, SI units."""
        amp, lat = self.drives(image)
        return (self.gain @ self.waveforms(amp, lat)).astype(np.float32)

    def trials(self, amplitude: np.ndarray, latency: np.ndarray, rng: np.random.Generator,
               variability: float = 1.0) -> np.ndarray:
        """Single-trial evoked responses with trial-to-trial variability.

        Parameters
        ----------
        amplitude, latency : ndarray, shape (n_trials, n_sources)
            From :meth:`drives`, one row per trial.
        rng : numpy.random.Generator
        variability : float
            Scales the gain and latency jitter (0 = identical trials).

        Returns
        -------
        ndarray, shape (n_trials, n_channels, n_times), float32
        """
        n, k = amplitude.shape
        v = float(variability)
        gain = np.exp(v * (0.2 * rng.standard_normal((n, 1)) + 0.15 * rng.standard_normal((n, k))))
        shift = v * (0.006 * rng.standard_normal((n, 1)) + self._jitter * rng.standard_normal((n, k)))
        wave = self.waveforms(amplitude * gain, latency + shift)
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
    image_size : int
        Side of procedural images in pixels.
    noise_scale : float
        Multiplies the background activity (1.0, the default = realistic levels of :mod:`vibe_rt.data.noise`:
        single-trial rms about 14 uV for things-eeg2; the embedded model was trained at 0.4, see
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
    image_size: int = 128
    noise_scale: float = 1.0
    variability: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def get_montage(self) -> Montage:
        """The montage object."""
        return get_montage(self.montage) if isinstance(self.montage, str) else Montage.from_dict(self.montage)

    def resolved(self) -> "SimulationConfig":
        """A copy with the per-montage defaults filled in and values checked."""
        name = self.montage if isinstance(self.montage, str) else self.get_montage().name
        d = _PRESET_SIZES.get(name, _PRESET_SIZES["things-eeg2"])
        out = SimulationConfig(**{**asdict(self)})
        out.n_train = d[0] if self.n_train is None else int(self.n_train)
        out.train_reps = d[1] if self.train_reps is None else int(self.train_reps)
        out.n_test = d[2] if self.n_test is None else int(self.n_test)
        out.test_reps = d[3] if self.test_reps is None else int(self.test_reps)
        for k in ("n_train", "train_reps", "n_test", "test_reps"):
            if getattr(out, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(out, k)}")
        if out.noise_scale < 0 or out.variability < 0:
            raise ConfigError("noise_scale and variability must be >= 0")
        return out


def _image_sets(cfg: SimulationConfig, out_dir: Path) -> tuple[list[Path], list[Path], list[dict]]:
    """Write (or list) the images of both splits; returns train paths, test paths, per-image parameters."""
    if cfg.image_dir:
        files = list_images(cfg.image_dir)
        need = cfg.n_test + 1
        if len(files) < need:
            raise DataError(f"{cfg.image_dir} has {len(files)} images; need at least n_test + 1 = {need}")
        order = np.random.default_rng([cfg.seed, 10]).permutation(len(files))
        test = [files[i] for i in order[: cfg.n_test]]
        train = [files[i] for i in order[cfg.n_test: cfg.n_test + cfg.n_train]]
        return train, test, [{"kind": "user"} for _ in train + test]
    params = []
    paths: dict[str, list[Path]] = {"train": [], "test": []}
    for split, n, tag in (("test", cfg.n_test, 11), ("train", cfg.n_train, 12)):
        for i in range(n):
            img, p = make_stimulus(np.random.default_rng([cfg.seed, tag, i]), cfg.image_size)
            path = out_dir / "images" / split / f"{split}_{i + 1:05d}.png"
            write_image(path, img)
            paths[split].append(path)
            params.append({"split": split, "file": path.name, **p})
    return paths["train"], paths["test"], params


def baseline_mask(times: np.ndarray) -> np.ndarray:
    """Samples of the baseline window, ``tmin..0`` s inclusive (MNE's ``baseline=(None, 0)``, as THINGS-EEG2)."""
    return (times <= 1e-9) if times[0] < 0 else np.zeros(len(times), bool)


def _simulate_split(model: EvokedModel, noise: BackgroundNoise, amp: np.ndarray, lat: np.ndarray, reps: int,
                    out: np.ndarray, rng: np.random.Generator, variability: float, block: int = 512) -> None:
    """Fill ``out`` (n_images, reps, C, T) with evoked trials plus background, in random trial order."""
    m = model.montage
    n_img = amp.shape[0]
    t = m.n_times
    gap = max(1, t // 4)
    base = baseline_mask(m.times)
    order = rng.permutation(n_img * reps)
    for start in range(0, len(order), block):
        idx = order[start: start + block]
        img, rep = np.divmod(idx, reps)
        trials = model.trials(amp[img], lat[img], rng, variability)
        bg = noise.generate(len(idx) * (t + gap)).reshape(len(idx), t + gap, -1)[:, :t].transpose(0, 2, 1)
        x = trials + bg
        if base.any():
            x -= x[..., base].mean(-1, keepdims=True)
        out[img, rep] = x


def simulate_dataset(config: SimulationConfig | None = None, out_dir: str | os.PathLike = "data/simulated",
                     ) -> tuple[EpochsDataset, EpochsDataset]:
    """Simulate a THINGS-like dataset: images, training and test epochs, noise ceiling.

    Parameters
    ----------
    config : SimulationConfig | None
        What to build; default ``SimulationConfig()`` (things-eeg2, 3000 x 4 training, 200 x 80 test trials).
    out_dir : path-like
        Output folder. Layout::

            images/{train,test}/*.png     procedural stimuli (not written for a user image_dir)
            images.json                   drawn stimulus parameters per image
            train/epochs.npy, dataset.json   EpochsDataset (n_train, train_reps, C, T), SI units
            test/epochs.npy, dataset.json    EpochsDataset (n_test, test_reps, C, T)
            test/evoked_true.npy          noise-free ground truth (n_test, C, T)
            test/noise_ceiling.npz        lower/upper maps (C, T), split-half protocol of REFERENCE.md
            simulation.json               config, model, timings, noise-ceiling means

    Returns
    -------
    train, test : EpochsDataset
        Memory-mapped from the written files.
    """
    cfg = (config or SimulationConfig()).resolved()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    montage = cfg.get_montage()
    t0 = time.perf_counter()
    logger.info("simulating %s: %d x %d training, %d x %d test trials into %s", montage.name, cfg.n_train,
                cfg.train_reps, cfg.n_test, cfg.test_reps, out_dir)
    train_paths, test_paths, params = _image_sets(cfg, out_dir)
    (out_dir / "images.json").write_text(json.dumps(params))
    t_images = time.perf_counter() - t0

    model = EvokedModel(montage)
    unit = montage.unit
    timings = {"images_s": t_images}
    noise = BackgroundNoise(montage, montage.sfreq, seed=cfg.seed, scale=cfg.noise_scale)
    rng = np.random.default_rng([cfg.seed, 20])
    result = {}
    for split, paths, reps in (("test", test_paths, cfg.test_reps), ("train", train_paths, cfg.train_reps)):
        t1 = time.perf_counter()
        drives = [model.drives(read_image(p)) for p in paths]
        amp = np.array([d[0] for d in drives])
        lat = np.array([d[1] for d in drives])
        split_dir = out_dir / split
        split_dir.mkdir(exist_ok=True)
        shape = (len(paths), reps, montage.n_channels, montage.n_times)
        arr = np.lib.format.open_memmap(split_dir / "epochs.npy", mode="w+", dtype=np.float32, shape=shape)
        _simulate_split(model, noise, amp, lat, reps, arr, rng, cfg.variability)
        arr.flush()
        meta = {"simulated": True, "seed": cfg.seed, "sources": model.source_names}
        if split == "test":
            truth = (model.gain @ model.waveforms(amp, lat)).astype(np.float32)
            if baseline_mask(montage.times).any():
                truth -= truth[..., baseline_mask(montage.times)].mean(-1, keepdims=True)
            np.save(split_dir / "evoked_true.npy", truth, allow_pickle=False)
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
