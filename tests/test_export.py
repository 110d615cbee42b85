"""ONNX export: every registry model exports, and ONNX Runtime agrees with PyTorch.

Parity tolerance: max |p_onnx - p_torch| <= 1e-4 over softmax probabilities (export.PARITY_TOLERANCE),
on random inputs and on pictures preprocessed by the export JSON's recipe alone. Every registry
model exports with the TorchScript tracer (the transformers ViTs included: their attention is plain
matmul + the named `attend` softmax), so nothing here is expected to fail; a model that cannot
export would be marked xfail in NOT_EXPORTABLE with the reason.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from emotion_core import models, store
from emotion_core.data import images
from emotion_core.data.transforms import Preprocess
from emotion_core.evaluation import export as ex
from emotion_core.evaluation import inference, load_model
from emotion_core.evaluation.onnx_model import OnnxModel, load_predictor, usable_export
from emotion_core.views import live
from scripts import export as export_cli
from tests.conftest import shared_data_or_skip
from tests.fixtures_runs import face_image, photo_640x480

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASSES = ["angry", "happy", "sad"]
SIZE = 32
TOL = ex.PARITY_TOLERANCE  # 1e-4 on probabilities
NOT_EXPORTABLE: dict[str, str] = {}  # registry name -> why it cannot export (none at present)


def store_tiny_run(run_id: str, name: str, *, seed: int = 0, metrics: dict | None = None) -> nn.Module:
    """A registry model's tiny config stored as a run, the way training writes one."""
    torch.manual_seed(seed)
    model, source = models.build_model(name, 3, pretrained=False, image_size=SIZE, tiny=True)
    spec = models.get_spec(name)
    manifest = {"kind": "model", "run_id": run_id, "model": name, "dataset": "tinyfaces",
                "classes": CLASSES, "split_hash": "abc123", "weights_source": source,
                "profile": "quick", "config": {"tiny": True}, "image_size": SIZE,
                "mean": list(spec.mean), "std": list(spec.std), "created": "2026-01-01T00:00:00"}
    metrics = metrics if metrics is not None else {
        "val": {"n": 12, "accuracy": 0.5, "macro_f1": 0.4, "ece": 0.1, "per_class": {}},
        "test": {"n": 9, "accuracy": 0.44, "macro_f1": 0.41}}
    empty = pd.DataFrame({"rel": []})
    store.save_run(run_id, manifest=manifest, metrics=metrics, history=empty, confusion=empty,
                   predictions=empty, state_dict=model.state_dict())
    return model.eval()


def _torch_probs(model: nn.Module, x: np.ndarray | torch.Tensor) -> np.ndarray:
    return inference.probabilities(model, torch.as_tensor(x)).numpy()


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=NOT_EXPORTABLE[n], strict=True))
    if n in NOT_EXPORTABLE else n for n in models.REGISTRY])
def test_every_registry_model_exports_with_parity(name: str) -> None:
    store_tiny_run("r", name)
    exp = ex.export_run("r")
    meta = exp.meta
    torch_model, manifest = load_model("r")
    onnx_model, _ = load_predictor("r")
    assert isinstance(onnx_model, OnnxModel), usable_export("r")[1]
    assert meta["export"]["parity"]["max_abs_diff_probabilities"] <= TOL

    # random inputs, at batch sizes other than the traced one (the batch axis is dynamic)
    gen = torch.Generator().manual_seed(7)
    for n in (1, 4):
        x = torch.randn(n, 3, SIZE, SIZE, generator=gen)
        p_onnx, p_torch = _torch_probs(onnx_model, x), _torch_probs(torch_model, x)
        assert p_onnx.shape == (n, 3)
        assert np.abs(p_onnx - p_torch).max() <= TOL

    # pictures prepared by the JSON's recipe alone: a non-square synthetic photo, a drawn face
    for rgb in (photo_640x480(), face_image(200)):
        _check_picture(rgb, meta, manifest, torch_model, onnx_model)
    _EXPORTED[name] = (meta, manifest, torch_model, onnx_model)


_EXPORTED: dict[str, tuple] = {}  # name -> what the test above exported (reused below)


def _check_picture(rgb: np.ndarray, meta: dict, manifest: dict, torch_model: nn.Module,
                   onnx_model: OnnxModel) -> None:
    x = ex.recipe_input(rgb, meta)
    assert x.shape == (1, 3, SIZE, SIZE) and x.dtype == np.float32
    np.testing.assert_allclose(x, Preprocess.of(manifest)(rgb)[0].numpy(), atol=1e-5)
    assert np.abs(_torch_probs(onnx_model, x) - _torch_probs(torch_model, x)).max() <= TOL


@pytest.mark.realdata
@pytest.mark.parametrize("name", [n for n in models.REGISTRY if n not in NOT_EXPORTABLE])
def test_parity_on_real_faces(name: str) -> None:
    """Three real 200x200 AffectNet-style crops (one per class), where the team's data is."""
    root = shared_data_or_skip("affectnet3")
    if name not in _EXPORTED:  # run on its own: export first
        test_every_registry_model_exports_with_parity(name)
    for cls in CLASSES:
        rgb = images.load_rgb(sorted((root / "test" / cls).glob("*.jpg"))[0])
        _check_picture(rgb, *_EXPORTED[name])


