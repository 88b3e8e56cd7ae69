"""TSConvPlus: one hierarchical spatio-temporal convolution block.

Layout ``(B, F, C, T)``: batch, feature maps, channels (sensors, in montage order), time. A block applies a
temporal convolution (kernel ``(1, k_t)``), then a *local* spatial convolution across neighbouring channels
(kernel ``(k_s, 1)`` with ``k_s < C``, "same" padding so ``C`` is kept), batch normalisation, ELU, and average
pooling over time. A 1x1 convolution carries the input around the two convolutions (residual path). Stacking
blocks widens the spatial and temporal receptive fields step by step, unlike NICE's TSConv whose single
spatial kernel spans all channels at once.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


def check_kernels(n_channels: int, temporal_kernel: int, spatial_kernel: int) -> None:
    """Raise :class:`ConfigError` unless both kernels are odd and ``spatial_kernel < n_channels``."""
    if spatial_kernel >= n_channels:
        raise ConfigError(
            f"spatial kernel {spatial_kernel} must be smaller than the number of channels ({n_channels}): "
            "TSConvPlus convolves across neighbouring channels only; choose an odd kernel such as 3 or 5"
        )
    for name, k in (("temporal", temporal_kernel), ("spatial", spatial_kernel)):
        if k < 1 or k % 2 == 0:
            raise ConfigError(f"{name} kernel must be a positive odd number (got {k}) so that padding is symmetric")


class TSConvPlus(nn.Module):
    """Temporal conv -> local spatial conv -> BatchNorm -> ELU (+ residual) -> average pooling over time.

    Parameters
    ----------
    in_features, out_features : int
        Feature maps in and out (``F``).
    n_channels : int
        Number of sensors ``C``; the spatial kernel must be smaller.
    temporal_kernel, spatial_kernel : int
        Odd kernel sizes in samples and in channels.
    pool : int
        Average-pooling factor over time (1: no pooling). ``T`` must be a multiple of it.

    Notes
    -----
    Input ``(B, in_features, C, T)``, output ``(B, out_features, C, T // pool)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_channels: int,
        *,
        temporal_kernel: int = 7,
        spatial_kernel: int = 3,
        pool: int = 2,
    ) -> None:
        super().__init__()
        check_kernels(n_channels, temporal_kernel, spatial_kernel)
        self.temporal = nn.Conv2d(in_features, out_features, (1, temporal_kernel),
                                  padding=(0, temporal_kernel // 2), bias=False)
        self.spatial = nn.Conv2d(out_features, out_features, (spatial_kernel, 1),
                                 padding=(spatial_kernel // 2, 0), bias=False)
        self.norm = nn.BatchNorm2d(out_features)
        self.act = nn.ELU()
        self.skip = nn.Conv2d(in_features, out_features, 1, bias=False)
        self.pool = nn.AvgPool2d((1, pool)) if pool > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, F_in, C, T)`` to ``(B, F_out, C, T // pool)``."""
        y = self.act(self.norm(self.spatial(self.temporal(x)))) + self.skip(x)
        return self.pool(y)
