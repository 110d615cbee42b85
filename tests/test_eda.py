"""EDA tables and images: they add up to the split and show the cached pixels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emotion_core import store
from emotion_core.data import cache, eda
from tests.test_cache import CLASSES, make_dataset

SIZE = 10


@pytest.fixture()
def ds(tmp_path: Path):
    return make_dataset(tmp_path / "images", n_per_class=5)


@pytest.fixture()
def built(ds):
    return cache.build_cache(ds, SIZE, progress=False)


def test_class_distribution_sums_to_the_split(ds):
    df = eda.class_distribution(ds)
    sub = df[df.stage == "subset"]
    for split in ("train", "val", "test"):
        part = sub[sub.split == split]
        assert part["count"].sum() == len(ds.files(split))
        assert part["share"].sum() == pytest.approx(1.0)
        assert list(part.label) == CLASSES
    src = df[df.stage == "source"].set_index(["split", "label"])["count"]
    assert src[("train", "happy")] == ds.report["counts"]["train"]["happy"]


def test_image_stats_per_group_and_modes():
    index = pd.DataFrame({
        "source_split": ["train", "train", "train", "val"],
        "label": ["angry", "angry", "happy", "angry"],
        "width": [100, 300, 50, np.nan], "height": [100, 150, 40, np.nan],
        "mode": ["RGB", "L", "RGB", ""], "error": ["", "", "", "unreadable"]})
    st = eda.image_stats(index).set_index(["split", "label"])
    assert st.loc[("all", "all"), "files"] == 4 and st.loc[("all", "all"), "readable"] == 3
    assert st.loc[("all", "all"), "width_max"] == 300 and st.loc[("all", "all"), "height_min"] == 40
    assert st.loc[("train", "angry"), "mode_L"] == 1 and st.loc[("train", "angry"), "mode_RGB"] == 1
    assert st.loc[("train", "angry"), "aspect_median"] == pytest.approx(1.5)
    assert st.loc[("val", "angry"), "readable"] == 0
    with pytest.raises(ValueError, match="lacks columns"):
        eda.image_stats(index.drop(columns="mode"))


def test_sample_grid_shows_cached_images(built):
    grid = eda.sample_grid(built, "train", per_class=4, seed=1)
    cell = SIZE + 2
    assert grid.shape == (len(CLASSES) * cell + 2, 4 * cell + 2, 3) and grid.dtype == np.uint8
    picks = eda._pick(built, "train", 4, 1)
    first_sad = picks[picks.label == "sad"].row.iloc[0]
    np.testing.assert_array_equal(grid[2 + 2 * cell: 2 + 2 * cell + SIZE, 2:2 + SIZE],
                                  built.images[first_sad])
    n_train_angry = int((built.labels[built.indices("train")] == 0).sum())
    assert n_train_angry == 3  # so the row ends in one black cell
    assert grid[2:2 + SIZE, 2 + 3 * cell: 2 + 3 * cell + SIZE].max() == 0
    assert grid[2:2 + SIZE, 2 + 2 * cell: 2 + 2 * cell + SIZE].max() > 0


def test_mean_faces_and_batch_means(built):
    means = eda.mean_faces(built, "train")
    idx = built.indices("train")
    assert means.shape == (len(CLASSES), SIZE, SIZE, 3)
    for c in range(len(CLASSES)):
        rows = idx[built.labels[idx] == c]
        np.testing.assert_allclose(means[c], built.images[rows].mean(axis=0), rtol=1e-6)
    batch_means = eda.batch_mean_faces(built, batch_size=2, n_batches=2, seed=4)
    comp = eda.batch_composition(built, batch_size=2, n_batches=2, seed=4)
    assert batch_means.shape == (2, SIZE, SIZE, 3) and list(comp["size"]) == [2, 2]
    # the same batches the training loader draws first (epoch 0, same seed)
    loader = cache.CachedLoader(built, idx, 2, shuffle=True, seed=4)
    _, y = next(iter(loader))
    assert sorted(y.tolist()) == sorted(np.repeat(np.arange(3), comp.loc[0, CLASSES].to_numpy()))
    assert comp[CLASSES].to_numpy().sum() == 4


def test_cleaning_summary_from_table_and_report():
    table = pd.DataFrame({"issue": ["near_duplicate", "near_duplicate", "unreadable", "label_conflict"],
                          "action": ["dropped", "kept", "dropped", "flagged"]})
    s = eda.cleaning_summary(table).set_index("issue")
    assert s.loc["near_duplicate", "dropped"] == 1 and s.loc["near_duplicate", "kept"] == 1
    assert s["total"].sum() == len(table) and list(s.columns[:3]) == ["dropped", "kept", "flagged"]
    assert list(s.index)[0] == "unreadable"  # the cleaning module's kind order
    d = eda.cleaning_summary({"issues": {"too_small": 2, "unreadable": 1}})
    assert list(d.issue) == ["unreadable", "too_small"] and d.total.sum() == 3
    assert eda.cleaning_summary(table.iloc[:0]).empty


def test_save_eda_writes_everything_through_artifacts(ds, built):
    written = eda.save_eda(ds, built, per_class=2, batch_size=2, n_batches=3)
    out = store.paths.eda_dir(ds.name)
    assert all(p.parent == out and p.exists() for p in written.values())
    summary = store.read_json(out / "eda.json")
    assert summary["cache_key"] == built.key and "mean_face_per_class" in summary["files"]
    dist = pd.read_csv(out / "class_distribution.csv")
    assert dist[dist.stage == "subset"]["count"].sum() == len(ds.split)
    with Image.open(out / "batch_mean_faces.png") as im:
        assert im.size == (3 * (SIZE + 2) + 2, SIZE + 4)
    for subset in ("train", "val", "test"):
        assert (out / f"sample_grid_{subset}.png").exists()
