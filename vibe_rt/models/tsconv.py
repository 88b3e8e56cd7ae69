"""TSConvPlus: one hierarchical spatio-temporal convolution block over the scalp.

Layout ``(B, F, C, T)``: batch, feature maps, channels (sensors, in montage order), time. A block applies a
temporal convolution (kernel ``(1, k_t)``), then a *local* spatial convolution over each sensor's scalp
neighbourhood, batch normalisation, ELU, and average pooling over time. A 1x1 convolution carries the input around
the two convolutions (residual path). Stacking blocks widens the spatial and temporal receptive fields step by
step, unlike NICE's TSConv (Song et al. 2024, ICLR) whose single spatial kernel spans all channels at once.

The neighbourhoods come from the sensors' 3-D positions, not from the order of the channel list
(:func:`scalp_neighbours`): sensor ``i``'s kernel sees ``i`` itself and its ``k_s - 1`` nearest sensors, ordered
by distance, so that one shared kernel weighs "the sensor, its nearest neighbour, the next nearest..." everywhere
on the scalp (a k-nearest-neighbour graph convolution with distance-ranked taps). The same rule serves EEG caps
and the 271 MEG sensors. ``k_s < C`` keeps the kernel local; ``spatial="global"`` (ablation only) gives every
sensor a kernel over all ``C`` sensors, NICE-style.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError

SPATIAL_MODES = ("scalp", "global")


def scalp_neighbours(positions: np.ndarray, k: int) -> tuple[tuple[int, ...], ...]:
    """Each sensor's index followed by its ``k - 1`` nearest sensors (Euclidean distance of the head positions,
    ties broken by channel index).

    Parameters
    ----------
    positions : ndarray, shape (C, 3)
        Sensor positions (metres, head coordinates; :attr:`vibe_rt.montage.Montage.positions`).
    k : int
        Neighbourhood size including the sensor itself, ``1 <= k <= C``.

    Returns
    -------
    tuple of tuple of int
        ``C`` rows of ``k`` channel indices; row ``i`` starts with ``i``.
    """
    pos = np.asarray(positions, dtype=float)
    n = len(pos)
    if not 1 <= k <= n:
        raise ConfigError(f"a scalp neighbourhood of {k} sensors needs 1 <= k <= {n} (the number of channels)")
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    np.fill_diagonal(dist, -1.0)  # the sensor itself comes first, even where two sensors share a position
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return tuple(tuple(int(j) for j in row) for row in order)


def check_neighbours(neighbours: tuple[tuple[int, ...], ...], spatial: str = "scalp") -> None:
    """Raise :class:`ConfigError` unless ``neighbours`` is a table of rows of equal length ``k_s`` whose row ``i``
    starts with ``i``, with ``k_s < C`` for ``spatial="scalp"`` and ``k_s == C`` for ``"global"``."""
    if spatial not in SPATIAL_MODES:
        raise ConfigError(f"spatial mode {spatial!r} is unknown; valid modes: {', '.join(SPATIAL_MODES)}")
    n = len(neighbours)
    k = len(neighbours[0]) if n else 0
    if n < 2 or any(len(row) != k for row in neighbours) or k < 1:
        raise ConfigError(f"the neighbour table needs one row of equal length per channel (>= 2 channels); got "
                          f"{n} rows of lengths {sorted({len(row) for row in neighbours})}")
    if any(row[0] != i or not all(0 <= j < n for j in row) for i, row in enumerate(neighbours)):
        raise ConfigError("neighbour table row i must start with channel i and name channels 0..C-1 only; derive "
                          "it with vibe_rt.models.tsconv.scalp_neighbours(montage.positions, k)")
    if spatial == "scalp" and k >= n:
        raise ConfigError(f"spatial kernel {k} must be smaller than the number of channels ({n}): TSConvPlus "
                          "convolves over scalp neighbourhoods only; choose e.g. 3 or 5")
    if spatial == "global" and k != n:
        raise ConfigError(f"a global spatial kernel spans all {n} channels (got {k})")


def check_temporal_kernel(temporal_kernel: int) -> None:
    """Raise :class:`ConfigError` unless the temporal kernel is a positive odd number (symmetric padding)."""
    if temporal_kernel < 1 or temporal_kernel % 2 == 0:
        raise ConfigError(f"temporal kernel must be a positive odd number (got {temporal_kernel}) so that padding "
                          "is symmetric")


class TSConvPlus(nn.Module):
    """Temporal conv -> spatial conv over scalp neighbourhoods -> BatchNorm -> ELU (+ residual) -> time pooling.

    Parameters
    ----------
    in_features, out_features : int
        Feature maps in and out (``F``).
    neighbours : tuple of tuple of int
        The neighbour table (:func:`scalp_neighbours`): ``C`` rows of ``k_s`` channel indices.
    temporal_kernel : int
        Odd kernel size in samples.
    pool : int
        Average-pooling factor over time (1: no pooling). ``T`` must be a multiple of it.
    spatial : {"scalp", "global"}
        ``"scalp"``: ``k_s < C`` (TSConvPlus); ``"global"``: ``k_s == C`` (the NICE-style ablation).

    Notes
    -----
    Input ``(B, in_features, C, T)``, output ``(B, out_features, C, T // pool)``. The spatial step gathers each
    sensor's neighbourhood into ``k_s`` consecutive rows (``(B, F, C * k_s, T)``, one constant-index gather that
    ONNX and TensorRT run as such) and applies a ``(k_s, 1)`` convolution with stride ``k_s``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        neighbours: tuple[tuple[int, ...], ...],
        *,
        temporal_kernel: int = 7,
        pool: int = 2,
        spatial: str = "scalp",
    ) -> None:
        super().__init__()
        check_neighbours(neighbours, spatial)
        check_temporal_kernel(temporal_kernel)
        k = len(neighbours[0])
        self.register_buffer("gather", torch.tensor([j for row in neighbours for j in row]), persistent=False)
        self.temporal = nn.Conv2d(in_features, out_features, (1, temporal_kernel),
                                  padding=(0, temporal_kernel // 2), bias=False)
        self.spatial = nn.Conv2d(out_features, out_features, (k, 1), stride=(k, 1), bias=False)
        self.norm = nn.BatchNorm2d(out_features)
        self.act = nn.ELU()
        self.skip = nn.Conv2d(in_features, out_features, 1, bias=False)
        self.pool = nn.AvgPool2d((1, pool)) if pool > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, F_in, C, T)`` to ``(B, F_out, C, T // pool)``."""
        h = self.temporal(x)
        h = self.spatial(h.index_select(2, self.gather))
        return self.pool(self.act(self.norm(h)) + self.skip(x))
