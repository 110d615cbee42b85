"""scripts.bench.face_size: Predict's answers as the faces in the photos lose detail."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emotion_core.data.faces import FaceBox
from emotion_core.views import live
from scripts.bench import face_size as bench


def test_a_face_shrunk_keeps_its_place_and_loses_its_detail() -> None:
    fine = np.indices((120, 160)).sum(0) % 2 * 255  # a one-pixel checkerboard
    rgb = np.repeat(fine[..., None], 3, axis=2).astype(np.uint8)
    out = bench.at_face_width(rgb, box_w=100, size=10)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert out.std() < 10 < rgb.std()  # ten times less detail: the squares average to grey
    same = bench.at_face_width(rgb, box_w=100, size=100)
    np.testing.assert_array_equal(same, rgb)  # the face's own width changes nothing


@dataclass
class _Answer:
    box: FaceBox | None
    runs: list = field(default_factory=list)
    ensemble: live.RunPrediction | None = None


@dataclass
class _Result:
    predictions: list


def _run(rid: str, probs: list[float]) -> live.RunPrediction:
    return live.RunPrediction(rid, "tiny", "scratch", ["angry", "happy", "sad"], np.array(probs))


def test_each_size_below_the_face_is_answered_and_a_lost_face_counts_wrong(monkeypatch) -> None:
    """A fake Predict: the face (80 px wide) is found at native size and at 32 px, read right
    only at native, and lost at 16 px; 96 px is not below the face, so it is left out."""
    seen: list[int] = []

    def predict(rgb, run_ids, max_faces):
        width = int(rgb[0, 0, 0])  # the test writes the face width it wants into the picture
        seen.append(width)
        if width == 16:
            return _Result([])
        right = width == 80
        box = FaceBox(100, 50, 80, 90) if right else FaceBox(105, 60, 60, 60)
        runs = [_run(r, [0.1, 0.8, 0.1] if right else [0.7, 0.2, 0.1]) for r in run_ids]
        return _Result([_Answer(box, runs, live._ensemble_of(runs))])

    def shrink(rgb, box_w, size):
        assert box_w == 80
        return np.full_like(rgb, size)

    monkeypatch.setattr(bench, "at_face_width", shrink)
    photo = np.full((200, 300, 3), 80, np.uint8)
    rows = bench.answer_sizes(photo, "happy", ["a", "b"], [16, 32, 96], predict)
    assert seen == [80, 16, 32]
    table = {row["size"]: row for row in bench.summary(rows, ["a", "b", "mean"])}
    native, lost, small = table["native"], table["16 px"], table["32 px"]
    assert "96 px" not in table
    assert native["faces"] == native["found"] == 1 and native["mean all"] == 1.0
    assert lost["found"] == 0 and lost["a all"] == 0.0 and np.isnan(lost["a found"])
    assert small["found"] == 1 and small["b found"] == 0.0 and small["mean all"] == 0.0


def test_no_face_at_its_own_size_gives_no_rows() -> None:
    rows = bench.answer_sizes(np.zeros((50, 50, 3), np.uint8), "sad", ["a"], [16],
                              lambda *a, **k: _Result([]))
    assert rows == []


def test_two_runs_of_one_model_get_their_whole_labels_as_headings() -> None:
    labels = {"a": "mini_xception · FER-2013 · 12-04 22:55", "b": "mini_xception · FER-2013 · 12-04 23:04",
              "c": "mobilenet_v2 · imagenet · 12-01 15:00"}
    assert bench.short_labels(labels, ["a", "b", "c"]) == {
        "a": labels["a"], "b": labels["b"], "c": "mobilenet_v2"}
    assert bench.short_labels(labels, ["a", "c"]) == {"a": "mini_xception", "c": "mobilenet_v2"}
