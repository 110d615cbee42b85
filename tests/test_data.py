"""Discovery, cleaning report, split and class weights on a tiny dataset with every kind of problem."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emotion_core import data, store
from emotion_core.data import layout, prepare
from emotion_core.data.cleaning import count_issues
from scripts import prepare_data

CLASSES = ("angry", "happy", "sad")


def _picture(seed: int, side: int = 48) -> np.ndarray:
    """A smooth random colour pattern: distinct per seed, stable under re-encoding."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((side, side), Image.BICUBIC))


def _save(path: Path, rgb: np.ndarray, fmt: str = "PNG", **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format=fmt, **kw)
    return path


@pytest.fixture()
def messy(tmp_path: Path) -> Path:
    root = tmp_path / "messy"
    seed = 0
    for split, n in (("train", 10), ("test", 3)):
        for c in CLASSES:
            for k in range(n):
                seed += 1
                _save(root / split / c / f"{k:02d}.png", _picture(seed))
    tr = root / "train"
    # Decode problems.
    jpg = io.BytesIO()
    Image.fromarray(_picture(900)).save(jpg, format="JPEG")
    (tr / "angry" / "corrupt.jpg").write_bytes(jpg.getvalue()[: len(jpg.getvalue()) // 2])
    (tr / "happy" / "notes.jpg").write_text("not an image")
    _save(tr / "sad" / "dot.png", np.zeros((1, 1, 3), np.uint8))
    # Odd but valid modes (must be kept, not reported).
    _save(tr / "angry" / "gray.png", _picture(901)[..., 0])
    _save(tr / "happy" / "cmyk.jpg", _picture(902), "JPEG")
    Image.fromarray(_picture(902)).convert("CMYK").save(tr / "happy" / "cmyk.jpg", "JPEG")
    rgba = np.dstack([_picture(903), np.full((48, 48), 255, np.uint8)])
    _save(tr / "sad" / "rgba.png", rgba)
    exif_im = Image.fromarray(_picture(904))
    exif = exif_im.getexif()
    exif[0x0112] = 6
    exif_im.save(tr / "sad" / "rotated.jpg", "JPEG", quality=95, exif=exif.tobytes())
    # Duplicates.
    _save(tr / "happy" / "leak.png", _picture(905))
    _save(root / "test" / "happy" / "leak_copy.png", _picture(905))
    _save(tr / "angry" / "conflict.png", _picture(906))
    _save(tr / "sad" / "conflict_copy.png", _picture(906))
    _save(tr / "angry" / "twin.png", _picture(907))
    _save(tr / "angry" / "twin_copy.png", _picture(907))
    brighter = np.clip(_picture(908).astype(int) + 12, 0, 255).astype(np.uint8)
    _save(tr / "sad" / "near.png", _picture(908))
    _save(tr / "sad" / "near_copy.jpg", brighter, "JPEG", quality=90)
    # Ignored by discovery.
    _save(tr / "sad" / "near.mask.png", np.zeros((48, 48), np.uint8))
    _save(tr / "sad" / ".hidden.png", _picture(909))
    (tr / "sad" / "README.txt").write_text("ignored")
    return root


def _rows(report: pd.DataFrame, name: str) -> pd.DataFrame:
    return report[report["file"].str.endswith("/" + name)]


def test_order_and_canonical_split():
    assert layout.order_classes(["sad", "zeta", "angry", "alpha"]) == ["angry", "sad", "alpha", "zeta"]
    assert [layout.canonical_split(s) for s in ("train", "Valid", "validation", "val", "TEST")] == \
        ["train", "val", "val", "val", "test"]
    assert layout.canonical_split("extra") is None


def test_discover_skips_masks_hidden_and_non_images(messy):
    found = data.discover(messy)
    classes, files = found.classes, found.files
    assert classes == list(CLASSES)
    assert list(files.columns) == ["rel", "source_split", "label"]
    names = set(files["rel"].str.rsplit("/", n=1).str[-1])
    assert "near.mask.png" not in names and ".hidden.png" not in names and "README.txt" not in names
    assert {"notes.jpg", "corrupt.jpg", "dot.png"} <= names
    assert set(files["source_split"]) == {"train", "test"}


def test_discover_class_layout_and_errors(tmp_path):
    for c in ("Sad", "happy"):
        _save(tmp_path / "flat" / c / "a.png", _picture(len(c)))
    found = data.discover(tmp_path / "flat")
    classes, files = found.classes, found.files
    assert classes == ["happy", "sad"] and set(files["source_split"]) == {"train"}
    _save(tmp_path / "mixed" / "train" / "sad" / "a.png", _picture(1))
    _save(tmp_path / "mixed" / "extra" / "sad" / "a.png", _picture(2))
    with pytest.raises(ValueError, match="mixes split folders"):
        data.discover(tmp_path / "mixed")
    with pytest.raises(FileNotFoundError):
        data.discover(tmp_path / "absent")
    (tmp_path / "empty" / "sad").mkdir(parents=True)
    with pytest.raises(ValueError, match="no image files"):
        data.discover(tmp_path / "empty")


def test_cleaning_report_kinds_and_actions(messy):
    ds = data.prepare_dataset(messy, "messy", progress=False)
    rep = store.load_dataset_table("messy", "cleaning")
    assert list(rep.columns) == ["file", "split", "label", "issue", "action", "detail"]

    def one(name: str) -> tuple[str, str]:
        r = _rows(rep, name)
        assert len(r) == 1, r
        return r["issue"].iloc[0], r["action"].iloc[0]

    assert one("corrupt.jpg") == ("unreadable", "dropped")
    assert one("notes.jpg") == ("not_an_image", "dropped")
    assert one("dot.png") == ("too_small", "dropped")
    assert one("leak.png") == ("duplicate_across_splits", "dropped")
    assert one("leak_copy.png") == ("duplicate_across_splits", "kept")
    assert "test split is fixed" in _rows(rep, "leak_copy.png")["detail"].iloc[0]
    assert one("conflict.png") == ("label_conflict", "dropped")
    assert one("conflict_copy.png") == ("label_conflict", "dropped")
    twins = {one("twin.png"), one("twin_copy.png")}
    assert twins == {("duplicate_within_split", "kept"), ("duplicate_within_split", "dropped")}
    nears = {one("near.png"), one("near_copy.jpg")}
    assert nears == {("near_duplicate", "kept"), ("near_duplicate", "dropped")}
    for fine in ("gray.png", "cmyk.jpg", "rgba.png", "rotated.jpg", "00.png"):
        assert _rows(rep, fine).empty, fine
    issues = ds.report["issues"]
    assert issues == count_issues(rep)
    assert issues["unreadable"] == 1 and issues["label_conflict"] == 2
    assert issues["duplicate_across_splits"] == 1 and issues["near_duplicate"] == 1
    assert issues["no_face_found"] == 0
    kept = set(ds.split["rel"])
    dropped = set(rep.loc[rep["action"] == "dropped", "file"])
    assert not kept & dropped and "test/happy/leak_copy.png" in kept


def test_no_duplicate_group_straddles_subsets(messy):
    ds = data.prepare_dataset(messy, "messy", progress=False, val_fraction=0.3)
    index = store.load_dataset_table("messy", "index")
    subset = dict(zip(ds.split["rel"], ds.split["subset"], strict=True))
    index = index[index["rel"].isin(subset)]
    index = index.assign(subset=index["rel"].map(subset))
    assert index.groupby("pixel_sha1")["subset"].nunique().max() == 1
    grouped = index[index["group"] >= 0]
    assert grouped.empty or grouped.groupby("group")["subset"].nunique().max() == 1
    # The test split keeps every readable test file: the dataset's test set is fixed.
    assert (ds.split["subset"] == "test").sum() == 3 * 3 + 1


def test_split_is_stratified_seeded_persisted_and_reproducible(messy):
    ds = data.prepare_dataset(messy, "messy", progress=False, seed=3)
    train_val = ds.split[ds.split["subset"] != "test"]
    for c in CLASSES:
        n = (train_val["label"] == c).sum()
        assert (ds.files("val")["label"] == c).sum() == round(0.2 * n)
    assert ds.report["val_source"] == "carved" and ds.has_test
    again = data.prepare_dataset(messy, "messy", progress=False, seed=3)
    pd.testing.assert_frame_equal(ds.split, again.split)
    other = data.prepare_dataset(messy, "other", progress=False, seed=4)
    assert set(other.files("val")["rel"]) != set(ds.files("val")["rel"])
    loaded = data.load_prepared("messy")
    assert loaded.classes == list(CLASSES) and loaded.root == messy.resolve()
    pd.testing.assert_frame_equal(loaded.split, again.split, check_dtype=False)
    assert loaded.label_ids("test").tolist() == [0] * 3 + [1] * 4 + [2] * 3
    assert all(p.is_file() for p in loaded.paths("train"))


def test_dataset_val_split_is_kept_and_a_test_split_is_carved_from_train(tmp_path):
    root = tmp_path / "tv"
    for split, n in (("train", 20), ("valid", 2)):
        for i, c in enumerate(CLASSES):
            for k in range(n):
                _save(root / split / c / f"{k}.png", _picture(100 * i + 50 * (split == "valid") + k))
    ds = data.prepare_dataset(root, progress=False)
    assert ds.name == "tv" and ds.has_test and ds.subsets == ["train", "val", "test"]
    assert ds.report["val_source"] == "dataset" and ds.report["test_source"] == "carved"
    assert ds.report["subset_counts"]["val"] == {c: 2 for c in CLASSES}
    assert ds.report["subset_counts"]["test"] == {c: 3 for c in CLASSES}  # 15% of 20, per class
    assert ds.report["counts"] == {"train": {c: 20 for c in CLASSES}, "val": {c: 2 for c in CLASSES}}
    test = set(ds.files("test")["rel"])
    assert test <= {r for r in ds.split["rel"] if r.startswith("train/")}, "carved from train only"
    assert not test & set(ds.files("train")["rel"]) and not test & set(ds.files("val")["rel"])
    again = data.prepare_dataset(root, "tv2", progress=False)
    assert set(again.files("test")["rel"]) == test, "persisted and seeded: the same files again"
    none = data.prepare_dataset(root, "tv3", progress=False, test_fraction=0.0)
    assert not none.has_test and none.report["test_source"] == "none"


def test_class_weights_inverse_frequency_mean_one():
    w = data.class_weights(["a"] * 1 + ["b"] * 2 + ["c"] * 4, ["a", "b", "c"])
    assert w.mean() == pytest.approx(1.0)
    assert w * np.array([1, 2, 4]) == pytest.approx(np.full(3, w[0]))
    w = data.class_weights(["a", "a", "b", "b"], ["a", "b", "c"])
    assert w.tolist() == [1.0, 1.0, 0.0]


def test_load_prepared_missing_says_what_to_run():
    with pytest.raises(FileNotFoundError, match="prepare_data"):
        data.load_prepared("never_prepared")


def test_bad_arguments():
    with pytest.raises(ValueError, match="val_fraction"):
        data.prepare_dataset(Path("."), "x", val_fraction=1.0, progress=False)
    with pytest.raises(ValueError, match="dataset name"):
        prepare.check_name("../escape")


def test_cli_prints_summary_and_fails_cleanly(messy, capsys, tmp_path):
    assert prepare_data.main(["--data", str(messy), "--name", "cli", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "dataset cli" in out and "duplicate_across_splits 1" in out
    assert (store.paths.dataset_dir("cli") / "report.json").exists()
    # the Data page's pictures are written with the report (the demo prepares through this CLI)
    assert {p.stem for p in store.eda_images("cli")} >= {"sample_grid_train",
                                                         "mean_face_per_class", "batch_mean_faces"}
    assert "EDA:" in out
    assert prepare_data.main(["--data", str(messy), "--name", "bare", "--quiet", "--no-eda"]) == 0
    assert store.eda_images("bare") == []
    capsys.readouterr()
    assert prepare_data.main(["--data", str(tmp_path / "nowhere"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    assert prepare_data.main(["--data", str(messy), "--drop-no-face"]) == 2
    capsys.readouterr()
    for extra, says in ((["--val-fraction", "1"], "--val-fraction must be in [0, 1); got 1"),
                        (["--test-fraction", "-0.1"], "--test-fraction must be in [0, 1)"),
                        (["--min-side", "0"], "--min-side must be at least 1"),
                        (["--seed", "-1"], "--seed must be >= 0")):
        assert prepare_data.main(["--data", str(messy), "--name", "refused", *extra]) == 2
        assert says in capsys.readouterr().err
    assert not store.paths.dataset_dir("refused").exists()  # refused before anything was read
