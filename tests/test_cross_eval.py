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
