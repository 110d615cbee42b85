"""Installing what a GPU machine sent back: reference tables, bundled models with their weights
(re-joined from pieces), checked against the hash recorded there, and a model card each."""
from __future__ import annotations

import tarfile

import pandas as pd
import pytest
import torch

from emotion_core import evaluation, models, store
from emotion_core.store import bundle
from scripts.gpu import export_reference, install_results


def _gpu_side(tmp_path, monkeypatch):
    """What scripts/gpu/real_faces.sh leaves in its OUT folder, made here on a tiny run."""
    gpu = tmp_path / "gpu"
    monkeypatch.setenv(store.paths.ENV_BUNDLED, str(gpu / "bundled"))
    model, _ = models.build_model("mobilenet_v2", 3, pretrained=False, image_size=32, tiny=True)
    manifest = {"kind": "model", "model": "mobilenet_v2", "classes": ["angry", "happy", "sad"],
                "image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3, "dataset": "a+b",
                "sources": ["a", "b"], "config": {"tiny": True, "epochs": 3}, "tta_flip": True,
                "recipe": {"name": "finetune", "phases": [{"name": "train", "epochs": 3, "lr": 1e-3}]}}
    tables = pd.DataFrame({"subset": ["val"], "rel": ["x.png"]})
    metrics = {"by_source": {"a": {"test": {"n": 10, "accuracy": 0.9, "macro_f1": 0.89, "ece": 0.1}},
                             "b": {"test": {"n": 5, "accuracy": 0.8, "macro_f1": 0.79, "ece": 0.1}}}}
    store.save_run("gpu-run", manifest=manifest, metrics=metrics, history=tables, confusion=tables,
                   predictions=tables, state_dict=model.state_dict())
    bundle.bundle_run("gpu-run", "pending", bundle_id="realfaces-mobilenet_v2")
    export_reference.export_reference(gpu / "reference", note="tiny gpu")
    out = tmp_path / "out"
    out.mkdir()
    with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
        tar.add(gpu / "reference", "reference")
        tar.add(gpu / "bundled" / "realfaces-mobilenet_v2" / "manifest.json",
                "bundled/realfaces-mobilenet_v2/manifest.json")
        for name in store.paths.RUN_FILES:
            if name not in ("weights.safetensors", "manifest.json"):
                tar.add(gpu / "bundled" / "realfaces-mobilenet_v2" / name,
                        f"bundled/realfaces-mobilenet_v2/{name}")
    data = (gpu / "bundled" / "realfaces-mobilenet_v2" / "weights.safetensors").read_bytes()
    half = len(data) // 2
    (out / "realfaces-mobilenet_v2.part00").write_bytes(data[:half])
    (out / "realfaces-mobilenet_v2.part01").write_bytes(data[half:])
    monkeypatch.setenv(store.paths.ENV_BUNDLED, str(tmp_path / "here" / "bundled"))
    return out, model


def test_results_install_as_a_reference_set_and_loadable_bundles(tmp_path, monkeypatch):
    out, model = _gpu_side(tmp_path, monkeypatch)
    assert install_results.main(["--from", str(out), "--reference", "gpu-tiny"]) == 0
    (rec,) = [r for r in store.list_runs()[0] if r.bundled]
    assert rec.run_id == "realfaces-mobilenet_v2"
    card = bundle.model_card(rec.run_id)
    assert "| a | test | 10 | 0.900 |" in card and "research-only" in card
    assert "--data ../shared/data/a --data ../shared/data/b" in card and "--tta-flip" in card
    loaded, _ = evaluation.load_model(rec.run_id)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).softmax(1), model.eval()(x).softmax(1), atol=2e-3, rtol=0)
    from emotion_core.store import reference

    (ref,) = reference.load_reference_runs("gpu-tiny")
    assert ref.run_id == "gpu-run"
    # per-image answers travel gzipped (7.8 MiB of text for one GPU call's 12 runs) and load
    assert (store.paths.reference_dir() / "gpu-tiny" / "predictions.csv.gz").is_file()
    assert ref.predictions is not None and ref.predictions["rel"].tolist() == ["x.png"]


def test_weights_that_do_not_match_the_recorded_hash_install_nothing(tmp_path, monkeypatch, capsys):
    out, _ = _gpu_side(tmp_path, monkeypatch)
    part = out / "realfaces-mobilenet_v2.part01"
    data = bytearray(part.read_bytes())
    data[-5] ^= 0xFF
    part.write_bytes(bytes(data))
    assert install_results.main(["--from", str(out), "--reference", "gpu-tiny"]) == 2
    assert "do not match the hash" in capsys.readouterr().err
    assert not store.paths.bundled_dir().exists() or not any(store.paths.bundled_dir().iterdir())
    assert not (store.paths.reference_dir() / "gpu-tiny").exists()
    with pytest.raises(store.BrokenRunError):
        store.load_run("realfaces-mobilenet_v2")
