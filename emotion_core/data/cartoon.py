"""Cartoon-face renderer behind the synthetic dataset (see emotion_core.synthetic).

Geometry is described in face units (face half-width = 1, origin at the face centre, y down) and
mapped to pixels by one similarity transform, so the brow+mouth mask is drawn with exactly the
transform of the face. A face is `Nuisance` (label-independent) + `Expression` (the label, carried
only by brows and mouth): rendering the same nuisance with two labels changes pixels only inside
the union of the two masks.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

SUPPORTED_CLASSES: tuple[str, ...] = ("angry", "happy", "sad", "neutral", "surprise")
_SKIN = np.array([[255, 226, 206], [236, 190, 160], [198, 140, 100], [141, 90, 60], [90, 56, 38]],
                 np.float32)  # RGB skin tones from light to dark, interpolated
_HAIR = [(25, 20, 18), (60, 40, 28), (110, 75, 45), (200, 165, 100), (150, 70, 35), (160, 160, 160)]
_IRIS = [(70, 45, 30), (60, 90, 140), (70, 110, 70), (110, 80, 50)]
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class Nuisance:
    """Everything about an image except its expression (sampled independently of the label)."""

    cx: float  # face centre, fraction of the image side
    cy: float
    scale: float  # face half-width, fraction of the image side
    angle: float  # in-plane rotation, degrees
    face_b: float  # face half-height in face units
    chin: float  # chin narrowing
    skin: tuple[float, float, float]
    bg1: tuple[float, float, float]
    bg2: tuple[float, float, float]
    bg_angle: float
    bg_texture: str  # plain | noise | stripes | blobs
    shirt: tuple[float, float, float]
    eye_y: float
    eye_x: float
    eye_size: float
    iris: tuple[float, float, float]
    gaze: float
    brow_gap: float  # brow height above the eyes
    brow_inner: float
    brow_len: float
    brow_thick: float
    brow_arch: float
    brow_color: tuple[float, float, float]
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_color: tuple[float, float, float]
    lip_thick: float
    hair: str  # none | short | fringe | long
    hair_color: tuple[float, float, float]
    hairline: float
    glasses: str  # none | round | rect
    glasses_color: tuple[float, float, float]
    light_angle: float
    light_strength: float
    contrast: float
    blur: float  # Gaussian sigma at 128 px
    noise: float  # Gaussian noise std (grey levels)
    seed: int  # drives the background texture and pixel noise


@dataclass(frozen=True)
class Expression:
    """The label-carrying part: brow end offsets and mouth shape, in face units."""

    label: str
    intensity: float
    inner_dy: float = 0.0  # + moves the inner brow end down (toward the eyes)
    inner_dx: float = 0.0  # - moves it toward the nose
    outer_dy: float = 0.0
    arch: float = 1.0  # multiplier of the resting arch
    corner_lift: float = 0.0  # + raises the mouth corners (smile), - lowers them (frown)
    width: float = 1.0
    opening: float = 0.0  # open-mouth height
    teeth: float = 0.0  # fraction of the opening showing teeth
    lips: float = 1.0  # lip thickness multiplier (pressed lips < 1)
    line: float = 0.022  # mouth line thickness


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _color(c: Sequence[float]) -> tuple[float, float, float]:
    return (float(c[0]), float(c[1]), float(c[2]))


def sample_nuisance(rng: np.random.Generator) -> Nuisance:
    """Draw the label-independent parameters of one face (resolution-independent)."""
    t = rng.uniform(0, len(_SKIN) - 1)
    k = min(int(t), len(_SKIN) - 2)
    skin = (_SKIN[k] + (_SKIN[k + 1] - _SKIN[k]) * (t - k)) * rng.uniform(0.95, 1.05, 3)
    bg1 = rng.uniform(20, 235, 3)
    hair_color = np.array(_HAIR[rng.integers(len(_HAIR))], np.float32) * rng.uniform(0.85, 1.15)
    return Nuisance(
        cx=_u(rng, 0.4, 0.6), cy=_u(rng, 0.42, 0.58), scale=_u(rng, 0.2, 0.29),
        angle=_u(rng, -20, 20), face_b=_u(rng, 1.22, 1.4), chin=_u(rng, 0.08, 0.28),
        skin=_color(np.clip(skin, 0, 255)), bg1=_color(bg1),
        bg2=_color(np.clip(bg1 + rng.uniform(-90, 90, 3), 0, 255)), bg_angle=_u(rng, 0, 360),
        bg_texture=str(rng.choice(["plain", "noise", "stripes", "blobs"])),
        shirt=_color(rng.uniform(20, 230, 3)),
        eye_y=_u(rng, -0.2, -0.1), eye_x=_u(rng, 0.35, 0.43), eye_size=_u(rng, 0.85, 1.15),
        iris=_color(_IRIS[rng.integers(len(_IRIS))]), gaze=_u(rng, -0.04, 0.04),
        brow_gap=_u(rng, 0.22, 0.28), brow_inner=_u(rng, 0.11, 0.17), brow_len=_u(rng, 0.42, 0.52),
        brow_thick=_u(rng, 0.05, 0.085), brow_arch=_u(rng, 0.03, 0.08),
        brow_color=_color(np.clip(hair_color * rng.uniform(0.5, 0.8), 0, 255)),
        nose_len=_u(rng, 0.3, 0.42), nose_w=_u(rng, 0.08, 0.13),
        mouth_y=_u(rng, 0.56, 0.66), mouth_w=_u(rng, 0.26, 0.34),
        lip_color=_color(skin + (np.array([175, 70, 80]) - skin) * rng.uniform(0.3, 0.6)),
        lip_thick=_u(rng, 0.04, 0.065),
        hair=str(rng.choice(["none", "short", "fringe", "long"], p=[0.15, 0.35, 0.2, 0.3])),
        hair_color=_color(np.clip(hair_color, 0, 255)), hairline=_u(rng, -0.82, -0.68),
        glasses=str(rng.choice(["none", "round", "rect"], p=[0.65, 0.175, 0.175])),
        glasses_color=_color(rng.uniform(0, 120, 3) if rng.random() < 0.7 else rng.uniform(0, 255, 3)),
        light_angle=_u(rng, 0, 360), light_strength=_u(rng, 0.0, 0.45),
        contrast=_u(rng, 0.75, 1.1), blur=float(rng.choice([0.0, _u(rng, 0.3, 1.2)])),
        noise=_u(rng, 0.0, 9.0), seed=int(rng.integers(2**31)),
    )


def sample_expression(rng: np.random.Generator, label: str) -> Expression:
    """Draw the label's brow/mouth shape with a per-image intensity in [0.55, 1]."""
    if label not in SUPPORTED_CLASSES:
        raise ValueError(f"unknown expression '{label}'; supported: {', '.join(SUPPORTED_CLASSES)}")
    i = _u(rng, 0.55, 1.0)
    if label == "angry":  # brows pulled down and together, lips pressed into a flat line
        teeth = rng.random() < 0.25
        return Expression(label, i, inner_dy=0.14 * i, inner_dx=-0.035 * i, outer_dy=-0.04 * i,
                          arch=1 - 0.8 * i, corner_lift=-0.02 * i, width=1 - 0.22 * i,
                          opening=0.05 * i if teeth else 0.0, teeth=1.0 if teeth else 0.0,
                          lips=1 - 0.6 * i, line=0.03)
    if label == "happy":  # resting brows, corners raised; sometimes an open grin
        opening = 0.07 + 0.07 * i if rng.random() < 0.5 else 0.0
        return Expression(label, i, corner_lift=0.13 * i, width=1.05, opening=opening,
                          teeth=0.45 if opening else 0.0)
    if label == "sad":  # inner brows raised (oblique), corners down
        return Expression(label, i, inner_dy=-0.13 * i, inner_dx=0.01, outer_dy=0.06 * i,
                          arch=0.4, corner_lift=-0.11 * i, width=0.9, lips=1.1)
    if label == "surprise":
        return Expression(label, i, inner_dy=-0.12 * i, outer_dy=-0.1 * i, arch=1.6, width=0.55,
                          opening=0.16 + 0.1 * i)
    return Expression(label, i)  # neutral


