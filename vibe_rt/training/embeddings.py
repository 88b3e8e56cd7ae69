"""Image features for stage 2, computed once per (encoder, weights, image list) and cached on disk.

Cache files, in ``cache_dir``: ``<key>.tokens.npy`` (N, n_tokens, D) float32, ``<key>.pooled.npy`` (N, E)
float32 and ``<key>.json`` (what the key was made from). The key hashes the encoder name and pretrained tag, a
hash of the encoder weights (so a different random initialisation never reuses a stale cache) and the image
list (paths, sizes, modification times). Plain ``.npy`` (``allow_pickle=False``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._logs import logger
from ..errors import DataError

__all__ = ["load_images", "encoder_fingerprint", "image_list_hash", "image_features"]


def load_images(paths: Sequence[Any]) -> np.ndarray:
    """Read image files as uint8 RGB arrays of one common shape ``(N, H, W, 3)``.

    Raises
    ------
    DataError
        If an entry is not a readable image file or the images differ in size.
    """
    import cv2

    out = []
    for p in paths:
        if not isinstance(p, (str, os.PathLike)) or not Path(p).is_file():
            raise DataError(f"image {p!r} is not a file; stage 2 needs the stimulus images on disk")
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"cannot decode image {p}; use PNG or JPEG files")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        return out  # type: ignore[return-value]  # ragged: caller preprocesses one by one
    return np.stack(out) if out else np.zeros((0, 1, 1, 3), np.uint8)


def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    """Short sha256 of an encoder's weights (parameter names, shapes and values)."""
    h = hashlib.sha256()
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:16]


def image_list_hash(paths: Sequence[Any]) -> str:
    """Short sha256 of image paths with their sizes and modification times."""
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p).encode())
        try:
            st = os.stat(p)
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        except (OSError, TypeError):
            h.update(b"missing")
    return h.hexdigest()[:16]


@torch.no_grad()
def image_features(
    encoder: Any,
    image_paths: Sequence[Any],
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    name: str = "encoder",
    pretrained: str | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Image tokens and pooled embeddings of every image, from the cache when present.

    Parameters
    ----------
    encoder : ImageEncoder
        Frozen image encoder (``preprocess_frames``, ``forward`` -> tokens, ``pooled``).
    image_paths : sequence of path
        Stimulus images in dataset order.
    cache_dir : path | None
        Cache folder (created); None disables caching.
    batch_size : int
        Images per forward pass.
    name, pretrained : str
        Encoder identity recorded in the cache key.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    tokens : ndarray, shape (N, n_tokens, D) float32
    pooled : ndarray, shape (N, E) float32
    """
    paths = [Path(p) if isinstance(p, str) else p for p in image_paths]
    fp = encoder_fingerprint(encoder)
    ident = {"encoder": name, "pretrained": pretrained, "weights": fp, "images": image_list_hash(paths),
             "n_images": len(paths)}
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        tok_path, pool_path = cache_dir / f"{key}.tokens.npy", cache_dir / f"{key}.pooled.npy"
        if tok_path.is_file() and pool_path.is_file():
            logger.info("image features from cache %s", tok_path)
            return np.load(tok_path, allow_pickle=False), np.load(pool_path, allow_pickle=False)
    from tqdm.auto import tqdm

    was_training = encoder.training
    encoder.eval()
    tokens, pooled = [], []
    for i in tqdm(range(0, len(paths), batch_size), desc="image features", leave=False, disable=not progress):
        frames = load_images(paths[i : i + batch_size])
        if isinstance(frames, list):
            pix = np.concatenate([encoder.preprocess_frames(f[None]) for f in frames])
        else:
            pix = encoder.preprocess_frames(frames)
        px = torch.from_numpy(np.ascontiguousarray(pix, dtype=np.float32))
        tok_b, pool_b = encoder.tokens_and_pooled(px)  # one pass of the image tower for both
        tokens.append(tok_b.float().cpu().numpy())
        pooled.append(pool_b.float().cpu().numpy())
    encoder.train(was_training)
    tok = np.concatenate(tokens).astype(np.float32)
    pool = np.concatenate(pooled).astype(np.float32)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for path, arr in ((tok_path, tok), (pool_path, pool)):
            np.save(str(path) + ".tmp.npy", arr)
            os.replace(str(path) + ".tmp.npy", path)
        (cache_dir / f"{key}.json").write_text(json.dumps(ident, indent=1))
        logger.info("cached image features (%s tokens, %s pooled) in %s", tok.shape, pool.shape, cache_dir)
    return tok, pool
