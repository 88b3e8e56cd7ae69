"""Image encoder: the visual tower of any open_clip model, returning its token sequence.

``ImageEncoder.forward`` returns the patch tokens of the last layer after the tower's final LayerNorm
(``(B, N, D)``, *without* the class token, unprojected: what open_clip's ``output_tokens=True`` gives);
``pooled`` returns the projected image embedding ``(B, E)``. The tiny preset ``vibe-tiny-vit`` (width 128, 2
layers, patch 16, 64 x 64 pixels: 16 tokens) is registered with open_clip from ``model_configs/``.

Pretrained weights are never downloaded at run time: a tag is resolved against the local Hugging Face cache
and open_clip's URL cache, and a missing file raises :class:`~vibe_rt.errors.CheckpointError` explaining how
to fetch it on a machine with network access and pass its path instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._logs import logger
from ..errors import CheckpointError, ConfigError
from ._config import config_from_dict

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_ENCODER = "vibe-tiny-vit"
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


def _rgb(values: Any) -> tuple[float, float, float]:
    """Three floats (R, G, B) from open_clip's preprocessing config."""
    r, g, b = (float(v) for v in values)
    return r, g, b


@dataclass(frozen=True)
class ImageEncoderConfig:
    """Which open_clip model and weights to use.

    Parameters
    ----------
    name : str
        An open_clip model name (``open_clip.list_models()``), e.g. ``"vibe-tiny-vit"`` or ``"ViT-B-32"``.
    pretrained : str | None
        None (random initialisation), an open_clip pretrained tag (e.g. ``"laion2b_s34b_b79k"``) whose file
        is already in the local cache, or the path of a weights file (``.safetensors``, ``.bin``, ``.pt``).
    """

    name: str = TINY_ENCODER
    pretrained: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageEncoderConfig:
        """Inverse of :meth:`to_dict`."""
        return config_from_dict(cls, data)


