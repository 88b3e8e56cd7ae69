"""Spherical-head forward model shared by the evoked simulator and the background noise.

One MNE forward solution per montage, computed once and kept in memory (well under a second): a sphere head
model (:func:`mne.make_sphere_model`; four shells for EEG, a conductor-only sphere for MEG) and a discrete
source space of fixed points (:func:`mne.setup_volume_source_space` with ``pos=dict(rr=..., nn=...)``), free
orientation. Source points are given relative to the head-sphere centre in metres (X right, Y front, Z up),
so that the same cortical layout serves EEG montages (the template head of :mod:`vibe_rt.montage`, a sphere fitted
to MNE's ``colin27_1005`` head coordinates; positions of MNE's idealised spherical montages are moved into it by
:func:`vibe_rt.montage.template_positions`) and MEG helmets (centre fitted to the sensor positions).

A :class:`HeadModel` describes one head: its size relative to the template (the sphere, the electrodes on it
and the source points all scale about the centre; MEG sensors stay where the helmet is) and the conductivity of
its skull (EEG only). The default is the template head every other part of vibe-rt uses.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..montage import TEMPLATE_HEAD_CENTRE, TEMPLATE_HEAD_RADIUS, Montage

#: Conductivities (S/m) of MNE's four-shell sphere (brain, CSF, skull, scalp; :func:`mne.make_sphere_model`); the
#: template skull is 0.004 S/m, a brain-to-skull ratio of 82.5 (close to Rush & Driscoll 1968's 80).
SPHERE_SIGMAS = (0.33, 1.0, 0.004, 0.33)

_CACHE: dict[tuple, np.ndarray] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class HeadModel:
    """One head in the spherical forward model.

    Attributes
    ----------
    scale : float
        Size relative to the template head (radius 98 mm for EEG): the sphere, the electrodes on it and the
        source points scale about the centre by this factor.
    skull_conductivity : float
        Skull conductivity in S/m (EEG; the brain's is 0.33 S/m, the template's skull 0.004 S/m).
    """

    scale: float = 1.0
    skull_conductivity: float = SPHERE_SIGMAS[2]

    @property
    def brain_to_skull_ratio(self) -> float:
        """Brain conductivity over skull conductivity (template: 82.5)."""
        return SPHERE_SIGMAS[0] / self.skull_conductivity

    @property
    def key(self) -> tuple[float, float]:
        """The values that identify this head (rounded, for caches)."""
        return round(self.scale, 9), round(self.skull_conductivity, 12)


TEMPLATE_HEAD = HeadModel()


def head_sphere(montage: Montage, head: HeadModel = TEMPLATE_HEAD) -> tuple[np.ndarray, float]:
    """Centre (m, head coordinates) and outer radius (m) of the spherical head used for ``montage``."""
    pos = np.asarray(montage.positions, dtype=float)
    if montage.modality == "EEG":
        return TEMPLATE_HEAD_CENTRE.copy(), TEMPLATE_HEAD_RADIUS * head.scale
    # MEG: helmet centre from a least-squares sphere fit to the sensors (linear form |p|^2 = 2 p.c + k)
    a = np.c_[2 * pos, np.ones(len(pos))]
    sol, *_ = np.linalg.lstsq(a, (pos**2).sum(1), rcond=None)
    centre = sol[:3]
    if len(pos) < 20 or not np.all(np.isfinite(centre)) or np.linalg.norm(centre) > 0.08:
        centre = np.zeros(3) if np.linalg.norm(pos.mean(0)) < 0.05 else np.array([0.0, 0.0, 0.04])
    return centre, 0.09


def _montage_key(montage: Montage) -> tuple:
    return (montage.ch_names, montage.ch_types, np.round(np.asarray(montage.positions, float), 6).tobytes())


def leadfield(montage: Montage, rr: np.ndarray, head: HeadModel = TEMPLATE_HEAD) -> np.ndarray:
    """Free-orientation gain matrix for source points ``rr``.

    Parameters
    ----------
    montage : Montage
        Channels (EEG or MEG magnetometers/gradiometers) with positions in head coordinates.
    rr : ndarray, shape (n_sources, 3)
        Source positions in metres relative to the head-sphere centre (:func:`head_sphere`) of the template head
        (they scale with ``head.scale``).
    head : HeadModel
        The head (default: the template).

    Returns
    -------
    gain : ndarray, shape (n_channels, n_sources, 3)
        Sensor signal (V or T per A·m) of a unit dipole along X, Y and Z at each point, channels in montage
        order. Cached in memory per (montage, rr, head).
    """
    rr = np.atleast_2d(np.asarray(rr, dtype=float))
    key = (_montage_key(montage), np.round(rr, 6).tobytes(), head.key)
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    gain = _compute_leadfield(montage, rr, head)
    with _LOCK:
        if len(_CACHE) > 32:
            _CACHE.clear()
        _CACHE[key] = gain
    return gain


def _compute_leadfield(montage: Montage, rr_rel: np.ndarray, head: HeadModel) -> np.ndarray:
    import mne

    centre, radius = head_sphere(montage, head)
    is_eeg = montage.modality == "EEG"
    if is_eeg:
        if head.scale != 1.0:  # the electrodes sit on the scaled scalp
            scaled = centre + head.scale * (np.asarray(montage.positions, float) - centre)
            montage = Montage(montage.name, montage.ch_names, montage.ch_types, scaled, montage.sfreq, montage.tmin,
                              montage.n_times, montage.positions_approximate)
        info = montage.create_info()
        sigmas = (SPHERE_SIGMAS[0], SPHERE_SIGMAS[1], head.skull_conductivity, SPHERE_SIGMAS[3])
        sphere = mne.make_sphere_model(r0=tuple(centre), head_radius=radius, info=info, sigmas=sigmas,
                                       verbose="error")
    else:
        info = montage.create_info()
        sphere = mne.make_sphere_model(r0=tuple(centre), head_radius=None, verbose="error")
    rr = head.scale * rr_rel + centre
    nn = np.tile([0.0, 0.0, 1.0], (len(rr), 1))
    src = mne.setup_volume_source_space(pos=dict(rr=rr, nn=nn), mindist=0.0, exclude=0.0, verbose="error")
    fwd = mne.make_forward_solution(info, None, src, sphere, meg=not is_eeg, eeg=is_eeg, mindist=0.0,
                                    verbose="error")
    if fwd["nsource"] != len(rr):  # pragma: no cover - guarded by the fixed source layouts
        raise RuntimeError(f"forward model kept {fwd['nsource']} of {len(rr)} source points")
    order = [fwd["sol"]["row_names"].index(c) for c in montage.ch_names]
    gain = fwd["sol"]["data"][order].reshape(len(order), len(rr), 3)
    return gain.astype(np.float64)
