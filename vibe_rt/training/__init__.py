"""Two-stage ViBE training (TSC-VAE, then Q-Former), evaluation and baselines."""

from __future__ import annotations
