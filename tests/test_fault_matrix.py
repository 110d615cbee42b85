"""The fault matrix: hostile or unlucky inputs through the user's own entry points, each with the
sentence the user gets and proof that nothing was lost or changed on disk.

docs/reliability.md lists every case with the test that covers it (some live beside the code
they guard: jobs, checkpoints, faces, the app). Tests run as root here, and root reads files
whatever their permissions, so unreadable files and folders are simulated where the operating
system would refuse them.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emotion_core import data, store
from emotion_core.evaluation import load_model
from emotion_core.views import live
from scripts import evaluate as evaluate_cli
from scripts import explain as explain_cli
from scripts import prepare_data
from tests import tiny_shapes


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# Datasets


def test_a_symlink_loop_is_cut_and_the_classes_stay_apart(tmp_path, capsys):
    root = tiny_shapes.make_folder(tmp_path / "loop", per_class={"train": 6, "valid": 2})
    (root / "train" / "angry" / "up").symlink_to("..")  # angry/up -> train/
    before = _snapshot(root)
    assert prepare_data.main(["--data", str(root), "--quiet"]) == 0
    out = capsys.readouterr().out
    ds = data.load_prepared("loop")
    assert ds.classes == ["angry", "happy", "sad"]
    assert (ds.split["label"] == "happy").sum() > 0 and (ds.split["label"] == "sad").sum() > 0
    assert not any("/up/" in r for r in ds.split["rel"])
    cleaning = store.load_dataset_table("loop", "cleaning")
    assert "train/angry/up" in set(cleaning.loc[cleaning["issue"] == "symlink_loop", "file"])
    assert "symbolic link loop" in out
    assert _snapshot(root) == before, "the source folder is never changed"


def test_two_loops_finish(tmp_path):
    root = tiny_shapes.make_folder(tmp_path / "loops", per_class={"train": 4, "valid": 2})
    (root / "train" / "angry" / "up").symlink_to("..")
    (root / "train" / "happy" / "top").symlink_to("../..")
    ds = data.prepare_dataset(root, progress=False)  # two loops used to grow memory without end
    assert set(ds.classes) == {"angry", "happy", "sad"} and ds.report["issues"]["symlink_loop"] == 2
    assert len(ds.split) == 3 * (4 + 2)


def test_one_class_is_refused_with_a_sentence(tmp_path, capsys):
    root = tiny_shapes.make_folder(tmp_path / "one", classes=("angry",))
    assert prepare_data.main(["--data", str(root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "only one class" in err and "Traceback" not in err
    assert not store.is_prepared("one"), "nothing half-written"


def test_a_class_with_one_image_is_refused_and_one_without_test_images_warned(tmp_path, capsys):
    root = tiny_shapes.make_folder(tmp_path / "thin", per_class={"train": 12})
    for extra in sorted((root / "train" / "sad").glob("*.png"))[1:]:
        extra.unlink()
    assert prepare_data.main(["--data", str(root), "--quiet"]) == 2
    assert "sad" in capsys.readouterr().err
    root2 = tiny_shapes.make_folder(tmp_path / "notest", per_class={"train": 12, "test": 3})
    for f in (root2 / "test" / "happy").glob("*.png"):
        f.unlink()
    (root2 / "test" / "happy").rmdir()
    assert prepare_data.main(["--data", str(root2), "--quiet"]) == 0
    assert "WARNING: class 'happy' has no test images" in capsys.readouterr().out


def test_a_macosx_folder_is_ignored_not_a_fourth_class(tmp_path, capsys):
    root = tiny_shapes.make_folder(tmp_path / "zipped", per_class={"train": 8, "valid": 2})
    junk = root / "__MACOSX" / "train" / "angry"
    junk.mkdir(parents=True)
    for f in sorted((root / "train" / "angry").glob("*.png"))[:3]:
        (junk / f"._{f.name}").write_bytes(f.read_bytes())  # AppleDouble copies
    (root / "train" / "__MACOSX").mkdir()
    assert prepare_data.main(["--data", str(root), "--quiet"]) == 0
    ds = data.load_prepared("zipped")
    assert ds.classes == ["angry", "happy", "sad"] and ds.report["dropped"] == 0
    assert "junk folder" in capsys.readouterr().out


def test_unreadable_files_and_folders_are_reported_not_a_traceback(tmp_path, monkeypatch, capsys):
    root = tiny_shapes.make_folder(tmp_path / "locked", per_class={"train": 8, "valid": 2})
    victim = sorted((root / "train" / "happy").glob("*.png"))[0]
    locked = root / "train" / "sad" / "more"
    locked.mkdir()
    real_read, real_scandir = Path.read_bytes, os.scandir

    def read_bytes(self):
        if self == victim:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(os, "scandir", scandir)
    assert prepare_data.main(["--data", str(root), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "unreadable 2" in out and "unreadable folder" in out
    cleaning = store.load_dataset_table("locked", "cleaning")
    kinds = dict(zip(cleaning["file"], cleaning["issue"], strict=True))
    assert kinds[victim.relative_to(root).as_posix()] == "unreadable"
    assert kinds["train/sad/more"] == "unreadable"


# ---------------------------------------------------------------------------------------------
# Runs on disk


def _tiny_run(run_id: str) -> None:
    from emotion_core import models

    model, _ = models.build_model("vit_scratch", 3, pretrained=False, image_size=32, tiny=True)
    empty = pd.DataFrame({"a": [0]})
    store.save_run(run_id, manifest={"kind": "model", "model": "vit_scratch", "image_size": 32,
                                     "classes": ["angry", "happy", "sad"], "mean": [0.5] * 3,
                                     "std": [0.5] * 3, "config": {"tiny": True}},
                   metrics={}, history=empty, confusion=empty, predictions=empty,
                   state_dict=model.state_dict())


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_weights_are_a_broken_run_with_a_reason(damage):
    _tiny_run("good")
    _tiny_run("hurt")
    path = store.paths.run_file("hurt", "weights.safetensors")
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob[-7] ^= 0x01  # one bit inside tensor data: loads fine, predicts wrong
    path.write_bytes(bytes(blob))
    runs, broken = store.list_runs()
    assert [r.run_id for r in runs] == ["good"]
    assert ("truncated" if damage == "truncate" else "content hash") in broken["hurt"]
    with pytest.raises(store.BrokenRunError):
        load_model("hurt")


@pytest.mark.parametrize("content, reason", [("[1, 2]", "not an object"),
                                             ('{"model": "vit_scratch"}', "classes")])
def test_a_malformed_manifest_is_a_broken_run_not_a_crash(content, reason, capsys):
    _tiny_run("odd")
    store.paths.run_file("odd", "manifest.json").write_text(content)
    runs, broken = store.list_runs()
    assert not runs and reason in broken["odd"]
    store.write_leaderboard()  # used to crash on a list
    assert evaluate_cli.main(["--run", "odd", "--data", "."]) == 2
    assert reason in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["../../outside/evilrun", "..", ".hidden", "a/b"])
def test_ids_that_would_leave_the_store_are_refused(bad, tmp_path, capsys):
    outside = tmp_path / "outside" / "evilrun"
    outside.mkdir(parents=True)
    (outside / "metrics.json").write_text("{}")
    before = _snapshot(tmp_path / "outside")
    assert evaluate_cli.main(["--run", bad, "--data", str(tmp_path)]) == 2
    assert "not a valid name" in capsys.readouterr().err
    assert _snapshot(tmp_path / "outside") == before, "nothing outside the store was touched"


def test_an_exported_cache_naming_a_folder_outside_the_store_is_refused(tmp_path):
    from emotion_core.data import cache_export

    root = tiny_shapes.make_folder(tmp_path / "tiny")
    ds = data.prepare_dataset(root, progress=False)
    out = cache_export.export_dataset(ds, data.build_cache(ds, 16, progress=False),
                                      tmp_path / "export", progress=False)
    meta = store.read_json(out / "meta.json")
    store.write_json(out / "meta.json", dict(meta, name="../../x"))
    with pytest.raises(ValueError, match="not a valid name"):
        cache_export.load_exported_cache(out, progress=False)
    assert not (store.paths.root().parent / "x").exists()


def test_artifacts_are_written_with_the_umask_not_private(tmp_path):
    old = os.umask(0o022)
    try:
        _tiny_run("shared")
        run = store.paths.run_dir("shared")
        assert run.stat().st_mode & 0o777 == 0o755
        for f in run.iterdir():
            assert f.stat().st_mode & 0o777 == 0o644, f.name
    finally:
        os.umask(old)


# ---------------------------------------------------------------------------------------------
# Pictures a user uploads or explains


def test_a_48_megapixel_phone_photo_is_accepted_and_shrunk():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)).resize((8000, 6000))
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=80)
    rgb = live.decode_picture(buf.getvalue())
    assert max(rgb.shape[:2]) <= live.UPLOAD_MAX_SIDE and rgb.shape[2] == 3


def test_a_thin_upload_gets_a_sentence_not_a_traceback():
    with pytest.raises(live.UploadError, match="20:1"):
        live.decode_picture(_png(np.zeros((20, 4000, 3), np.uint8)))


def test_a_one_pixel_picture_is_refused_by_the_explain_cli(tmp_path, capsys):
    _tiny_run("r")
    tiny = tmp_path / "dot.png"
    tiny.write_bytes(_png(np.zeros((1, 1, 3), np.uint8)))
    code = explain_cli.main(["--run", "r", "--image", str(tiny), "--out", str(tmp_path / "o.png")])
    assert code == 2 and "smaller than 16 px" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("kind, payload", [
    ("not_an_image", b"%PDF-1.4 not a picture"),
    ("unreadable", _png(np.zeros((64, 64, 3), np.uint8))[:60]),  # truncated
])
def test_bad_uploads_already_handled(kind, payload):
    with pytest.raises(live.UploadError) as info:
        live.decode_picture(payload)
    assert info.value.kind == kind and "Traceback" not in str(info.value)