def test_json_describes_input_preprocessing_output_and_provenance(tmp_path) -> None:
    store_tiny_run("run-1", "efficientnet_lite0",
                   metrics={"val": {"n": 3, "accuracy": 0.5, "ece": float("nan")}})
    assert export_cli.main(["--run", "run-1", "--format", "onnx"]) == 0
    folder = store.paths.export_dir("run-1")
    meta = json.loads((folder / "model.json").read_text())  # strict JSON: NaN became null
    assert meta["input"] == {"name": "input", "shape": ["batch", 3, SIZE, SIZE], "dtype": "float32",
                             "layout": "NCHW", "channels": "RGB"}
    assert meta["output"]["kind"] == "logits" and "softmax" in meta["output"]["probabilities"]
    assert meta["classes"] == CLASSES
    pre = meta["preprocessing"]
    assert pre["image_size"] == SIZE and pre["mean"] == [0.5] * 3 and pre["std"] == [0.5] * 3
    assert [s["op"] for s in pre["steps"]] == ["decode", "centre_crop_square", "resize", "scale",
                                               "normalize", "layout"]
    assert pre["steps"][2]["interpolation"] == "INTER_AREA"
    run = meta["run"]
    assert run["run_id"] == "run-1" and run["model"] == "efficientnet_lite0"
    assert run["weights_source"] == "scratch" and run["dataset"] == "tinyfaces"
    assert run["weights_sha256"] == store.load_run("run-1").manifest["weights_sha256"]
    assert meta["metrics"] == {"val": {"n": 3, "accuracy": 0.5, "ece": None}}
    assert meta["export"]["opset"] == ex.OPSET and meta["export"]["torch"] == torch.__version__
    assert meta["sha256"] == store.files.file_sha256(folder / "model.onnx")

    out = tmp_path / "deploy"
    assert export_cli.main(["--run", "run-1", "--out", str(out)]) == 0
    assert (out / "model.onnx").is_file() and (out / "model.json").is_file()


