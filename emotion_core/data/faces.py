"""Face detection and square crops: one detector for training, evaluation, Explain and Predict.

The detector is MTCNN (`mtcnn`, weights from the facenet-pytorch wheel) when that package is
installed, else OpenCV's Haar cascade (`haar`), with a one-time warning; every FaceBox and
FaceSearch names the detector that produced it. Inputs are bounded before any large allocation:
images more elongated than MAX_ASPECT:1 or narrower than MIN_SIDE pixels are not searched (an
empty result with a note), and larger images are strided, then downscaled to MAX_SIDE pixels.
MTCNN misses faces that fill the whole frame, so a small, roughly square, non-flat image without
a face is flagged `face_crop` (never silently used whole). Numbers: docs/data.md, Faces.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from emotion_core.data import haar, mtcnn

DETECTORS = ("mtcnn", "haar")  # best first; None picks the first available
MAX_SIDE = 1280  # longest side scanned; larger images are downscaled first
MAX_ASPECT = 20.0  # longer / shorter side above this: not searched (no face fits; bounded cost)
MIN_SIDE = 12  # shorter side below this: not searched (MTCNN's smallest window)
MIN_FACE = 20  # smallest face MTCNN searches for, in image pixels (>= 12 scanned pixels)
CROP_SIDE = 400  # face_crop: shorter side at most this, ...
CROP_ASPECT = 1.6  # ... at most this elongated, ...
CROP_MIN_STD = 8.0  # ... and not flat (grey standard deviation), with no face found
DEFAULT_MARGIN = 0.25  # crop_face: the box grows by this fraction of its side on each side
MAX_MARGIN = 2.0  # beyond this a crop is mostly background
# How a crop square meets the picture's edge: "inside" shifts it into the picture and shrinks it
# to the shorter side (a picture that is already a face crop stays whole), "pad" keeps it centred
# on the face and fills the outside with black (every run before --face-fit existed).
FACE_FITS = ("inside", "pad")
DEFAULT_FIT = "inside"  # new runs, reference runs and Predict's framing for runs on whole pictures
LEGACY_FIT = "pad"

_warned: list[str] = []  # the fallback warning, once per process


@dataclass(frozen=True)
class FaceBox:
    """A face rectangle in pixel coordinates of the original image.

    score: MTCNN's face probability, or the Haar cascade's weight; detector: which one found it;
    eyes: (x, y) of the eye on the picture's left, then of the other (`with_eyes`), or None.
    """

    x: int
    y: int
    w: int
    h: int
    score: float = 0.0
    detector: str = ""
    eyes: tuple[float, float, float, float] | None = None

    @property
    def area(self) -> int:
        return self.w * self.h


@dataclass(frozen=True)
class FaceSearch:
    """Everything one detection says: the boxes (largest first) and how they were found."""

    boxes: list[FaceBox] = field(default_factory=list)
    detector: str = ""  # "mtcnn" or "haar"; "" when the image was not searched
    min_face: int = 0  # smallest face searched for, in pixels of the original image
    face_crop: bool = False  # no face found, but the image may itself be a tight face crop
    note: str = ""  # why the image was not searched, or what face_crop means


def detector_name(detector: str | None = None) -> str:
    """The detector `detect_faces` uses: `detector` when given (ModuleNotFoundError with the pip
    command when MTCNN is asked for and missing), else MTCNN when its weights load, else Haar
    (warned once)."""
    if detector is not None and detector not in DETECTORS:
        raise ValueError(f"unknown face detector {detector!r}; expected one of {DETECTORS}")
    if detector == "haar":
        return "haar"
    try:
        mtcnn.networks()
        return "mtcnn"
    except ModuleNotFoundError as exc:
        if detector == "mtcnn":
            raise
        if not _warned:
            _warned.append(str(exc))
            warnings.warn(f"{exc}. Falling back to OpenCV's Haar cascade, which misses more faces "
                          f"and finds none in group photos.", RuntimeWarning, stacklevel=3)
        return "haar"


def _bounded_rgb(img: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 copy with its longest side at most MAX_SIDE, never allocating more than
    about (2 * MAX_SIDE)^2 pixels whatever the input's size or dtype."""
    h, w = img.shape[:2]
    step = max(1, max(h, w) // (2 * MAX_SIDE))
    img = img[::step, ::step]  # a view: huge inputs are thinned before any copy
    if img.ndim == 3:
        img = img[..., :3] if img.shape[2] >= 3 else img[..., 0]
    if img.dtype != np.uint8:  # max <= 1: [0, 1] (bool, float); <= 255: as is; else 16-bit
        top = float(np.nanmax(img)) if img.size else 0.0
        scale = 255.0 if top <= 1.0 else 1.0 if top <= 255.0 else 1 / 257
        img = np.nan_to_num(img.astype(np.float32) * scale).clip(0, 255).astype(np.uint8)
    img = np.ascontiguousarray(img)
    s = min(1.0, MAX_SIDE / max(img.shape[:2]))
    if s < 1.0:
        img = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                         interpolation=cv2.INTER_AREA)
    return img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)


