"""The synthetic faces: determinism, masks where the expression is, dataset folder layout."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion_core.data import cartoon, layout, synthetic

LABELS = ("angry", "happy", "sad")
SIZE = 64  # small and fast; the geometry is resolution independent


def _rng(i: int, seed: int = 11) -> np.random.Generator:
    return np.random.default_rng([seed, i])


def test_draw_face_shapes_dtypes_and_binary_mask() -> None:
    for i, label in enumerate(LABELS):
        img, mask = synthetic.draw_face(_rng(i), label, SIZE)
        assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
        assert mask.shape == (SIZE, SIZE) and mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 255}
        frac = (mask > 0).mean()
        assert 0.005 < frac < 0.3, f"mask covers {frac:.1%} of the image"
        assert img.std() > 10  # not a blank canvas


def test_same_seed_same_pixels_and_different_seed_differs() -> None:
    a = synthetic.draw_face(_rng(3), "sad", SIZE)
    b = synthetic.draw_face(_rng(3), "sad", SIZE)
    c = synthetic.draw_face(_rng(4), "sad", SIZE)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_unknown_label_and_tiny_size_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown expression 'bored'"):
        synthetic.draw_face(_rng(0), "bored", SIZE)
    with pytest.raises(ValueError, match="at least 16"):
        synthetic.draw_face(_rng(0), "sad", 8)


@pytest.mark.parametrize("i", range(12))
def test_label_changes_pixels_only_inside_the_masks(i: int) -> None:
    """Same seed, different label: the nuisance is identical, so differences are brows+mouth."""
    outs = {label: synthetic.draw_face(_rng(i, seed=5), label, SIZE) for label in LABELS}
    union = np.maximum.reduce([m for _, m in outs.values()]) > 0
    for a, b in [("angry", "happy"), ("angry", "sad"), ("happy", "sad")]:
        diff = np.abs(outs[a][0].astype(int) - outs[b][0].astype(int)).max(axis=2) > 0
        assert not (diff & ~union).any(), f"{a} vs {b}: {int((diff & ~union).sum())} px leak"
        assert (diff & union).sum() > 20, f"{a} vs {b} look the same"


def _upright(n: cartoon.Nuisance) -> cartoon.Nuisance:
    """A clean, centred, unrotated face so mask geometry can be read in image coordinates."""
    return dataclasses.replace(n, cx=0.5, cy=0.5, scale=0.25, angle=0.0, blur=0.0, noise=0.0,
                               hair="none", glasses="none")


def _expression(label: str, intensity_seed: int = 0) -> cartoon.Expression:
    return cartoon.sample_expression(np.random.default_rng(intensity_seed), label)


def test_brows_and_mouth_move_the_way_each_expression_says() -> None:
    size = 128
    n = _upright(cartoon.sample_nuisance(_rng(1)))
    u, cx, cy = n.scale * size, size / 2, size / 2
    rows = np.arange(size)[:, None] * np.ones((1, size))
    cols = np.ones((size, 1)) * np.arange(size)[None, :]
    x = (cols - cx) / u  # face units
    y = (rows - cy) / u
    stats = {}
    for label in LABELS:
        _, mask = cartoon.render_face(n, _expression(label), size)
        m = mask > 0
        brow = m & (y < n.eye_y)
        inner, outer = brow & (np.abs(x) < n.brow_inner + 0.12), brow & (np.abs(x) > 0.45)
        mouth = m & (y > n.mouth_y - 0.3)
        centre, corners = mouth & (np.abs(x) < 0.08), mouth & (np.abs(x) > 0.6 * n.mouth_w)
        stats[label] = {
            "inner_minus_outer": y[inner].mean() - y[outer].mean(),  # > 0: inner ends lower
            "corners_minus_centre": y[corners].mean() - y[centre].mean(),  # < 0: corners up
        }
    assert stats["angry"]["inner_minus_outer"] > stats["happy"]["inner_minus_outer"] + 0.05
    assert stats["sad"]["inner_minus_outer"] < stats["happy"]["inner_minus_outer"] - 0.05
    assert stats["happy"]["corners_minus_centre"] < -0.03
    assert stats["sad"]["corners_minus_centre"] > 0.02


def test_intensity_varies_between_images_of_one_class() -> None:
    values = {cartoon.sample_expression(np.random.default_rng(k), "happy").intensity for k in range(8)}
    assert len(values) == 8 and min(values) >= 0.55 and max(values) <= 1.0


def test_mask_path_for_sits_beside_the_image() -> None:
    assert layout.mask_path(Path("a/b/00001.png")) == Path("a/b/00001.mask.png")


def test_generate_dataset_layout_balance_and_reuse(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    splits = {"train": 0.5, "valid": 0.25, "test": 0.25}
    root = synthetic.generate_dataset(out, n=24, size=48, seed=3, splits=splits, progress=False)
    assert root == out
    images = sorted(p for p in out.rglob("*.png") if not p.name.endswith(".mask.png"))
    assert len(images) == 24
    counts: dict[tuple[str, str], int] = {}
    for p in images:
        split, label = p.parent.parent.name, p.parent.name
        counts[split, label] = counts.get((split, label), 0) + 1
        mask = cv2.imread(str(layout.mask_path(p)), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (48, 48) and mask.max() == 255
    assert counts == {(s, c): k for s, k in (("train", 4), ("valid", 2), ("test", 2)) for c in LABELS}
    meta = json.loads((out / "synthetic.json").read_text())
    assert meta["n"] == 24 and meta["seed"] == 3 and meta["size"] == 48
    assert meta["counts"]["train"] == {"angry": 4, "happy": 4, "sad": 4}

    # The saved pixels are exactly draw_face(seed, index): order/parallelism cannot change them.
    first = images[0]
    index = int(first.stem) - 1
    rgb, mask = synthetic.draw_face(np.random.default_rng([3, index]), first.parent.name, 48)
    saved = cv2.cvtColor(cv2.imread(str(first)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(saved, rgb)

    assert synthetic.dataset_matches(out, n=24, size=48, seed=3, splits=splits)
    assert not synthetic.dataset_matches(out, n=24, size=48, seed=4, splits=splits)
    stamp = first.stat().st_mtime_ns
    synthetic.generate_dataset(out, n=24, size=48, seed=3, splits=splits, progress=False)
    assert first.stat().st_mtime_ns == stamp  # reused, not redrawn
    first.unlink()
    assert not synthetic.dataset_matches(out, n=24, size=48, seed=3, splits=splits)


def test_parallel_generation_writes_identical_files(tmp_path: Path) -> None:
    kw = dict(n=6, size=32, seed=1, progress=False)
    synthetic.generate_dataset(tmp_path / "one", workers=1, **kw)
    synthetic.generate_dataset(tmp_path / "two", workers=2, **kw)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert len(files) == 12
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()


def test_uneven_n_stays_balanced_within_one(tmp_path: Path) -> None:
    synthetic.generate_dataset(tmp_path / "s", n=10, size=32, progress=False)
    meta = json.loads((tmp_path / "s" / "synthetic.json").read_text())
    per_class = [sum(meta["counts"][s][c] for s in meta["counts"]) for c in LABELS]
    assert sum(per_class) == 10 and max(per_class) - min(per_class) <= 1


def test_refuses_to_overwrite_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        synthetic.generate_dataset(tmp_path, n=3, size=32, progress=False)
    assert (tmp_path / "keep.txt").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 2}, "at least the number of classes"),
    ({"size": 20}, "between 32 and 1024"),
    ({"classes": ("angry", "angry")}, "distinct"),
    ({"classes": ("angry", "bored")}, "cannot draw"),
    ({"splits": {"train": -1.0}}, "non-negative"),
])
def test_bad_arguments_have_clear_messages(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        synthetic.generate_dataset(tmp_path / "x", progress=False, **{"n": 6, "size": 32, **kwargs})
