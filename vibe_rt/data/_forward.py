"""Spherical-head forward model shared by the evoked simulator and the background noise.

One MNE forward solution per montage, computed once and kept in memory (well under a second): a sphere head
model (:func:`mne.make_sphere_model`; four shells for EEG, a conductor-only sphere for MEG) and a discrete
source space of fixed points (:func:`mne.setup_volume_source_space` with ``pos=dict(rr=..., nn=...)``), free
orientation. Source points are given relative to the head-sphere centre in metres (X right, Y front, Z up),
so that the same cortical layout serves EEG montages (head coordinates of MNE's built-in montages) and MEG
helmets (centre fitted to the sensor positions).
"""

from __future__ import annotations

import threading

import numpy as np

from ..montage import Montage

# Sphere fitted (least squares) to the 340 positions of MNE's ``colin27_1005`` montage in head coordinates:
# centre (-1, 15, 39) mm, radius 98 mm. MNE's built-in montages share this head frame (fiducial based).
EEG_SPHERE_CENTRE = np.array([0.0, 0.015, 0.039])
EEG_SPHERE_RADIUS = 0.098

_CACHE: dict[tuple, np.ndarray] = {}
_LOCK = threading.Lock()


def head_sphere(montage: Montage) -> tuple[np.ndarray, float]:
    """Centre (m, head coordinates) and outer radius (m) of the spherical head used for ``montage``."""
    pos = np.asarray(montage.positions, dtype=float)
    if montage.modality == "EEG":
        return EEG_SPHERE_CENTRE.copy(), EEG_SPHERE_RADIUS
    # MEG: helmet centre from a least-squares sphere fit to the sensors (linear form |p|^2 = 2 p.c + k)
    a = np.c_[2 * pos, np.ones(len(pos))]
    sol, *_ = np.linalg.lstsq(a, (pos**2).sum(1), rcond=None)
    centre = sol[:3]
    if len(pos) < 20 or not np.all(np.isfinite(centre)) or np.linalg.norm(centre) > 0.08:
        centre = np.zeros(3) if np.linalg.norm(pos.mean(0)) < 0.05 else np.array([0.0, 0.0, 0.04])
    return centre, 0.09


def _montage_key(montage: Montage) -> tuple:
    return (montage.ch_names, montage.ch_types, np.round(np.asarray(montage.positions, float), 6).tobytes())


def leadfield(montage: Montage, rr: np.ndarray) -> np.ndarray:
    """Free-orientation gain matrix for source points ``rr``.

    Parameters
    ----------
    montage : Montage
        Channels (EEG or MEG magnetometers/gradiometers) with positions in head coordinates.
    rr : ndarray, shape (n_sources, 3)
        Source positions in metres relative to the head-sphere centre (:func:`head_sphere`).

    Returns
    -------
    gain : ndarray, shape (n_channels, n_sources, 3)
        Sensor signal (V or T per A·m) of a unit dipole along X, Y and Z at each point, channels in montage
        order. Cached in memory per (montage, rr).
    """
    rr = np.atleast_2d(np.asarray(rr, dtype=float))
    key = (_montage_key(montage), np.round(rr, 6).tobytes())
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    gain = _compute_leadfield(montage, rr)
    with _LOCK:
        if len(_CACHE) > 32:
            _CACHE.clear()
        _CACHE[key] = gain
    return gain


def _compute_leadfield(montage: Montage, rr_rel: np.ndarray) -> np.ndarray:
    import mne

    centre, radius = head_sphere(montage)
    info = montage.create_info()
    is_eeg = montage.modality == "EEG"
    if is_eeg:
        sphere = mne.make_sphere_model(r0=tuple(centre), head_radius=radius, info=info, verbose="error")
    else:
        sphere = mne.make_sphere_model(r0=tuple(centre), head_radius=None, verbose="error")
    rr = rr_rel + centre
    nn = np.tile([0.0, 0.0, 1.0], (len(rr), 1))
    src = mne.setup_volume_source_space(pos=dict(rr=rr, nn=nn), mindist=0.0, exclude=0.0, verbose="error")
    fwd = mne.make_forward_solution(info, None, src, sphere, meg=not is_eeg, eeg=is_eeg, mindist=0.0,
                                    verbose="error")
    if fwd["nsource"] != len(rr):  # pragma: no cover - guarded by the fixed source layouts
        raise RuntimeError(f"forward model kept {fwd['nsource']} of {len(rr)} source points")
    order = [fwd["sol"]["row_names"].index(c) for c in montage.ch_names]
    gain = fwd["sol"]["data"][order].reshape(len(order), len(rr), 3)
    return gain.astype(np.float64)
