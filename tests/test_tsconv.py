"""TSConvPlus's spatial kernels run over scalp neighbourhoods derived from sensor positions (issue: the kernel
used to slide over the order of the channel list, so P8 sat next to P1 and POz never saw Oz or Pz)."""

from __future__ import annotations

import numpy as np
import torch

from vibe_rt.models import TSCVAE, TSConvPlus, TSCVAEConfig, scalp_neighbours
from vibe_rt.montage import get_montage

torch.set_num_threads(1)


def _names(montage, row):
    return [montage.ch_names[j] for j in row]


def test_eeg_neighbourhoods_follow_the_scalp():
    m = get_montage("things-eeg2")
    table = dict(zip(m.ch_names, scalp_neighbours(m.positions, 5)))
    assert {"Oz", "Pz"} & set(_names(m, table["POz"][1:]))  # true neighbours, 8 and 12 list places away
    assert "P1" not in _names(m, table["P8"])  # 128 mm away, other hemisphere: never in P8's kernel
    assert set(_names(m, table["O1"][1:3])) <= {"Oz", "PO3", "PO7", "POz", "O2"}
    dist = [np.linalg.norm(m.positions[list(row[1:])] - m.positions[row[0]], axis=1) for row in table.values()]
    assert max(d.max() for d in dist) < 0.075  # every tap within 7.5 cm of the kernel's sensor
    assert all(np.all(np.diff(d) >= 0) for d in dist)  # taps ordered by distance


def test_meg_neighbourhoods_are_local():
    m = get_montage("things-meg")
    table = np.array(scalp_neighbours(m.positions, 5))
    assert table.shape == (271, 5) and (table[:, 0] == np.arange(271)).all()
    dist = np.linalg.norm(m.positions[table[:, 1:]] - m.positions[table[:, :1]], axis=2)
    assert np.median(dist) < 0.045 and dist.max() < 0.08  # neighbouring sensors, not list neighbours
    assert TSCVAEConfig.for_montage(m).spatial_kernel < m.n_channels


def test_kernel_follows_positions_not_the_channel_order():
    """Reordering the channel list (and the data with it) permutes the block's output the same way: the
    convolution depends on where the sensors are, not on where they are listed."""
    m = get_montage("things-eeg2")
    perm = np.random.default_rng(0).permutation(m.n_channels)
    torch.manual_seed(0)
    block = TSConvPlus(2, 4, scalp_neighbours(m.positions, 3), pool=1).eval()
    shuffled = TSConvPlus(2, 4, scalp_neighbours(m.positions[perm], 3), pool=1).eval()
    shuffled.load_state_dict(block.state_dict())
    x = torch.randn(1, 2, m.n_channels, 20)
    with torch.no_grad():
        assert torch.allclose(block(x)[:, :, perm], shuffled(x[:, :, perm]), atol=1e-5)


def test_the_table_travels_in_the_config_and_the_global_ablation_spans_all_channels():
    m = get_montage("things-eeg2")
    cfg = TSCVAEConfig.for_montage(m, spatial_kernel=5)
    again = TSCVAEConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.neighbours == scalp_neighbours(m.positions, 5)
    full = TSCVAEConfig.for_montage(m, spatial="global")
    assert full.spatial_kernel == m.n_channels
    y = TSCVAE(full).eval()(torch.randn(2, m.n_channels, m.n_times))[0]
    assert y.shape == (2, m.n_channels, m.n_times)
