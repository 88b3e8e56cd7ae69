"""Baselines for the encoding evaluation.

- :class:`RidgeEncoder`: the linearizing encoding model used with THINGS-EEG2 (image features -> flattened
  epoch), closed-form ridge regression through one SVD, the penalty chosen by generalised cross-validation
  (GCV, Golub et al. 1979) over a log grid, shared by all outputs or chosen per output.
- :class:`PCARidgeEncoder`: the Gifford et al. (2022) variant: standardised features -> PCA (fit on the
  training features) -> :class:`RidgeEncoder`.
- :class:`MLPMapper`: an ablation of the Q-Former: the mean-pooled token (or all tokens, flattened) -> 2-layer
  MLP -> VAE latent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["RidgeEncoder", "PCARidgeEncoder", "MLPMapper", "ridge_features"]


def ridge_features(tokens: np.ndarray, pooled: np.ndarray | None, kind: str) -> np.ndarray:
    """Image features for the ridge baseline.

    Parameters
    ----------
    tokens : ndarray, shape (N, n_tokens, D)
        Image tokens (the Q-Former's input).
    pooled : ndarray, shape (N, E) | None
        Pooled CLIP image embedding.
    kind : {"pooled", "tokens", "both"}
        ``tokens`` flattens all tokens, ``both`` concatenates them with the pooled embedding.

    Returns
    -------
    ndarray, shape (N, F) float64
    """
    n = tokens.shape[0]
    flat = np.asarray(tokens, np.float64).reshape(n, -1)
    if kind == "tokens":
        return flat
    if pooled is None:
        raise ValueError("pooled features are needed for kind='pooled'/'both'")
    pooled = np.asarray(pooled, np.float64).reshape(n, -1)
    if kind == "pooled":
        return pooled
    if kind == "both":
        return np.concatenate([flat, pooled], axis=1)
    raise ValueError(f"unknown ridge feature kind {kind!r}; use 'pooled', 'tokens' or 'both'")


@dataclass
class RidgeEncoder:
    """Ridge regression from features to (flattened) responses, penalty by GCV.

    Parameters
    ----------
    alphas : sequence of float | None
        Candidate penalties, relative to the largest squared singular value of the (standardised) features;
        None uses ``logspace(-6, 2, 33)``.
    per_target : bool
        Choose the penalty per output column instead of one shared penalty.
    standardize : bool
        Scale each feature to unit variance (computed on the training data) before fitting.

    Attributes
    ----------
    alpha_ : float | ndarray
        Chosen penalty/penalties (absolute).
    gcv_ : ndarray
        Mean GCV error per candidate penalty (shared case) or per candidate and target.
    """

    alphas: tuple[float, ...] | None = None
    per_target: bool = False
    standardize: bool = True

    def fit(self, x: np.ndarray, y: np.ndarray) -> RidgeEncoder:
        """Fit on features ``x`` (N, F) and targets ``y`` (N, ...) (flattened internally)."""
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        self.out_shape_ = y.shape[1:]
        y = y.reshape(y.shape[0], -1)
        n = x.shape[0]
        self.x_mean_ = x.mean(0)
        self.x_scale_ = x.std(0) if self.standardize else np.ones(x.shape[1])
        self.x_scale_[self.x_scale_ < 1e-12] = 1.0
        self.y_mean_ = y.mean(0)
        xc = (x - self.x_mean_) / self.x_scale_
        yc = y - self.y_mean_
        u, s, vt = np.linalg.svd(xc, full_matrices=False)
        uty = u.T @ yc  # (r, K)
        resid_perp = (yc * yc).sum(0) - (uty * uty).sum(0)  # part of y outside the span of x, per target
        rel = np.logspace(-6, 2, 33) if self.alphas is None else np.asarray(self.alphas, np.float64)
        grid = rel * (s[0] ** 2 if s.size else 1.0)
        s2 = s**2
        errs = np.empty((grid.size, y.shape[1]))
        for i, a in enumerate(grid):
            shrink = a / (s2 + a)  # (r,)
            rss = resid_perp + ((shrink[:, None] * uty) ** 2).sum(0)
            dof = (s2 / (s2 + a)).sum() + 1.0  # +1 for the intercept
            errs[i] = rss / n / max(1.0 - dof / n, 1e-6) ** 2
        if self.per_target:
            best = errs.argmin(0)
            alpha = grid[best]
            self.alpha_ = alpha
            coef_r = (s[:, None] / (s2[:, None] + alpha[None, :])) * uty
        else:
            best = int(errs.mean(1).argmin())
            alpha = grid[best]
            self.alpha_ = float(alpha)
            coef_r = (s / (s2 + alpha))[:, None] * uty
        self.gcv_ = errs.mean(1) if not self.per_target else errs
        self.alpha_grid_ = grid
        self.coef_ = vt.T @ coef_r  # (F, K) in standardised feature space
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predict responses for features ``x`` (N, F); shape (N, *out_shape)."""
        xc = (np.asarray(x, np.float64) - self.x_mean_) / self.x_scale_
        y = xc @ self.coef_ + self.y_mean_
        return y.reshape((x.shape[0], *self.out_shape_))


@dataclass
class PCARidgeEncoder:
    """Linearising encoding on PCA components of the image features (Gifford et al. 2022).

    As in the THINGS-EEG2 encoding models (Gifford AT, Dwivedi K, Roig G, Cichy RM (2022). A large and rich
    EEG dataset for modeling human visual object recognition. *NeuroImage* 264:119754): the features are
    standardised and reduced by PCA, both fit on the training images only, and a linear regression maps the
    components to the flattened epoch; here that regression is :class:`RidgeEncoder` on the unscaled
    component scores (the GCV grid reaches ordinary least squares; the penalty shrinks the weak components
    most).

    Parameters
    ----------
    n_components : int
        Components kept, capped at ``min(n_train - 1, n_features)``.
    alphas, per_target :
        Passed to :class:`RidgeEncoder`.

    Attributes
    ----------
    components_ : ndarray, shape (k, F)
        Principal axes in standardised feature space.
    explained_variance_ratio_ : ndarray, shape (k,)
        Share of the standardised training features' variance per kept component.
    ridge_ : RidgeEncoder
        The regression on the component scores.
    """

    n_components: int = 100
    alphas: tuple[float, ...] | None = None
    per_target: bool = False

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Component scores (N, k) of features ``x`` (N, F), with the training standardisation and axes."""
        return ((np.asarray(x, np.float64) - self.x_mean_) / self.x_scale_) @ self.components_.T

    def fit(self, x: np.ndarray, y: np.ndarray) -> PCARidgeEncoder:
        """Fit the standardisation, the PCA and the ridge on training features ``x`` (N, F) and targets ``y``."""
        x = np.asarray(x, np.float64)
        self.x_mean_ = x.mean(0)
        self.x_scale_ = x.std(0)
        self.x_scale_[self.x_scale_ < 1e-12] = 1.0
        _, s, vt = np.linalg.svd((x - self.x_mean_) / self.x_scale_, full_matrices=False)
        k = max(1, min(self.n_components, x.shape[0] - 1, x.shape[1]))
        self.components_ = vt[:k]
        self.explained_variance_ratio_ = s[:k] ** 2 / max(float((s**2).sum()), 1e-300)
        self.ridge_ = RidgeEncoder(self.alphas, self.per_target, standardize=False).fit(self.transform(x), y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predict responses for features ``x`` (N, F); shape (N, *out_shape)."""
        return self.ridge_.predict(self.transform(x))

    @property
    def alpha_(self) -> np.ndarray:
        """The ridge penalty (or penalties) chosen by GCV on the component scores."""
        return self.ridge_.alpha_


class MLPMapper(nn.Module):
    """Ablation mapper: image tokens -> MLP -> latent tokens.

    Parameters
    ----------
    token_dim : int
        Image token width D.
    n_queries : int
        Latent tokens of the VAE.
    out_dim : int
        Latent width of the VAE.
    hidden : int
        Hidden width.
    dropout : float
        Dropout after the hidden layer.
    n_tokens : int | None
        None: the MLP sees the mean-pooled token (``D`` inputs); an int: it sees all ``n_tokens`` tokens
        flattened (``n_tokens * D`` inputs), the same information as the Q-Former.
    """

    def __init__(self, token_dim: int, n_queries: int, out_dim: int, hidden: int = 512, dropout: float = 0.1,
                 n_tokens: int | None = None):
        super().__init__()
        self.n_queries = n_queries
        self.out_dim = out_dim
        self.pooled = n_tokens is None
        width = token_dim if n_tokens is None else n_tokens * token_dim
        self.norm = nn.LayerNorm(token_dim)
        self.net = nn.Sequential(
            nn.Linear(width, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_queries * out_dim),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Map tokens (B, N, D) to latents (B, n_queries, out_dim)."""
        x = self.norm(tokens)
        x = x.mean(dim=1) if self.pooled else x.flatten(1)
        return self.net(x).reshape(tokens.shape[0], self.n_queries, self.out_dim)
