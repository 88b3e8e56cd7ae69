"""Where recording artifacts show on the scalp: ocular topographies from dipoles at the eyes, and distances along
the scalp for the artifacts that a distance-decay rule describes.

:func:`artifact_topographies` gives, for any EEG montage, the plain arrays that
:class:`vibe_rt.stream.artifacts.ArtifactInjector` scales to the stated amplitudes (:func:`vibe_rt.app.build_stream`
passes them in; stream/ does not import data/):

- ``blink``, ``saccade``: :func:`ocular_topographies`, through the spherical head model of
  :mod:`vibe_rt.data._forward` (the one the background and the evoked responses use);
- ``emg-left``, ``emg-right``: weights ``exp(-d / 30 mm)`` of the distance ``d`` along the scalp from the
  temporalis muscle under T7 / T8 (1 there). A distance-decay rule, not the head model: the muscles lie outside
  the skull, where the sphere model admits no sources, and their high-frequency fields stay local (Goncharova
  et al. 2003: EMG is largest at the temporal and frontal sites over the muscles);
- ``arc_mm``: (C, C) distances along the scalp between the channels (great circles on the head sphere, mm),
  over which slow sweat drifts spread from an electrode.

Ocular model
------------
- **Sources**: one equivalent dipole per eye, at the centre of the eyeball, 32 mm either side of the midline,
  22 mm behind and 12 mm below the nasion of MNE's ``colin27_1005`` head frame (nasion at (0, 114, 0) mm). The
  orbits lie at the edge of the spherical head (98 mm from its centre), outside its innermost shell where the
  sphere model admits sources, so both dipoles are moved radially inwards to 87 % of the head radius
  (85 mm), just inside the brain shell (88 mm). Berg & Scherg (1991) modelled eye movements and blinks the same
  way: equivalent dipoles at the eyes in a spherical head.
- **Blink**: the lid sliding over the positively charged cornea (Iwasaki et al. 2005: the lid, more than the
  small eyeball rotation, makes the blink potential; positive, maximal at Fp1/Fp2). Dipole orientation 75 deg from
  vertical towards the front (15 deg above straight ahead). With linked-mastoid reference it gives, relative to
  the Fp1/Fp2 mean, about Fz 0.45, Cz 0.23, Pz 0.13, Oz 0.05 (colin27 positions): the frontal-to-posterior fall
  of blink propagation factors (Gratton, Coles & Donchin 1983; Corby & Kopell 1972: a blink shows at Cz against
  linked mastoids with 9.3 % of its vertical EOG).
- **Horizontal saccade**: the corneo-retinal dipole of both eyes turns with the gaze; for a rotation of
  ``theta`` the change is ``p0 * theta`` along X (right), so the topography is that of X-oriented dipoles at
  both eyes: positive at F8 and negative at F7 for a rightward saccade, linear in the angle up to about
  +-45 deg (Geddes et al. 1973).
- **Reference**: linked mastoids (TP9/TP10), the reference in which blink and EOG amplitudes are usually
  reported. Against the stream's reference-free background this adds one common-mode term to all channels,
  which any re-referencing removes.
- **Normalisation**: the blink topography is 1 at the mean of Fp1 and Fp2, the saccade topography is 1 at F8
  (half of F8 - F7) per degree. Fp1, Fp2, F7, F8, TP9 and TP10 are taken from the streamed montage when it has
  them, else from ``colin27_1005``, so the same amplitude means the same thing for 17 posterior channels (where
  blinks are then small, as in real recordings) and for a full cap.

References
----------
Berg P, Scherg M (1991). Dipole models of eye movements and blinks. Electroencephalogr Clin Neurophysiol
79:36-44.
Iwasaki M, Kellinghaus C, Alexopoulos AV, et al. (2005). Effects of eyelid closure, blinks, and eye movements on
the electroencephalogram. Clin Neurophysiol 116:878-885.
Gratton G, Coles MGH, Donchin E (1983). A new method for off-line removal of ocular artifact.
Electroencephalogr Clin Neurophysiol 55:468-484.
Corby JC, Kopell BS (1972). Differential contributions of blinks and vertical eye movements as artifacts in EEG
recording. Psychophysiology 9:640-644.
Geddes LA, Bourland JD, Wise G, Steinberg R (1973). Linearity of the horizontal component of the
electro-oculogram. Med Biol Eng 11:73-77.
Goncharova II, McFarland DJ, Vaughan TM, Wolpaw JR (2003). EMG contamination of EEG: spectral and topographical
characteristics. Clin Neurophysiol 114:1580-1593.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..montage import TEMPLATE_HEAD_CENTRE, TEMPLATE_HEAD_RADIUS, Montage, make_montage
from ._forward import leadfield

#: Eyeball centres in head coordinates (m) of MNE's colin27 frame: left, right.
EYE_CENTRES = np.array([[-0.032, 0.092, -0.012], [0.032, 0.092, -0.012]])
#: Distance of the equivalent dipoles from the head-sphere centre, as a fraction of its radius (inside the brain
#: shell, 0.90).
EYE_ECCENTRICITY = 0.87
#: Blink dipole direction: 75 deg from vertical towards the front.
BLINK_ORIENTATION = np.array([0.0, np.sin(np.radians(75.0)), np.cos(np.radians(75.0))])
#: Channels the topographies are normalised and referenced on.
REFERENCE_SITES = ("Fp1", "Fp2", "F7", "F8", "TP9", "TP10")
#: Electrodes over the left and right temporalis muscle (EMG sites).
EMG_SITES = ("T7", "T8")
#: Length constant of the EMG fall-off along the scalp (mm).
EMG_SPREAD_MM = 30.0
_REFERENCE_MONTAGE = "colin27_1005"


def eye_dipole_positions() -> np.ndarray:
    """The two equivalent eye dipoles (m, relative to the head-sphere centre), moved radially inwards to
    :data:`EYE_ECCENTRICITY` of the head radius."""
    rel = EYE_CENTRES - TEMPLATE_HEAD_CENTRE
    return rel / np.linalg.norm(rel, axis=1, keepdims=True) * TEMPLATE_HEAD_RADIUS * EYE_ECCENTRICITY


def ocular_topographies(montage: Montage) -> dict[str, np.ndarray]:
    """Blink and horizontal-saccade topographies of an EEG montage (see the module docstring).

    Parameters
    ----------
    montage : Montage
        EEG channels with positions in head coordinates.

    Returns
    -------
    dict
        ``"blink"``: (C,) potential per channel relative to the Fp1/Fp2 mean (dimensionless, linked-mastoid
        reference); ``"saccade"``: (C,) potential per degree of rightward rotation relative to F8.
    """
    if montage.modality != "EEG":
        raise ConfigError(f"ocular artifacts are modelled for EEG montages; {montage.name!r} is MEG")
    n = montage.n_channels
    names = list(montage.ch_names) + [f"ref-{s}" for s in REFERENCE_SITES]
    positions = np.vstack([montage.positions, _site_positions(montage, REFERENCE_SITES)])
    full = Montage(montage.name, tuple(names), ("eeg",) * len(names), positions, montage.sfreq, montage.tmin,
                   montage.n_times)
    gain = leadfield(full, eye_dipole_positions())  # (C + 6, 2 eyes, 3 axes), V per A m
    site = {s: n + i for i, s in enumerate(REFERENCE_SITES)}

    def referenced(orientation: np.ndarray) -> np.ndarray:
        v = (gain @ orientation).sum(axis=1)  # both eyes
        return v - 0.5 * (v[site["TP9"]] + v[site["TP10"]])

    blink = referenced(BLINK_ORIENTATION)
    blink /= 0.5 * (blink[site["Fp1"]] + blink[site["Fp2"]])
    saccade = referenced(np.array([1.0, 0.0, 0.0]))
    saccade /= 0.5 * (saccade[site["F8"]] - saccade[site["F7"]])
    return {"blink": blink[:n].copy(), "saccade": saccade[:n].copy()}


def _site_positions(montage: Montage, sites: tuple[str, ...]) -> np.ndarray:
    """Positions (m) of the named electrodes: the montage's own where it has them (any case), else those of
    ``colin27_1005``."""
    lower = {n.lower(): i for i, n in enumerate(montage.ch_names)}
    missing = [s for s in sites if s.lower() not in lower]
    ref = dict(zip(missing, make_montage(_REFERENCE_MONTAGE, missing, sfreq=montage.sfreq, tmin=montage.tmin,
                                         n_times=montage.n_times).positions)) if missing else {}
    return np.array([montage.positions[lower[s.lower()]] if s.lower() in lower else ref[s] for s in sites])


def _directions(positions: np.ndarray) -> np.ndarray:
    """Unit vectors from the head-sphere centre to ``positions`` (m)."""
    rel = np.asarray(positions, float) - TEMPLATE_HEAD_CENTRE
    return rel / np.linalg.norm(rel, axis=1, keepdims=True)


def scalp_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances (mm) along the head sphere between positions ``a`` (n, 3) and ``b`` (m, 3) in head coordinates
    (great circles of radius 98 mm through their directions from the centre; caps of another size compare by
    direction)."""
    cos = np.clip(_directions(a) @ _directions(b).T, -1.0, 1.0)
    return np.arccos(cos) * TEMPLATE_HEAD_RADIUS * 1e3


def artifact_topographies(montage: Montage) -> dict[str, np.ndarray]:
    """Every spatial pattern the stream's artifacts need, for an EEG montage (see the module docstring).

    Returns
    -------
    dict
        ``blink``, ``saccade`` (C,) from :func:`ocular_topographies`; ``emg-left``, ``emg-right`` (C,) weights;
        ``arc_mm`` (C, C) distances between the channels along the scalp.
    """
    out = ocular_topographies(montage)
    pos = np.asarray(montage.positions, float)
    sites = _site_positions(montage, EMG_SITES)
    emg = np.exp(-scalp_distances(sites, pos) / EMG_SPREAD_MM)
    out["emg-left"], out["emg-right"] = emg[0], emg[1]
    out["arc_mm"] = scalp_distances(pos, pos)
    return out


__all__ = ["BLINK_ORIENTATION", "EMG_SITES", "EMG_SPREAD_MM", "EYE_CENTRES", "EYE_ECCENTRICITY",
           "artifact_topographies", "eye_dipole_positions", "ocular_topographies", "scalp_distances"]
