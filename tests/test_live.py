"""Live prediction: bad uploads get clear messages; faces found, cropped and classified by every run."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from emotion_core.data.faces import crop_face
from emotion_core.data.transforms import Preprocess
from emotion_core.views import live
from tests.fixtures_runs import face_image, photo_640x480

CLASSES = ["angry", "happy", "sad"]


class _Tiny(nn.Module):
    def __init__(self, bias: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 3)
        with torch.no_grad():
            self.head.bias.zero_()
            self.head.bias[bias] = 5.0  # each fake model prefers a known class

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


def _loader():
    """Fake loader: run 'r0' prefers angry, 'r1' happy; anything else is broken."""
    models = {f"r{i}": _Tiny(i) for i in range(2)}

    def load(run_id: str):
        if run_id not in models:
            raise FileNotFoundError(f"run '{run_id}' is missing weights.safetensors")
        return models[run_id], {"model": f"tiny{run_id[1]}", "classes": CLASSES, "image_size": 32,
                                "mean": [0.5] * 3, "std": [0.25] * 3, "weights_source": "scratch"}
    return load


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")  # uint16 -> mode I;16, HxWx4 -> RGBA
    return buf.getvalue()


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Bad uploads


@pytest.mark.parametrize("data, kind, words", [
    (b"this is a text file, not a photo", "not_an_image", "not an image"),
    (b"", "not_an_image", "empty"),
])
def test_non_images_are_refused_clearly(data: bytes, kind: str, words: str) -> None:
    with pytest.raises(live.UploadError, match=words) as err:
        live.decode_picture(data)
    assert err.value.kind == kind


def test_truncated_jpeg_is_refused_as_damaged() -> None:
    full = _jpeg(face_image(160))
    with pytest.raises(live.UploadError, match="damaged or truncated") as err:
        live.decode_picture(full[: len(full) // 2])
    assert err.value.kind == "unreadable"


def test_decompression_bomb_is_refused_before_decoding() -> None:
    side = int(live.UPLOAD_MAX_PIXELS ** 0.5) + 64  # just over the limit, a few kB on disk
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, format="PNG")
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(live.UploadError, match="too large") as err:
        live.decode_picture(buf.getvalue())
    assert err.value.kind == "too_large"


def test_cmyk_16bit_and_alpha_uploads_become_rgb() -> None:
    rgb = face_image(96)
    cmyk = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(cmyk, format="JPEG")
    sixteen = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    for data in (cmyk.getvalue(), _png(sixteen), _png(rgba)):
        out = live.decode_picture(data)
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    bright = live.decode_picture(_png(sixteen))
    assert bright.max() == 255 and bright.min() == 0  # 16-bit scaled, not clipped


# ---------------------------------------------------------------------------------------------
# Faces and predictions


def test_one_face_every_run_and_the_ensemble_predict() -> None:
    res = live.predict_faces(photo_640x480(1), ["r0", "r1"], loader=_loader())
    assert res.faces_found == 1 and len(res.predictions) == 1
    face = res.predictions[0]
    assert [p.predicted for p in face.runs] == ["angry", "happy"]
    for p in face.runs:
        assert p.probs.sum() == pytest.approx(1.0) and p.latency_ms > 0
    ens = face.ensemble
    assert ens is not None
    np.testing.assert_allclose(ens.probs, (face.runs[0].probs + face.runs[1].probs) / 2)
    rows = live.probability_table(face)
    assert len(rows) == 3 * 3 and {r["class"] for r in rows} == set(CLASSES)
    assert res.image.shape == (480, 640, 3)
    assert not np.array_equal(res.image, photo_640x480(1))  # the face box is drawn


def test_several_faces_are_each_cropped_and_classified() -> None:
    res = live.predict_faces(photo_640x480(2), ["r0"], loader=_loader())
    assert res.faces_found == 2 and len(res.predictions) == 2
    xs = sorted(f.box.x for f in res.predictions)
    assert xs[1] - xs[0] > 150  # two different faces, not one found twice
    assert all(f.crop.shape[0] == f.crop.shape[1] for f in res.predictions)


class _Seen(nn.Module):
    """Answers uniformly and keeps every input it was given (to see how a face was framed)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(()))  # inference reads the device off a parameter
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.scale * torch.zeros(len(x), 3)


def test_each_run_reads_the_face_framed_as_it_was_trained() -> None:
    """A run trained on wide crops sees a wide crop, an old run its padded crop; the face shown
    (and handed to Explain) is the first run's framing."""
    configs = {"wide": {"crop_faces": True, "face_margin": 1.0, "face_fit": "inside"},
               "old": {"crop_faces": True}, "whole": {}}
    seen = {rid: _Seen() for rid in configs}

    def load(run_id: str):
        return seen[run_id], {"model": run_id, "classes": CLASSES, "image_size": 32,
                              "mean": [0.5] * 3, "std": [0.25] * 3, "weights_source": "scratch",
                              "config": configs[run_id]}

    photo = np.ascontiguousarray(photo_640x480(1)[120:360, 60:300])  # a face filling the picture
    res = live.predict_faces(photo, list(configs), loader=load)
    assert res.faces_found == 1
    face = res.predictions[0]
    wide = crop_face(photo, face.box, 1.0, fit="inside")
    padded = crop_face(photo, face.box, 1.0, fit="pad")
    assert (padded[:, 0] == 0).all() and (wide[:, 0] != 0).any(axis=1).all()  # shifted inside
    np.testing.assert_array_equal(face.crop, wide)
    expected = {"wide": wide, "old": crop_face(photo, face.box, 0.25, fit="pad"),
                "whole": crop_face(photo, face.box, 0.25, fit="inside")}
    for rid, crop in expected.items():
        x, _ = Preprocess.of(load(rid)[1])(crop)
        torch.testing.assert_close(seen[rid].inputs[0], x)
        np.testing.assert_array_equal(face.crop_of(rid), crop)  # what Why-maps and Explain get
    assert not torch.equal(seen["wide"].inputs[0], seen["whole"].inputs[0])
    assert not face.one_framing
    alone = live.predict_faces(photo, ["old"], loader=load).predictions[0]
    assert alone.one_framing and alone.crop_of("old") is alone.crop


