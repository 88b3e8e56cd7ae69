"""ViBE: image -> open_clip image encoder -> Q-Former -> TSC-VAE decoder -> M/EEG epoch in SI units.

The TSC-VAE works in normalised units (per-channel z-scores of the training data); the buffers ``norm_mean`` and
``norm_std`` (shape ``(C,)``, SI units) turn its output into volts (EEG) or tesla (MEG) per the montage.
For export the model splits into three single-input single-output stages (:meth:`ViBE.stages`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..montage import Montage, get_montage
from .image_encoder import TINY_ENCODER, ImageEncoder, ImageEncoderConfig
from .qformer import QFormer, QFormerConfig
from .vae import TSCVAE, TSCDecoder, TSCVAEConfig

#: open_clip model of the ``base`` preset (used for benchmarks; random init unless weights are given).
BASE_ENCODER = "ViT-B-32"
_BASE_TOKEN_DIM = 768  # ViT-B-32 width: known, so the base preset does not build the tower twice
_ENCODERS = {"tiny": TINY_ENCODER, "base": BASE_ENCODER}


@dataclass(frozen=True)
class ViBEConfig:
    """Everything needed to build a :class:`ViBE`.

    Parameters
    ----------
    montage : dict
        :meth:`Montage.to_dict` of the device profile (channels, units, model rate, epoch window).
    encoder : ImageEncoderConfig
    qformer : QFormerConfig
        ``token_dim`` = the encoder's token width, ``n_queries``/``out_dim`` = the VAE's latent shape.
    vae : TSCVAEConfig
        ``n_channels``/``n_times`` = the montage's.
    """

    montage: dict[str, Any]
    encoder: ImageEncoderConfig
    qformer: QFormerConfig
    vae: TSCVAEConfig

    def __post_init__(self) -> None:
        m = Montage.from_dict(self.montage)
        if (self.vae.n_channels, self.vae.n_times) != (m.n_channels, m.n_times):
            raise ConfigError(f"TSC-VAE shape ({self.vae.n_channels}, {self.vae.n_times}) does not match montage "
                              f"{m.name!r} ({m.n_channels} channels, {m.n_times} samples)")
        if (self.qformer.n_queries, self.qformer.out_dim) != (self.vae.latent_tokens, self.vae.latent_dim):
            raise ConfigError(f"Q-Former output ({self.qformer.n_queries}, {self.qformer.out_dim}) does not match "
                              f"the TSC-VAE latent ({self.vae.latent_tokens}, {self.vae.latent_dim})")

    @classmethod
    def for_montage(
        cls,
        montage: Montage | str,
        size: str = "tiny",
        *,
        encoder: ImageEncoderConfig | None = None,
        token_dim: int | None = None,
    ) -> ViBEConfig:
        """The ``"tiny"`` or ``"base"`` preset for a montage (a :class:`Montage` or a preset name).

        ``encoder`` overrides the preset's image encoder (e.g. to give pretrained weights); ``token_dim`` is
        its token width (measured by building the encoder when not given).
        """
        if size not in _ENCODERS:
            raise ConfigError(f"unknown ViBE size {size!r}; valid sizes: {', '.join(_ENCODERS)}")
        montage = get_montage(montage) if isinstance(montage, str) else montage
        encoder = encoder or ImageEncoderConfig(_ENCODERS[size])
        if token_dim is None:
            token_dim = ImageEncoder(encoder, load_pretrained=False).token_dim
        vae = TSCVAEConfig.for_montage(montage, size)
        qformer = QFormerConfig.preset(size, token_dim=token_dim, n_queries=vae.latent_tokens,
                                       out_dim=vae.latent_dim)
        return cls(montage.to_dict(), encoder, qformer, vae)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"montage": self.montage, "encoder": self.encoder.to_dict(), "qformer": self.qformer.to_dict(),
                "vae": self.vae.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ViBEConfig:
        """Inverse of :meth:`to_dict`."""
        missing = sorted({"montage", "encoder", "qformer", "vae"} - set(data))
        if missing:
            raise ConfigError(f"ViBE config lacks {missing}")
        return cls(data["montage"], ImageEncoderConfig.from_dict(data["encoder"]),
                   QFormerConfig.from_dict(data["qformer"]), TSCVAEConfig.from_dict(data["vae"]))


class SIDecoder(nn.Module):
    """Export stage "decoder": latent ``(B, L, D)`` -> epoch ``(B, C, T)`` in SI units (VAE + de-normalisation)."""

    norm_mean: torch.Tensor
    norm_std: torch.Tensor

    def __init__(self, decoder: TSCDecoder, norm_mean: torch.Tensor, norm_std: torch.Tensor) -> None:
        super().__init__()
        self.decoder = decoder
        self.register_buffer("norm_mean", norm_mean)  # shares storage with the ViBE's buffers
        self.register_buffer("norm_std", norm_std)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decode and de-normalise."""
        return self.decoder(z) * self.norm_std[:, None] + self.norm_mean[:, None]


