"""TSC-VAE: a variational auto-encoder of M/EEG epochs built from TSConvPlus blocks (ViBE stage 1).

Encoder: ``(B, C, T)`` -> zero-pad ``T`` to a multiple of ``2 ** len(widths)`` -> TSConvPlus blocks, each halving
time -> per time step, a linear map of all (feature, channel) pairs to ``hidden`` units -> a linear map of the
flattened ``(hidden, T')`` to a Gaussian latent ``(B, latent_tokens, latent_dim)`` (``mu`` and ``logvar``).
Decoder: the mirror image (linear maps, then per level a transposed convolution doubling time followed by a
TSConvPlus block without pooling), a 1x1 convolution to one map, and cropping back to ``T`` samples.
Channels are never pooled: every convolution keeps ``C`` and the dense maps at the bottleneck mix channels. The
spatial kernels run over scalp neighbourhoods derived from the montage's sensor positions
(:func:`~vibe_rt.models.tsconv.scalp_neighbours`), stored in the config so that a checkpoint carries them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..montage import Montage
from ._config import config_from_dict
from .tsconv import TSConvPlus, check_neighbours, check_temporal_kernel, scalp_neighbours

_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(widths=(16, 32, 32), temporal_kernel=7, spatial_kernel=3, latent_tokens=8, latent_dim=32,
                 hidden=64),
    "base": dict(widths=(32, 64, 96), temporal_kernel=9, spatial_kernel=5, latent_tokens=16, latent_dim=32,
                 hidden=128),
}


@dataclass(frozen=True)
class TSCVAEConfig:
    """Shape and size of a :class:`TSCVAE`.

    Parameters
    ----------
    n_channels, n_times : int
        Epoch shape ``(C, T)``; any ``T`` works (padded internally to a multiple of ``2 ** len(widths)``).
    widths : tuple of int
        Feature maps of the successive TSConvPlus blocks; each block halves the time axis.
    neighbours : tuple of tuple of int
        The spatial kernels' scalp neighbourhoods: ``n_channels`` rows of ``k_s`` channel indices, row ``i``
        starting with ``i`` (:func:`~vibe_rt.models.tsconv.scalp_neighbours`; :meth:`for_montage` derives them).
    temporal_kernel : int
        Odd temporal kernel size in samples.
    spatial : {"scalp", "global"}
        ``"scalp"`` (``k_s < n_channels``, TSConvPlus) or ``"global"`` (``k_s == n_channels``, the NICE-style
        ablation).
    latent_tokens, latent_dim : int
        Latent shape per epoch: ``latent_tokens`` vectors of ``latent_dim`` values.
    hidden : int
        Units per time step at the bottleneck, between the convolutions and the latent.
    """

    n_channels: int
    n_times: int
    neighbours: tuple[tuple[int, ...], ...] = ()
    widths: tuple[int, ...] = _SIZES["tiny"]["widths"]
    temporal_kernel: int = 7
    spatial: str = "scalp"
    latent_tokens: int = 8
    latent_dim: int = 32
    hidden: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "neighbours", tuple(tuple(int(j) for j in row) for row in self.neighbours))
        if self.n_channels < 1 or self.n_times < 1:
            raise ConfigError(f"TSC-VAE needs n_channels, n_times >= 1 (got {self.n_channels}, {self.n_times})")
        if not self.widths or min(self.widths) < 1:
            raise ConfigError(f"TSC-VAE widths must be a non-empty tuple of positive ints (got {self.widths})")
        if min(self.latent_tokens, self.latent_dim, self.hidden) < 1:
            raise ConfigError("TSC-VAE latent_tokens, latent_dim and hidden must be positive")
        if len(self.neighbours) != self.n_channels:
            raise ConfigError(f"TSC-VAE needs a neighbour table of {self.n_channels} rows (got "
                              f"{len(self.neighbours)}); TSCVAEConfig.for_montage derives it from the sensor "
                              "positions")
        check_neighbours(self.neighbours, self.spatial)
        check_temporal_kernel(self.temporal_kernel)

    @property
    def spatial_kernel(self) -> int:
        """``k_s``: sensors per spatial kernel (the sensor and its nearest neighbours)."""
        return len(self.neighbours[0])

    @property
    def time_factor(self) -> int:
        """Total pooling over time; inputs are padded to a multiple of it."""
        return 2 ** len(self.widths)

    @property
    def padded_times(self) -> int:
        """``n_times`` rounded up to a multiple of :attr:`time_factor`."""
        return -(-self.n_times // self.time_factor) * self.time_factor

    @property
    def bottleneck_times(self) -> int:
        """Time steps at the bottleneck: :attr:`padded_times` after all the pooling."""
        return self.padded_times // self.time_factor

    @classmethod
    def for_montage(cls, montage: Montage, size: str = "tiny", *, spatial_kernel: int | None = None,
                    spatial: str = "scalp", **overrides: Any) -> TSCVAEConfig:
        """The preset ``size`` (``"tiny"`` or ``"base"``) for a montage's channels, positions and epoch length.

        ``spatial_kernel`` (default: the preset's, reduced below the channel count for small montages) sets the
        neighbourhood size (sensors per kernel, the sensor included); ``spatial="global"`` spans all channels
        (ablation). ``overrides`` replace other preset fields (``widths``, ``latent_tokens``...).
        """
        if size not in _SIZES:
            raise ConfigError(f"unknown TSC-VAE size {size!r}; valid sizes: {', '.join(_SIZES)}")
        params = dict(_SIZES[size])
        c = montage.n_channels
        if c < 2:
            raise ConfigError(f"montage {montage.name!r} has {c} channel; the TSC-VAE needs at least 2")
        preset_kernel = min(params.pop("spatial_kernel"), c - 1)
        k = c if spatial == "global" else preset_kernel if spatial_kernel is None else spatial_kernel
        params.update(n_channels=c, n_times=montage.n_times, neighbours=scalp_neighbours(montage.positions, k),
                      spatial=spatial, widths=list(params["widths"]))
        return cls.from_dict({**params, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["neighbours"] = [list(row) for row in self.neighbours]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TSCVAEConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        return config_from_dict(cls, data)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL divergence of the TSC-VAE's diagonal Gaussian posterior from the standard normal prior.

    ``KL(N(mu, exp(logvar)) || N(0, I)) = 0.5 * sum(mu**2 + exp(logvar) - 1 - logvar)`` summed over every
    latent element of a sample and averaged over the batch (first dimension). Also ``TSCVAE.kl_divergence``;
    stage-1 training weighs it with :func:`vibe_rt.training.losses.kl_weight`.

    Parameters
    ----------
    mu, logvar : Tensor, shape (B, ...)
        Posterior mean and log-variance.

    Returns
    -------
    Tensor
        Scalar, nats per sample.
    """
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.reshape(kl.shape[0], -1).sum(dim=1).mean()


def _block(cfg: TSCVAEConfig, in_features: int, out_features: int, *, pool: int) -> TSConvPlus:
    """A TSConvPlus block with the kernels of ``cfg``."""
    return TSConvPlus(in_features, out_features, cfg.neighbours, pool=pool, temporal_kernel=cfg.temporal_kernel,
                      spatial=cfg.spatial)


class TSCEncoder(nn.Module):
    """Encoder half: epochs ``(B, C, T)`` -> ``(mu, logvar)``, each ``(B, latent_tokens, latent_dim)``."""

    def __init__(self, cfg: TSCVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.blocks = nn.Sequential(*(_block(cfg, f_in, f_out, pool=2) for f_in, f_out in zip((1,) + w[:-1], w)))
        self.to_hidden = nn.Sequential(nn.Conv1d(w[-1] * cfg.n_channels, cfg.hidden, 1), nn.ELU())
        self.to_latent = nn.Linear(cfg.hidden * cfg.bottleneck_times, 2 * cfg.latent_tokens * cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map epochs (normalised units) to the posterior's mean and log-variance."""
        cfg = self.cfg
        if x.dim() != 3 or x.shape[1:] != (cfg.n_channels, cfg.n_times):
            raise ConfigError(f"TSC-VAE expects epochs of shape (B, {cfg.n_channels}, {cfg.n_times}); "
                              f"got {tuple(x.shape)}")
        x = F.pad(x, (0, cfg.padded_times - cfg.n_times)).unsqueeze(1)
        h = self.blocks(x)  # (B, F, C, T')
        h = self.to_hidden(h.flatten(1, 2)).flatten(1)
        mu, logvar = self.to_latent(h).chunk(2, dim=1)
        shape = (-1, cfg.latent_tokens, cfg.latent_dim)
        return mu.reshape(shape), logvar.reshape(shape)


class TSCDecoder(nn.Module):
    """Decoder half: latents ``(B, latent_tokens, latent_dim)`` -> epochs ``(B, C, T)`` (normalised units)."""

    def __init__(self, cfg: TSCVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.from_latent = nn.Sequential(
            nn.Linear(cfg.latent_tokens * cfg.latent_dim, cfg.hidden * cfg.bottleneck_times), nn.ELU())
        self.from_hidden = nn.Conv1d(cfg.hidden, w[-1] * cfg.n_channels, 1)
        outs = w[::-1][1:] + (w[0],)
        self.blocks = nn.Sequential(*(
            nn.Sequential(nn.ConvTranspose2d(f_in, f_in, (1, 2), stride=(1, 2)), _block(cfg, f_in, f_out, pool=1))
            for f_in, f_out in zip(w[::-1], outs)
        ))
        self.out = nn.Conv2d(w[0], 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map latents to epochs, cropping the padded time axis back to ``n_times``."""
        cfg = self.cfg
        h = self.from_latent(z.flatten(1)).unflatten(1, (cfg.hidden, -1))
        h = self.from_hidden(h).unflatten(1, (cfg.widths[-1], cfg.n_channels))  # (B, F, C, T')
        y = self.out(self.blocks(h)).squeeze(1)
        return y[..., : cfg.n_times]


class TSCVAE(nn.Module):
    """The TSC-VAE: :class:`TSCEncoder` + Gaussian latent + :class:`TSCDecoder` (see the module docstring).

    Parameters
    ----------
    cfg : TSCVAEConfig
        Shapes and sizes.
    """

    def __init__(self, cfg: TSCVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = TSCEncoder(cfg)
        self.decoder = TSCDecoder(cfg)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map epochs ``(B, C, T)`` (normalised units) to ``(mu, logvar)``, each ``(B, latent_tokens, latent_dim)``."""
        return self.encoder(x)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Sample ``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, 1)``."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map latents ``(B, latent_tokens, latent_dim)`` to epochs ``(B, C, T)`` (normalised units)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, *, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(reconstruction, mu, logvar)``; samples ``z`` in training mode, uses ``mu`` in eval mode or
        with ``sample=False`` (the plain auto-encoder ablation)."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar) if self.training and sample else mu
        return self.decode(z), mu, logvar

    kl_divergence = staticmethod(kl_divergence)
