"""ViBE networks: TSConvPlus blocks, the TSC-VAE, the Q-Former, the open_clip image encoder and the full model."""

from __future__ import annotations

from .image_encoder import ImageEncoder, ImageEncoderConfig, preprocess_frames
from .qformer import QFormer, QFormerConfig
from .tsconv import TSConvPlus, scalp_neighbours
from .vae import TSCVAE, TSCDecoder, TSCEncoder, TSCVAEConfig
from .vibe import ViBE, ViBEConfig

__all__ = [
    "ImageEncoder", "ImageEncoderConfig", "QFormer", "QFormerConfig", "TSCDecoder", "TSCEncoder", "TSCVAE",
    "TSCVAEConfig", "TSConvPlus", "ViBE", "ViBEConfig", "preprocess_frames", "scalp_neighbours",
]
