"""Procedural category images: faces, bodies, man-made objects and scenes, drawn with signed distances.

Each drawing works on a luminance-contrast canvas (0 = the mid-grey adaptation level, -1 black, +1 white) and a
colour canvas (RGB offsets), painted part by part with anti-aliased masks, and returns the two canvases and
the drawn parameters. :func:`category_image` puts figures (face, body, object) on a full-field backdrop
(1/f texture or a two-tone wall and floor), draws scenes full field, and equates low-level statistics across
categories (RMS contrast and mean luminance drawn from the same ranges for every category; see
:mod:`vibe_rt.data.stimuli`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .categories import CategoryLabel
from .stimuli import pink_field

_RMS_RANGE = (0.10, 0.35)  # RMS luminance contrast of every category image (log-uniform)
_MEAN_RANGE = (-0.12, 0.12)  # mean luminance contrast re mid-grey (uniform)


class _Canvas:
    """Luminance and colour canvases over the grid ``x, y`` (both in [-1, 1], y up)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y
        self.lum = np.zeros_like(x)
        self.rgb = np.zeros(x.shape + (3,))
        self.edge = 2.0 / x.shape[0]  # one pixel in grid units

    def paint(self, d: np.ndarray, lum: float, rgb: np.ndarray | None = None) -> None:
        """Fill the region ``d < 0`` (signed distance, grid units) with ``lum`` and colour offset ``rgb``."""
        a = np.clip(0.5 - d / self.edge, 0.0, 1.0)
        rows, cols = np.flatnonzero(a.any(1)), np.flatnonzero(a.any(0))
        if rows.size == 0:
            return
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # where the part is
        a = a[box]
        self.lum[box] += a * (lum - self.lum[box])
        target = np.zeros(3) if rgb is None else rgb
        self.rgb[box] += a[..., None] * (target - self.rgb[box])