class _Painter:
    """Draws face-unit geometry into an RGB image (and optionally the mask) with one transform."""

    def __init__(self, img: np.ndarray, n: Nuisance, mask: np.ndarray | None = None) -> None:
        size = img.shape[0]
        self.img, self.mask, self.u = img, mask, n.scale * size
        a = math.radians(n.angle)
        self.m = self.u * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        self.c = np.array([n.cx * size, n.cy * size])

    def px(self, pts: np.ndarray) -> np.ndarray:
        return np.round((np.asarray(pts) @ self.m.T + self.c) * _ONE).astype(np.int32)

    def poly(self, pts: np.ndarray, color: Sequence[float], *, expr: bool = False) -> None:
        p = [self.px(pts)]
        cv2.fillPoly(self.img, p, _color(color), cv2.LINE_AA, _SHIFT)
        if expr and self.mask is not None:
            cv2.fillPoly(self.mask, p, 255, cv2.LINE_8, _SHIFT)

    def line(self, pts: np.ndarray, color: Sequence[float], width: float, *, expr: bool = False,
             closed: bool = False) -> None:
        p = [self.px(pts)]
        t = max(1, int(round(width * self.u)))
        cv2.polylines(self.img, p, closed, _color(color), t, cv2.LINE_AA, _SHIFT)
        if expr and self.mask is not None:
            cv2.polylines(self.mask, p, closed, 255, t, cv2.LINE_8, _SHIFT)


