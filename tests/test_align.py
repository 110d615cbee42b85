"""Faces turned upright before the crop (`--align-faces`): eye landmarks, the turn, masks alike."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from emotion_core.data import cache, faces, images, mtcnn
from tests.conftest import shared_data_or_skip
from tests.test_faces import _real_photos, needs_mtcnn

ALIGNED = {"config": {"crop_faces": True, "face_margin": 0.25, "face_fit": "inside",
                      "face_align": True}}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    return None


def _eyes_drawn(tilt_deg: float) -> tuple[np.ndarray, faces.FaceBox]:
    """A grey 200 px picture with two white 'eyes' 60 px apart on a line turned by tilt_deg."""
    img = np.full((200, 200, 3), 60, np.uint8)
    (lx, ly), d = (70.0, 80.0), 60.0
    rx, ry = lx + d * math.cos(math.radians(tilt_deg)), ly + d * math.sin(math.radians(tilt_deg))
    for x, y in ((lx, ly), (rx, ry)):
        cv2.circle(img, (round(x), round(y)), 4, (255, 255, 255), -1)
    return img, faces.FaceBox(50, 50, 100, 100, eyes=(lx, ly, rx, ry))


def _blob_rows(img: np.ndarray) -> list[float]:
    """The centre rows of the white blobs, left to right."""
    _, _, _, centres = cv2.connectedComponentsWithStats((img[..., 0] > 160).astype(np.uint8))
    return [c[1] for c in sorted(centres[1:], key=lambda c: c[0])]


@pytest.mark.parametrize("fit", faces.FACE_FITS)
def test_level_face_puts_the_eyes_on_one_row(fit):
    img, box = _eyes_drawn(20.0)
    assert faces.roll_degrees(box) == pytest.approx(20.0)
    left, right = _blob_rows(faces.level_face(img, box, 0.25, fit=fit))
    assert abs(right - left) <= 1.0  # turned the right way: the wrong way doubles the tilt
    plain_left, plain_right = _blob_rows(faces.crop_face(img, box, 0.25, fit=fit))
    assert plain_right - plain_left > 15  # the plain crop keeps the tilt
    assert faces.level_face(img, box, 0.25, fit=fit).shape == faces.crop_face(img, box, 0.25, fit=fit).shape


@pytest.mark.parametrize("fit", faces.FACE_FITS)
def test_level_eyes_give_exactly_the_plain_crop(fit):
    img = np.random.default_rng(0).integers(0, 255, (180, 240, 3), dtype=np.uint8)
    box = faces.FaceBox(150, 20, 80, 90, eyes=(170.0, 50.0, 210.0, 50.0))  # near the edge
    np.testing.assert_array_equal(faces.level_face(img, box, 0.4, fit=fit),
                                  faces.crop_face(img, box, 0.4, fit=fit))


def test_a_mask_is_turned_with_its_pictures_eyes(monkeypatch):
    """Explain cuts a ground-truth mask with the picture's Cut: the eyes found in the picture,
    never looked for again in the mask (which has none)."""
    img, drawn = _eyes_drawn(25.0)
    calls = []

    def fake_landmarks(square):  # the box's square: 100 px from (50, 50)
        calls.append(square.shape)
        lx, ly, rx, ry = drawn.eyes
        return np.array([[lx, ly], [rx, ry], [100, 110], [80, 130], [120, 130]], float) - 50

    monkeypatch.setattr(faces, "detector_name", lambda detector=None: "mtcnn")
    monkeypatch.setattr(mtcnn, "landmarks", fake_landmarks)
    box = faces.FaceBox(50, 50, 100, 100)
    seen, cut = faces.as_trained(img, ALIGNED, find=lambda _: box)
    assert cut is not None and cut[0] == faces.CropSpec(0.25, "inside", True)
    assert cut[1].eyes == drawn.eyes and len(calls) == 1
    np.testing.assert_array_equal(seen, faces.level_face(img, cut[1], 0.25, fit="inside"))
    mask = img.copy()
    np.testing.assert_array_equal(cut[0].cut(mask, cut[1]), seen)
    assert len(calls) == 1  # the mask was turned with the picture's eyes


def test_without_the_wheel_faces_are_cut_as_they_are(monkeypatch):
    monkeypatch.setattr(mtcnn, "_find_spec", lambda name: None)
    monkeypatch.setattr(mtcnn, "_nets", {})
    monkeypatch.setattr(faces, "_warned", ["warned already"])
    img, _ = _eyes_drawn(20.0)
    box = faces.FaceBox(50, 50, 100, 100)
    assert faces.with_eyes(img, box) == box
    np.testing.assert_array_equal(faces.CropSpec(0.25, "pad", True).cut(img, box),
                                  faces.crop_face(img, box, 0.25, fit="pad"))


def test_the_cache_key_and_pictures_follow_the_align_option(tmp_path, monkeypatch):
    import dataclasses

    import pandas as pd

    from emotion_core.data.prepare import PreparedDataset

    img, drawn = _eyes_drawn(20.0)
    cv2.imwrite(str(tmp_path / "a.png"), img[..., ::-1])
    split = pd.DataFrame({"rel": ["a.png"], "label": ["happy"], "subset": ["train"],
                          "fx": [50.0], "fy": [50.0], "fw": [100.0], "fh": [100.0]})
    ds = PreparedDataset("one", tmp_path, ["happy"], split, {})
    keys = {align: cache.cache_key(ds, 64, crop_faces=True, face_fit="inside", face_align=align)
            for align in (False, True)}
    assert keys[False] != keys[True]
    monkeypatch.setattr(faces, "with_eyes", lambda rgb, box: dataclasses.replace(box, eyes=drawn.eyes))
    turned = cache.decode_resized(tmp_path / "a.png", 64, [50, 50, 100, 100], 0.25, "inside", True)
    plain = cache.decode_resized(tmp_path / "a.png", 64, [50, 50, 100, 100], 0.25, "inside")
    left, right = _blob_rows(turned)
    assert abs(right - left) <= 1.0 and not np.array_equal(turned, plain)


@needs_mtcnn
def test_onet_eyes_follow_a_turned_real_face():
    shared_data_or_skip("webfaces3")
    checked = 0
    for path in _real_photos(6):
        rgb = images.load_rgb(path)
        boxes = faces.detect_faces(rgb)
        if not boxes:
            continue
        box = faces.with_eyes(rgb, boxes[0])
        lx, ly, rx, ry = box.eyes
        assert box.x <= lx < rx <= box.x + box.w and box.y <= min(ly, ry) <= box.y + box.h / 2
        centre = (box.x + box.w / 2, box.y + box.h / 2)
        m = cv2.getRotationMatrix2D(centre, -15.0, 1.0)  # turned 15 degrees clockwise
        turned = cv2.warpAffine(rgb, m, (rgb.shape[1], rgb.shape[0]))
        again = faces.with_eyes(turned, boxes[0])
        assert faces.roll_degrees(again) - faces.roll_degrees(box) == pytest.approx(15.0, abs=5.0)
        checked += 1
    assert checked >= 4
