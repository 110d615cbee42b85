"""Decoding of every image kind a scraped face set contains (tiny files made here)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from emotion_core.data import images
from emotion_core.data.faces import (
    CropSpec,
    FaceBox,
    crop_face,
    crop_spec,
    detect_faces,
    largest_face,
)
from emotion_core.data.images import ImageDecodeError, load_rgb, read_image


def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _jpeg(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def _colour(h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 90)], -1).astype(np.uint8)


def test_rgb_path_bytes_and_file_object_agree(tmp_path):
    data = _png(Image.fromarray(_colour()))
    path = tmp_path / "a.png"
    path.write_bytes(data)
    a, b, c = load_rgb(path), load_rgb(data), load_rgb(io.BytesIO(data))
    assert a.dtype == np.uint8 and a.shape == (24, 32, 3) and a.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(a, _colour())
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_grayscale_and_bilevel_become_three_equal_channels():
    gray = np.arange(0, 240, 10, dtype=np.uint8).reshape(4, 6)
    out = load_rgb(_png(Image.fromarray(gray, "L")))
    assert out.shape == (4, 6, 3)
    for ch in range(3):
        np.testing.assert_array_equal(out[..., ch], gray)
    bits = load_rgb(_png(Image.fromarray(gray > 100).convert("1")))
    assert set(np.unique(bits)) == {0, 255}


def test_cmyk_jpeg_colours_survive():
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = (200, 30, 30)
    rgb[:, 8:] = (30, 30, 200)
    data = _jpeg(Image.fromarray(rgb).convert("CMYK"))
    out, info = read_image(data)
    assert info.mode == "CMYK"
    assert np.abs(out[4:12, 1:6].astype(int) - (200, 30, 30)).max() < 25
    assert np.abs(out[4:12, 10:15].astype(int) - (30, 30, 200)).max() < 25


def test_rgba_is_composited_on_black():
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[0, :, 3] = 255
    rgba[1, 0, 3] = 0
    rgba[1, 1:, 3] = 128
    out = load_rgb(_png(Image.fromarray(rgba, "RGBA")))
    np.testing.assert_array_equal(out[0, 0], (200, 100, 50))
    np.testing.assert_array_equal(out[1, 0], (0, 0, 0))
    np.testing.assert_allclose(out[1, 1], np.array([200, 100, 50]) * 128 / 255, atol=1)


def test_palette_transparency_and_la():
    p = Image.new("P", (4, 4), 0)
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.putpixel((0, 0), 1)
    out = load_rgb(_png(p, transparency=0))
    np.testing.assert_array_equal(out[0, 0], (0, 255, 0))
    np.testing.assert_array_equal(out[3, 3], (0, 0, 0))  # transparent red -> black
    la = Image.fromarray(np.dstack([np.full((2, 2), 200, np.uint8),
                                    np.array([[255, 0], [255, 0]], np.uint8)]), "LA")
    out = load_rgb(_png(la))
    assert out[0, 0].tolist() == [200] * 3 and out[0, 1].tolist() == [0] * 3


def test_16bit_png_is_scaled_not_clipped():
    arr = np.array([[0, 257 * 100, 65535, 30000]], dtype=np.uint16)
    data = _png(Image.fromarray(arr))
    out, info = read_image(data)
    assert info.mode in ("I;16", "I")
    np.testing.assert_array_equal(out[0, :, 0], [0, 100, 255, round(30000 / 257)])


def test_float_image_in_unit_range():
    arr = np.array([[0.0, 0.5, 1.0, np.nan]], dtype=np.float32)
    buf = io.BytesIO()
    Image.fromarray(arr, "F").save(buf, format="TIFF")
    out = load_rgb(buf.getvalue())
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255, 0])


def test_exif_orientation_is_applied():
    # Stored 20 high x 40 wide with a red block top-left; orientation 6 means "rotate 90 deg
    # clockwise to view": upright it is 40 high x 20 wide with the block top-right.
    stored = np.full((20, 40, 3), 255, np.uint8)
    stored[:8, :8] = (255, 0, 0)
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6
    out, info = read_image(_jpeg(im, exif=exif.tobytes()))
    assert info.exif_rotated and out.shape == (40, 20, 3)
    assert out[2, 17, 0] > 200 and out[2, 17, 1] < 60  # red now at the top-right
    assert out[2, 2].min() > 200  # top-left is white
    plain = load_rgb(_jpeg(Image.fromarray(stored)))
    assert plain.shape == (20, 40, 3)


def test_text_file_named_jpg_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageDecodeError) as err:
        load_rgb(path)
    assert err.value.kind == "not_an_image" and "notes.jpg" in str(err.value)


def test_truncated_jpeg_is_unreadable():
    data = _jpeg(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3),
                                                                    dtype=np.uint8)))
    assert images.Image.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ImageDecodeError) as err:
        load_rgb(data[: len(data) // 2])
    assert err.value.kind == "unreadable"


def test_too_small_and_too_large():
    one = _png(Image.new("RGB", (1, 1), (9, 9, 9)))
    assert load_rgb(one).shape == (1, 1, 3)
    with pytest.raises(ImageDecodeError) as err:
        load_rgb(one, min_side=32)
    assert err.value.kind == "too_small"
    big = _png(Image.new("L", (1200, 1000)))  # a few hundred bytes, 1.2 M pixels
    with pytest.raises(ImageDecodeError) as err:
        load_rgb(big, max_pixels=1_000_000)
    assert err.value.kind == "too_large"


def test_pillow_decompression_bomb_is_too_large(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageDecodeError) as err:
        load_rgb(_png(Image.new("L", (100, 100))))
    assert err.value.kind == "too_large"


def test_missing_file_and_wrong_type(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_rgb(tmp_path / "nope.jpg")
    with pytest.raises(TypeError):
        load_rgb(12345)  # type: ignore[arg-type]


def test_crop_face_is_square_and_padded_at_edges():
    img = np.full((50, 80, 3), 255, np.uint8)
    crop = crop_face(img, FaceBox(x=0, y=0, w=20, h=10), margin=0.25)
    assert crop.shape == (30, 30, 3)  # side = max(w, h) * 1.5
    assert crop[0, 0].tolist() == [0, 0, 0]  # outside the image -> black
    assert crop[-1, -1].tolist() == [255, 255, 255]
    inner = crop_face(img, FaceBox(x=30, y=20, w=10, h=10), margin=0.0)
    assert inner.shape == (10, 10, 3) and inner.min() == 255


def test_inside_fit_keeps_a_face_filling_photo_whole_and_never_adds_black():
    rng = np.random.default_rng(0)
    img = rng.integers(1, 256, (120, 100, 3), dtype=np.uint8)  # no pure black anywhere
    box = FaceBox(x=8, y=12, w=84, h=96)  # a face filling the photo, as in webfaces3
    padded = crop_face(img, box, margin=0.25)
    assert padded.shape == (144, 144, 3) and (padded == 0).all(axis=2).any()  # black border
    inside = crop_face(img, box, margin=0.25, fit="inside")
    assert inside.shape == (100, 100, 3) and not (inside == 0).all(axis=2).any()
    # the square is the picture's full width, shifted down to centre on the face (cy = 60)
    np.testing.assert_array_equal(inside, img[10:110, 0:100])


def test_inside_fit_shifts_the_square_off_the_edge_and_equals_pad_away_from_it():
    img = np.random.default_rng(1).integers(1, 256, (200, 300, 3), dtype=np.uint8)
    corner = FaceBox(x=0, y=0, w=20, h=20)  # the padded square would start at (-10, -10)
    np.testing.assert_array_equal(crop_face(img, corner, 0.5, fit="inside"), img[0:40, 0:40])
    middle = FaceBox(x=120, y=80, w=30, h=30)
    np.testing.assert_array_equal(crop_face(img, middle, 0.5, fit="inside"),
                                  crop_face(img, middle, 0.5, fit="pad"))
    with pytest.raises(ValueError, match="face fit"):
        crop_face(img, middle, fit="stretch")


@pytest.mark.parametrize("manifest, expected", [
    ({"config": {"crop_faces": False}}, None),
    ({"config": {}}, None),
    # a run from before --face-margin/--face-fit: the framing it was trained on
    ({"config": {"crop_faces": True}}, CropSpec(0.25, "pad")),
    ({"config": {"crop_faces": True, "face_margin": 0.5, "face_fit": "inside"}},
     CropSpec(0.5, "inside")),
    ({"crop_faces": True, "config": {}}, CropSpec(0.25, "pad")),  # a bundled manifest's copy
    ({"config": {"crop_faces": True, "face_fit": "inside", "face_align": True}},
     CropSpec(0.25, "inside", True)),
    ({"config": {"crop_faces": False, "face_align": True}}, None),  # nothing to turn
])
def test_crop_spec_reads_a_runs_framing(manifest, expected):
    assert crop_spec(manifest) == expected


def test_detect_faces_on_blank_image_and_bad_input():
    assert detect_faces(np.zeros((60, 60, 3), np.uint8)) == []
    assert largest_face(np.zeros((60, 60), np.uint8)) is None
    with pytest.raises(ValueError):
        detect_faces(np.zeros((0, 3), np.uint8))
