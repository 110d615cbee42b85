"""Bundled release models: fp16 copies of runs with a model card, listed beside the user's runs,
loadable like any run and never written at run time."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from emotion_core import evaluation, models, store
from emotion_core.evaluation import onnx_model
from emotion_core.store import bundle

CLASSES = ["angry", "happy", "sad"]


def _run(run_id: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model, _ = models.build_model("mobilenet_v2", 3, pretrained=False, image_size=32, tiny=True)
    manifest = {"kind": "model", "model": "mobilenet_v2", "classes": CLASSES, "image_size": 32,
                "mean": [0.5] * 3, "std": [0.5] * 3, "dataset": "d", "config": {"tiny": True}}
    empty = pd.DataFrame({"a": [0]})
    store.save_run(run_id, manifest=manifest, metrics={"val": {"accuracy": 0.5}}, history=empty,
                   confusion=empty, predictions=empty, state_dict=model.state_dict())
    return model.eval()


def test_a_bundled_run_is_listed_loads_in_fp32_and_is_read_only():
    model = _run("mine")
    path = bundle.bundle_run("mine", "# card\ntrained on d", bundle_id="release-v1")
    assert path.parent == store.paths.bundled_dir()
    runs, broken = store.list_runs()
    by_id = {r.run_id: r for r in runs}
    assert not broken and by_id["release-v1"].bundled and not by_id["mine"].bundled
    assert by_id["release-v1"].manifest["weights_dtype"] == "float16"
    assert bundle.model_card("release-v1").startswith("# card")
    assert path.joinpath("weights.safetensors").stat().st_size < \
        store.paths.run_file("mine", "weights.safetensors").stat().st_size * 0.6
    loaded, _ = evaluation.load_model("release-v1")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).softmax(1), model(x).softmax(1), atol=2e-3, rtol=0)
    for write in (lambda: store.update_run_metrics("release-v1", {"x": 1}),
                  lambda: store.delete_run("release-v1"),
                  lambda: store.save_run("release-v1", manifest={}, metrics={}, history=None,
                                         confusion=None, predictions=None)):
        with pytest.raises(store.ReadOnlyRunError, match="read-only"):
            write()
    assert path.is_dir()


def test_a_damaged_bundled_weights_file_is_a_broken_run_not_a_crash():
    _run("mine")
    path = bundle.bundle_run("mine", "card", bundle_id="release-v1")
    weights = path / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # a flipped byte inside tensor data: same size, different content
    weights.write_bytes(bytes(data))
    runs, broken = store.list_runs()
    assert "release-v1" in broken and "content hash" in broken["release-v1"]
    assert [r.run_id for r in runs] == ["mine"]


@pytest.mark.parametrize("more", [{}, {"set_sampling": "sqrt", "scale_jitter": 0.1,
                                        "shift_jitter": 0.08},
                                  {"face_margin": 0.5, "face_fit": "pad"},
                                  {"face_align": True}, {"ema": 0.998},
                                  {"mixup": 0.2}, {"erase": 0.25}, {"sam": 0.05},
                                  {"lowres": 0.3}])
def test_the_model_cards_command_reproduces_the_runs_training_config(more):
    import shlex

    from emotion_core.training.config import get_profile
    from emotion_core.views import model_card
    from scripts import train as train_cli

    config = get_profile("quick").override(image_size=128, epochs=8, head_epochs=1, lr=2e-3,
                                           finetune_lr=3e-4, patience=4, label_smoothing=0.1,
                                           seed=7, budget_tflop=0.0, tta_flip=True,
                                           crop_faces=True, layer_decay=0.8, **more)
    manifest = {"model": "mobilenet_v2", "sources": ["seta", "setb"], "image_size": 128,
                "config": config.to_dict(), "tta_flip": True}
    argv = shlex.split(model_card.training_command(manifest))[3:]  # after python -m scripts.train
    args = train_cli.parse_args(argv)
    assert args.data == ["../shared/data/seta", "../shared/data/setb"]
    assert args.models == "mobilenet_v2"
    assert train_cli.config_from_args(args).to_dict() == config.to_dict()


def test_a_run_from_before_the_face_fit_option_reproduces_with_its_padded_crops():
    """Old manifests have crop_faces but no face_fit: they were trained on black-padded crops,
    and --crop-faces alone now means crops kept inside the picture."""
    import shlex

    from emotion_core.training.config import get_profile
    from emotion_core.views import model_card
    from scripts import train as train_cli

    config = get_profile("quick").override(crop_faces=True, image_size=128).to_dict()
    del config["face_margin"], config["face_fit"]  # as written before the options existed
    manifest = {"model": "mobilenet_v2", "sources": ["seta"], "image_size": 128, "config": config}
    command = model_card.training_command(manifest)
    assert "--crop-faces" in command and "--face-fit pad" in command
    new = train_cli.config_from_args(train_cli.parse_args(shlex.split(command)[3:]))
    assert (new.crop_faces, new.face_margin, new.face_fit) == (True, 0.25, "pad")


def test_the_bundle_cli_writes_a_card_of_the_fp16_copy_and_refuses_to_overwrite(capsys):
    from scripts import bundle as bundle_cli

    _run("mine")
    assert bundle_cli.main(["--run", "mine", "--as", "realfaces-x", "--note", "Trained here."]) == 0
    rec = store.load_run("realfaces-x", tables=False)
    card = bundle.model_card("realfaces-x")
    assert rec.bundled and card.startswith("# realfaces-x\n") and "Trained here." in card
    assert rec.manifest["weights_sha256"][:16] in card  # the fp16 file's hash, not the source's
    assert "research-only" in card
    assert bundle_cli.main(["--run", "mine", "--as", "realfaces-x"]) == 2
    assert "--replace" in capsys.readouterr().err
    assert bundle_cli.main(["--run", "missing", "--as", "other"]) == 2
    assert not (store.paths.bundled_dir() / "other").exists()


def test_the_card_lists_each_sets_score_once_and_other_sets_as_cross_dataset():
    from emotion_core.views import model_card

    def score(acc: float) -> dict:
        return {"n": 10, "accuracy": acc, "macro_f1": acc, "ece": 0.1}

    metrics = {"by_source": {"aset": {"test": score(0.8)}, "bset": {"val": score(0.7)}},
               "cross_dataset": {"aset:test": score(0.8), "bset:test": score(0.6),
                                 "cset:test": score(0.5)}}
    rows = model_card._metric_rows(metrics, "aset+bset")
    assert len(rows) == 4 and sum("| aset" in r for r in rows) == 1  # scored again: no copy
    assert any(r.startswith("| bset (cross-dataset) | test") for r in rows)  # val only before
    assert any(r.startswith("| cset (cross-dataset) | test | 10 | 0.500") for r in rows)


def test_the_committed_bundled_models_reproduce_their_cards_test_scores(monkeypatch):
    """The weights in git, read through today's pipeline (its own face detection, crops and
    flip TTA, the split prepared afresh), score what their card says on a real test split."""
    from emotion_core.evaluation import cross_dataset
    from tests.conftest import shared_data_or_skip

    folder = shared_data_or_skip("webfaces3")
    monkeypatch.setenv(store.paths.ENV_BUNDLED, str(store.paths.REPO_ROOT / "artifacts" / "bundled"))
    runs, broken = store.list_runs()
    bundled = [r for r in runs if r.bundled and "webfaces3" in r.metrics.get("by_source", {})]
    assert bundled and not broken, broken
    for rec in bundled:
        want = rec.metrics["by_source"]["webfaces3"]["test"]
        got = cross_dataset.evaluate_on_folder(rec.run_id, folder, subset="test",
                                               progress=False)["metrics"]
        assert got["n"] == want["n"]  # the same carved test split, prepared here again
        # the card's numbers are the float32 run's; the committed copy is float16: one answer
        # may differ, not more
        assert abs(got["accuracy"] - want["accuracy"]) <= 1.01 / want["n"], rec.run_id
        cal = rec.manifest.get("calibration")
        if cal:  # the committed temperature is applied: the card's scaled calibration error
            card = cal["test"]["webfaces3"]
            assert abs(got["ece"] - card["after"]["ece"]) < 0.005, rec.run_id
            assert abs(got["ece"] - card["before"]["ece"]) > 0.01, rec.run_id


def test_make_runs_demo_job_starts_beside_bundled_models_but_not_beside_the_users_runs(
        monkeypatch, capsys):
    from emotion_core import jobs
    from scripts import start_demo

    started: list[bool] = []
    monkeypatch.setattr(jobs, "start_demo",
                        lambda: started.append(True) or jobs.JobInfo(
                            job_id="demo", state="running", pid=1, started=0.0))
    _run("mine")
    bundle.bundle_run("mine", "# card", bundle_id="release-v1")
    store.delete_run("mine")  # a fresh clone: the bundled models and nothing of the user's
    assert start_demo.main([]) == 0 and started == [True]
    assert "Started the quick demo job" in capsys.readouterr().out
    _run("mine")
    assert start_demo.main([]) == 0 and started == [True]  # the user's own run: no second demo
    assert "1 run already exists" in capsys.readouterr().out



@pytest.mark.parametrize("run_id", sorted(
    p.name for p in (store.paths.REPO_ROOT / "artifacts" / "bundled").iterdir() if p.is_dir()))
def test_every_committed_bundled_model_exports_once_and_answers_like_its_weights(run_id,
                                                                                 monkeypatch,
                                                                                 capsys):
    """What the server's start runs on a store without the exports (derived files, not in git):
    each committed bundle exports, agrees with its fp16 weights, and is not exported again."""
    from scripts import export as export_cli

    monkeypatch.setenv(store.paths.ENV_BUNDLED, str(store.paths.REPO_ROOT / "artifacts" / "bundled"))
    assert onnx_model.load_export(run_id) is None
    assert export_cli.main(["--bundled"]) == 0
    meta, why = onnx_model.usable_export(run_id)
    assert why == "", why
    exported, manifest = onnx_model.load_predictor(run_id)
    assert exported.engine == "onnx" and meta["run"]["run_id"] == run_id
    torch_model, _ = evaluation.load_model(run_id)
    size = manifest["image_size"]
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(exported(x).softmax(1), torch_model(x).softmax(1),
                                   atol=1e-4, rtol=0)
    capsys.readouterr()
    assert export_cli.main(["--bundled"]) == 0
    assert f"run {run_id}: its export is up to date" in capsys.readouterr().out
