"""scripts.predict: the Predict page's answers from the command line, for pictures and folders."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotion_core import store
from emotion_core.views import live
from scripts import predict
from tests.fixtures_runs import face_image, photo_640x480

BUNDLED = store.paths.REPO_ROOT / "artifacts" / "bundled"


@pytest.fixture
def bundled(monkeypatch) -> list[str]:
    monkeypatch.setenv(store.paths.ENV_BUNDLED, str(BUNDLED))
    ids = [r.run_id for r in store.list_runs()[0] if r.bundled and r.has_weights]
    if len(ids) < 2:
        pytest.skip("needs the two bundled models of the repository")
    return ids


def _pictures(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(photo_640x480(2)).save(folder / "sub" / "two.png")
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(folder / "blank.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not a picture by its name: never read")


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _export_bundled(capsys) -> None:
    """The exports the app's first server start makes (scripts.predict does not make them)."""
    from scripts import export as export_cli

    assert export_cli.main(["--bundled"]) == 0
    capsys.readouterr()


def test_a_folder_answered_by_the_bundled_models_and_their_mean(bundled, tmp_path, capsys) -> None:
    _export_bundled(capsys)
    _pictures(tmp_path / "in")
    out = tmp_path / "answers.csv"
    assert predict.main([str(tmp_path / "in"), "--csv", str(out)]) == 1  # unreadable pictures
    printed = capsys.readouterr()
    broken, empty = tmp_path / "in" / "broken.jpg", tmp_path / "in" / "empty.jpg"
    assert "broken.jpg: skipped: This file is not an image. Use a photo" in printed.err
    assert f"('{broken}' is not an image file)" in printed.err  # the file, not "the upload"
    assert f"empty.jpg: skipped: '{empty}' is empty (0 bytes)" in printed.err
    assert "2 of 4 pictures could not be read" in printed.err
    rows = _read(out)
    assert {Path(r["path"]).name for r in rows} == {"two.png", "blank.png", "broken.jpg",
                                                    "empty.jpg"}
    faces = [r for r in rows if Path(r["path"]).name == "two.png"]
    assert sorted({r["face"] for r in faces}) == ["1", "2"]
    for k in ("1", "2"):
        answers = [r for r in faces if r["face"] == k]
        assert [r["run_id"] for r in answers[:2]] == bundled and len(answers) == 3
        probs = np.array([[float(r[f"p_{c}"]) for c in ("angry", "happy", "sad")] for r in answers])
        assert np.allclose(probs.sum(1), 1, atol=1e-3)
        assert np.allclose(probs[2], probs[:2].mean(0), atol=1e-3), "the mean of the two"
        assert answers[2]["run"] == "mean of the 2 runs above (computed now)"
        assert [r["engine"] for r in answers] == ["onnx"] * 3  # through the exports they ship
        assert all(r["prediction"] == ("angry", "happy", "sad")[int(np.argmax(p))]
                   for r, p in zip(answers, probs, strict=True))
    (blank,) = [r for r in rows if Path(r["path"]).name == "blank.png"]
    assert blank["note"].startswith("No face found") and not blank["prediction"]
    assert "two.png: 2 faces found" in printed.out and "face 2 of 2 at x=" in printed.out


def test_one_run_chosen_whole_image_and_no_mean(bundled, tmp_path, capsys) -> None:
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(tmp_path / "blank.png")
    out = tmp_path / "a.csv"
    assert predict.main([str(tmp_path / "blank.png"), "--run", bundled[1], "--whole-image",
                         "--csv", str(out)]) == 0
    (row,) = _read(out)
    assert row["run_id"] == bundled[1] and row["prediction"] and row["x"] == ""
    assert "the whole image" in capsys.readouterr().out


