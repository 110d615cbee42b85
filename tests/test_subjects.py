"""Subject-independent splits: a carved val/test split takes whole people (`--subject-pattern`)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emotion_core import data
from emotion_core.data import subjects
from scripts import prepare_data
from tests import tiny_shapes

PATTERN = r"^(P\d{2})_"


def _people(root, people: int = 12, shots: int = 3, split: str | None = None, first: int = 0):
    """`root/[split/]<class>/P<id>_<class>_<shot>.png`: every person shows every class."""
    rng = np.random.default_rng(first)
    for p in range(first, first + people):
        for label in tiny_shapes.CLASSES:
            d = root / split / label if split else root / label
            d.mkdir(parents=True, exist_ok=True)
            for k in range(shots):
                Image.fromarray(tiny_shapes.draw(rng, label)).save(d / f"P{p:02d}_{label}_{k}.png")
    return root


def _subject_sets(ds) -> dict[str, set[str]]:
    keys = subjects.subject_keys(ds.split["rel"], PATTERN)
    return {s: set(keys[ds.split["subset"] == s].dropna()) for s in ds.subsets}


def test_keys_come_from_the_file_name_only():
    rels = pd.Series(["train/angry/P01_a.png", "P09_x/happy/solo.png", "sad/KA.AN1.39.tiff"])
    assert subjects.subject_keys(rels, r"^(P\d{2})_").tolist() == ["P01", None, None]
    assert subjects.subject_keys(rels, r"^(?P<subject>[A-Z]{2})\.").tolist() == [None, None, "KA"]
    assert subjects.subject_keys(rels, r"^P\d{2}").tolist() == ["P01", None, None]  # no group
    with pytest.raises(ValueError, match="not a regular expression"):
        subjects.compile_pattern("(P")


def test_carved_subjects_are_whole_seeded_and_never_all():
    keys = pd.Series([f"P{i // 4:02d}" for i in range(40)])  # 10 people, 4 photos each
    mask = subjects.carve_subjects(keys, 0.2, seed=0, salt="test")
    picked = set(keys[mask])
    assert mask.sum() == 8 and len(picked) == 2, "about the share, in whole subjects"
    assert not picked & set(keys[~mask])
    assert (subjects.carve_subjects(keys, 0.2, 0, "test") == mask).all()
    assert set(keys[subjects.carve_subjects(keys, 0.2, 1, "test")]) != picked
    assert (~subjects.carve_subjects(keys, 0.99, 0, "test")).any(), "train keeps a subject"
    assert not subjects.carve_subjects(pd.Series(["P00"] * 5), 0.5, 0, "test").any()


def test_carved_val_and_test_take_whole_people(tmp_path):
    root = _people(tmp_path / "people")
    by_file = data.prepare_dataset(root, "byfile", progress=False, seed=2)
    spread = _subject_sets(by_file)
    assert spread["train"] & spread["test"], "by file, people straddle train and test"

    ds = data.prepare_dataset(root, "bysubject", progress=False, seed=2, subject_pattern=PATTERN)
    sets = _subject_sets(ds)
    assert ds.report["test_source"] == ds.report["val_source"] == "carved"
    assert not sets["train"] & sets["test"] and not sets["train"] & sets["val"]
    assert not sets["val"] & sets["test"]
    assert 0 < len(ds.files("test")) < len(ds.split) / 2
    assert ds.report["subject_pattern"] == PATTERN
    assert ds.report["subjects"] == {"files": 108, "subjects": 12, "shared_across_subsets": 0,
                                     "shared_examples": []}
    again = data.load_prepared("bysubject")
    pd.testing.assert_frame_equal(again.split, ds.split, check_dtype=False)


def test_files_without_a_subject_are_carved_by_class(tmp_path):
    root = _people(tmp_path / "mixed", people=8)
    rng = np.random.default_rng(9)
    for label in tiny_shapes.CLASSES:
        for k in range(20):
            Image.fromarray(tiny_shapes.draw(rng, label)).save(root / label / f"web_{k}.png")
    ds = data.prepare_dataset(root, "mixed", progress=False, subject_pattern=PATTERN)
    web = ds.split[ds.split["rel"].str.contains("web_")]
    for label in tiny_shapes.CLASSES:  # 15% of each class's 20 anonymous files, as without
        assert ((web["subset"] == "test") & (web["label"] == label)).sum() == 3
    sets = _subject_sets(ds)
    assert not sets["train"] & (sets["test"] | sets["val"])


def test_the_datasets_own_splits_that_share_a_person_are_reported(tmp_path):
    root = _people(tmp_path / "fixed", people=6, split="train")
    _people(root, people=2, split="valid", first=5)  # P05 is in train too; P06 is not
    ds = data.prepare_dataset(root, "fixed", progress=False, subject_pattern=PATTERN)
    assert ds.report["val_source"] == "dataset"
    assert ds.report["subjects"]["shared_across_subsets"] >= 1
    assert "P05" in ds.report["subjects"]["shared_examples"]
    assert any("not subject-independent" in w and "P05" in w for w in ds.report["warnings"])
    assert any(w.startswith("1 subject appears in more than one") for w in ds.report["warnings"])


def test_a_pattern_that_matches_nothing_splits_by_file(tmp_path):
    root = _people(tmp_path / "nomatch", people=6)
    plain = data.prepare_dataset(root, "plain", progress=False)
    none = data.prepare_dataset(root, "none", progress=False, subject_pattern=r"^Q(\d+)")
    pd.testing.assert_frame_equal(none.split, plain.split)
    assert any("matched no file name" in w for w in none.report["warnings"])


def test_cli_takes_the_pattern_and_refuses_a_bad_one(tmp_path, capsys):
    root = _people(tmp_path / "cli", people=6)
    assert prepare_data.main(["--data", str(root), "--subject-pattern", PATTERN, "--quiet",
                              "--no-eda"]) == 0
    assert "subjects: 6 in 54 file names" in capsys.readouterr().out
    assert prepare_data.main(["--data", str(root), "--subject-pattern", "(P", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not a regular expression" in err


def test_adding_face_boxes_later_keeps_the_chosen_split(tmp_path):
    """`scripts.train --crop-faces` on a folder prepared without face boxes prepares it again
    (`open_folder`): with the stored pattern and seed, not the defaults."""
    root = _people(tmp_path / "later", people=6, shots=2)
    ds = data.prepare_dataset(root, "later", progress=False, seed=3, subject_pattern=PATTERN)
    again = data.open_folder(root, "later", detect_faces=True, progress=False)
    assert again.report["detect_faces"] and again.report["subject_pattern"] == PATTERN
    assert again.report["seed"] == 3
    pd.testing.assert_frame_equal(again.split[["rel", "subset"]], ds.split[["rel", "subset"]])


def test_the_data_page_says_how_the_split_was_made(tmp_path):
    from emotion_core.views import dataset_tables

    root = _people(tmp_path / "shown", people=6, split="train")
    _people(root, people=2, split="valid", first=5)
    data.prepare_dataset(root, "shown", progress=False, seed=4, subject_pattern=PATTERN)
    line, warnings = dataset_tables.split_notes("shown")
    assert line.startswith("Test: carved from train (15%, seed 4) · Validation: the dataset's own")
    assert "carved by person: 7 people read from 72 file names" in line
    assert any("P05" in w for w in warnings)
    data.prepare_dataset(root, "plain", progress=False)
    line, warnings = dataset_tables.split_notes("plain")
    assert "person" not in line and warnings == []
