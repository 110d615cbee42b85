"""Face detection and cropping with OpenCV's Haar cascade.

Why Haar: it ships inside opencv-python (<5) as an XML file, so detection works offline with no
downloaded weights. `cv2.FaceDetectorYN` (YuNet) is better but needs an ONNX model that no
installed package ships, so it is not used. Detection runs on a grey copy with a black border
(face crops that fill the frame are otherwise missed: on webfaces3 padding finds a face in 49 of
60 such images instead of 2) downscaled to at most `DETECT_SIDE` pixels (Haar cost grows with
area; faces in this project are large). Boxes are mapped back to, and clipped to, the image.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CASCADE_FILE = "haarcascade_frontalface_default.xml"
DETECT_SIDE = 288  # longest side of the (padded) grey image the cascade scans
MIN_FACE_FRACTION = 0.2  # smallest face searched for, as a fraction of the shorter side
PAD_FRACTION = 0.25  # black border added first: tight face crops need room for the cascade

_local = threading.local()  # one CascadeClassifier per thread: detectMultiScale is not re-entrant


@dataclass(frozen=True)
class FaceBox:
    """A face rectangle in pixel coordinates of the original image; score is the cascade weight."""

    x: int
    y: int
    w: int
    h: int
    score: float = 0.0

    @property
    def area(self) -> int:
        return self.w * self.h


def cascade_path() -> Path:
    """Where opencv keeps the frontal-face cascade, or a clear error where it does not (opencv 5)."""
    base = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(base) / CASCADE_FILE if base else None
    if path is None or not path.is_file():
        raise RuntimeError(f"OpenCV {cv2.__version__} does not ship {CASCADE_FILE} (cv2.data."
                           f"haarcascades is missing); install opencv-python-headless<5 for "
                           f"face detection")
    return path


def _detector() -> cv2.CascadeClassifier:
    det = getattr(_local, "detector", None)
    if det is None:
        det = cv2.CascadeClassifier(str(cascade_path()))
        if det.empty():
            raise RuntimeError(f"OpenCV could not load the face cascade {cascade_path()}")
        _local.detector = det
    return det


def detect_faces(rgb: np.ndarray) -> list[FaceBox]:
    """All frontal faces in an HxWx3 uint8 RGB (or HxW grey) image, largest first."""
    img = np.asarray(rgb)
    if img.ndim not in (2, 3) or img.size == 0:
        raise ValueError(f"detect_faces expects an HxWx3 RGB image, got shape {img.shape}")
    gray = img if img.ndim == 2 else cv2.cvtColor(img.astype(np.uint8, copy=False),
                                                  cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    pad = int(round(PAD_FRACTION * max(h, w)))
    padded = cv2.copyMakeBorder(gray.astype(np.uint8, copy=False), pad, pad, pad, pad,
                                cv2.BORDER_CONSTANT, value=0)
    scale = min(1.0, DETECT_SIDE / max(padded.shape))
    if scale < 1.0:
        padded = cv2.resize(padded, (max(1, round(padded.shape[1] * scale)),
                                     max(1, round(padded.shape[0] * scale))),
                            interpolation=cv2.INTER_AREA)
    side = max(12, int(min(h, w) * scale * MIN_FACE_FRACTION))
    rects, _, weights = _detector().detectMultiScale3(
        padded, scaleFactor=1.1, minNeighbors=5, minSize=(side, side), outputRejectLevels=True)
    boxes = []
    for (x, y, bw, bh), wt in zip(np.asarray(rects).reshape(-1, 4),
                                  np.asarray(weights, dtype=float).reshape(-1), strict=True):
        x0, y0 = max(0, round(x / scale) - pad), max(0, round(y / scale) - pad)
        x1, y1 = min(w, round((x + bw) / scale) - pad), min(h, round((y + bh) / scale) - pad)
        if x1 > x0 and y1 > y0:
            boxes.append(FaceBox(x=int(x0), y=int(y0), w=int(x1 - x0), h=int(y1 - y0),
                                 score=float(wt)))
    return sorted(boxes, key=lambda b: (-b.area, -b.score))


def largest_face(rgb: np.ndarray) -> FaceBox | None:
    faces = detect_faces(rgb)
    return faces[0] if faces else None


def crop_face(rgb: np.ndarray, box: FaceBox, margin: float = 0.25) -> np.ndarray:
    """A square crop around `box`, grown by `margin` of the box side on each side.

    Parts of the square that fall outside the image are padded with black (the same colour the
    transparency rule in images.py uses), so the face stays centred and undistorted.
    """
    img = np.asarray(rgb)
    if box.w <= 0 or box.h <= 0:
        raise ValueError(f"cannot crop an empty face box {box}")
    side = int(round(max(box.w, box.h) * (1.0 + 2.0 * margin)))
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    x1, y1 = x0 + side, y0 + side
    H, W = img.shape[:2]
    out = np.zeros((side, side) + img.shape[2:], dtype=img.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return out
