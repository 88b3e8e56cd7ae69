"""Procedural stimulus images: low-level patterns and object-category scenes whose category is known.

Two families, all drawn from a seeded generator (a set of images is a pure function of its seed), RGB uint8,
128 x 128 by default; the image centre is the fixation point (row 0 = upper field, column 0 = left field):

* **Patterns** (:data:`PATTERN_KINDS`): gratings, Gabor patches, shapes, 1/f textures and composites on the
  mid-grey adaptation level, with drawn position, size, contrast, spatial frequency, orientation and colour.
  They show no object category.
* **Category images** (:data:`CATEGORY_KINDS`, see :mod:`vibe_rt.data.categories`): a procedural **face**
  (head, hair, eyes, brows, nose, mouth; identity = drawn feature geometry, viewpoint = yaw and roll,
  15 % upside down), a headless **body** (torso and jointed limbs in a drawn pose), a man-made **object**
  (mug, bottle, lamp, chair, hammer, table or fruit-like round object) or a **scene** (horizon, sky, ground,
  buildings, trees, road, ridge), full-field like photographs: figures stand on a 1/f-textured or two-tone
  backdrop. Low-level statistics are equated across categories as in image sets for category ERPs
  (SHINE-style, Willenbockel et al. 2010): each image is rescaled to an RMS luminance contrast drawn from one
  log-uniform range (0.10-0.35) and a mean drawn from one range, whatever its category, so the category of an
  image is not given by its contrast or mean luminance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, SourceError
from .categories import CATEGORIES

PATTERN_KINDS = ("grating", "gabor", "shape", "texture", "composite")
CATEGORY_KINDS = CATEGORIES
KINDS = PATTERN_KINDS + CATEGORY_KINDS
_KIND_P = (0.05,) * 5 + (0.1875,) * 4  # a quarter patterns; mostly objects, like THINGS
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size) + 0.5) / size * 2 - 1
    return np.meshgrid(c, -c)  # x right, y up, both in [-1, 1]


def _colour(rng: np.random.Generator) -> np.ndarray:
    """RGB modulation direction: achromatic (60 %) or a random chromatic axis, max |component| = 1."""
    if rng.random() < 0.6:
        return np.ones(3)
    v = rng.normal(size=3) + rng.uniform(-0.5, 0.5)
    return v / np.max(np.abs(v))


def _window(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, cx: float, cy: float, radius: float,
            soft: bool) -> np.ndarray:
    r = np.hypot(x - cx, y - cy)
    if soft:
        return np.exp(-0.5 * (r / (radius / 2)) ** 2)
    edge = 2.0 / x.shape[0]
    return np.clip((radius - r) / edge + 0.5, 0, 1)


def _params(rng: np.random.Generator) -> dict[str, Any]:
    central = rng.random() < 0.15
    return {
        "cx": 0.0 if central else float(rng.uniform(-0.65, 0.65)),
        "cy": 0.0 if central else float(rng.uniform(-0.65, 0.65)),
        "radius": float(np.exp(rng.uniform(np.log(0.1), np.log(0.7)))),
        "contrast": float(np.exp(rng.uniform(np.log(0.04), np.log(1.0)))),
        "sf": float(np.exp(rng.uniform(np.log(1.5), np.log(16.0)))),  # cycles per image width
        "orientation": float(rng.uniform(0, np.pi)),
        "phase": float(rng.uniform(0, 2 * np.pi)),
    }


def _grating(rng, x, y, p, soft):
    u = x * np.cos(p["orientation"]) + y * np.sin(p["orientation"])
    carrier = np.cos(np.pi * p["sf"] * u + p["phase"])  # sf cycles over the width of 2
    if rng.random() < 0.25:
        carrier = np.sign(carrier)  # square-wave grating
    return carrier * _window(rng, x, y, p["cx"], p["cy"], p["radius"], soft)


def _shape(rng, x, y, p):
    kind = rng.choice(["disc", "square", "triangle", "ring", "bar", "cross"])
    dx, dy = x - p["cx"], y - p["cy"]
    th = p["orientation"]
    u = dx * np.cos(th) + dy * np.sin(th)
    v = -dx * np.sin(th) + dy * np.cos(th)
    r = p["radius"]
    if kind == "disc":
        d = np.hypot(u, v) - r
    elif kind == "square":
        d = np.maximum(np.abs(u), np.abs(v)) - r * 0.8
    elif kind == "triangle":
        angles = th + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        d = np.max([dx * np.cos(a) + dy * np.sin(a) for a in angles], axis=0) - r * 0.5
    elif kind == "ring":
        d = np.abs(np.hypot(u, v) - r * 0.75) - r * 0.2
    elif kind == "bar":
        d = np.maximum(np.abs(u) - r, np.abs(v) - r * 0.2)
    else:
        d = np.minimum(np.maximum(np.abs(u) - r, np.abs(v) - r * 0.18),
                       np.maximum(np.abs(v) - r, np.abs(u) - r * 0.18))
    edge = 1.5 / x.shape[0]
    return np.clip(0.5 - d / edge, 0, 1) * (1.0 if rng.random() < 0.5 else -1.0)


def pink_field(rng: np.random.Generator, n: int, exponent: float, orientation: float | None = None,
               band: float | None = None) -> np.ndarray:
    """Random n x n field with amplitude spectrum ``1/f**exponent`` (natural images: about 1/f), max |value| 1.

    ``orientation`` (rad) biases the spectrum towards one orientation; ``band`` (cycles per image) limits it
    to about one octave around that frequency.
    """
    fx = np.fft.fftfreq(n)[None, :]
    fy = np.fft.fftfreq(n)[:, None]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    amp = f ** (-exponent)
    amp[0, 0] = 0.0
    if orientation is not None:
        amp *= np.exp(2.0 * np.cos(2 * (np.arctan2(fy, fx) - orientation))) / np.exp(2.0)
    if band is not None:
        amp *= np.exp(-0.5 * (np.log(f * n / band) / 0.6) ** 2)
    field = np.real(np.fft.ifft2(amp * np.exp(1j * rng.uniform(0, 2 * np.pi, (n, n)))))
    return field / (np.max(np.abs(field)) + 1e-12)


def _texture(rng, x, y, p):
    orientation = p["orientation"] if rng.random() < 0.5 else None
    band = p["sf"] / 2 + 0.5 if rng.random() < 0.3 else None
    tex = pink_field(rng, x.shape[0], rng.uniform(0.8, 1.6), orientation, band)
    if rng.random() < 0.3:
        return tex  # full field
    return tex * _window(rng, x, y, p["cx"], p["cy"], p["radius"] * 1.3, soft=rng.random() < 0.5)


def make_stimulus(rng: np.random.Generator, size: int = 128, kind: str | None = None
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    """One procedural image.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all random choices.
    size : int
        Width and height in pixels.
    kind : str | None
        One of :data:`KINDS`; default drawn at random (each pattern kind 5 %, each category 18.75 %).

    Returns
    -------
    image : ndarray, shape (size, size, 3), uint8
        RGB image (patterns on a mid-grey background, category images full field).
    params : dict
        The drawn parameters (kind, position, size, contrast, spatial frequency, orientation, ...) and
        ``category``: None for patterns, else a :meth:`CategoryLabel.to_dict` (name, strength, inverted).
    """
    if kind is None:
        kind = str(rng.choice(KINDS, p=_KIND_P))
    if kind not in KINDS:
        raise DataError(f"unknown stimulus kind {kind!r}; use one of {KINDS}")
    x, y = _grid(size)
    if kind in CATEGORY_KINDS:
        from .category_images import category_image

        img, p = category_image(rng, x, y, kind)
        return (img * 255 + 0.5).astype(np.uint8), p
    p = _params(rng)
    if kind == "composite":
        canvas = np.zeros((size, size, 3))
        parts = []
        for _ in range(int(rng.integers(2, 4))):
            sub, sp = make_stimulus(rng, size, str(rng.choice(["grating", "gabor", "shape"])))
            parts.append(sp)
            canvas += sub.astype(float) / 255 - 0.5
        img = np.clip(0.5 + canvas, 0, 1)
        return (img * 255 + 0.5).astype(np.uint8), {"kind": kind, "parts": parts, "category": None}
    if kind == "grating":
        pattern = _grating(rng, x, y, p, soft=False)
    elif kind == "gabor":
        pattern = _grating(rng, x, y, p, soft=True)
    elif kind == "shape":
        pattern = _shape(rng, x, y, p)
    else:
        pattern = _texture(rng, x, y, p)
    col = _colour(rng)
    img = np.clip(0.5 + 0.5 * p["contrast"] * pattern[..., None] * col, 0, 1)
    p.update(kind=kind, colour=col.round(3).tolist(), category=None)
    return (img * 255 + 0.5).astype(np.uint8), p


def checkerboard(check_deg: float = 0.5, image_deg: float = 7.0, contrast: float = 1.0,
                 radius: float | None = None, size: int = 128) -> np.ndarray:
    """A black-and-white checkerboard of mean luminance mid-grey (the pattern-onset VEP stimulus, ISCEV).

    Parameters
    ----------
    check_deg : float
        Side of one check in degrees (ISCEV: 1 and 0.25 deg).
    image_deg : float
        Visual angle of the image side.
    contrast : float
        Michelson contrast (0..1).
    radius : float | None
        Restrict the checks to a central disc of this radius (fraction of the image half-width); the rest
        stays mid-grey.
    size : int
        Side in pixels.

    Returns
    -------
    ndarray, shape (size, size, 3), uint8
    """
    x, y = _grid(size)
    half = image_deg / 2
    checks = np.sign(np.sin(np.pi * x * half / check_deg) * np.sin(np.pi * y * half / check_deg))
    window = 1.0 if radius is None else (np.hypot(x, y) < radius)
    lum = np.clip(0.5 + 0.5 * contrast * checks * window, 0, 1)
    return np.repeat((lum * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3); raises :class:`SourceError` naming the file if unreadable."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError(f"cannot read image {path}; use a PNG/JPEG/BMP/TIFF/WebP file")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB uint8 image (PNG by suffix)."""
    import cv2

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)):
        raise DataError(f"cannot write image {path}")


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Image files under ``directory`` (recursive), sorted; raises :class:`SourceError` if there are none."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SourceError(f"image folder {directory} does not exist")
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {directory}")
    return files
