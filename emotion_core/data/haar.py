"""OpenCV's Haar cascade: the offline fallback face detector when facenet-pytorch is missing.

It ships inside opencv-python (<5) as an XML file. Detection runs on a grey copy downscaled so
that, with a black border of PAD_FRACTION of its longest side (tight face crops are otherwise
missed: on webfaces3 the border finds a face in 49 of 60 such images instead of 2), it is at most
DETECT_SIDE pixels; downscaling comes first, so the border never costs more than that. It finds
no face under MIN_FACE_FRACTION of the shorter side, so none in group photos (docs/data.md).
"""
from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

CASCADE_FILE = "haarcascade_frontalface_default.xml"
DETECT_SIDE = 288  # longest side of the (padded) grey image the cascade scans
MIN_FACE_FRACTION = 0.2  # smallest face searched for, as a fraction of the shorter side
PAD_FRACTION = 0.25  # black border: tight face crops need room for the cascade

_local = threading.local()  # one CascadeClassifier per thread: detectMultiScale is not re-entrant


def cascade_path() -> Path:
    """Where opencv keeps the frontal-face cascade, or a clear error where it does not (opencv 5)."""
    base = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(base) / CASCADE_FILE if base else None
    if path is None or not path.is_file():
        raise RuntimeError(f"OpenCV {cv2.__version__} does not ship {CASCADE_FILE} (cv2.data."
                           f"haarcascades is missing); install opencv-python-headless<5 for "
                           f"face detection")
    return path


def _cascade() -> cv2.CascadeClassifier:
    det = getattr(_local, "detector", None)
    if det is None:
        det = cv2.CascadeClassifier(str(cascade_path()))
        if det.empty():
            raise RuntimeError(f"OpenCV could not load the face cascade {cascade_path()}")
        _local.detector = det
    return det


def min_face(h: int, w: int) -> float:
    """The smallest face (pixels of an h x w image) the cascade searches for."""
    return MIN_FACE_FRACTION * min(h, w)


def detect(rgb: np.ndarray) -> np.ndarray:
    """Boxes (x0, y0, x1, y1, score) of the frontal faces in an HxWx3 uint8 RGB image, in its
    pixel coordinates; score is the cascade's weight."""
    h, w = rgb.shape[:2]
    scale = min(1.0, DETECT_SIDE / ((1.0 + 2.0 * PAD_FRACTION) * max(h, w)))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                          interpolation=cv2.INTER_AREA)
    pad = int(round(PAD_FRACTION * max(gray.shape)))
    padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    side = max(12, int(min_face(*gray.shape)))
    rects, _, weights = _cascade().detectMultiScale3(
        padded, scaleFactor=1.1, minNeighbors=5, minSize=(side, side), outputRejectLevels=True)
    rects = np.asarray(rects, dtype=float).reshape(-1, 4)
    sx, sy = w / gray.shape[1], h / gray.shape[0]
    x0, y0 = (rects[:, 0] - pad) * sx, (rects[:, 1] - pad) * sy
    x1, y1 = x0 + rects[:, 2] * sx, y0 + rects[:, 3] * sy
    return np.c_[x0, y0, x1, y1, np.asarray(weights, dtype=float).reshape(-1)]
