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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from emotion_core.data import faces


@dataclass(frozen=True)
class Framed:
    """The picture one run reads, and a caption that says how it was cut."""

    rgb: np.ndarray
    cut: faces.Cut | None  # how the face was cut; None: the picture as it is
    note: str  # a sentence for a caption; "" when the run reads whole pictures


def describe(spec: faces.CropSpec | None) -> str:
    """A run's face framing in words (model cards, captions)."""
    if spec is None:
        return "no, whole pictures"
    edge = ("kept inside the picture" if spec.fit == "inside"
            else "padded with black beyond the picture's edge")
    level = ", turned until the eyes are level" if spec.align else ""
    return f"the box grown by {spec.margin:g} of its side on each side, {edge}{level}"


def for_run(rgb: np.ndarray, manifest: Mapping[str, Any], *,
            find: Callable[[np.ndarray], faces.FaceBox | None] | None = None) -> Framed:
    """What the run of `manifest` reads of `rgb` (`find`: its largest face, asked only for a run
    on face crops; default faces.largest_face)."""
    seen, cut = faces.as_trained(rgb, manifest, find=find)
    if cut is not None:
        return Framed(seen, cut, f"It reads the largest face, cut as it was trained "
                                 f"({describe(cut[0])}).")
    if faces.crop_spec(manifest) is None:
        return Framed(rgb, None, "")
    return Framed(rgb, None, "No face found: it reads the whole picture, as its training did "
                             "for such pictures.")