def test_max_faces_limits_and_says_so() -> None:
    res = live.predict_faces(photo_640x480(2), ["r0"], loader=_loader(), max_faces=1)
    assert res.faces_found == 2 and len(res.predictions) == 1 and res.skipped == 1
    assert "2 faces found; the 1 largest were classified, the other 1 skipped" in res.note
    assert "px are not searched for" in res.note  # the detector's smallest face, stated
    res = live.predict_faces(photo_640x480(2), ["r0"], loader=_loader())
    assert res.skipped == 0 and res.note == "" and res.detector in ("mtcnn", "haar")


def test_faces_narrower_than_32_px_carry_a_warning() -> None:
    import cv2

    photo = photo_640x480(2)
    small = cv2.resize(photo, (160, 120), interpolation=cv2.INTER_AREA)  # faces ~16-23 px wide
    res = live.predict_faces(small, ["r0"], loader=_loader())
    assert res.predictions and all(p.box.w < live.SMALL_FACE_PX for p in res.predictions)
    for p in res.predictions:
        assert p.small_note.startswith(f"This face is {p.box.w} px wide: below 32 px")
    big = live.predict_faces(photo, ["r0"], loader=_loader()).predictions
    assert big and all(p.small_note == "" for p in big)
    whole = live.predict_faces(np.full((200, 300, 3), 90, np.uint8), ["r0"], loader=_loader(),
                               whole_image=True).predictions[0]
    assert whole.box is None and whole.small_note == ""


def test_thin_uploads_are_refused_and_thin_arrays_are_not_searched() -> None:
    thin = np.full((40000, 20, 3), 128, np.uint8)
    with pytest.raises(live.UploadError, match="more elongated than 20:1") as err:
        live.decode_picture(_png(thin))
    assert err.value.kind == "bad_shape"
    res = live.predict_faces(thin, ["r0"], loader=_loader())
    assert res.faces_found == 0 and "Not searched" in res.note and res.predictions == []
    res = live.predict_faces(thin, ["r0"], loader=_loader(), whole_image=True)
    assert len(res.predictions) == 1 and res.predictions[0].runs[0].probs is not None


def test_a_small_square_picture_without_a_face_suggests_the_whole_image() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (200, 180, 3), dtype=np.uint8)
    res = live.predict_faces(noise, ["r0"], loader=_loader())
    assert res.face_crop and res.predictions == [] and "Use the whole image" in res.note


def test_no_face_offers_the_whole_image() -> None:
    blank = np.full((480, 640, 3), 90, np.uint8)
    res = live.predict_faces(blank, ["r0"], loader=_loader())
    assert res.faces_found == 0 and res.predictions == [] and "No face" in res.note
    res = live.predict_faces(blank, ["r0"], loader=_loader(), whole_image=True)
    assert len(res.predictions) == 1 and res.predictions[0].box is None
    assert res.predictions[0].crop.shape == blank.shape


def test_a_broken_run_does_not_break_the_others() -> None:
    res = live.predict_faces(photo_640x480(1), ["r0", "gone"], loader=_loader())
    ok, bad = res.predictions[0].runs
    assert ok.predicted == "angry" and bad.probs is None and "cannot load" in bad.error
    assert res.predictions[0].ensemble is None  # one member left: no ensemble to show



def test_prime_runs_the_detector_and_every_run_once_and_survives_a_broken_run(monkeypatch) -> None:
    searched: list[tuple[int, ...]] = []
    real_find = live.faces.find_faces
    monkeypatch.setattr(live.faces, "find_faces",
                        lambda rgb, **kw: searched.append(rgb.shape) or real_find(rgb, **kw))
    inputs: list[tuple[int, ...]] = []
    load = _loader()

    def counted(run_id: str):
        model, manifest = load(run_id)
        model.register_forward_pre_hook(lambda m, args: inputs.append(tuple(args[0].shape)))
        return model, manifest

    live.prime(["r0", "gone", "r1"], loader=counted)  # "gone" cannot load: the others still run
    assert searched == [(*live.PRIME_PICTURE, 3)]
    assert inputs == [(1, 3, 32, 32)] * 2  # each loadable run once, at its input size


def test_a_prediction_waits_for_an_explanation_of_the_same_shared_model() -> None:
    import threading

    from emotion_core.explain.base import explaining

    model, manifest = _loader()("r0")
    holding, release = threading.Event(), threading.Event()

    def explainer() -> None:  # another session's Grad-CAM holds the shared model
        with explaining(model):
            holding.set()
            release.wait(10)

    crop = np.full((32, 32, 3), 128, np.uint8)
    live._forward(model, manifest, crop)  # first call (kernel setup) out of the timed part
    done: list[np.ndarray] = []
    other = threading.Thread(target=explainer)
    other.start()
    assert holding.wait(10)
    predictor = threading.Thread(target=lambda: done.append(live._forward(model, manifest, crop)))
    predictor.start()
    predictor.join(1.0)
    assert not done  # it did not run its forward through the explainer's hooks
    release.set()
    predictor.join(10)
    other.join(10)
    assert len(done) == 1 and done[0].shape == (3,)
