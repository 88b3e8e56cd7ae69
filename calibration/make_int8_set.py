"""Generate the default INT8 calibration image set ``calibration/int8/`` (32 procedural PNGs, 96 x 96).

Deterministic (seeded): re-running it rewrites identical files. The images span what a camera or an RSVP
experiment shows the encoder: smooth gradients, edges and gratings at several orientations and spatial
frequencies, blobs and objects on plain backgrounds, textures and noise, in colour and grey, bright and dark.

Usage: ``python calibration/make_int8_set.py [--out calibration/int8] [--n 32] [--size 96]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

KINDS = ("gradient", "grating", "checker", "blobs", "shapes", "noise", "texture", "scene")


def make_image(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """One uint8 RGB image (size, size, 3) of the given kind."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "int8")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.n):
        kind = KINDS[i % len(KINDS)]
        rgb = make_image(kind, rng, args.size)
        cv2.imwrite(str(args.out / f"{i:03d}-{kind}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.n} images to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