def _face_crop(small: np.ndarray, h: int, w: int) -> bool:
    return (min(h, w) <= CROP_SIDE and max(h, w) <= CROP_ASPECT * min(h, w)
            and float(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).std()) >= CROP_MIN_STD)


def find_faces(rgb: np.ndarray, *, detector: str | None = None) -> FaceSearch:
    """Detect the faces in an HxWx3 RGB (or HxW grey, HxWx1, HxWx4 RGBA) image; any dtype."""
    img = np.asarray(rgb)
    if img.ndim not in (2, 3) or img.size == 0 or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise ValueError(f"detect_faces expects an HxWx3 RGB image, got shape {img.shape}")
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE:
        return FaceSearch(note=f"Not searched: the image is {w}x{h} pixels, narrower than the "
                               f"smallest face ({MIN_SIDE} px)")
    if max(h, w) > MAX_ASPECT * min(h, w):
        return FaceSearch(note=f"Not searched: the image is {w}x{h} pixels, more elongated than "
                               f"{MAX_ASPECT:g}:1")
    name = detector_name(detector)
    small = _bounded_rgb(img)
    sx, sy = w / small.shape[1], h / small.shape[0]
    if name == "mtcnn":
        min_face = max(float(MIN_FACE), 12.0 * max(sx, sy))
        raw = mtcnn.detect(small, min_face / max(sx, sy))
    else:
        min_face = haar.min_face(h, w)
        raw = haar.detect(small)
    xy = np.round(raw[:, :4] * [sx, sy, sx, sy]).astype(int)
    xy = np.c_[np.maximum(xy[:, :2], 0), np.minimum(xy[:, 2:], [w, h])]
    boxes = [FaceBox(int(x0), int(y0), int(x1 - x0), int(y1 - y0), float(r[4]), name)
             for (x0, y0, x1, y1), r in zip(xy, raw, strict=True) if x1 > x0 and y1 > y0]
    boxes.sort(key=lambda b: (-b.area, -b.score))
    crop = not boxes and _face_crop(small, h, w)
    note = (f"no face found by {name}; the {w}x{h} image is small, roughly square and not flat: "
            f"it may be a face filling the frame, which the detector can miss" if crop else "")
    return FaceSearch(boxes, name, int(round(min_face)), crop, note)


def detect_faces(rgb: np.ndarray, *, detector: str | None = None) -> list[FaceBox]:
    """All faces in an HxWx3 uint8 RGB (or HxW grey) image, largest first (see `find_faces`)."""
    return find_faces(rgb, detector=detector).boxes


@dataclass(frozen=True)
class CropSpec:
    """How a run cuts faces: the margin around the box, how the square meets the edge, and
    whether the face is turned upright first (eyes level, `--align-faces`)."""

    margin: float = DEFAULT_MARGIN
    fit: str = LEGACY_FIT
    align: bool = False

    def cut(self, img: np.ndarray, box: FaceBox) -> np.ndarray:
        """The face of `img` cut this way. With align, the eyes come from `box.eyes` when set
        (a mask is cut with its picture's eyes), else from `img` itself."""
        if self.align:
            box = box if box.eyes is not None else with_eyes(img, box)
            if box.eyes is not None:
                return level_face(img, box, self.margin, fit=self.fit)
        return crop_face(img, box, self.margin, fit=self.fit)


DEFAULT_CROP = CropSpec(DEFAULT_MARGIN, DEFAULT_FIT)


def crop_spec(manifest: Mapping[str, Any]) -> CropSpec | None:
    """How a run's face crops were cut, or None when it reads whole pictures.

    Evaluation, Predict (and the faces it hands to Explain) and the live webcam ask this, so a
    run meets the framing it was trained on; runs from before `--face-margin`/`--face-fit`
    existed read DEFAULT_MARGIN, "pad".
    """
    config = manifest.get("config") or {}
    if not (config.get("crop_faces") or manifest.get("crop_faces")):
        return None
    margin = config.get("face_margin")
    return CropSpec(DEFAULT_MARGIN if margin is None else float(margin),
                    str(config.get("face_fit") or LEGACY_FIT), bool(config.get("face_align")))


def largest_face(rgb: np.ndarray) -> FaceBox | None:
    faces = detect_faces(rgb)
    return faces[0] if faces else None


Cut = tuple[CropSpec, FaceBox]  # how a face was cut out of a picture (to cut its mask alike)