class ViBE(nn.Module):
    """The full image-to-M/EEG model.

    Parameters
    ----------
    cfg : ViBEConfig
        Sizes and montage.
    load_pretrained : bool
        Load the image encoder's pretrained CLIP weights named in the config (False when the weights come from
        a vibe-rt checkpoint).
    """

    norm_mean: torch.Tensor
    norm_std: torch.Tensor

    def __init__(self, cfg: ViBEConfig, *, load_pretrained: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.montage = Montage.from_dict(cfg.montage)
        self.encoder = ImageEncoder(cfg.encoder, load_pretrained=load_pretrained)
        if self.encoder.token_dim != cfg.qformer.token_dim:
            raise ConfigError(f"Q-Former token_dim={cfg.qformer.token_dim} does not match the image encoder "
                              f"{cfg.encoder.name!r} (token width {self.encoder.token_dim})")
        self.qformer = QFormer(cfg.qformer)
        self.vae = TSCVAE(cfg.vae)
        c = self.montage.n_channels
        self.register_buffer("norm_mean", torch.zeros(c))
        self.register_buffer("norm_std", torch.ones(c))

    @classmethod
    def tiny(cls, montage: Montage | str) -> ViBE:
        """The tiny default: ``vibe-tiny-vit`` encoder, tiny Q-Former and TSC-VAE (random initialisation)."""
        return cls(ViBEConfig.for_montage(montage, "tiny"))

    @classmethod
    def base(cls, montage: Montage | str, pretrained: str | None = None) -> ViBE:
        """The base size with open_clip ViT-B-32 (random init unless ``pretrained``: a cached tag or a file)."""
        cfg = ViBEConfig.for_montage(montage, "base", encoder=ImageEncoderConfig(BASE_ENCODER, pretrained),
                                     token_dim=_BASE_TOKEN_DIM)
        return cls(cfg)

    def set_normalisation(self, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor) -> None:
        """Set the per-channel mean and standard deviation (SI units, shape ``(C,)``) of the training data."""
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        std = torch.as_tensor(np.asarray(std, dtype=np.float32))
        c = self.montage.n_channels
        if mean.shape != (c,) or std.shape != (c,):
            raise ConfigError(f"normalisation mean/std must have shape ({c},); got {tuple(mean.shape)}, "
                              f"{tuple(std.shape)}")
        if not torch.all(torch.isfinite(mean)) or not torch.all(std > 0):
            raise ConfigError("normalisation mean must be finite and std strictly positive")
        with torch.no_grad():
            self.norm_mean.copy_(mean)
            self.norm_std.copy_(std)

    def predict_latent(self, pixels: torch.Tensor) -> torch.Tensor:
        """Latent ``(B, latent_tokens, latent_dim)`` predicted from normalised pixels ``(B, 3, S, S)``."""
        return self.qformer(self.encoder(pixels))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Epochs ``(B, C, T)`` float32 in SI units (V or T per the montage) for pixels ``(B, 3, S, S)``."""
        return self.decoder_stage()(self.predict_latent(pixels))

    def decoder_stage(self) -> SIDecoder:
        """The "decoder" stage, sharing weights and normalisation buffers with this model."""
        return SIDecoder(self.vae.decoder, self.norm_mean, self.norm_std)

    def stages(self) -> dict[str, nn.Module]:
        """The three export stages: "encoder" (pixels -> tokens), "qformer" (tokens -> latent), "decoder"
        (latent -> SI epoch). They share parameters with this model; call again after moving it to a device."""
        return {"encoder": self.encoder, "qformer": self.qformer, "decoder": self.decoder_stage()}

    def example_inputs(self, batch: int = 1) -> dict[str, torch.Tensor]:
        """Random example inputs per stage (on the model's device), e.g. for tracing and ONNX export."""
        gen = torch.Generator().manual_seed(0)
        s, enc, vae = self.encoder.image_size, self.encoder, self.cfg.vae
        inputs = {
            "encoder": torch.randn(batch, 3, s, s, generator=gen),
            "qformer": torch.randn(batch, enc.n_tokens, enc.token_dim, generator=gen),
            "decoder": torch.randn(batch, vae.latent_tokens, vae.latent_dim, generator=gen),
        }
        return {k: v.to(self.norm_mean.device) for k, v in inputs.items()}