def test_peers_join_when_their_weights_are_here(bundled, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv(store.paths.ENV_REFERENCE, str(store.paths.REPO_ROOT / "artifacts" / "reference"))
    offered, default, newest = predict.offered_runs()
    peers = [r.run_id for r in newest]
    assert len({r.manifest["model"] for r in newest}) == len(newest), "one run per external model"
    if not peers:
        pytest.skip("no external reference model's weights on this machine")
    assert [r.run_id for r in default] == bundled
    _export_bundled(capsys)
    assert predict.main(["--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert all(line.endswith("\tdefault") for line in listed if line.split("\t")[0] in bundled)
    assert all(line.endswith("\t--peers") for line in listed if line.split("\t")[0] in peers)
    Image.fromarray(photo_640x480(1)).save(tmp_path / "one.png")
    out = tmp_path / "p.csv"
    assert predict.main([str(tmp_path / "one.png"), "--peers", "--csv", str(out)]) == 0
    rows = _read(out)
    assert [r["run_id"] for r in rows][:-1] == [*bundled, *peers]
    # the bundled models through their exports, the peers (no export) through PyTorch
    assert [r["engine"] for r in rows][:-1] == ["onnx"] * len(bundled) + ["torch"] * len(peers)


@pytest.mark.parametrize("argv, says", [
    (["/no/such/place"], "no such file or folder"),
    (["{tmp}", "--run", "no-such-run"], "cannot answer with run no-such-run: not a run with"),
    (["{tmp}", "--run", "a", "--run", "b"], "cannot answer with runs a, b: not runs with"),
    (["{empty}"], "no pictures found"),
    ([], "name at least one picture or folder"),
    (["{tmp}", "--csv", "{tmp}"], "is a folder; name a file in it"),
    (["{tmp}", "--csv", "{tmp}/no/such/answers.csv"], "there is no folder"),
    (["{tmp}", "--max-faces", "0"], "--max-faces must be 1 or more"),
])
def test_usage_mistakes_exit_2_with_one_sentence(bundled, tmp_path, capsys, monkeypatch, argv,
                                                  says) -> None:
    """Each refused before any picture is read (a --csv typo must not cost a folder's work)."""
    Image.fromarray(photo_640x480(1)).save(tmp_path / "one.png")
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(predict.live, "predict_faces",
                        lambda *a, **k: pytest.fail("a picture was read before the refusal"))
    with pytest.raises(SystemExit) as stop:
        predict.main([a.replace("{empty}", str(tmp_path / "empty")).replace("{tmp}", str(tmp_path))
                      for a in argv])
    assert stop.value.code == 2 and says in capsys.readouterr().err


def _group_photo(n: int) -> np.ndarray:
    """`n` detectable faces of 160 px in rows of four on a textured background."""
    rng = np.random.default_rng(2)
    rows = -(-n // 4)
    canvas = rng.normal(120, 20, (rows * 200 + 40, 4 * 200 + 40, 3)).clip(0, 255).astype(np.uint8)
    for k in range(n):
        y, x = 20 + (k // 4) * 200, 20 + (k % 4) * 200
        canvas[y:y + 160, x:x + 160] = face_image(160, seed=k)
    return canvas


def test_every_face_unless_max_faces_says_otherwise(bundled, tmp_path, capsys) -> None:
    """A group photo is answered whole from the command line: Predict's cap (the six largest
    faces of a picture) does not apply unless --max-faces asks for one."""
    n = live.MAX_FACES + 1
    Image.fromarray(_group_photo(n)).save(tmp_path / "group.png")
    out = tmp_path / "all.csv"
    assert predict.main([str(tmp_path / "group.png"), "--run", bundled[0], "--csv", str(out)]) == 0
    assert sorted(int(r["face"]) for r in _read(out)) == list(range(1, n + 1))
    assert f"group.png: {n} faces found" in (said := capsys.readouterr().out)
    assert "skipped" not in said
    assert predict.main([str(tmp_path / "group.png"), "--run", bundled[0], "--max-faces", "2",
                         "--csv", str(out)]) == 0
    assert [r["face"] for r in _read(out)] == ["1", "2"]
    assert f"the 2 largest were classified, the other {n - 2} skipped" in capsys.readouterr().out


def test_a_small_face_is_answered_with_a_warning(bundled, tmp_path, capsys) -> None:
    import cv2

    small = cv2.resize(photo_640x480(2), (160, 120), interpolation=cv2.INTER_AREA)
    Image.fromarray(small).save(tmp_path / "far.png")
    out = tmp_path / "far.csv"
    assert predict.main([str(tmp_path / "far.png"), "--csv", str(out)]) == 0
    rows = _read(out)
    assert rows and all("px wide: below 32 px too much detail is lost" in r["note"] for r in rows)
    assert "px wide: below 32 px" in capsys.readouterr().out


def test_a_csv_that_cannot_be_written_is_said_after_the_printed_answers(bundled, tmp_path,
                                                                         capsys, monkeypatch):
    Image.fromarray(photo_640x480(1)).save(tmp_path / "one.png")

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(predict, "open", full_disk, raising=False)  # found before the builtin
    assert predict.main([str(tmp_path / "one.png"), "--csv", str(tmp_path / "a.csv")]) == 2
    printed = capsys.readouterr()
    assert "one.png: 1 face found" in printed.out and "mean of the 2 runs above" in printed.out
    assert f"error: cannot write {tmp_path / 'a.csv'}: No space left on device" in printed.err


def test_without_any_bundled_model_it_says_what_to_do(tmp_path, capsys) -> None:
    Image.fromarray(photo_640x480(1)).save(tmp_path / "one.png")
    with pytest.raises(SystemExit) as stop:
        predict.main([str(tmp_path / "one.png")])
    assert stop.value.code == 2 and "no bundled model here" in capsys.readouterr().err
