"""Q-Former: learned queries that read image tokens and land in the TSC-VAE latent space (ViBE stage 2).

A small BLIP-2-style querying transformer: ``n_queries`` learned query vectors go through ``n_layers`` pre-LayerNorm
blocks of self-attention (queries among themselves), cross-attention (queries to the image tokens) and a
feed-forward network; a final LayerNorm and linear map give ``(B, n_queries, out_dim)``, one vector per latent
token. Attention is written with plain matmuls and softmax so that the ONNX graph (opset 17) holds only
MatMul/Softmax/LayerNormalization/Gelu-style operators that ONNX Runtime and TensorRT both run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ._config import config_from_dict

_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(hidden=128, n_layers=2, n_heads=4),
    "base": dict(hidden=256, n_layers=4, n_heads=8),
}


@dataclass(frozen=True)
class QFormerConfig:
    """Size of a :class:`QFormer`.

    Parameters
    ----------
    token_dim : int
        Width of the image tokens (the image encoder's ``token_dim``).
    n_queries : int
        Number of learned queries (= the TSC-VAE's ``latent_tokens``).
    hidden : int
        Width of the queries inside the transformer.
    n_layers, n_heads : int
        Transformer depth and attention heads (``hidden`` must be divisible by ``n_heads``).
    out_dim : int
        Output width per query (= the TSC-VAE's ``latent_dim``).
    mlp_ratio : int
        Feed-forward width as a multiple of ``hidden``.
    dropout : float
        Dropout on attention weights and feed-forward outputs during training.
    """

    token_dim: int
    n_queries: int = 8
    hidden: int = 128
    n_layers: int = 2
    n_heads: int = 4
    out_dim: int = 32
    mlp_ratio: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if min(self.token_dim, self.n_queries, self.hidden, self.n_layers, self.n_heads, self.out_dim,
               self.mlp_ratio) < 1:
            raise ConfigError(f"Q-Former sizes must be positive: {self}")
        if self.hidden % self.n_heads:
            raise ConfigError(f"Q-Former hidden={self.hidden} is not divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"Q-Former dropout must be in [0, 1) (got {self.dropout})")

    @classmethod
    def preset(cls, size: str, *, token_dim: int, n_queries: int, out_dim: int) -> QFormerConfig:
        """The ``"tiny"`` or ``"base"`` size for given image-token width and latent shape."""
        if size not in _SIZES:
            raise ConfigError(f"unknown Q-Former size {size!r}; valid sizes: {', '.join(_SIZES)}")
        return cls(token_dim=token_dim, n_queries=n_queries, out_dim=out_dim, **_SIZES[size])

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QFormerConfig:
        """Inverse of :meth:`to_dict`."""
        return config_from_dict(cls, data)


class Attention(nn.Module):
    """Multi-head scaled dot-product attention with explicit matmuls (exports to plain ONNX ops)."""

    def __init__(self, dim: int, kv_dim: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_dim, dim)
        self.v = nn.Linear(kv_dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2)  # (B, H, N, hd)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Attend from ``x`` ``(B, Nq, dim)`` to ``context`` ``(B, Nk, kv_dim)``."""
        q, k, v = self._heads(self.q(x)), self._heads(self.k(context)), self._heads(self.v(context))
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        out = (self.drop(weights) @ v).transpose(1, 2).flatten(2)
        return self.proj(out)


class QFormerLayer(nn.Module):
    """Pre-LayerNorm block: self-attention, cross-attention to image tokens, feed-forward."""

    def __init__(self, cfg: QFormerConfig) -> None:
        super().__init__()
        d = cfg.hidden
        self.norm_self = nn.LayerNorm(d)
        self.self_attn = Attention(d, d, cfg.n_heads, cfg.dropout)
        self.norm_cross = nn.LayerNorm(d)
        self.cross_attn = Attention(d, d, cfg.n_heads, cfg.dropout)
        self.norm_ff = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, cfg.mlp_ratio * d), nn.GELU(), nn.Linear(cfg.mlp_ratio * d, d),
                                nn.Dropout(cfg.dropout))

    def forward(self, q: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Update the queries ``(B, Nq, hidden)`` given normalised image tokens ``(B, N, hidden)``."""
        h = self.norm_self(q)
        q = q + self.self_attn(h, h)
        q = q + self.cross_attn(self.norm_cross(q), tokens)
        return q + self.ff(self.norm_ff(q))


class QFormer(nn.Module):
    """Map image tokens ``(B, N, token_dim)`` to latents ``(B, n_queries, out_dim)``.

    Parameters
    ----------
    cfg : QFormerConfig
        Sizes.
    """

    def __init__(self, cfg: QFormerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.queries = nn.Parameter(torch.randn(1, cfg.n_queries, cfg.hidden) * 0.02)
        self.token_proj = nn.Sequential(nn.LayerNorm(cfg.token_dim), nn.Linear(cfg.token_dim, cfg.hidden))
        self.layers = nn.ModuleList(QFormerLayer(cfg) for _ in range(cfg.n_layers))
        self.norm_out = nn.LayerNorm(cfg.hidden)
        self.head = nn.Linear(cfg.hidden, cfg.out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Return latents ``(B, n_queries, out_dim)`` for image tokens ``(B, N, token_dim)``."""
        context = self.token_proj(tokens)
        q = self.queries.expand(tokens.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, context)
        return self.head(self.norm_out(q))
