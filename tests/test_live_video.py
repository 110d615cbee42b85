"""Live webcam processing (views.live_video): tracking, smoothing, FPS accounting, drawing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from emotion_core.data.faces import FaceBox
from emotion_core.views import live_video as lv
from emotion_core.views.live import SMALL_FACE_PX
from tests.fixtures_runs import photo_640x480

CLASSES = ["angry", "happy", "sad"]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """LiveSession limits the processing thread's torch threads: give the test thread its own back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


class _Switch(nn.Module):
    """A fake classifier whose preferred class is whatever `self.prefer` says right now."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.prefer = 0
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        logits = torch.zeros(x.shape[0], 3) + self.w
        logits[:, self.prefer] = 4.0
        return logits


class _Boom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("model exploded")


def _model(rid: str, net: nn.Module, name: str = "tiny") -> lv.LiveModel:
    manifest = {"model": name, "classes": CLASSES, "image_size": 32, "mean": [0.5] * 3,
                "std": [0.25] * 3}
    return lv.LiveModel(rid, name, net, manifest)


class _Clock:
    def __init__(self, step: float = 0.0) -> None:
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def _fixed_detector(boxes: list[FaceBox]):
    calls = []

    def detect(rgb: np.ndarray) -> list[FaceBox]:
        calls.append(rgb.shape)
        return list(boxes)
    return detect, calls


FRAME = np.full((240, 320, 3), 110, np.uint8)
BOX = FaceBox(100, 60, 100, 100)


def test_ema_alpha_and_the_sentence_that_states_the_window() -> None:
    assert lv.ema_alpha(5) == pytest.approx(1 / 3)
    assert lv.ema_alpha(1) == 1.0
    assert "alpha = 0.33" in lv.smoothing_note(5) and "5 processed frames" in lv.smoothing_note(5)
    assert "not smoothed" in lv.smoothing_note(1)


def test_iou() -> None:
    a = FaceBox(0, 0, 10, 10)
    assert lv.iou(a, a) == 1.0
    assert lv.iou(a, FaceBox(20, 20, 5, 5)) == 0.0
    assert lv.iou(a, FaceBox(5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_tracks_follow_a_moving_face_start_new_ones_and_drop_lost_ones() -> None:
    tracks, nid = lv.update_tracks([], [BOX], 1)
    assert [t.track_id for t in tracks] == [1]
    moved = FaceBox(110, 65, 100, 100)
    other = FaceBox(10, 10, 40, 40)
    tracks, nid = lv.update_tracks(tracks, [moved, other], nid)
    assert {t.track_id: t.box for t in tracks} == {1: moved, 2: other}
    for k in range(lv.MAX_MISSED):
        tracks, nid = lv.update_tracks(tracks, [other], nid)
        assert (1 in [t.track_id for t in tracks]) == (k < lv.MAX_MISSED - 1)
    assert [t.track_id for t in tracks] == [2]


def test_fps_meter_counts_frames_over_its_window_and_reads_zero_after_a_stall() -> None:
    m = lv.FpsMeter(window_s=2.0)
    assert m.fps() == 0.0
    for i in range(30):
        m.tick(i * 0.1, latency_ms=40.0 + i % 2 * 20)
    assert m.fps(now=2.95) == pytest.approx(10.0)
    assert m.latency_ms() == pytest.approx(50.0)
    assert m.frames == 30
    assert m.fps(now=10.0) == 0.0  # no frame for 7 s: the stream stalled


def test_faces_are_detected_every_nth_frame_and_classified_on_every_frame() -> None:
    detect, calls = _fixed_detector([BOX])
    net = _Switch()
    s = lv.LiveSession(detect=detect)
    s.configure([_model("r1", net)], detect_every=3, window=1)
    for _ in range(7):
        s.process(FRAME)
    assert len(calls) == 3  # frames 0, 3 and 6
    assert net.calls == 7  # every frame classified at the held box
    st = s.stats()
    assert st.frames == 7 and st.faces == 1 and st.detect_every == 3 and st.error == ""
    assert "tiny" in st.classify_ms


class _Keep(nn.Module):
    """Answers uniformly and keeps its inputs (to see how each run's face was framed)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return torch.zeros(x.shape[0], 3) + self.w


def test_each_run_sees_the_live_face_framed_as_it_was_trained() -> None:
    from emotion_core.data.faces import crop_face
    from emotion_core.data.transforms import Preprocess

    frame = np.random.default_rng(0).integers(1, 256, (240, 320, 3), dtype=np.uint8)
    box = FaceBox(0, 40, 100, 100)  # at the frame's left edge: the padded square has black
    detect, _ = _fixed_detector([box])
    nets = {"pad": _Keep(), "inside": _Keep()}
    models = []
    for fit, net in nets.items():
        m = _model(fit, net, name=fit)
        m.manifest["config"] = {"crop_faces": True, "face_margin": 0.25, "face_fit": fit}
        models.append(m)
    s = lv.LiveSession(detect=detect)
    s.configure(models, detect_every=1, window=1)
    s.process(frame)
    for m in models:
        x, _ = Preprocess.of(m.manifest)(crop_face(frame, box, 0.25, fit=m.name))
        torch.testing.assert_close(nets[m.name].inputs[0], x)
    assert not torch.equal(nets["pad"].inputs[0], nets["inside"].inputs[0])


def test_labels_are_smoothed_with_the_stated_window() -> None:
    detect, _ = _fixed_detector([BOX])
    net = _Switch()
    s = lv.LiveSession(detect=detect)
    s.configure([_model("r1", net)], detect_every=1, window=5)
    for _ in range(20):
        s.process(FRAME)  # settled on angry
    (track,) = s._tracks
    before = track.probs["r1"].copy()
    assert int(np.argmax(before)) == 0
    net.prefer = 1  # the raw answer flips to happy for one frame
    s.process(FRAME)
    raw = np.array([np.exp(0), np.exp(4), np.exp(0)]) / (2 + np.exp(4))
    np.testing.assert_allclose(track.probs["r1"], before / 1 * (2 / 3) + raw / 3, rtol=1e-5)
    assert int(np.argmax(track.probs["r1"])) == 0  # one odd frame does not flip the label
    for _ in range(5):
        s.process(FRAME)
    assert int(np.argmax(track.probs["r1"])) == 1  # a lasting change does


def test_changing_the_runs_restarts_the_smoothing() -> None:
    detect, _ = _fixed_detector([BOX])
    s = lv.LiveSession(detect=detect)
    s.configure([_model("r1", _Switch())], window=5)
    s.process(FRAME)
    s.configure([_model("r2", _Switch(), "other")], window=5)
    assert all(not t.probs for t in s._tracks)
    s.process(FRAME)
    assert set(s._tracks[0].probs) == {"r2"}


def test_a_failing_model_is_reported_on_the_frame_not_raised() -> None:
    detect, _ = _fixed_detector([BOX])
    s = lv.LiveSession(detect=detect)
    s.configure([_model("bad", _Boom())])
    out = s.process(FRAME)
    assert out.shape == FRAME.shape
    assert "model exploded" in s.stats().error
    assert s.stats().frames == 1  # still counted: the viewer still gets a frame


def test_frame_rate_and_latency_from_the_session_clock() -> None:
    detect, _ = _fixed_detector([])
    clock = _Clock(step=0.01)  # every clock read advances 10 ms
    s = lv.LiveSession(detect=detect, clock=clock)
    s.configure([])
    for _ in range(10):
        s.process(FRAME)
    st = s.stats()
    assert st.frames == 10 and st.fps > 0 and st.latency_ms > 0


def test_last_frame_is_a_copy_of_the_newest_raw_frame() -> None:
    s = lv.LiveSession(detect=_fixed_detector([BOX])[0])
    assert s.last_frame() is None
    s.configure([_model("r1", _Switch())])
    out = s.process(FRAME)
    last = s.last_frame()
    np.testing.assert_array_equal(last, FRAME)  # raw, not the labelled output
    assert not np.array_equal(out, FRAME)
    last[:] = 0
    np.testing.assert_array_equal(s.last_frame(), FRAME)


def test_freeze_holds_the_newest_frame_with_a_face_for_a_short_while() -> None:
    found = []  # what the fake detector returns for the next frame

    def detect(rgb: np.ndarray) -> list[FaceBox]:
        return list(found)
    clock = _Clock()
    s = lv.LiveSession(detect=detect, clock=clock)
    s.configure([_model("r1", _Switch())], detect_every=1)
    assert s.freeze_frame() is None
    face, blurred, later = (np.full_like(FRAME, v) for v in (50, 60, 70))
    s.process(FRAME)  # no face yet: the newest frame
    np.testing.assert_array_equal(s.freeze_frame(), FRAME)
    found.append(BOX)
    s.process(face)
    found.clear()
    clock.t += lv.FREEZE_HOLD_S / 2
    s.process(blurred)  # the detector misses the face on the newest frame
    np.testing.assert_array_equal(s.last_frame(), blurred)
    held = s.freeze_frame()
    np.testing.assert_array_equal(held, face)
    held[:] = 0  # a copy
    np.testing.assert_array_equal(s.freeze_frame(), face)
    clock.t += lv.FREEZE_HOLD_S  # the face frame is now too old: the newest frame again
    s.process(later)
    np.testing.assert_array_equal(s.freeze_frame(), later)
    s.restart()
    assert s.freeze_frame() is None


def test_streaming_while_frames_arrive_within_the_fps_window() -> None:
    clock = _Clock()
    s = lv.LiveSession(detect=_fixed_detector([])[0], clock=clock)
    s.configure([])
    assert not s.streaming()
    for _ in range(2):
        clock.t += 0.1
        s.process(FRAME)
    assert s.streaming()
    clock.t += lv.FPS_WINDOW_S + 0.1  # the stream stopped
    assert not s.streaming()


def test_drawing_boxes_labels_and_header() -> None:
    s = lv.LiveSession(detect=_fixed_detector([BOX])[0])
    s.configure([_model("r1", _Switch()), _model("r2", _Switch(), "tiny #2")], window=1)
    out = s.process(FRAME)
    (track,) = s._tracks
    lines = lv.track_lines(track, s._models)
    assert [t for t, _ in lines] == ["tiny: angry 0.96", "tiny #2: angry 0.96"]
    assert lines[0][1] == lv.CLASS_COLOURS["angry"]
    assert (out[BOX.y + BOX.h // 2, BOX.x] == lv.CLASS_COLOURS["angry"]).all()  # box edge
    assert out[:8].mean() < FRAME[:8].mean()  # the darkened FPS header band


def test_a_small_face_is_labelled_less_reliable() -> None:
    for width, title in ((SMALL_FACE_PX - 1, "face 1 (small: less reliable)"),
                         (SMALL_FACE_PX, "face 1")):
        box = FaceBox(10, 10, width, width)
        assert lv.face_title(lv.Track(track_id=1, box=box)) == title


def test_overlay_names_are_ascii_and_distinct() -> None:
    names = lv.overlay_names([("a", "mobilenet_v2"), ("b", "mobilenet_v2"), ("c", "vit·x")])
    assert names == {"a": "mobilenet_v2", "b": "mobilenet_v2 #2", "c": "vit?x"}


def test_the_processing_thread_gets_one_torch_thread_the_others_keep_theirs() -> None:
    import threading

    torch.set_num_threads(2)
    seen = []
    s = lv.LiveSession(detect=_fixed_detector([])[0])

    def worker() -> None:
        s.process(FRAME)
        seen.append(torch.get_num_threads())
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [lv.TORCH_THREADS] and torch.get_num_threads() == 2


def test_a_real_face_on_a_640x480_frame_is_found_and_labelled() -> None:
    s = lv.LiveSession()
    s.configure([_model("r1", _Switch())], detect_every=1, window=3)
    out = s.process(photo_640x480(1))
    assert out.shape == (480, 640, 3)
    st = s.stats()
    assert st.faces == 1 and st.error == "" and st.detect_ms > 0


def test_ice_servers_none_by_default_or_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(lv.ICE_SERVERS_ENV, raising=False)
    assert lv.ice_servers() == []
    monkeypatch.setenv(lv.ICE_SERVERS_ENV, '[{"urls": ["stun:stun.example.org:3478"]}]')
    assert lv.ice_servers() == [{"urls": ["stun:stun.example.org:3478"]}]
    monkeypatch.setenv(lv.ICE_SERVERS_ENV, "stun:nope")
    with pytest.raises(ValueError, match="not JSON"):
        lv.ice_servers()


def test_the_live_picker_offers_model_runs_fastest_first() -> None:
    from pathlib import Path

    from emotion_core import store

    def rec(rid: str, ms: float | None, kind: str = "model") -> store.RunRecord:
        return store.RunRecord(run_id=rid, path=Path(rid), manifest={
            "kind": kind, "headline": {"latency_ms": ms}})
    runs = [rec("slow", 90.0), rec("ens", 5.0, "ensemble"), rec("fast", 8.0), rec("unknown", None)]
    assert lv.fastest_runs(runs) == ["fast", "slow", "unknown"]
