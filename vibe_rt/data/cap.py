"""Full-cap responses: the model's channels extended to any cap through the simulator's dipoles.

The model predicts its own channels (things-eeg2: 17 posterior ones). A cap (a device profile's, or the same
channels on a synthetic subject's head) gets a physically consistent response in one fixed matrix, computed once
at the start of a stream and applied per epoch::

    cap = P @ model,   P = a * G_cap W,   W = G_m^T (G_m G_m^T + lambda * tr(G_m G_m^T) / C_m * I)^-1

``G_m`` (model channels x dipoles) and ``G_cap`` (cap channels x dipoles) are the sensor signals of the
simulator's dipoles (:func:`vibe_rt.data.simulate.default_sources`, fixed orientations, scaled by their moments)
through the spherical forward model; ``W`` is the minimum-norm (Tikhonov-regularised least-squares) estimate of
the dipole activity behind the model's channels, weighted by the dipoles' moments. ``G_m`` is always the
template head (the model was trained on it); ``G_cap`` is the subject's head, with its median dipole-to-cap gain
kept at the template's (the subject's ``amplitude_scale`` ``a`` sets the level: see :mod:`vibe_rt.data.subject`).
A cap electrode that is one of the model's (same label, within 1 mm) also keeps the part of the prediction the
dipoles do not explain, ``(I - G_m W)``: on the model's own channels and the template head ``P`` is the identity,
so ``--subject`` alone changes a prediction only by what the subject's head and amplitude change.

The projection reproduces the simulator's own cap-wide topography: tests/test_devices.py checks the correlation
over the cap at the P1 and N1 peaks against :meth:`EvokedModel.evoked` on the cap and the amplitude ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..montage import Montage
from ._forward import TEMPLATE_HEAD, HeadModel, leadfield
from .subject import SyntheticSubject

#: Regularisation relative to the mean eigenvalue of G_m G_m^T: small enough to reproduce the simulator's fields
#: (correlation > 0.97 at the peaks), large enough that errors of a model's prediction are not amplified.
REGULARIZATION = 0.01


def source_gain(montage: Montage, sources: Sequence, head: HeadModel = TEMPLATE_HEAD) -> np.ndarray:
    """Sensor signal (SI units) per unit drive of each dipole, shape (n_channels, n_sources).

    ``sources`` have ``position`` (m, relative to the head centre), ``orientation`` and ``moment`` (nAm), like
    :class:`vibe_rt.data.simulate.Source`.
    """
    pos = np.array([s.position for s in sources], dtype=float)
    ori = np.array([s.orientation for s in sources], dtype=float)
    ori /= np.linalg.norm(ori, axis=1, keepdims=True)
    moments = np.array([s.moment for s in sources], dtype=float) * 1e-9
    return np.einsum("cnk,nk->cn", leadfield(montage, pos, head), ori) * moments


@dataclass(frozen=True)
class CapProjection:
    """The fixed (cap x model) matrix of a stream and how it was made.

    Attributes
    ----------
    matrix : ndarray, shape (n_cap, n_model)
        ``cap_epoch = matrix @ model_epoch``.
    cap : Montage
        The cap's channels (rows).
    n_sources : int
        Dipoles the model's channels are explained by.
    regularization : float
        ``lambda`` (relative).
    amplitude_scale : float
        The subject's evoked amplitude scale folded into ``matrix`` (1 without subject).
    """

    matrix: np.ndarray
    cap: Montage
    n_sources: int
    regularization: float
    amplitude_scale: float

    def describe(self) -> str:
        """One line for the log and the stream's meta-data."""
        return (f"minimum-norm through {self.n_sources} dipoles (lambda {self.regularization:g}), "
                f"{self.matrix.shape[1]} model -> {self.matrix.shape[0]} cap channels"
                + (f", amplitude x{self.amplitude_scale:.3f}" if self.amplitude_scale != 1.0 else ""))


def cap_projection(model: Montage, cap: Montage, *, subject: SyntheticSubject | None = None,
                   sources: Sequence | None = None, regularization: float = REGULARIZATION) -> CapProjection:
    """The matrix that turns a prediction on ``model``'s channels into the response on ``cap`` (module docstring).

    Parameters
    ----------
    model : Montage
        The model's channels (template head).
    cap : Montage
        The channels to stream (a device's cap, or the model's own).
    subject : SyntheticSubject | None
        Whose head the cap sits on, and their evoked amplitude scale; None: the template.
    sources : sequence | None
        Dipoles; default :func:`vibe_rt.data.simulate.default_sources`.
    regularization : float
        Relative Tikhonov ``lambda`` (> 0).
    """
    from .simulate import default_sources

    sources = tuple(sources or default_sources())
    g_model = source_gain(model, sources)
    g_cap = source_gain(cap, sources)
    scale = 1.0
    if subject is not None:
        g_subject = source_gain(cap, sources, subject.head)
        level = np.median(np.linalg.norm(g_cap, axis=0) / np.maximum(np.linalg.norm(g_subject, axis=0), 1e-30))
        g_cap = g_subject * level
        scale = subject.amplitude_scale
    gram = g_model @ g_model.T
    lam = regularization * np.trace(gram) / len(gram)
    inverse = g_model.T @ np.linalg.inv(gram + lam * np.eye(len(gram)))
    matrix = g_cap @ inverse
    residual = np.eye(model.n_channels) - g_model @ inverse  # what the dipoles do not explain
    for row, col in _shared_electrodes(model, cap):
        matrix[row] += residual[col]
    return CapProjection(matrix=scale * matrix, cap=cap, n_sources=len(sources), regularization=regularization,
                         amplitude_scale=scale)


def _shared_electrodes(model: Montage, cap: Montage, tolerance_m: float = 0.001) -> list[tuple[int, int]]:
    """(cap row, model column) of the cap electrodes that are model electrodes (same label and position)."""
    index = {c.lower(): i for i, c in enumerate(model.ch_names)}
    pairs = []
    for row, name in enumerate(cap.ch_names):
        col = index.get(name.lower())
        if col is not None and np.linalg.norm(cap.positions[row] - model.positions[col]) <= tolerance_m:
            pairs.append((row, col))
    return pairs


__all__ = ["CapProjection", "REGULARIZATION", "cap_projection", "source_gain"]
