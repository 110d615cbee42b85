"""A refit: a validated recipe trained again on train + val for a fixed number of epochs, scored
only on the test split (which chose nothing)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emotion_core import store
from emotion_core.evaluation import ensemble
from emotion_core.store.events import EventLog, read_events
from emotion_core.training import loop as train
from emotion_core.training.config import PROFILES
from emotion_core.views import model_card
from scripts import train as train_cli
from tests import tiny_shapes

MODEL = "vit_scratch"  # tiny config: fast on 2 cores
# patience 1: a run that validated could stop after epoch 2; a refit must train all 3
CFG = PROFILES["quick"].override(image_size=32, batch_size=8, epochs=3, tiny=True, patience=1,
                                 eval_batch_size=32, budget_tflop=0, measure_speed=False,
                                 pretrained=False)


@pytest.fixture
def tiny_ds(tmp_path: Path):
    return tiny_shapes.prepared(tiny_shapes.make_folder(tmp_path / "tiny"))


def test_refit_trains_on_train_and_val_and_scores_only_test(tiny_ds, tmp_path: Path):
    events = tmp_path / "events.jsonl"
    rid = train.fit(MODEL, tiny_ds, CFG.override(refit=True), progress=False,
                    events=EventLog(events))
    plain = train.fit(MODEL, tiny_ds, CFG.override(patience=10), progress=False)
    rec, ref = store.load_run(rid), store.load_run(plain)
    n_train, n_val = len(tiny_ds.files("train")), len(tiny_ds.files("val"))
    # every epoch draws from train and val together (drop_last batches of 8)
    assert rec.manifest["recipe"]["steps_per_epoch"] == (n_train + n_val) // CFG.batch_size
    assert ref.manifest["recipe"]["steps_per_epoch"] == n_train // CFG.batch_size
    started = [e["batches"] for e in read_events(events) if e["event"] == "epoch_started"]
    assert started == [(n_train + n_val) // CFG.batch_size] * 3
    # no early stopping, the last epoch's weights, no validation numbers anywhere
    m = rec.manifest
    assert m["headline"]["epochs_run"] == 3 and m["best_epoch"] == 3
    assert rec.history["val_macro_f1"].isna().all() and len(rec.history) == 3
    assert set(rec.predictions["subset"]) == {"test"} and "val" not in rec.metrics
    assert m["headline"]["val_accuracy"] is None and m["headline"]["test_accuracy"] is not None
    assert m["config"]["refit"] is True and m["recipe"]["refit"] is True
    assert "refit" in rid and "refit" not in plain and ref.manifest["recipe"]["refit"] is False
    # the test answers are the refit model's own, scored like any run's
    test = rec.predictions
    assert rec.metrics["test"]["accuracy"] == pytest.approx(
        float(np.mean(test["label"] == test["pred"])))
    # its card says what chose what, and its command repeats the refit
    card = model_card.model_card(rid)
    command = model_card.training_command(m)
    assert "A refit" in card and "refit on train + val" in card and "| val |" not in card
    assert "--refit" in command and "--patience" not in command
    assert "--patience 10" in model_card.training_command(ref.manifest)
    # nothing that weighs members on val can use it
    with pytest.raises(ensemble.EnsembleError, match="refit"):
        ensemble.greedy_subset([rid, plain])


def test_refit_without_a_test_split_is_refused_before_training(tmp_path: Path):
    ds = tiny_shapes.prepared(tiny_shapes.make_folder(
        tmp_path / "tiny", per_class={"train": 12, "valid": 4}))
    with pytest.raises(ValueError, match="no test split"):
        train.fit(MODEL, ds, CFG.override(refit=True), progress=False)
    assert not store.list_runs()[0]


@pytest.mark.parametrize("extra, message", [
    ([], "--refit needs --epochs"),
    (["--epochs", "2", "--patience", "2"], "does not stop early"),
    (["--epochs", "2", "--recipe", "probe"], "probe chooses"),
])
def test_cli_refuses_a_refit_that_could_look_at_val(tmp_path: Path, capsys, extra, message):
    folder = tiny_shapes.make_folder(tmp_path / "tiny")
    rc = train_cli.main(["--data", str(folder), "--models", MODEL, "--refit", "--quiet", *extra])
    assert rc == 2 and message in capsys.readouterr().err
    assert not store.list_runs()[0]


def test_cli_refit_dry_run_writes_a_test_only_run_and_no_ensemble(tmp_path: Path, capsys):
    folder = tiny_shapes.make_folder(tmp_path / "tiny")
    rc = train_cli.main(["--data", str(folder), "--models", "resnet34,efficientnet_b4",
                         "--refit", "--epochs", "1", "--dry-run", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "ensemble: skipped (a refit" in out
    runs = store.list_runs()[0]
    assert sorted(r.manifest["model"] for r in runs) == ["efficientnet_b4", "resnet34"]
    assert all(set(store.load_run(r.run_id).predictions["subset"]) == {"test"} for r in runs)