def test_recipe_matches_preprocess_when_enlarging_and_at_equal_size() -> None:
    meta = {"preprocessing": {"image_size": SIZE, "mean": [0.485, 0.456, 0.406],
                              "std": [0.229, 0.224, 0.225]}}
    pre = Preprocess(SIZE, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    rng = np.random.default_rng(0)
    for shape in ((20, 27, 3), (SIZE, SIZE + 9, 3)):  # smaller than SIZE (INTER_LINEAR); equal side
        rgb = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_allclose(ex.recipe_input(rgb, meta), pre(rgb)[0].numpy(), atol=1e-5)


def test_ensembles_are_refused_with_what_to_do_instead(capsys) -> None:
    manifest = {"kind": "ensemble", "model": "ensemble", "classes": CLASSES,
                "members": ["a", "b"], "weights": [0.6, 0.4]}
    empty = pd.DataFrame({"rel": []})
    store.save_run("ens", manifest=manifest, metrics={}, history=empty, confusion=empty,
                   predictions=empty)
    with pytest.raises(ex.ExportError, match=r"ensemble.*a, b.*weighted by \[0.6, 0.4\]"):
        ex.export_run("ens")
    assert export_cli.main(["--run", "ens"]) == 2
    assert "export each member" in capsys.readouterr().err.lower()
    assert export_cli.main(["--run", "no-such-run"]) == 2


def test_a_failed_parity_check_publishes_nothing() -> None:
    model, _ = models.build_model("mobilenet_v2", 3, pretrained=False, image_size=SIZE, tiny=True)
    out = store.paths.export_dir("r")
    with pytest.raises(ex.ExportError, match="disagree"):  # no difference is below -1
        ex.export_model(model, out, classes=CLASSES, preprocess=Preprocess(SIZE, (0.5,) * 3,
                                                                          (0.5,) * 3), tolerance=-1.0)
    assert list(out.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Predict through the export, only when it matches the run


def test_load_predictor_is_load_model_without_an_export() -> None:
    store_tiny_run("r", "vit_scratch")
    model, manifest = load_predictor("r")
    assert isinstance(model, nn.Module) and manifest["model"] == "vit_scratch"
    assert usable_export("r")[0] is None and "no export" in usable_export("r")[1]


def test_load_predictor_uses_a_matching_export_and_refuses_stale_or_damaged_ones() -> None:
    store_tiny_run("r", "vit_scratch")
    ex.export_run("r")
    assert isinstance(load_predictor("r")[0], OnnxModel)
    assert isinstance(load_predictor("r", prefer_onnx=False)[0], nn.Module)

    # the .onnx no longer has the hash its JSON records (damaged or half-replaced)
    onnx_path = store.paths.export_dir("r") / store.paths.ONNX_MODEL
    original = onnx_path.read_bytes()
    onnx_path.write_bytes(original + b"\0")
    assert "sha256" in usable_export("r")[1]
    assert isinstance(load_predictor("r")[0], nn.Module)
    onnx_path.write_bytes(original)
    assert usable_export("r")[0] is not None

    # the run was retrained under the same id: the export describes other weights
    store_tiny_run("r", "vit_scratch", seed=1)
    assert "other weights" in usable_export("r")[1]
    assert isinstance(load_predictor("r")[0], nn.Module)


def test_live_prediction_through_the_export_matches_pytorch() -> None:
    store_tiny_run("r", "mobilenet_v2")
    ex.export_run("r")
    crop = face_image(160)
    by_torch = live.predict_crop(crop, ["r"], loader=load_model).runs[0]
    by_onnx = live.predict_crop(crop, ["r"], loader=load_predictor).runs[0]
    assert (by_torch.engine, by_onnx.engine) == ("torch", "onnx")
    assert np.abs(by_onnx.probs - by_torch.probs).max() <= TOL
    assert math.isclose(by_onnx.probs.sum(), 1.0, rel_tol=1e-6)
    rows = live.summary_table(live.predict_crop(crop, ["r"], loader=load_predictor))
    assert rows[0]["engine"] == "onnx" and rows[0]["error"] == ""
    onnx_model, manifest = load_predictor("r")
    pics = [crop, photo_640x480()]
    np.testing.assert_allclose(
        inference.predict_images(onnx_model, pics, Preprocess.of(manifest)),
        inference.predict_images(load_model("r")[0], pics, Preprocess.of(manifest)), atol=TOL)


def test_export_takes_one_run_or_the_bundled_ones_and_out_only_with_one(tmp_path) -> None:
    for argv in ([], ["--run", "r", "--bundled"], ["--bundled", "--out", str(tmp_path)]):
        with pytest.raises(SystemExit) as exc:
            export_cli.main(argv)
        assert exc.value.code == 2


def test_the_apps_predictor_follows_the_export_and_otherwise_shares_the_pytorch_model() -> None:
    """Predict's loader: without an export, the very model the other pages cached (not a second
    copy in memory); an export written while the app runs is used from the next call on; one
    that stops matching (its .onnx replaced) is dropped again."""
    from pages import _cache

    store_tiny_run("r", "mobilenet_v2")
    torch_model = _cache.load_model("r")[0]
    assert _cache.load_predictor("r")[0] is torch_model
    ex.export_run("r")
    exported = _cache.load_predictor("r")[0]
    assert isinstance(exported, OnnxModel) and exported.session.get_session_options() \
        .intra_op_num_threads == _cache.PREDICTOR_THREADS
    meta_path = store.paths.export_dir("r") / store.paths.ONNX_META
    meta = store.read_json(meta_path)
    store.write_json(meta_path, dict(meta, sha256="0" * 64))  # as a half-replaced export reads
    assert _cache.load_predictor("r")[0] is torch_model


def test_the_live_webcam_classifies_through_the_export_beside_a_held_explainer() -> None:
    """An ONNX session has no hooks to guard: the webcam's frames go through it while another
    session holds the run's PyTorch model for a Grad-CAM (`explaining`), and answer the same."""
    import threading

    from emotion_core.explain.base import explaining
    from emotion_core.views import live_video

    store_tiny_run("r", "mobilenet_v2")
    ex.export_run("r")
    onnx_model, manifest = load_predictor("r")
    torch_model = load_model("r")[0]
    crops = [face_image(160), photo_640x480()]
    answered: list[np.ndarray] = []
    with explaining(torch_model):  # held by this thread: a PyTorch classify elsewhere would wait
        worker = threading.Thread(
            target=lambda: answered.append(live_video.classify(onnx_model, manifest, crops)))
        worker.start()
        worker.join(timeout=30)
        assert answered, "the ONNX model did not wait for the held PyTorch model"
    np.testing.assert_allclose(answered[0], live_video.classify(torch_model, manifest, crops),
                               atol=TOL)


def test_adaptive_pools_the_tracer_cannot_export_are_exported_exactly() -> None:
    """torchvision's VGG-16 at 112 px pools a 3x3 map to 7x7, which the ONNX tracer refuses; the
    export writes that pool as averaging matrices (PoolAsMatmul) and leaves the model untouched."""
    for in_size, out_size in [(3, 7), (5, 7), (7, 7), (14, 7), (10, 3)]:
        x = torch.randn(2, 4, in_size, in_size + 1)
        for size in (out_size, (out_size, None)):
            torch.testing.assert_close(ex.PoolAsMatmul(size)(x), nn.AdaptiveAvgPool2d(size)(x))
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=10), nn.ReLU(), nn.AdaptiveAvgPool2d(7),
                          nn.Flatten(), nn.Linear(4 * 49, 3))  # 32 px -> 3x3 -> 7x7, as VGG-16
    exp = ex.export_model(model, store.paths.export_dir("pool"), classes=CLASSES,
                          preprocess=Preprocess(SIZE, (0.5,) * 3, (0.5,) * 3))
    assert exp.meta["export"]["parity"]["max_abs_diff_probabilities"] <= TOL
    assert isinstance(model[2], nn.AdaptiveAvgPool2d)