def _ellipse(cx: float, cy: float, a: float, b: float, t0: float = 0.0, t1: float = 2 * math.pi,
             n: int = 40) -> np.ndarray:
    t = np.linspace(t0, t1, n)
    return np.stack([cx + a * np.cos(t), cy + b * np.sin(t)], 1)


def _bezier(p0: Sequence[float], p1: Sequence[float], p2: Sequence[float], n: int = 16) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * t * (1 - t) * np.asarray(p1) + t**2 * np.asarray(p2)


def _ribbon(center: np.ndarray, half: np.ndarray) -> np.ndarray:
    """A filled band of varying half-width around a polyline (tapered brows)."""
    d = np.gradient(center, axis=0)
    nrm = np.stack([-d[:, 1], d[:, 0]], 1) / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-9)
    return np.concatenate([center + nrm * half[:, None], (center - nrm * half[:, None])[::-1]])


def _shade(c: Sequence[float], k: float) -> tuple[float, float, float]:
    return _color(np.clip(np.asarray(c, np.float32) * k, 0, 255))


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-0.5, 0.5), shared by the gradients (read-only)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


def _background(n: Nuisance, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = _grid(size)
    a = math.radians(n.bg_angle)
    t = np.clip(xx * math.cos(a) + yy * math.sin(a) + 0.5, 0, 1)[..., None]
    img = np.asarray(n.bg1, np.float32) * (1 - t) + np.asarray(n.bg2, np.float32) * t
    if n.bg_texture == "noise":
        g = int(rng.integers(4, 17))
        low = rng.normal(0, 25, (g, g, 3)).astype(np.float32)
        img += cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    elif n.bg_texture == "stripes":
        b = math.radians(rng.uniform(0, 180))
        f = rng.uniform(4, 14) * 2 * math.pi
        img += (rng.uniform(10, 30) * np.sin(f * (xx * math.cos(b) + yy * math.sin(b))))[..., None]
    elif n.bg_texture == "blobs":
        for _ in range(int(rng.integers(3, 9))):
            c = (int(rng.integers(size)), int(rng.integers(size)))
            cv2.circle(img, c, int(rng.uniform(0.05, 0.2) * size), _color(rng.uniform(0, 255, 3)), -1)
        img = cv2.GaussianBlur(img, (0, 0), size / 40)
    return img


def _draw_hair_back(p: _Painter, n: Nuisance) -> None:
    if n.hair == "long":
        back = np.concatenate([_ellipse(0, -0.05, 1.22, n.face_b + 0.12, math.pi, 2 * math.pi),
                               [[1.3, 1.6], [-1.3, 1.6]]])
        p.poly(back, n.hair_color)


def _draw_hair_front(p: _Painter, n: Nuisance) -> None:
    if n.hair == "none":
        return
    b = n.face_b
    crown = _ellipse(0, 0, 1.08, b + 0.1, math.pi * 1.02, math.pi * 1.98)  # left temple -> right
    x = np.linspace(1.0, -1.0, 41)
    if n.hair == "fringe":  # a ragged fringe that may brush, never hide, the brows
        base = np.clip(n.hairline + 0.2, -0.62, -0.55)
        y = base + 0.04 * (np.arange(41) % 2) + 0.35 * np.abs(x) ** 4
    else:
        y = n.hairline + (-0.2 - n.hairline) * np.abs(x) ** 3
    hairline = np.stack([x, y], 1)
    p.poly(np.concatenate([crown, hairline]), n.hair_color)
    strand = _shade(n.hair_color, 0.7)
    for s in (-0.5, -0.15, 0.2, 0.55):  # a few strands so it reads as hair, not a hat
        p.line(_bezier([s, -b - 0.02], [s + 0.15, -b * 0.8], [s + 0.1, n.hairline - 0.03], 8),
               strand, 0.02)


def _draw_eyes(p: _Painter, n: Nuisance) -> None:
    for side in (-1, 1):
        ex, ey, s = side * n.eye_x, n.eye_y, n.eye_size
        p.poly(_ellipse(ex, ey, 0.17 * s, 0.085 * s), (245, 245, 240))
        ix = ex + n.gaze * s
        p.poly(_ellipse(ix, ey, 0.075 * s, 0.075 * s, n=24), n.iris)
        p.poly(_ellipse(ix, ey, 0.035 * s, 0.035 * s, n=16), (15, 10, 10))
        p.poly(_ellipse(ix + 0.025 * s, ey - 0.025 * s, 0.015 * s, 0.015 * s, n=8), (255, 255, 255))
        lid = _ellipse(ex, ey + 0.005, 0.18 * s, 0.095 * s, math.pi * 1.05, math.pi * 1.95, 20)
        p.line(lid, _shade(n.skin, 0.35), 0.028)
        p.line(_ellipse(ex, ey, 0.17 * s, 0.085 * s), _shade(n.skin, 0.6), 0.012, closed=True)


def _draw_nose(p: _Painter, n: Nuisance) -> None:
    dark = _shade(n.skin, 0.7)
    top, tip = n.eye_y + 0.08, n.eye_y + 0.1 + n.nose_len
    p.line(_bezier([0.05, top], [0.09, (top + tip) / 2], [n.nose_w * 0.7, tip - 0.04], 10), dark, 0.02)
    p.line(_ellipse(0, tip - 0.03, n.nose_w, 0.045, 0.15 * math.pi, 0.85 * math.pi, 12), dark, 0.025)
    for side in (-1, 1):
        p.poly(_ellipse(side * n.nose_w * 0.55, tip - 0.01, 0.03, 0.018, n=12), _shade(n.skin, 0.45))


def _draw_brows(p: _Painter, n: Nuisance, e: Expression) -> None:
    y0 = n.eye_y - n.brow_gap
    for side in (-1, 1):
        inner = np.array([side * (n.brow_inner + e.inner_dx), y0 + e.inner_dy])
        outer = np.array([side * (n.brow_inner + n.brow_len), y0 + 0.02 + e.outer_dy])
        mid = (inner + outer) / 2 + [0, -2 * n.brow_arch * e.arch]
        if e.label == "sad":  # the raised inner end bends the brow near the nose
            mid = 0.6 * inner + 0.4 * outer + np.array([0, -0.02])
        center = _bezier(inner, mid, outer, 16)
        half = n.brow_thick / 2 * np.linspace(1.0, 0.45, 16)
        p.poly(_ribbon(center, half), n.brow_color, expr=True)


def _draw_mouth(p: _Painter, n: Nuisance, e: Expression) -> None:
    w, y = n.mouth_w * e.width, n.mouth_y
    x = np.linspace(-w, w, 25)
    r = (x / w) ** 2
    line = np.stack([x, y - e.corner_lift * r + 0.02 * e.corner_lift], 1)  # mouth line (parabola)
    bulge = np.sqrt(np.clip(1 - r, 0, 1))
    lt = n.lip_thick * e.lips
    upper = line - np.stack([0 * x, lt * bulge * (1 - 0.25 * np.exp(-(x / 0.06) ** 2))], 1)
    lower_in = line + np.stack([0 * x, e.opening * bulge], 1)
    lower = lower_in + np.stack([0 * x, 1.2 * lt * bulge], 1)
    p.poly(np.concatenate([upper, lower[::-1]]), n.lip_color, expr=True)
    if e.opening > 0:
        p.poly(np.concatenate([line, lower_in[::-1]]), (70, 20, 28), expr=True)
        if e.teeth > 0:
            teeth_low = line + np.stack([0 * x, e.opening * e.teeth * bulge], 1)
            p.poly(np.concatenate([line, teeth_low[::-1]]), (240, 238, 225), expr=True)
    p.line(line, _shade(n.lip_color, 0.45), e.line, expr=True)


def _draw_glasses(p: _Painter, n: Nuisance) -> None:
    if n.glasses == "none":
        return
    ey, s, col = n.eye_y, n.eye_size, n.glasses_color
    for side in (-1, 1):
        ex = side * n.eye_x
        if n.glasses == "round":
            rim = _ellipse(ex, ey, 0.2 * s, 0.15 * s)
        else:
            rim = np.array([[ex - 0.23 * s, ey - 0.12 * s], [ex + 0.23 * s, ey - 0.12 * s],
                            [ex + 0.21 * s, ey + 0.13 * s], [ex - 0.21 * s, ey + 0.13 * s]])
        p.line(rim, col, 0.03, closed=True)
        p.line(np.array([[ex + side * 0.21 * s, ey - 0.03], [side * 0.99, ey - 0.06]]), col, 0.03)
    p.line(_bezier([-n.eye_x + 0.2 * s, ey - 0.03], [0, ey - 0.08], [n.eye_x - 0.2 * s, ey - 0.03], 8),
           col, 0.028)


def render_face(n: Nuisance, e: Expression, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Draw one face; returns (RGB uint8 HxWx3, mask uint8 HxW in {0,255} over brows+mouth)."""
    if size < 16:
        raise ValueError(f"size must be at least 16 px, got {size}")
    rng = np.random.default_rng(n.seed)  # same stream for every label: identical texture/noise
    img = _background(n, size, rng)
    img = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
    mask = np.zeros((size, size), np.uint8)
    p = _Painter(img, n, mask)
    b = n.face_b
    _draw_hair_back(p, n)
    p.poly(np.array([[-1.9, 3.2], [-1.7, 1.75], [-0.5, 1.35], [0.5, 1.35], [1.7, 1.75], [1.9, 3.2]]),
           n.shirt)
    p.poly(np.array([[-0.42, 0.6], [0.42, 0.6], [0.48, 1.5], [-0.48, 1.5]]), _shade(n.skin, 0.85))
    for side in (-1, 1):
        p.poly(_ellipse(side * 0.97, n.eye_y + 0.12, 0.14, 0.25, n=20), _shade(n.skin, 0.93))
    t = np.linspace(0, 2 * math.pi, 72)
    oval = np.stack([np.cos(t) * (1 - n.chin * np.clip(np.sin(t), 0, 1) ** 2), b * np.sin(t)], 1)
    p.poly(oval, n.skin)
    p.line(oval, _shade(n.skin, 0.78), 0.025, closed=True)
    _draw_eyes(p, n)
    _draw_nose(p, n)
    _draw_brows(p, n, e)
    _draw_mouth(p, n, e)
    _draw_hair_front(p, n)
    _draw_glasses(p, n)

    out = img.astype(np.float32)
    yy, xx = _grid(size)
    a = math.radians(n.light_angle)
    light = 1 + n.light_strength * (xx * math.cos(a) + yy * math.sin(a)) * 2
    out = (out * light[..., None] - 128) * n.contrast + 128
    sigma = n.blur * size / 128
    if sigma > 0.05:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(n.noise)
    rgb = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    # Grow the mask past anti-aliased edges and the blur footprint, and a little for tolerance.
    r = int(math.ceil(4 * sigma)) + 3 + int(round(0.03 * p.u))  # cv2 float kernels reach 4 sigma
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return rgb, mask
