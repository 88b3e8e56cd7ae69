"""The default INT8 calibration image set: 32 procedural PNGs (96 x 96), deterministic from a seed.

The images span what a camera or an RSVP experiment shows the encoder: smooth gradients, edges and gratings at
several orientations and spatial frequencies, blobs and objects on plain backgrounds, textures and noise, in colour
and grey, bright and dark. A source checkout keeps them in ``calibration/int8/``; an installed vibe-rt writes the
identical set once into its cache (:func:`default_calibration_dir`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .manifest import default_engines_dir

SEED, N_IMAGES, SIZE = 20261125, 32, 96

KINDS = ("gradient", "grating", "checker", "blobs", "shapes", "noise", "texture", "scene")


def make_image(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """One uint8 RGB image (size, size, 3) of the given kind."""
    import cv2  # here, not with the module: the engine cache imports it, and inference needs no OpenCV
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    col = lambda: rng.uniform(0, 255, 3)  # noqa: E731
    if kind == "gradient":
        t = np.clip(xx * np.cos(a := rng.uniform(0, np.pi)) + yy * np.sin(a), 0, 1)[..., None]
        img = (1 - t) * col() + t * col()
    elif kind == "grating":
        f, a = rng.uniform(2, 12), rng.uniform(0, np.pi)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * f * (xx * np.cos(a) + yy * np.sin(a)))[..., None]
        img = (1 - t) * col() + t * col()
    elif kind == "checker":
        n = int(rng.integers(2, 9))
        t = (((xx * n).astype(int) + (yy * n).astype(int)) % 2)[..., None].astype(np.float32)
        img = (1 - t) * col() + t * col()
    elif kind == "blobs":
        img = np.ones((size, size, 3), np.float32) * col()
        for _ in range(int(rng.integers(2, 6))):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
            w = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
            img = (1 - w) * img + w * col()
    elif kind == "shapes":
        img = np.ascontiguousarray(np.ones((size, size, 3), np.uint8) * col().astype(np.uint8))
        for _ in range(int(rng.integers(1, 4))):
            c = tuple(int(v) for v in col())
            p = rng.integers(0, size, 2)
            if rng.random() < 0.5:
                cv2.circle(img, (int(p[0]), int(p[1])), int(rng.integers(size // 10, size // 3)), c, -1)
            else:
                q = rng.integers(0, size, 2)
                cv2.rectangle(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), c, -1)
        img = img.astype(np.float32)
    elif kind == "noise":
        img = rng.normal(128, rng.uniform(20, 70), (size, size, 3))
        if rng.random() < 0.5:
            img[:] = img[..., :1]  # grey noise
    elif kind == "texture":
        base = rng.normal(0, 1, (size // 8, size // 8, 3)).astype(np.float32)
        img = 128 + 60 * cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)
    else:  # "scene": sky/ground split with an object
        horizon = rng.uniform(0.3, 0.7)
        t = (yy > horizon)[..., None].astype(np.float32)
        img = (1 - t) * col() + t * col()
        img = np.ascontiguousarray(img.astype(np.uint8))
        cv2.ellipse(img, (int(rng.integers(10, size - 10)), int(horizon * size)),
                    (int(rng.integers(5, size // 4)), int(rng.integers(5, size // 4))), 0, 0, 360,
                    tuple(int(v) for v in col()), -1)
        img = img.astype(np.float32)
    img = img * rng.uniform(0.4, 1.2)  # brightness spread
    return np.clip(img, 0, 255).astype(np.uint8)


def write_int8_set(out: str | Path, n: int = N_IMAGES, size: int = SIZE, seed: int = SEED) -> list[Path]:
    """Write ``n`` images ``NNN-<kind>.png`` into ``out`` (re-running rewrites identical files)."""
    import cv2
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        path = out / f"{i:03d}-{kind}.png"
        cv2.imwrite(str(path), cv2.cvtColor(make_image(kind, rng, size), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
        paths.append(path)
    return paths


def default_calibration_dir() -> Path:
    """``calibration/int8`` beside the engine cache (the source checkout's folder, or
    ``~/.cache/vibe-rt/calibration/int8`` for an installed vibe-rt, written there on first use)."""
    folder = default_engines_dir().parent / "calibration" / "int8"
    if not any(folder.glob("*.png")):
        write_int8_set(folder)
    return folder
