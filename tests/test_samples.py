"""The Data page's pictures and counts, and the probing pages' samples, come from emotion_core."""
from __future__ import annotations

import numpy as np
import pytest

from emotion_core import store
from emotion_core.data import images
from emotion_core.views import dataset_tables, samples
from tests.fixtures_runs import DATASET, tiny_store


@pytest.fixture
def tiny(tmp_path_factory, monkeypatch):
    root, _ = tiny_store(tmp_path_factory)
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    return root


def test_eda_gallery_lists_the_saved_pictures_with_captions(tiny) -> None:
    gallery = samples.eda_gallery(DATASET)
    captions = [c for _, c in gallery]
    assert captions[0].startswith("sample grid (train): one row per class")  # train grid first
    assert any(c.startswith("mean face per class") for c in captions)
    assert any(c.startswith("batch-wise mean faces: each of the first") for c in captions)
    assert all("?" not in c for c in captions)  # sizes and counts read from the EDA summary
    assert all(p.is_file() and p.parent == store.paths.eda_dir(DATASET) for p, _ in gallery)
    assert samples.eda_gallery("no-such-dataset") == []


def test_issue_counts_follow_the_report(tiny) -> None:
    counts = dataset_tables.issue_counts(DATASET)
    assert list(counts.columns) == ["issue", "files"]
    assert dict(zip(counts["issue"], counts["files"], strict=True)) == {
        k: int(v) for k, v in (store.load_report(DATASET).get("issues") or {}).items() if int(v)}
    assert (counts["files"] > 0).all()  # a clean set gives an empty table, not a row of zeros


def test_samples_are_held_out_and_load_by_name(tiny) -> None:
    choices = samples.sample_choices(DATASET)
    split = store.load_dataset_table(DATASET, "split").set_index("rel")
    assert choices == sorted(choices) and len(choices) > 0
    assert set(split.loc[choices, "subset"]) <= {"val", "test"}
    rgb, path = samples.load_sample(DATASET, choices[0])
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and path.name == choices[0].split("/")[-1]
    with pytest.raises(FileNotFoundError):
        samples.load_sample(DATASET, "angry/not-there.png")
    with pytest.raises(FileNotFoundError):
        samples.load_sample("no-such-dataset", choices[0])


def test_an_unreadable_sample_raises_a_decode_error(tiny, tmp_path, monkeypatch) -> None:
    (tmp_path / "bad.png").write_bytes(b"not an image")
    monkeypatch.setattr(samples, "dataset_root", lambda name: tmp_path)
    with pytest.raises(images.ImageDecodeError):
        samples.load_sample(DATASET, "bad.png")


def test_mean_face_strips_get_a_width_per_face(tiny) -> None:
    gallery = dict((p.stem, p) for p, _ in samples.eda_gallery(DATASET))
    per_class = samples.strip_width(gallery["mean_face_per_class"], per_tile=100)
    assert per_class == 3 * 100  # three classes, one face each
    assert samples.strip_width(gallery["batch_mean_faces"], per_tile=100) % 100 == 0


def test_a_runs_images_come_from_its_recorded_folder_when_its_dataset_is_not_prepared_here(
        tiny, tmp_path) -> None:
    prepared = dataset_tables.dataset_root(DATASET)
    assert samples.run_images_root({"dataset": DATASET}) == prepared
    elsewhere = tmp_path / "photos"
    elsewhere.mkdir()
    assert samples.run_images_root({"dataset": "bundled-only", "dataset_root": str(elsewhere)}) \
        == elsewhere  # e.g. a bundled model trained on this machine's layout
    assert samples.run_images_root({"dataset": "bundled-only",
                                    "dataset_root": str(tmp_path / "gone")}) is None
    rel = samples.sample_choices(DATASET)[0]
    rgb, path = samples.load_sample("bundled-only", rel, prepared)
    assert path == prepared / rel and rgb.ndim == 3
