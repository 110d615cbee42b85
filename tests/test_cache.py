"""Decode-once cache: exact pixels, content-keyed reuse, atomic builds, the loader, export."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from emotion_core import store
from emotion_core.data import PreparedDataset, cache, cache_export
from emotion_core.data.faces import FaceBox, crop_face
from emotion_core.data.images import load_rgb
from emotion_core.data.transforms import AugmentConfig, resize_square
from scripts.bench.torchvision_pipeline import ImageFileDataset, eval_transform
from tests.conftest import shared_data_or_skip

CLASSES = ["angry", "happy", "sad"]
SIZE = 12


def make_dataset(root: Path, n_per_class: int = 4) -> PreparedDataset:
    """Tiny smooth pictures of mixed sizes and formats, split train/val/test, no face boxes."""
    rng = np.random.default_rng(0)
    rows = []
    shapes = [(20, 30), (31, 17), (16, 16), (40, 25)]
    for c, label in enumerate(CLASSES):
        for k in range(n_per_class):
            subset = ("train", "train", "val", "test")[k % 4]
            h, w = shapes[k % len(shapes)]
            img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 1.5)
            img[..., c] //= 3  # a class tint, so mean faces differ
            ext = ".png" if k % 2 else ".jpg"
            rel = f"{subset}/{label}/{k:03d}{ext}"
            (root / subset / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / rel)
            rows.append({"rel": rel, "label": label, "subset": subset, "source_split": subset,
                         "fx": np.nan, "fy": np.nan, "fw": np.nan, "fh": np.nan})
    split = pd.DataFrame(rows)
    counts = {s: {c: int(((split.subset == s) & (split.label == c)).sum()) for c in CLASSES}
              for s in ("train", "val", "test")}
    report = {"name": "tiny", "counts": counts, "subset_counts": counts, "issues": {}}
    return PreparedDataset(name="tiny", root=root, classes=list(CLASSES), split=split, report=report)


@pytest.fixture()
def ds(tmp_path: Path) -> PreparedDataset:
    return make_dataset(tmp_path / "images")


def test_cache_holds_exactly_the_slow_path_pixels(ds):
    c = cache.build_cache(ds, SIZE, progress=False)
    assert c.images.shape == (len(ds.split), SIZE, SIZE, 3) and c.images.dtype == np.uint8
    assert isinstance(c.images, np.memmap)
    assert list(c.rels) == list(ds.split.rel) and list(c.subsets) == list(ds.split.subset)
    np.testing.assert_array_equal(c.labels, ds.label_ids())
    for i, rel in enumerate(ds.split.rel):
        np.testing.assert_array_equal(c.images[i], resize_square(load_rgb(ds.root / rel), SIZE))
    # The reference slow path (ImageFolder-style, PIL loader, per-sample v2 eval transform) sees
    # the same normalised tensors as the cache loader without augmentation.
    idx = c.indices("train")
    slow = ImageFileDataset([ds.root / r for r in c.rels[idx]], c.labels[idx], eval_transform(SIZE))
    x, y = next(iter(cache.CachedLoader(c, idx, len(idx), shuffle=False, aug=None)))
    torch.testing.assert_close(x, torch.stack([slow[k][0] for k in range(len(idx))]), atol=1e-6, rtol=0)
    assert y.tolist() == [slow[k][1] for k in range(len(idx))]


def test_cache_is_reused_until_contents_or_settings_change(ds, monkeypatch):
    first = cache.build_cache(ds, SIZE, progress=False)
    calls = []
    real = cache.decode_resized
    monkeypatch.setattr(cache, "decode_resized", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = cache.build_cache(ds, SIZE, progress=False)
    assert again.path == first.path and calls == []  # reused: nothing decoded
    bigger = cache.build_cache(ds, SIZE + 4, progress=False)
    assert bigger.key != first.key and len(calls) == len(ds.split)
    path = ds.root / ds.split.rel[0]
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched
    assert cache.cache_key(ds, SIZE) != first.key
    relabelled = PreparedDataset(ds.name, ds.root, ds.classes,
                                 ds.split.assign(subset=ds.split.subset.replace("val", "train")), ds.report)
    assert cache.cache_key(relabelled, SIZE) not in (first.key, cache.cache_key(ds, SIZE))
    assert cache.cache_key(ds, SIZE, crop_faces=True) != cache.cache_key(ds, SIZE)


def test_failed_build_leaves_nothing_behind(ds):
    (ds.root / ds.split.rel[3]).write_bytes(b"not an image any more")
    with pytest.raises(cache.CacheError, match="no longer decode"):
        cache.build_cache(ds, SIZE, progress=False)
    base = store.paths.root() / "cache"
    assert not base.exists() or list(base.iterdir()) == []


def test_missing_file_and_bad_settings_are_clear_errors(ds):
    with pytest.raises(cache.CacheError, match="at least 8"):
        cache.build_cache(ds, 4, progress=False)
    (ds.root / ds.split.rel[0]).unlink()
    with pytest.raises(cache.CacheError, match="prepare_data"):
        cache.build_cache(ds, SIZE, progress=False)


def test_face_crop_uses_the_stored_box(ds):
    split = ds.split.copy()
    split.loc[0, ["fx", "fy", "fw", "fh"]] = [4, 3, 8, 9]
    boxed = PreparedDataset(ds.name, ds.root, ds.classes, split, ds.report)
    c = cache.build_cache(boxed, SIZE, crop_faces=True, progress=False)
    rgb = load_rgb(ds.root / split.rel[0])
    np.testing.assert_array_equal(c.images[0], resize_square(crop_face(rgb, FaceBox(4, 3, 8, 9)), SIZE))
    np.testing.assert_array_equal(c.images[1], resize_square(load_rgb(ds.root / split.rel[1]), SIZE))


def test_face_margin_and_fit_are_part_of_the_cache_and_its_name(ds):
    split = ds.split.copy()
    split.loc[0, ["fx", "fy", "fw", "fh"]] = [4, 3, 8, 9]
    boxed = PreparedDataset(ds.name, ds.root, ds.classes, split, ds.report)
    keys = {(m, f): cache.cache_key(boxed, SIZE, crop_faces=True, face_margin=m, face_fit=f)
            for m in (0.25, 0.5) for f in ("pad", "inside")}
    assert len(set(keys.values())) == 4  # every framing has its own cache
    # the old framing keeps the name it had before the fit was a choice (existing caches stay)
    assert keys[(0.25, "pad")] == cache.cache_key(boxed, SIZE, crop_faces=True)
    c = cache.build_cache(boxed, SIZE, crop_faces=True, face_margin=0.5, face_fit="inside",
                          progress=False)
    rgb = load_rgb(ds.root / split.rel[0])
    np.testing.assert_array_equal(
        c.images[0], resize_square(crop_face(rgb, FaceBox(4, 3, 8, 9), 0.5, fit="inside"), SIZE))
    assert (c.meta["face_margin"], c.meta["face_fit"]) == (0.5, "inside")


def test_loader_batches_shapes_and_epochs(ds):
    c = cache.build_cache(ds, SIZE, progress=False)
    idx = np.concatenate([c.indices("train"), c.indices("val")])
    loader = cache.CachedLoader(c, idx, 4, shuffle=True, aug=AugmentConfig(), seed=3)
    assert len(loader) == 3  # 9 images in batches of 4
    loader.set_epoch(2)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 1]
    x, y = batches[0]
    assert x.shape == (4, 3, SIZE, SIZE) and x.dtype == torch.float32 and y.dtype == torch.int64
    seen_labels = sorted(int(v) for _, y in batches for v in y)
    assert seen_labels == sorted(c.labels[idx].tolist())  # every image once per epoch
    loader.set_epoch(2)
    for (xa, ya), (xb, yb) in zip(batches, loader, strict=True):
        torch.testing.assert_close(xa, xb, atol=0, rtol=0)
        assert ya.tolist() == yb.tolist()
    other = [y.tolist() for _, y in loader]  # epoch 3: a different order/augmentation
    assert other != [y.tolist() for _, y in batches] or not torch.equal(next(iter(loader))[0], x)
    dropped = cache.CachedLoader(c, idx, 4, shuffle=False, drop_last=True)
    assert len(dropped) == 2 and len(list(dropped)) == 2


def test_loader_follows_a_sampler_and_normalises(ds):
    c = cache.build_cache(ds, SIZE, progress=False)
    idx = c.indices("train")
    loader = cache.CachedLoader(c, idx, 2, shuffle=False, sampler_indices=[3, 0], mean=(0, 0, 0),
                                std=(1, 1, 1))
    (x, y), = list(loader)
    rows = np.sort(idx[[3, 0]])
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), c.images[rows] / 255.0, atol=1e-6)
    assert y.tolist() == c.labels[rows].tolist()
    with pytest.raises(ValueError, match="indices"):
        cache.CachedLoader(c, [len(c)], 2, shuffle=False)
    with pytest.raises(ValueError, match="unknown subset"):
        c.indices("valid")


@pytest.mark.parametrize("codec", ["png", "jpeg", "webp"])
def test_export_import_round_trip(ds, tmp_path, codec):
    c = cache.build_cache(ds, 16, progress=False)
    out = cache_export.export_cache(c, tmp_path / "export", codec=codec, extra={"report": ds.report},
                             progress=False)
    back = cache_export.load_exported_cache(out, progress=False)
    assert back.path != c.path and back.size == 16
    assert list(back.rels) == list(c.rels) and list(back.subsets) == list(c.subsets)
    np.testing.assert_array_equal(back.labels, c.labels)
    assert back.classes == c.classes and back.meta["extra"]["report"]["name"] == "tiny"
    diff = np.abs(back.images.astype(int) - c.images.astype(int))
    if codec == "png":
        assert diff.max() == 0
    else:
        assert 0 < diff.mean() < 6  # lossy but close (tiny high-detail pictures; faces: < 2)
    assert cache_export.load_exported_cache(out, progress=False).path == back.path  # decoded once
    small = cache_export.load_exported_cache(cache_export.export_cache(c, tmp_path / "small", size=8,
                                                         codec="png", progress=False), progress=False)
    assert small.images.shape == (len(c), 8, 8, 3)
    up = cache_export.load_exported_cache(out, size=20, progress=False)  # resized while decoding
    assert up.images.shape == (len(c), 20, 20, 3) and up.path != back.path and up.size == 20
    with pytest.raises(cache.CacheError, match="not an exported cache"):
        cache_export.load_exported_cache(tmp_path)


def test_export_lowers_quality_to_fit_a_budget(ds, tmp_path):
    c = cache.build_cache(ds, 16, progress=False)
    full = cache_export.export_cache(c, tmp_path / "q95", codec="jpeg", quality=95, progress=False)
    with np.load(full / "cache.npz") as z:
        nbytes = int(z["offsets"][-1])
    fit = cache_export.export_cache(c, tmp_path / "fit", codec="jpeg", quality=95,
                             budget_mib=(nbytes - 1) / 2**20, progress=False)
    meta = store.read_json(fit / "meta.json")
    assert meta["quality"] < 95 and meta["source_key"] == c.key
    with np.load(fit / "cache.npz") as z:
        assert int(z["offsets"][-1]) < nbytes
    with pytest.raises(cache.CacheError, match="smaller size"):
        cache_export.export_cache(c, tmp_path / "png", codec="png", budget_mib=1e-4, progress=False)


@pytest.mark.realdata
def test_real_cache_round_trips_the_slow_path_pixels():
    from torchvision.datasets.folder import default_loader

    root = shared_data_or_skip("webfaces3")
    rels = [f"train/{c}/{p.name}" for c in CLASSES
            for p in sorted((root / "train" / c).glob("*.jpg"))[:2]]
    split = pd.DataFrame({"rel": rels, "label": [r.split("/")[1] for r in rels], "subset": "train"})
    ds = PreparedDataset("webfaces3-sample", root, list(CLASSES), split, {})
    c = cache.build_cache(ds, 112, progress=False)
    for i, rel in enumerate(rels):  # torchvision's PIL loader + the shared resize
        pil = np.asarray(default_loader(str(root / rel)))
        np.testing.assert_array_equal(c.images[i], resize_square(pil, 112))
