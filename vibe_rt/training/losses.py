"""Training losses: reconstruction MSE, Gaussian KL divergence with warm-up, sliced Wasserstein distance.

Each loss is implemented once and used by both training stages and the ablations; the KL divergence belongs to
the TSC-VAE's posterior and lives with it (:func:`vibe_rt.models.vae.kl_divergence`), its warm-up lives here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.vae import kl_divergence

__all__ = [
    "mse_loss",
    "kl_divergence",
    "kl_weight",
    "random_projections",
    "sliced_wasserstein_distance",
]


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements.

    Parameters
    ----------
    pred, target : Tensor
        Same shape, any number of dimensions.

    Returns
    -------
    Tensor
        Scalar.
    """
    return F.mse_loss(pred, target, reduction="mean")


def kl_weight(step: int, *, beta: float, warmup_steps: int) -> float:
    """KL weight with a linear warm-up from 0 to ``beta`` over ``warmup_steps`` optimiser steps.

    Parameters
    ----------
    step : int
        Optimiser steps done so far (0-based).
    beta : float
        Final weight.
    warmup_steps : int
        Length of the ramp; 0 gives ``beta`` from the first step.
    """
    if warmup_steps <= 0:
        return float(beta)
    return float(beta) * min(1.0, (step + 1) / warmup_steps)


def random_projections(
    dim: int,
    n_projections: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Directions drawn uniformly on the unit sphere.

    Parameters
    ----------
    dim : int
        Dimension of the space.
    n_projections : int
        Number of directions.
    generator : torch.Generator | None
        Random generator (CPU); None uses the global one.
    device, dtype
        Of the returned tensor.

    Returns
    -------
    Tensor, shape (dim, n_projections)
        Unit-norm columns (the layout of POT's ``get_random_projections``).
    """
    theta = torch.randn(dim, n_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    return theta.to(device=device, dtype=dtype)


def sliced_wasserstein_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_projections: int = 64,
    p: float = 2.0,
    projections: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Monte-Carlo sliced Wasserstein distance between two equally weighted empirical distributions.

    ``SWD_p = (mean_theta W_p^p(theta # x, theta # y))^(1/p)``: each sample set is projected on random unit
    directions ``theta``; per direction, the 1-D Wasserstein distance between the projections is computed by
    sorting (exact for equal sample counts; for unequal counts both quantile functions are compared on the
    union of their breakpoints). Differentiable with respect to ``x`` and ``y``.

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Samples of the first distribution (e.g. predicted latents, flattened).
    y : Tensor, shape (m, d)
        Samples of the second distribution (e.g. target latents).
    n_projections : int
        Number of random directions (ignored when ``projections`` is given).
    p : float
        Order of the Wasserstein distance.
    projections : Tensor, shape (d, n_projections) | None
        Explicit unit directions (columns), e.g. to compare with POT's
        ``ot.sliced.sliced_wasserstein_distance(..., projections=...)``.
    generator : torch.Generator | None
        Generator for drawing the directions when ``projections`` is None.

    Returns
    -------
    Tensor
        Scalar.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (n, d) and (m, d) with the same d; got {tuple(x.shape)}, {tuple(y.shape)}")
    if projections is None:
        projections = random_projections(
            x.shape[1], n_projections, generator=generator, device=x.device, dtype=x.dtype
        )
    projections = projections.to(device=x.device, dtype=x.dtype)
    xp = torch.sort(x @ projections, dim=0).values  # (n, P)
    yp = torch.sort(y @ projections, dim=0).values  # (m, P)
    n, m = xp.shape[0], yp.shape[0]
    if n == m:
        cost = (xp - yp).abs().pow(p).mean(dim=0)  # W_p^p per direction
    else:
        # Quantile functions are step functions on [0, 1]: integrate |Fx^-1 - Fy^-1|^p over the merged grid.
        qx = torch.arange(1, n + 1, device=x.device, dtype=x.dtype) / n
        qy = torch.arange(1, m + 1, device=x.device, dtype=x.dtype) / m
        grid = torch.sort(torch.cat([qx, qy])).values
        widths = torch.diff(torch.cat([grid.new_zeros(1), grid]))
        mid = grid - widths / 2
        ix = torch.clamp(torch.searchsorted(qx, mid), max=n - 1)
        iy = torch.clamp(torch.searchsorted(qy, mid), max=m - 1)
        cost = ((xp[ix] - yp[iy]).abs().pow(p) * widths[:, None]).sum(dim=0)
    return cost.mean().pow(1.0 / p)

