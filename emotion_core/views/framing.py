"""What a run reads of a picture on the probing pages (Explain, Feature maps).

A run trained on face crops (`--crop-faces`) learned from the largest face of each training
picture, cut with its own margin and edge fit (`faces.crop_spec`), and from the whole picture
where no face was found. A dataset sample or an upload is shown to it the same way, so its
maps explain what it would answer here, not a picture it never learned to read. Runs on whole
pictures read the picture as it is. The face is searched for with the detector that prepared
the training data (`faces.find_faces`): on 60 webfaces3 and affectnet3 held-out samples it
gave the stored training box every time.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from emotion_core.data import faces


@dataclass(frozen=True)
class Framed:
    """The picture one run reads, and a caption that says how it was cut."""

    rgb: np.ndarray
    cut: tuple[faces.CropSpec, faces.FaceBox] | None  # how the face was cut; None: the picture
    note: str  # a sentence for a caption; "" when the run reads whole pictures


def describe(spec: faces.CropSpec | None) -> str:
    """A run's face framing in words (model cards, captions)."""
    if spec is None:
        return "no, whole pictures"
    edge = ("kept inside the picture" if spec.fit == "inside"
            else "padded with black beyond the picture's edge")
    return f"the box grown by {spec.margin:g} of its side on each side, {edge}"


def for_run(rgb: np.ndarray, box: faces.FaceBox | None,
            manifest: Mapping[str, Any]) -> Framed:
    """What the run of `manifest` reads of `rgb`, whose largest face is `box` (None: no face)."""
    seen, used = faces.as_trained(rgb, manifest, find=lambda _: box)
    spec = faces.crop_spec(manifest)
    if spec is None:
        return Framed(rgb, None, "")
    if used is None:
        return Framed(rgb, None, "No face found: it reads the whole picture, as its training "
                                 "did for such pictures.")
    return Framed(seen, (spec, used), f"It reads the largest face, cut as it was trained "
                                      f"({describe(spec)}).")