def as_trained(rgb: np.ndarray, manifest: Mapping[str, Any], *,
               find: Callable[[np.ndarray], FaceBox | None] | None = None
               ) -> tuple[np.ndarray, Cut | None]:
    """A picture the way the run of `manifest` read its training pictures, and how it was cut
    (None: the picture as it is). A run trained on face crops reads the largest face (`find`,
    default `largest_face`, is only asked for such a run: a caller may pass a cached search)
    cut with its framing, and the whole picture where none is found, like `data.cache` built
    its training images; any other run reads the picture as is. Explain, Feature maps,
    `scripts.explain` and faithfulness scoring show runs their pictures through this."""
    spec = crop_spec(manifest)
    box = None if spec is None else (find or largest_face)(rgb)
    if spec is None or box is None:
        return rgb, None
    box = with_eyes(rgb, box) if spec.align else box  # the Cut carries them to masks
    return spec.cut(rgb, box), (spec, box)


def crop_face(rgb: np.ndarray, box: FaceBox, margin: float = DEFAULT_MARGIN, *,
              fit: str = LEGACY_FIT) -> np.ndarray:
    """A square crop around `box`, grown by `margin` of the box side on each side.

    fit="pad": parts of the square outside the image are black (the colour the transparency
    rule in images.py uses), so the face stays centred at the same scale. fit="inside": the
    square is shrunk to the image's shorter side and shifted into it, so no black is added; a
    photo that is already a tight face crop (most of webfaces3) stays whole instead of shrinking
    inside a black frame.
    """
    img = np.asarray(rgb)
    x0, y0, side = _square_window(box, margin, fit, *img.shape[:2])
    if fit == "inside":
        return img[y0:y0 + side, x0:x0 + side].copy()
    x1, y1 = x0 + side, y0 + side
    H, W = img.shape[:2]
    out = np.zeros((side, side) + img.shape[2:], dtype=img.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return out


def _square_window(box: FaceBox, margin: float, fit: str, H: int, W: int) -> tuple[int, int, int]:
    """The crop square (x0, y0, side) around `box` in an H x W picture (see `crop_face`)."""
    if box.w <= 0 or box.h <= 0:
        raise ValueError(f"cannot crop an empty face box {box}")
    if fit not in FACE_FITS:
        raise ValueError(f"face fit must be one of {', '.join(FACE_FITS)}, got {fit!r}")
    side = int(round(max(box.w, box.h) * (1.0 + 2.0 * margin)))
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    if fit == "inside":
        side = max(1, min(side, H, W))
        return (min(max(int(round(cx - side / 2.0)), 0), W - side),
                min(max(int(round(cy - side / 2.0)), 0), H - side), side)
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side


def with_eyes(rgb: np.ndarray, box: FaceBox) -> FaceBox:
    """`box` with its eyes found by MTCNN's O-Net (`mtcnn.landmarks`), whichever detector found
    the box. Without the facenet-pytorch wheel: `box` unchanged (the face is cut as it is), with
    the detector's one-time warning."""
    if detector_name() != "mtcnn":
        return box
    img = np.asarray(rgb)
    img = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    # O-Net reads the box's square about its centre, black beyond the picture
    x0, y0, _ = _square_window(box, 0.0, "pad", *img.shape[:2])
    pts = mtcnn.landmarks(crop_face(img[..., :3], box, 0.0, fit="pad")) + (x0, y0)
    return replace(box, eyes=(float(pts[0, 0]), float(pts[0, 1]), float(pts[1, 0]),
                              float(pts[1, 1])))


def roll_degrees(box: FaceBox) -> float:
    """How far the line through the eyes turns from level, in degrees (positive: the eye on
    the picture's right is lower)."""
    lx, ly, rx, ry = box.eyes or (0.0, 0.0, 1.0, 0.0)
    return math.degrees(math.atan2(ry - ly, rx - lx))


def level_face(img: np.ndarray, box: FaceBox, margin: float = DEFAULT_MARGIN, *,
               fit: str = LEGACY_FIT) -> np.ndarray:
    """The crop of `crop_face`, from the picture turned about the eyes' midpoint until they are
    level (bilinear; black where the turned picture does not reach). Only the crop square is
    resampled: large photos cost what their face does."""
    if box.eyes is None:
        raise ValueError("level_face needs a box with eyes (faces.with_eyes)")
    arr = np.asarray(img)
    x0, y0, side = _square_window(box, margin, fit, *arr.shape[:2])
    lx, ly, rx, ry = box.eyes
    m = cv2.getRotationMatrix2D(((lx + rx) / 2.0, (ly + ry) / 2.0), roll_degrees(box), 1.0)
    m[:, 2] -= (x0, y0)
    return cv2.warpAffine(arr, m, (side, side), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