def register_model_configs() -> None:
    """Register vibe-rt's open_clip model configs (``vibe-tiny-vit``) once per process."""
    import open_clip

    if TINY_ENCODER not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def _hf_cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment at call time (HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    default_home = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(os.environ.get("HF_HOME", default_home)).expanduser() / "hub"


def _cached_weights(tag_cfg: dict[str, Any]) -> Path | None:
    """The local file of an open_clip pretrained tag, or None when it is not cached (no network access)."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    if tag_cfg.get("file") and Path(tag_cfg["file"]).is_file():
        return Path(tag_cfg["file"])
    if tag_cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(tag_cfg["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        candidates = [filename]
        if filename == HF_WEIGHTS_NAME:
            candidates.insert(0, HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename[:-4] + ".safetensors")
        for name in candidates:
            found = try_to_load_from_cache(repo_id, name, cache_dir=str(_hf_cache_dir()))
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    if tag_cfg.get("url"):
        path = Path("~/.cache/clip").expanduser() / os.path.basename(tag_cfg["url"])
        if path.is_file():
            return path
    return None


def resolve_pretrained(name: str, pretrained: str) -> tuple[Path, dict[str, Any]]:
    """Find the local weights file of ``pretrained`` (a tag or a path) for open_clip model ``name``.

    Returns
    -------
    path : Path
        The weights file.
    tag_cfg : dict
        open_clip's pretrained config of the tag (preprocessing values, ``quick_gelu``), empty for a path.

    Raises
    ------
    CheckpointError
        When the file is not available locally; the message says how to get it. Nothing is downloaded.
    """
    import open_clip

    path = Path(pretrained).expanduser()
    if path.is_file():
        return path, {}
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise CheckpointError(
            f"CLIP weights {pretrained!r} for {name!r}: no such file, and not an open_clip pretrained tag of this "
            f"model (tags: {', '.join(tags) or 'none'}). Pass an existing weights file (vibe-rt train qformer "
            f"--encoder {name}:PATH) or a tag whose file is in the local cache."
        )
    found = _cached_weights(tag_cfg)
    if found is None:
        where = f"Hugging Face cache {_hf_cache_dir()}" + (" and ~/.cache/clip" if tag_cfg.get("url") else "")
        raise CheckpointError(
            f"CLIP weights {name}/{pretrained} are not available locally (looked in the {where}); vibe-rt never "
            "downloads at run time. On a machine with network access run: python -c \"import open_clip; "
            f"open_clip.create_model('{name}', pretrained='{pretrained}')\" and copy the cached file (or the whole "
            "~/.cache/huggingface folder) here, then pass the file: vibe-rt train qformer --encoder "
            f"{name}:PATH (Python: ImageEncoderConfig('{name}', pretrained='PATH'))."
        )
    return found, tag_cfg


@contextlib.contextmanager
def _quiet_random_init() -> Iterator[None]:
    """Hide open_clip's root-logger warning about random initialisation: vibe-rt loads weights afterwards."""

    def keep(record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


class ImageEncoder(nn.Module):
    """An open_clip visual tower that returns image tokens.

    Parameters
    ----------
    cfg : ImageEncoderConfig
        Model name and weights.
    load_pretrained : bool
        If False, ``cfg.pretrained`` is ignored and the tower is randomly initialised (used when the weights
        come from a vibe-rt checkpoint).
    """

    def __init__(self, cfg: ImageEncoderConfig, *, load_pretrained: bool = True) -> None:
        super().__init__()
        import open_clip

        register_model_configs()
        if cfg.name not in open_clip.list_models():
            raise ConfigError(f"unknown open_clip model {cfg.name!r}; see open_clip.list_models() "
                              f"(e.g. {TINY_ENCODER!r}, 'ViT-B-32')")
        weights, tag_cfg = (None, {}) if not (load_pretrained and cfg.pretrained) else \
            resolve_pretrained(cfg.name, cfg.pretrained)
        try:
            with _quiet_random_init():
                clip = open_clip.create_model(
                    cfg.name,
                    pretrained=str(weights) if weights else None,
                    force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
                    force_preprocess_cfg={k: tag_cfg[k] for k in _PREPROCESS_KEYS if k in tag_cfg},
                )
        except Exception as err:  # open_clip raises RuntimeError/KeyError/safetensors errors on bad files
            if weights is None:
                raise
            raise CheckpointError(f"could not load CLIP weights {weights} into {cfg.name!r}: {err}") from err
        self.cfg = cfg
        self.visual = clip.visual
        self.visual.output_tokens = True
        pp = self.visual.preprocess_cfg
        size = pp["size"] if isinstance(pp["size"], int) else tuple(pp["size"])
        if not isinstance(size, int) and size[0] != size[1]:
            raise ConfigError(f"open_clip model {cfg.name!r} has a non-square input {size}; vibe-rt needs S x S")
        if pp["resize_mode"] not in ("shortest", "squash"):
            raise ConfigError(f"open_clip model {cfg.name!r}: resize mode {pp['resize_mode']!r} is not supported "
                              "(supported: 'shortest', 'squash')")
        self._image_size = size if isinstance(size, int) else size[0]
        self._mean = _rgb(pp["mean"])
        self._std = _rgb(pp["std"])
        self._resize_mode = pp["resize_mode"]
        with torch.no_grad():
            pooled, tokens = self.visual(torch.zeros(1, 3, self._image_size, self._image_size))
        self.n_tokens, self.token_dim = int(tokens.shape[1]), int(tokens.shape[2])
        self.embed_dim = int(pooled.shape[-1])
        logger.debug("image encoder %s: %d tokens x %d, %d px", cfg.name, self.n_tokens, self.token_dim,
                     self._image_size)

    @property
    def image_size(self) -> int:
        """Input side length ``S`` in pixels."""
        return self._image_size

    @property
    def mean(self) -> tuple[float, float, float]:
        """Per-channel (RGB) normalisation mean, in [0, 1] units."""
        return self._mean

    @property
    def std(self) -> tuple[float, float, float]:
        """Per-channel (RGB) normalisation standard deviation, in [0, 1] units."""
        return self._std

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Patch tokens ``(B, n_tokens, token_dim)`` (no class token) of normalised pixels ``(B, 3, S, S)``."""
        return self.visual(pixels)[1]

    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        """The projected CLIP image embedding ``(B, embed_dim)``."""
        return self.visual(pixels)[0]

    def tokens_and_pooled(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` and :meth:`pooled` from one pass of the tower."""
        pooled, tokens = self.visual(pixels)
        return tokens, pooled

    def preprocess_frames(self, frames: np.ndarray) -> np.ndarray:
        """Resize, centre-crop and normalise RGB frames like open_clip's evaluation transform.

        Parameters
        ----------
        frames : ndarray, uint8, shape (B, H, W, 3)
            RGB frames of any size.

        Returns
        -------
        ndarray, float32, shape (B, 3, S, S)

        Notes
        -----
        The shortest side is resized to ``S`` (open_clip: PIL bicubic with antialiasing), then the centre
        ``S x S`` is cropped. OpenCV has no antialiased bicubic, so downscaling uses ``INTER_AREA`` and
        upscaling ``INTER_CUBIC``: the mean absolute difference to open_clip's PIL pipeline is about 0.006 of
        the [0, 1] pixel range. ``squash`` models resize both sides to ``S`` without cropping.
        """
        return preprocess_frames(frames, self._image_size, self._mean, self._std, self._resize_mode)


def preprocess_frames(
    frames: np.ndarray,
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    resize_mode: str = "shortest",
) -> np.ndarray:
    """Frames ``uint8 (B, H, W, 3)`` RGB -> normalised ``float32 (B, 3, size, size)`` (see ImageEncoder)."""
    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ConfigError(f"frames must be uint8 RGB of shape (B, H, W, 3); got {frames.dtype} {frames.shape}")
    out = np.empty((len(frames), size, size, 3), dtype=np.float32)
    for i, frame in enumerate(frames):
        h, w = frame.shape[:2]
        if resize_mode == "squash":
            new_w, new_h = size, size
        elif w <= h:  # torchvision's rule for the long side: int(size * long / short)
            new_w, new_h = size, int(size * h / w)
        else:
            new_w, new_h = int(size * w / h), size
        interp = cv2.INTER_AREA if new_w * new_h < w * h else cv2.INTER_CUBIC
        resized = frame if (new_w, new_h) == (w, h) else cv2.resize(frame, (new_w, new_h), interpolation=interp)
        top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
        out[i] = resized[top:top + size, left:left + size]
    normalised = (out / np.float32(255.0) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2), dtype=np.float32)
