"""The artifact store: atomic run folders, broken-run detection, safetensors only, leaderboard."""
from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
import pytest
import torch

from emotion_core import store


def _save(run_id: str, **overrides):
    kw = dict(
        manifest={"kind": "model", "model": "tiny", "dataset": "d", "classes": ["angry", "happy", "sad"],
                  "headline": {"val_accuracy": 0.5, "val_macro_f1": 0.4}},
        metrics={"accuracy": 0.5},
        history=pd.DataFrame({"epoch": [1], "train_loss": [1.0]}),
        confusion=pd.DataFrame([[1, 0, 0], [0, 1, 0], [0, 0, 1]], columns=["angry", "happy", "sad"]),
        predictions=pd.DataFrame({"rel": ["a.png"], "label": ["angry"]}),
        state_dict={"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)},
    )
    kw.update(overrides)
    return store.save_run(run_id, **kw)


def test_save_and_load_run_round_trip():
    path = _save("r1")
    assert sorted(p.name for p in path.iterdir()) == sorted(store.paths.RUN_FILES)
    rec = store.load_run("r1")
    assert rec.manifest["model"] == "tiny" and rec.metrics == {"accuracy": 0.5}
    assert list(rec.confusion.columns) == ["angry", "happy", "sad"]
    weights, meta = store.load_weights("r1")
    assert torch.equal(weights["w"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert meta["model"] == "tiny" and meta["classes"] == "angry,happy,sad"


def test_runs_started_in_the_same_second_get_ids_of_their_own():
    when = datetime(2026, 11, 30, 8, 0, 0)
    first = store.new_run_id("d-tiny", when=when)
    second = store.new_run_id("d-tiny", when=when)  # the first is still training: its id is held
    assert (first, second) == ("d-tiny-20261130-080000", "d-tiny-20261130-080000-2")
    _save(first)
    assert not store.paths.run_reservation(first).exists()  # the folder holds the id now
    assert store.new_run_id("d-tiny", when=when) == "d-tiny-20261130-080000-3"
    assert [r.run_id for r in store.list_runs()[0]] == [first]  # held ids are not runs
    assert not store.list_runs()[1]


def test_crash_while_saving_leaves_no_run_and_keeps_the_old_one():
    _save("r1")

    class Boom(pd.DataFrame):
        def to_csv(self, *a, **k):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        _save("r1", predictions=Boom({"x": [1]}), metrics={"accuracy": 0.9})
    with pytest.raises(RuntimeError):
        _save("r2", predictions=Boom({"x": [1]}))
    assert store.load_run("r1").metrics == {"accuracy": 0.5}  # old run intact
    assert not store.paths.run_dir("r2").exists()
    assert [p.name for p in store.paths.runs_dir().iterdir() if not p.name.startswith(".")] == ["r1"]


def test_broken_runs_are_listed_separately():
    _save("good")
    _save("missing")
    (store.paths.run_dir("missing") / "history.csv").unlink()
    _save("corrupt")
    (store.paths.run_dir("corrupt") / "manifest.json").write_text("{not json")
    good, broken = store.list_runs()
    assert [r.run_id for r in good] == ["good"]
    assert set(broken) == {"missing", "corrupt"}
    assert "history.csv" in broken["missing"]
    with pytest.raises(store.BrokenRunError, match="manifest.json"):
        store.load_run("corrupt")


def test_corrupt_weights_are_refused_with_a_clear_error():
    _save("r1")
    (store.paths.run_dir("r1") / "weights.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(store.BrokenRunError, match="truncated or replaced"):
        store.load_weights("r1")


def test_ensemble_runs_need_no_weights():
    _save("ens", manifest={"kind": "ensemble", "model": "ensemble", "members": ["a", "b"],
                           "classes": ["angry", "happy"]},
          state_dict=None)
    assert store.load_run("ens").is_ensemble


def test_leaderboard_is_sorted_by_validation_macro_f1():
    _save("low", manifest={"model": "a", "dataset": "d", "classes": ["x", "y"],
                           "headline": {"val_macro_f1": 0.2}})
    _save("high", manifest={"model": "b", "dataset": "d", "classes": ["x", "y"],
                            "headline": {"val_macro_f1": 0.9}})
    board = store.write_leaderboard()
    assert list(board["run_id"]) == ["high", "low"]
    on_disk = pd.read_csv(store.paths.leaderboard_path())
    assert list(on_disk["run_id"]) == ["high", "low"]
    assert set(store.LEADERBOARD_COLUMNS) <= set(on_disk.columns)


def test_update_run_metrics_merges_keys():
    _save("r1")
    store.update_run_metrics("r1", {"faithfulness": {"gradcam": 0.7}})
    metrics = json.loads((store.paths.run_dir("r1") / "metrics.json").read_text())
    assert metrics == {"accuracy": 0.5, "faithfulness": {"gradcam": 0.7}}


def test_artifacts_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(store.paths.ENV_ROOT, str(tmp_path / "elsewhere"))
    assert store.paths.run_dir("x") == (tmp_path / "elsewhere" / "runs" / "x").resolve()
    assert store.paths.dataset_dir("d").parent.parent == (tmp_path / "elsewhere").resolve()
