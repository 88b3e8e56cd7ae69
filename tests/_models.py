"""The tiny ViBE the runtime tests share: random weights (seed 0), eval mode, a volt-scale normalisation."""

from __future__ import annotations

import numpy as np
import torch


def tiny_vibe():
    """``ViBE.tiny("things-eeg2")`` with seed-0 weights and normalisation mean -1..1 uV, std 5 uV."""
    from vibe_rt.models.vibe import ViBE

    torch.manual_seed(0)
    model = ViBE.tiny("things-eeg2").eval()
    c = model.montage.n_channels
    model.set_normalisation(np.linspace(-1e-6, 1e-6, c), np.full(c, 5e-6))  # volts
    return model
