"""Face detection: MTCNN from the facenet-pytorch wheel, the Haar fallback, hostile shapes."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from emotion_core.data import faces, images, mtcnn
from tests.conftest import shared_data_or_skip
from tests.fixtures_runs import face_image

HAVE_MTCNN = mtcnn._find_spec(mtcnn.MODULE) is not None
needs_mtcnn = pytest.mark.skipif(not HAVE_MTCNN, reason=f"needs {mtcnn.PIP_HINT}")
GROUP_SIZES = (160, 140, 120, 110, 100, 90, 80, 72)  # face tiles of the composed group picture


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    return None


def _inside(box: faces.FaceBox, x: int, y: int, side: int) -> bool:
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    return x <= cx <= x + side and y <= cy <= y + side


def group_picture(tiles: list[np.ndarray], sizes=GROUP_SIZES) -> tuple[np.ndarray, list[tuple]]:
    """A 960x540 textured canvas with each tile resized to its size, 4 per row, none touching."""
    canvas = np.random.default_rng(3).normal(120, 20, (540, 960, 3)).clip(0, 255).astype(np.uint8)
    where = []
    for k, (tile, side) in enumerate(zip(tiles, sizes, strict=False)):
        x, y = 30 + (k % 4) * 235, 40 + (k // 4) * 260
        canvas[y:y + side, x:x + side] = cv2.resize(tile, (side, side), interpolation=cv2.INTER_AREA)
        where.append((x, y, side))
    return canvas, where


def _real_photos(n: int) -> list[Path]:
    root = shared_data_or_skip("webfaces3")
    found = sorted(p for p in (root / "valid").rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    if len(found) < n:
        pytest.skip(f"webfaces3/valid holds {len(found)} photos, fewer than {n}")
    return found[:: max(1, len(found) // n)][:n]


# ---------------------------------------------------------------------------------------------
# MTCNN


@needs_mtcnn
def test_weights_are_plain_state_dicts_loaded_weights_only():
    folder = mtcnn.weights_dir()
    for rel in mtcnn.WEIGHT_FILES.values():
        sd = torch.load(folder / rel, map_location="cpu", weights_only=True)
        assert sd and all(isinstance(v, torch.Tensor) for v in sd.values())
    assert faces.detector_name() == "mtcnn"


@needs_mtcnn
def test_mtcnn_finds_a_face_in_real_photos():
    photos = _real_photos(12)
    found = 0
    for path in photos:
        rgb = images.load_rgb(path)
        boxes = faces.detect_faces(rgb)
        found += bool(boxes)
        for b in boxes:
            assert b.detector == "mtcnn" and b.score >= mtcnn.MIN_SCORE
            assert 0 <= b.x < b.x + b.w <= rgb.shape[1] and 0 <= b.y < b.y + b.h <= rgb.shape[0]
    assert found >= len(photos) - 1  # 573 of 580 on the whole set (docs/data.md)


@needs_mtcnn
def test_several_faces_in_a_composed_group_picture():
    canvas, where = group_picture([face_image(200, seed=k) for k in range(len(GROUP_SIZES))])
    found = faces.find_faces(canvas)
    assert found.detector == "mtcnn" and found.min_face == faces.MIN_FACE
    assert len(found.boxes) == len(where)  # every face once, no false box on the texture
    for x, y, side in where:
        assert sum(_inside(b, x, y, side) for b in found.boxes) == 1
    areas = [b.area for b in found.boxes]
    assert areas == sorted(areas, reverse=True)
    assert faces.detect_faces(canvas, detector="haar") == []  # Haar: no small faces, by design


@needs_mtcnn
def test_several_real_faces_in_a_composed_group_picture():
    tiles = [faces.crop_face(rgb, b[0], margin=0.4) for rgb in
             (images.load_rgb(p) for p in _real_photos(10)) if (b := faces.detect_faces(rgb))][:8]
    canvas, where = group_picture(tiles)
    boxes = faces.detect_faces(canvas)
    hits = sum(any(_inside(b, *w) for b in boxes) for w in where)
    assert hits >= len(where) - 1 and len(boxes) <= len(where)


@needs_mtcnn
def test_odd_dtypes_and_layouts_find_the_same_face():
    rgb = face_image(200)
    ref = faces.detect_faces(rgb)
    assert len(ref) == 1
    for img in (rgb.astype(np.float32) / 255, rgb.astype(np.uint16) * 257,
                np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])):
        (box,) = faces.detect_faces(img)
        assert abs(box.x - ref[0].x) <= 3 and abs(box.w - ref[0].w) <= 3
    grey = faces.find_faces(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))  # searched as RGB
    assert grey.detector == "mtcnn"  # (this drawn face needs its colours to be found)


@needs_mtcnn
def test_a_huge_photo_is_downscaled_and_boxes_map_back():
    canvas = np.full((3000, 4000, 3), 110, np.uint8)
    canvas[1000:1800, 2000:2800] = cv2.resize(face_image(200), (800, 800))
    t0 = time.perf_counter()
    found = faces.find_faces(canvas)
    assert time.perf_counter() - t0 < 20  # scanned at MAX_SIDE, not 12 megapixels
    (box,) = found.boxes
    assert _inside(box, 2000, 1000, 800) and box.w > 200
    assert found.min_face == round(12 * 4000 / faces.MAX_SIDE)  # 12 scanned px, in photo px


# ---------------------------------------------------------------------------------------------
# The Haar fallback


def test_falls_back_to_haar_once_when_facenet_pytorch_is_missing(monkeypatch, recwarn):
    rgb = face_image(200)
    monkeypatch.setattr(mtcnn, "_find_spec", lambda name: None)  # the wheel is not installed
    monkeypatch.setattr(mtcnn, "_nets", {})
    monkeypatch.setattr(faces, "_warned", [])
    with pytest.warns(RuntimeWarning, match="facenet-pytorch==2.6.0"):
        found = faces.find_faces(rgb)
    recwarn.clear()
    assert found.detector == "haar" and faces.detector_name() == "haar"
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]  # warned once
    assert all(b.detector == "haar" for b in found.boxes)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps facenet-pytorch"):
        faces.detect_faces(rgb, detector="mtcnn")
    with pytest.raises(ValueError, match="unknown face detector"):
        faces.detect_faces(rgb, detector="yunet")


def test_haar_still_finds_a_tight_face_crop():
    blank = np.zeros((60, 60, 3), np.uint8)
    assert faces.detect_faces(blank, detector="haar") == []
    rgb = face_image(200)
    boxes = faces.detect_faces(rgb, detector="haar")
    assert all(b.detector == "haar" for b in boxes)


# ---------------------------------------------------------------------------------------------
# Hostile shapes and faces that fill the frame


@pytest.mark.parametrize("shape", [(20, 40000, 3), (40000, 20, 3), (16, 200000, 3), (16, 200000),
                                   (30, 700, 3)])
def test_extreme_aspect_ratios_are_not_searched(shape):
    img = np.full(shape, 128, np.uint8)
    t0 = time.perf_counter()
    found = faces.find_faces(img)
    assert time.perf_counter() - t0 < 0.5  # before: 8-10 s and 1.3 GiB for 20x40000 (Haar)
    assert found.boxes == [] and found.detector == "" and not found.face_crop
    assert "more elongated than 20:1" in found.note
    assert faces.detect_faces(img, detector="haar") == []


def test_tiny_and_thin_but_allowed_images():
    found = faces.find_faces(np.full((10, 10, 3), 99, np.uint8))
    assert found.boxes == [] and "narrower than" in found.note
    for shape in ((64, 1280, 3), (1280, 64, 3), (100, 2000, 3)):  # 20:1 and flatter: searched
        t0 = time.perf_counter()
        found = faces.find_faces(np.full(shape, 128, np.uint8))
        assert found.boxes == [] and found.detector and time.perf_counter() - t0 < 5
    with pytest.raises(ValueError):
        faces.find_faces(np.zeros((5, 5, 2), np.uint8))


def test_a_small_square_image_without_a_face_is_flagged_as_a_possible_face_crop():
    noise = np.random.default_rng(0).integers(0, 256, (200, 180, 3), dtype=np.uint8)
    found = faces.find_faces(noise)
    assert found.boxes == [] and found.face_crop and "filling the frame" in found.note
    assert not faces.find_faces(np.full((200, 200, 3), 90, np.uint8)).face_crop  # flat
    assert not faces.find_faces(np.resize(noise, (200, 400, 3))).face_crop  # elongated
    assert not faces.find_faces(np.resize(noise, (500, 500, 3))).face_crop  # large


@needs_mtcnn
def test_a_real_face_filling_the_frame_is_flagged():
    path = shared_data_or_skip("webfaces3") / "train" / "sad" / "images (2).jpg"
    if not path.is_file():
        pytest.skip(f"{path} is not in this copy of webfaces3")
    found = faces.find_faces(images.load_rgb(path))  # MTCNN misses this tight crop
    assert found.boxes == [] and found.face_crop


# ---------------------------------------------------------------------------------------------
# Prepared datasets record the detector


def test_prepare_records_the_detector_and_says_it_in_the_cleaning_report(tmp_path):
    from emotion_core import data, store

    noise = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    for i, label in enumerate(("angry", "happy", "sad")):
        folder = tmp_path / "set" / "train" / label
        folder.mkdir(parents=True)
        for k in range(5):
            cv2.imwrite(str(folder / f"{k}.png"), face_image(160, seed=3 * k + i)[..., ::-1])
    cv2.imwrite(str(tmp_path / "set" / "train" / "sad" / "noise.png"), noise)
    ds = data.prepare_dataset(tmp_path / "set", "withfaces", detect_faces=True, progress=False)
    name = faces.detector_name()
    index = store.load_dataset_table("withfaces", "index")
    assert ds.report["face_detector"] == name and set(index["face_detector"]) == {name}
    noisy = index[index["rel"].str.endswith("noise.png")].iloc[0]
    assert noisy["faces"] == 0 and bool(noisy["face_crop"])
    rep = store.load_dataset_table("withfaces", "cleaning")
    row = rep[rep["file"].str.endswith("noise.png")].iloc[0]
    assert row["issue"] == "no_face_found" and "face filling the frame" in row["detail"]
    assert ("MTCNN" if name == "mtcnn" else "Haar") in row["detail"]
