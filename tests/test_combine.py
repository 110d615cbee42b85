"""Several prepared datasets trained as one: own splits kept, cross-set copies resolved, stored."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest

from emotion_core import data, store
from emotion_core.data import combine
from tests import tiny_shapes


def _two_sets(tmp_path):
    a = tiny_shapes.make_folder(tmp_path / "sets" / "aset", seed=1)
    b = tiny_shapes.make_folder(tmp_path / "sets" / "bset", seed=2,
                                per_class={"train": 10, "valid": 3})  # no test: one is carved
    return a, b


def test_combined_sets_keep_their_own_splits_and_name_every_source(tmp_path):
    a, b = _two_sets(tmp_path)
    da, db = (data.prepare_dataset(p, progress=False) for p in (a, b))
    both = combine.combine([da, db])
    assert both.name == "aset+bset" and both.root == (tmp_path / "sets").resolve()
    assert combine.sources_of(both) == ["aset", "bset"]
    for ds in (da, db):
        mine = both.split[both.split["source"] == ds.name]
        assert sorted(mine["subset"]) == sorted(ds.split["subset"]), "each set keeps its split"
        assert all((both.root / r).is_file() for r in mine["rel"])
    assert db.report["test_source"] == "carved" and (both.split["source"] == "bset").any()
    again = data.load_prepared("aset+bset")  # stored like a prepared dataset
    pd.testing.assert_frame_equal(again.split, both.split, check_dtype=False)
    assert [s["name"] for s in again.report["sources"]] == ["aset", "bset"]
    cache = data.build_cache(both, 16, progress=False)
    assert len(cache) == len(both.split)


def test_a_picture_in_two_sets_survives_once_in_the_most_held_out_subset(tmp_path):
    a, b = _two_sets(tmp_path)
    copy = sorted((a / "test" / "happy").glob("*.png"))[0]
    shutil.copy(copy, b / "train" / "happy" / "leak.png")  # a test picture leaks into b's train
    clash = sorted((a / "train" / "sad").glob("*.png"))[0]
    shutil.copy(clash, b / "train" / "angry" / "clash.png")  # same picture, another label
    both = combine.combine([data.prepare_dataset(p, progress=False) for p in (a, b)])
    rels = set(both.split["rel"])
    assert "bset/train/happy/leak.png" not in rels
    assert f"aset/test/happy/{copy.name}" in rels, "the test copy is kept"
    assert "bset/train/angry/clash.png" not in rels and f"aset/train/sad/{clash.name}" not in rels
    rep = store.load_dataset_table("aset+bset", "cleaning")
    assert set(rep["issue"]) == {"duplicate_across_sets", "label_conflict"}
    assert both.report["dropped"] == 3


def test_combining_needs_two_sets_with_the_same_classes(tmp_path):
    a, _ = _two_sets(tmp_path)
    other = tiny_shapes.make_folder(tmp_path / "sets" / "two", classes=("angry", "happy"))
    da, dt = data.prepare_dataset(a, progress=False), data.prepare_dataset(other, progress=False)
    with pytest.raises(ValueError, match="same classes"):
        combine.combine([da, dt])
    with pytest.raises(ValueError, match="at least two"):
        combine.combine([da])
