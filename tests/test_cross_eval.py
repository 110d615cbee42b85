"""Train on X, test on every Y: the CLI's matrix, stored scores, and the app's table of them."""
from __future__ import annotations

import numpy as np

from emotion_core import store
from emotion_core.views import tables
from scripts import cross_eval
from scripts import train as train_cli
from tests import tiny_shapes


def test_matrix_scores_every_run_on_every_sets_test_split(tmp_path, capsys):
    a = tiny_shapes.make_folder(tmp_path / "aset", seed=1)
    b = tiny_shapes.make_folder(tmp_path / "bset", seed=2, per_class={"train": 10, "valid": 3})
    for folder in (a, b):
        assert train_cli.main(["--data", str(folder), "--models", "vit_scratch", "--dry-run",
                               "--quiet", "--ensemble", "none"]) == 0
    capsys.readouterr()
    assert cross_eval.main(["--data", str(a), "--data", str(b), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "aset" in out and "bset" in out
    runs, _ = store.list_runs()
    for rec in runs:
        cross = rec.metrics["cross_dataset"]
        assert set(cross) == {"aset:test", "bset:test"}
        assert cross["bset:test"]["n"] == 6  # bset has no test folder: round(15% of 10) = 2 per class carved
    own = {r.manifest["dataset"]: r for r in runs}
    assert own["aset"].metrics["cross_dataset"]["aset:test"]["accuracy"] == \
        own["aset"].metrics["test"]["accuracy"], "the same persisted test split, the same number"
    table = tables.cross_matrix(runs)
    assert list(table.columns) == ["run_id", "trained on", "aset", "bset"]
    assert np.isfinite(table[["aset", "bset"]].to_numpy(dtype=float)).all()


def test_no_cross_scores_means_no_table(tmp_path):
    a = tiny_shapes.make_folder(tmp_path / "aset", seed=1)
    assert train_cli.main(["--data", str(a), "--models", "vit_scratch", "--dry-run", "--quiet",
                           "--ensemble", "none"]) == 0
    assert tables.cross_matrix(store.list_runs()[0]).empty


def test_an_ensemble_is_scored_on_another_set_as_the_mean_of_its_members(tmp_path, capsys):
    from emotion_core.data import open_folder
    from emotion_core.evaluation import cross_dataset
    from scripts import evaluate as evaluate_cli

    a = tiny_shapes.make_folder(tmp_path / "aset", seed=1)
    b = tiny_shapes.make_folder(tmp_path / "bset", seed=2)
    from emotion_core.evaluation import ensemble

    assert train_cli.main(["--data", str(a), "--models", "vit_scratch,mobilenet_v2", "--dry-run",
                           "--quiet", "--scratch", "--ensemble", "none"]) == 0
    members = sorted(r.run_id for r in store.list_runs()[0])
    ens = store.load_run(ensemble.build_ensemble(members), tables=False)
    assert evaluate_cli.main(["--run", ens.run_id, "--data", str(b), "--subset", "test",
                              "--quiet"]) == 0
    assert "accuracy:" in capsys.readouterr().out
    stored = store.load_run(ens.run_id, tables=False).metrics["cross_dataset"]["bset:test"]
    ds = open_folder(b, progress=False)
    rows = np.flatnonzero(ds.split["subset"].to_numpy() == "test")
    members = [cross_dataset.run_probs(m, ds, rows, progress=False)
               for m in ens.manifest["members"]]
    mean = np.average(np.stack(members), axis=0, weights=ens.manifest.get("weights"))
    y = ds.split.iloc[rows]["label"].map(
        {c: i for i, c in enumerate(ens.manifest["classes"])}).to_numpy()
    assert stored["n"] == len(rows)
    assert stored["accuracy"] == np.mean(mean.argmax(1) == y)