def _local(x: np.ndarray, y: np.ndarray, cx: float, cy: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates relative to (cx, cy), rotated by ``angle`` (rad, counter-clockwise)."""
    dx, dy = x - cx, y - cy
    c, s = np.cos(angle), np.sin(angle)
    return c * dx + s * dy, -s * dx + c * dy


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, a: float, b: float) -> np.ndarray:
    return (np.hypot((u - cu) / a, (v - cv) / b) - 1.0) * min(a, b)


def _box(u: np.ndarray, v: np.ndarray, cu: float, cv: float, a: float, b: float) -> np.ndarray:
    return np.maximum(np.abs(u - cu) - a, np.abs(v - cv) - b)


def _capsule(u: np.ndarray, v: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], r: float
             ) -> np.ndarray:
    px, py = u - p0[0], v - p0[1]
    qx, qy = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip((px * qx + py * qy) / (qx * qx + qy * qy + 1e-12), 0.0, 1.0)
    return np.hypot(px - t * qx, py - t * qy) - r


def _polygon(u: np.ndarray, v: np.ndarray, pts: list[tuple[float, float]]) -> np.ndarray:
    """Signed distance (approximate: max over edge half-planes) of a convex counter-clockwise polygon."""
    d = np.full(u.shape, -np.inf)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
        nx, ny = y1 - y0, x0 - x1
        norm = np.hypot(nx, ny) + 1e-12
        d = np.maximum(d, ((u - x0) * nx + (v - y0) * ny) / norm)
    return d


def _tint(rng: np.random.Generator, scale: float = 0.25) -> np.ndarray:
    """A random colour offset (RGB, zero mean) of up to ``scale``."""
    v = rng.normal(size=3)
    v -= v.mean()
    return scale * rng.uniform(0.2, 1.0) * v / (np.max(np.abs(v)) + 1e-12)


_SKIN = np.array([0.10, 0.0, -0.10])  # reddish-yellow colour offset


def _face(rng: np.random.Generator, cv: _Canvas, cx: float, cy: float, s: float) -> dict[str, Any]:
    """A face of head half-height ``s`` centred at (cx, cy): identity = feature geometry, viewpoint = yaw, roll."""
    yaw = float(rng.uniform(-40, 40))
    roll = float(rng.uniform(-15, 15))
    inverted = bool(rng.random() < 0.15)
    angle = np.deg2rad(roll + (180.0 if inverted else 0.0))
    u, v = _local(cv.x, cv.y, cx, cy, angle)
    shift = 0.45 * s * np.sin(np.deg2rad(yaw))  # features slide towards the turned side
    skin = float(rng.uniform(-0.35, 0.55))
    skin_rgb = _SKIN * rng.uniform(0.5, 1.5)
    dark = float(rng.uniform(-0.95, -0.55))
    width = s * rng.uniform(0.66, 0.8)
    cv.paint(_ellipse(u, v, 0.0, 0.0, width, s), skin, skin_rgb)
    if rng.random() < 0.75:  # hair: the top of the head
        hair = float(rng.uniform(-0.95, -0.4)) if rng.random() < 0.8 else float(rng.uniform(0.3, 0.8))
        line = s * rng.uniform(0.35, 0.6)
        cv.paint(np.maximum(_ellipse(u, v, 0.0, 0.04 * s, width * 1.06, s * 1.04), line - v), hair,
                 _tint(rng, 0.1))
    ex, ey = s * rng.uniform(0.26, 0.36), s * rng.uniform(0.10, 0.22)
    ea, eb = s * rng.uniform(0.09, 0.13), s * rng.uniform(0.045, 0.065)
    squeeze = 1.0 - 0.35 * abs(np.sin(np.deg2rad(yaw)))
    for side in (-1.0, 1.0):
        far = side * yaw > 0
        a = ea * (squeeze if far else 1.0)
        cv.paint(_ellipse(u, v, side * ex * (squeeze if far else 1.0) + shift, ey, a, eb), dark)
        brow = ey + s * rng.uniform(0.11, 0.16)
        cv.paint(_capsule(u, v, (side * ex * 0.6 + shift, brow), (side * ex * 1.35 + shift, brow + 0.02 * s),
                          0.022 * s), dark * 0.8)
    cv.paint(_capsule(u, v, (shift * 1.2, ey - 0.05 * s), (shift * 1.3, -0.17 * s), 0.03 * s), skin - 0.25,
             skin_rgb)
    my = -s * rng.uniform(0.38, 0.5)
    cv.paint(_ellipse(u, v, shift, my, s * rng.uniform(0.13, 0.21), s * rng.uniform(0.035, 0.06)),
             dark * 0.7, np.array([0.12, -0.04, -0.04]))
    return {"yaw_deg": round(yaw, 1), "roll_deg": round(roll, 1), "inverted": inverted}


def _body(rng: np.random.Generator, cv: _Canvas, cx: float, cy: float, s: float) -> dict[str, Any]:
    """A headless body of half-height ``s`` in a drawn pose (arm and leg joint angles)."""
    inverted = bool(rng.random() < 0.1)
    angle = np.deg2rad(rng.uniform(-12, 12) + (180.0 if inverted else 0.0))
    u, v = _local(cv.x, cv.y, cx, cy, angle)
    top, bottom = float(rng.uniform(-0.8, 0.6)), float(rng.uniform(-0.8, 0.6))
    top_rgb, bottom_rgb = _tint(rng, 0.3), _tint(rng, 0.2)
    skin = float(rng.uniform(-0.3, 0.5))
    w = s * rng.uniform(0.18, 0.26)
    limb = s * rng.uniform(0.05, 0.075)
    pose = []
    for side in (-1.0, 1.0):  # legs first (behind the torso)
        hip = (side * w * 0.5, -0.25 * s)
        a1 = np.deg2rad(-90 + side * rng.uniform(0, 25))
        knee = (hip[0] + 0.38 * s * np.cos(a1), hip[1] + 0.38 * s * np.sin(a1))
        a2 = a1 + np.deg2rad(rng.uniform(-30, 30))
        foot = (knee[0] + 0.36 * s * np.cos(a2), knee[1] + 0.36 * s * np.sin(a2))
        cv.paint(np.minimum(_capsule(u, v, hip, knee, limb * 1.25), _capsule(u, v, knee, foot, limb * 1.1)),
                 bottom, bottom_rgb)
        pose.append(round(float(np.rad2deg(a1)), 1))
    cv.paint(_ellipse(u, v, 0.0, 0.08 * s, w, 0.38 * s), top, top_rgb)
    for side in (-1.0, 1.0):
        shoulder = (side * w * 0.9, 0.36 * s)
        a1 = np.deg2rad(-90 + side * rng.uniform(10, 150))
        elbow = (shoulder[0] + 0.3 * s * np.cos(a1), shoulder[1] + 0.3 * s * np.sin(a1))
        a2 = a1 + side * np.deg2rad(rng.uniform(0, 80))
        hand = (elbow[0] + 0.28 * s * np.cos(a2), elbow[1] + 0.28 * s * np.sin(a2))
        cv.paint(_capsule(u, v, shoulder, elbow, limb), top, top_rgb)
        cv.paint(_capsule(u, v, elbow, hand, limb * 0.85), skin, _SKIN)
        pose.append(round(float(np.rad2deg(a1)), 1))
    cv.paint(_capsule(u, v, (0.0, 0.42 * s), (0.0, 0.5 * s), limb * 1.2), skin, _SKIN)  # neck stump
    return {"pose_deg": pose, "inverted": inverted}


_OBJECTS = ("mug", "bottle", "lamp", "chair", "hammer", "table", "fruit")


def _object(rng: np.random.Generator, cv: _Canvas, cx: float, cy: float, s: float) -> dict[str, Any]:
    """A man-made object (or a round fruit-like one) of half-size ``s``, built from a few parts."""
    kind = str(rng.choice(_OBJECTS))
    u, v = _local(cv.x, cv.y, cx, cy, np.deg2rad(rng.uniform(-20, 20)))
    main, second = float(rng.uniform(-0.9, 0.9)), float(rng.uniform(-0.9, 0.9))
    rgb, rgb2 = _tint(rng, 0.35), _tint(rng, 0.35)
    r = rng.uniform(0.8, 1.2, 4)
    if kind == "mug":
        cv.paint(np.abs(_ellipse(u, v, 0.42 * s, 0.0, 0.22 * s * r[0], 0.26 * s)) - 0.05 * s, main, rgb)
        cv.paint(_box(u, v, 0.0, 0.0, 0.4 * s * r[1], 0.55 * s * r[2]), main, rgb)
    elif kind == "bottle":
        cv.paint(_box(u, v, 0.0, -0.2 * s, 0.28 * s * r[0], 0.6 * s), main, rgb)
        cv.paint(_box(u, v, 0.0, 0.55 * s, 0.1 * s * r[1], 0.3 * s), main, rgb)
        cv.paint(_box(u, v, 0.0, 0.88 * s, 0.12 * s, 0.06 * s), second, rgb2)
    elif kind == "lamp":
        cv.paint(_ellipse(u, v, 0.0, -0.85 * s, 0.4 * s * r[0], 0.08 * s), second, rgb2)
        cv.paint(_capsule(u, v, (0.0, -0.85 * s), (0.0, 0.3 * s), 0.04 * s), second, rgb2)
        cv.paint(_polygon(u, v, [(-0.55 * s * r[1], 0.2 * s), (0.55 * s * r[1], 0.2 * s), (0.28 * s, 0.8 * s),
                                 (-0.28 * s, 0.8 * s)]), main, rgb)
    elif kind == "chair":
        for lx in (-0.45, 0.45):
            cv.paint(_capsule(u, v, (lx * s, -0.1 * s), (lx * s * 1.05, -0.9 * s), 0.05 * s), second, rgb2)
        cv.paint(_box(u, v, 0.0, -0.05 * s, 0.55 * s * r[0], 0.07 * s), main, rgb)
        cv.paint(_box(u, v, -0.48 * s, 0.45 * s, 0.07 * s, 0.5 * s * r[1]), main, rgb)
    elif kind == "hammer":
        cv.paint(_capsule(u, v, (0.0, -0.9 * s), (0.0, 0.55 * s), 0.07 * s * r[0]), second, rgb2)
        cv.paint(_box(u, v, 0.05 * s, 0.65 * s, 0.45 * s * r[1], 0.13 * s), main, rgb)
    elif kind == "table":
        cv.paint(_box(u, v, 0.0, 0.2 * s, 0.9 * s * r[0], 0.07 * s), main, rgb)
        for lx in (-0.78, 0.78):
            cv.paint(_box(u, v, lx * s * r[0], -0.35 * s, 0.05 * s, 0.5 * s), second, rgb2)
    else:  # fruit-like round object with a stalk
        cv.paint(_ellipse(u, v, 0.0, -0.05 * s, 0.55 * s * r[0], 0.5 * s * r[1]), main, rgb)
        cv.paint(_capsule(u, v, (0.0, 0.4 * s), (0.08 * s, 0.7 * s), 0.035 * s), second, rgb2)
    return {"object": kind}


def _scene(rng: np.random.Generator, cv: _Canvas) -> dict[str, Any]:
    """A full-field scene: sky, ground, horizon, and buildings, trees, a road or a ridge."""
    x, y = cv.x, cv.y
    horizon = float(rng.uniform(-0.35, 0.35))
    sky, ground = float(rng.uniform(0.0, 0.8)), float(rng.uniform(-0.7, 0.2))
    cv.lum[:] = np.where(y > horizon, sky + 0.3 * (y - 1) * rng.uniform(0, 1), ground)
    cv.rgb[:] = np.where((y > horizon)[..., None], np.array([-0.1, 0.0, 0.12]) * rng.uniform(0.3, 1.2),
                         np.array([0.0, 0.06, -0.08]) * rng.uniform(0.3, 1.2))
    n = x.shape[0]
    cv.lum += np.where(y <= horizon, 0.4 * pink_field(rng, n, rng.uniform(0.9, 1.4)), 0.0)
    parts = []
    if rng.random() < 0.3:  # ridge of mountains behind everything
        px = np.linspace(-1.05, 1.05, 6)
        py = horizon + rng.uniform(0.05, 0.4, 6)
        ridge = np.interp(x[0], px, py)[None, :]
        cv.paint(np.maximum(y - ridge, horizon - y - 0.01), sky - rng.uniform(0.3, 0.7))
        parts.append("ridge")
    for _ in range(int(rng.integers(0, 6))):
        bx, bw, bh = float(rng.uniform(-1, 1)), float(rng.uniform(0.06, 0.3)), float(rng.uniform(0.15, 0.9))
        lum = float(rng.uniform(-0.8, 0.6))
        cv.paint(_box(x, y, bx, horizon + bh / 2, bw, bh / 2), lum, _tint(rng, 0.15))
        if rng.random() < 0.5:  # a grid of windows
            win = np.maximum(np.abs(((x - bx) / 0.06) % 1 - 0.5) - 0.22, np.abs(((y - horizon) / 0.08) % 1 - 0.5)
                             - 0.22) * 0.06
            cv.paint(np.maximum(win, _box(x, y, bx, horizon + bh / 2, bw * 0.85, bh / 2 * 0.85)), lum - 0.5)
        parts.append("building")
    for _ in range(int(rng.integers(0, 4))):
        tx, th = float(rng.uniform(-1, 1)), float(rng.uniform(0.15, 0.5))
        base = horizon - float(rng.uniform(0.0, 0.3))
        cv.paint(_capsule(x, y, (tx, base), (tx, base + th * 0.5), 0.015 + 0.03 * th), -0.6)
        cv.paint(_ellipse(x, y, tx, base + th * 0.75, th * 0.35, th * 0.4), float(rng.uniform(-0.7, 0.1)),
                 np.array([-0.05, 0.1, -0.05]))
        parts.append("tree")
    if rng.random() < 0.4:  # road converging to a vanishing point on the horizon
        vx = float(rng.uniform(-0.4, 0.4))
        cv.paint(np.maximum(_polygon(x, y, [(-0.8, -1.05), (0.8, -1.05), (vx + 0.02, horizon),
                                            (vx - 0.02, horizon)]), y - horizon), float(rng.uniform(-0.5, 0.3)))
        parts.append("road")
    return {"horizon": round(horizon, 3), "parts": parts}


def category_image(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, category: str
                   ) -> tuple[np.ndarray, dict[str, Any]]:
    """One category image on the grid ``x, y``: RGB in [0, 1] and its parameters (with the category label)."""
    cv = _Canvas(x, y)
    p: dict[str, Any] = {"kind": category}
    if category == "scene":
        p.update(_scene(rng, cv))
    else:
        if rng.random() < 0.6:  # 1/f textured backdrop
            cv.lum += rng.uniform(0.1, 0.6) * pink_field(rng, x.shape[0], rng.uniform(0.9, 1.6),
                                                         rng.uniform(0, np.pi) if rng.random() < 0.4 else None)
            cv.rgb += _tint(rng, 0.15)
        else:  # wall and floor
            split = float(rng.uniform(-0.8, -0.1))
            cv.lum[:] = np.where(y > split, rng.uniform(-0.4, 0.4), rng.uniform(-0.6, 0.3))
            cv.rgb[:] = _tint(rng, 0.15)
        s = float(np.exp(rng.uniform(np.log(0.25), np.log(0.7))))
        cx, cy = (float(c) for c in rng.uniform(-0.7 + s * 0.7, 0.7 - s * 0.7, 2))
        draw = {"face": _face, "body": _body, "object": _object}[category]
        p.update(draw(rng, cv, cx, cy, s), cx=round(cx, 3), cy=round(cy, 3), size=round(s, 3))
    rms = float(np.exp(rng.uniform(*np.log(_RMS_RANGE))))
    mean = float(rng.uniform(*_MEAN_RANGE))
    lum = cv.lum - cv.lum.mean()
    lum = mean + lum * (rms / (lum.std() + 1e-9))
    colour = cv.rgb * (rms / 0.25) * (0.0 if rng.random() < 0.2 else 1.0)  # 20 % greyscale
    img = np.clip(0.5 + 0.5 * (lum[..., None] + colour), 0.0, 1.0)
    label = CategoryLabel(category, 1.0, bool(p.get("inverted", False)))
    p.update(rms_contrast=round(rms, 4), mean_contrast=round(mean, 4), category=label.to_dict())
    return img, p
