"""What a run reads of a picture on Explain and Feature maps (views.framing)."""
from __future__ import annotations

import numpy as np
import pytest

from emotion_core.data import faces
from emotion_core.views import framing
from tests.fixtures_runs import photo_640x480

INSIDE = {"config": {"crop_faces": True, "face_margin": 0.25, "face_fit": "inside"}}
PADDED = {"config": {"crop_faces": True}}  # a run from before --face-fit: margin 0.25, "pad"
WHOLE = {"config": {"crop_faces": False}}


def test_a_crop_trained_run_reads_the_largest_face_cut_its_own_way() -> None:
    photo = photo_640x480(2)
    box = faces.largest_face(photo)
    assert box is not None
    seen = framing.for_run(photo, INSIDE, find=lambda _: box)
    assert seen.cut == (faces.CropSpec(0.25, "inside"), box) and "largest face" in seen.note and "kept inside" in seen.note
    np.testing.assert_array_equal(seen.rgb, faces.crop_face(photo, box, 0.25, fit="inside"))
    assert seen.rgb.shape[0] == seen.rgb.shape[1] < photo.shape[0]  # a square face, not the photo
    padded = framing.for_run(photo, PADDED, find=lambda _: box)
    np.testing.assert_array_equal(padded.rgb, faces.crop_face(photo, box, 0.25, fit="pad"))
    assert "padded with black" in padded.note


def test_a_whole_picture_run_reads_the_picture_as_it_is() -> None:
    photo = photo_640x480(1)
    seen = framing.for_run(photo, WHOLE)
    assert seen.rgb is photo and seen.cut is None and seen.note == ""


def test_with_no_face_a_crop_trained_run_reads_the_whole_picture_and_says_so() -> None:
    blank = np.full((120, 160, 3), 90, np.uint8)
    seen = framing.for_run(blank, INSIDE, find=lambda _: None)
    assert seen.rgb is blank and seen.cut is None and "No face found" in seen.note


@pytest.mark.parametrize(("spec", "words"), [
    (None, "no, whole pictures"),
    (faces.CropSpec(0.5, "inside"), "grown by 0.5 of its side on each side, kept inside"),
    (faces.CropSpec(0.25, "pad"), "grown by 0.25 of its side on each side, padded with black"),
])
def test_describe_names_margin_and_edge(spec, words) -> None:
    assert words in framing.describe(spec)


def test_a_cut_samples_mask_is_cut_with_the_same_box(tmp_path) -> None:
    from PIL import Image

    from emotion_core.data import synthetic
    from emotion_core.data.images import load_rgb
    from emotion_core.data.layout import mask_path
    from emotion_core.data.transforms import resize_square
    from emotion_core.views import probe

    rgb, mask = synthetic.draw_face(np.random.default_rng(0), "happy", size=96)
    path = tmp_path / "face.png"
    Image.fromarray(rgb).save(path)
    Image.fromarray(mask).save(mask_path(path))
    cut = (faces.CropSpec(0.0, "inside"), faces.FaceBox(24, 30, 48, 48))
    got = probe.load_mask(path, 32, cut)
    want = resize_square(load_rgb(mask_path(path))[30:78, 24:72], 32)[..., 0] > 127
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, probe.load_mask(path, 32))  # not the whole picture's mask
