"""Tests of the training losses against closed forms and POT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vibe_rt.training.losses import (
    kl_divergence,
    kl_weight,
    mse_loss,
    random_projections,
    sliced_wasserstein_distance,
)

ot = pytest.importorskip("ot")


@pytest.mark.parametrize(("n", "m", "p"), [(64, 64, 2.0), (50, 30, 2.0), (40, 40, 1.0)])
def test_swd_matches_pot(n, m, p):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 12))
    y = rng.normal(loc=0.5, scale=1.5, size=(m, 12))
    proj = ot.sliced.get_random_projections(12, 40, seed=3)
    ref = ot.sliced.sliced_wasserstein_distance(x, y, projections=proj, p=p)
    ours = sliced_wasserstein_distance(
        torch.from_numpy(x), torch.from_numpy(y), projections=torch.from_numpy(proj), p=p
    )
    assert abs(float(ours) - float(ref)) < 1e-5 * max(1.0, float(ref))


def test_swd_properties_and_gradient():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 8, generator=g)
    assert float(sliced_wasserstein_distance(x, x.clone(), generator=g)) < 1e-6
    # a shift by vector v gives SWD_2 = |v| * sqrt(E[cos^2]) = |v| / sqrt(d) in expectation
    v = torch.zeros(8)
    v[0] = 4.0
    d = sliced_wasserstein_distance(x + v, x, n_projections=4000, generator=g)
    assert abs(float(d) - 4.0 / np.sqrt(8)) < 0.1
    y = torch.randn(128, 8, generator=g, requires_grad=True)
    sliced_wasserstein_distance(y, x, generator=g).backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()
    proj = random_projections(8, 16, generator=g)
    assert torch.allclose(proj.norm(dim=0), torch.ones(16), atol=1e-6)


def test_kl_matches_closed_form():
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(5, 4, 3, generator=g)
    logvar = torch.randn(5, 4, 3, generator=g) * 0.3
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0)
    )
    assert torch.allclose(kl_divergence(mu, logvar), ref.reshape(5, -1).sum(1).mean(), atol=1e-5)
    assert float(kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3))) == 0.0


def test_kl_warmup_and_mse():
    assert kl_weight(0, beta=1e-3, warmup_steps=10) == pytest.approx(1e-4)
    assert kl_weight(9, beta=1e-3, warmup_steps=10) == pytest.approx(1e-3)
    assert kl_weight(500, beta=1e-3, warmup_steps=10) == pytest.approx(1e-3)
    assert kl_weight(0, beta=2.0, warmup_steps=0) == 2.0
    a, b = torch.ones(3, 4), torch.zeros(3, 4)
    assert float(mse_loss(a, b)) == 1.0
