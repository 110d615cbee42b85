"""How sure a score is: Wilson intervals, the exact McNemar test, and pairing two runs' answers."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from emotion_core import store
from emotion_core.evaluation import significance as sig
from emotion_core.views import tables
from scripts import leaderboard as leaderboard_cli
from tests.fixtures_runs import DATASET, MODELS, tiny_store


@pytest.mark.parametrize("correct,n", [(62, 70), (0, 12), (12, 12), (1098, 1336), (1, 3)])
def test_wilson_interval_matches_scipy_and_holds_the_point_estimate(correct, n):
    lo, hi = sig.wilson_interval(correct, n)
    ref = stats.binomtest(correct, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-9)
    assert 0.0 <= lo <= correct / n <= hi <= 1.0
    wide = sig.wilson_interval(correct, n, level=0.99)
    assert wide[0] <= lo and wide[1] >= hi


def test_wilson_interval_narrows_with_more_images_and_refuses_non_counts():
    small, large = sig.wilson_interval(62, 70), sig.wilson_interval(620, 700)
    assert large[1] - large[0] < small[1] - small[0]
    assert all(math.isnan(v) for v in sig.wilson_interval(0, 0))
    for bad in ((71, 70), (-1, 70)):
        with pytest.raises(ValueError, match="not a count"):
            sig.wilson_interval(*bad)


@pytest.mark.parametrize("only_a,only_b", [(7, 4), (186, 100), (3, 0), (0, 5), (10, 10), (1, 0)])
def test_mcnemar_exact_matches_a_two_sided_binomial_test(only_a, only_b):
    ref = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert sig.mcnemar_exact(only_a, only_b) == pytest.approx(ref, rel=1e-9)
    assert sig.mcnemar_exact(only_a, only_b) == sig.mcnemar_exact(only_b, only_a)


def test_mcnemar_without_disagreement_is_one():
    assert sig.mcnemar_exact(0, 0) == 1.0


def test_accuracy_rows_count_the_confusion_diagonal_per_subset_and_set():
    metrics = {
        "val": {"n": 10, "accuracy": 0.7, "confusion": [[3, 1], [2, 4]]},
        "test": {"n": 5, "accuracy": 0.6},  # no confusion stored: accuracy x n
        "by_source": {"a": {"val": {"n": 4, "accuracy": 0.5, "confusion": [[1, 1], [1, 1]]}},
                      "b": {"val": {"n": 6, "accuracy": 5 / 6, "confusion": [[2, 0], [1, 3]]}}},
    }
    rows = {(r["subset"], r["source"]): r for r in sig.accuracy_rows(metrics)}
    assert set(rows) == {("val", "all"), ("val", "a"), ("val", "b"), ("test", "all")}
    assert [rows[k]["correct"] for k in [("val", "all"), ("val", "a"), ("val", "b"),
                                         ("test", "all")]] == [7, 2, 5, 3]
    b = rows[("val", "b")]
    assert (b["n"], b["accuracy"]) == (6, 5 / 6)
    assert (b["ci_low"], b["ci_high"]) == sig.wilson_interval(5, 6)


def _answers(rels, labels, preds, **extra):
    return pd.DataFrame({"rel": rels, "subset": "test", "label": labels, "pred": preds, **extra})


def test_a_run_on_one_set_pairs_with_a_run_on_several_by_image():
    one = sig.keyed(_answers(["x/1.jpg", "x/2.jpg", "x/3.jpg", "x/4.jpg"],
                             ["happy", "sad", "sad", "angry"], ["happy", "sad", "happy", "sad"]),
                    "faces")
    several = sig.keyed(_answers(["faces/x/1.jpg", "faces/x/2.jpg", "faces/x/3.jpg",
                                  "faces/x/4.jpg", "other/x/1.jpg"],
                                 ["happy", "sad", "sad", "angry", "happy"],
                                 ["sad", "sad", "sad", "angry", "happy"],
                                 source=["faces"] * 4 + ["other"]), "faces+other")
    pair = sig.paired(one, several)
    assert len(pair) == 1  # "other" has no counterpart
    row = pair.iloc[0]
    assert (row["source"], row["n"]) == ("faces", 4)
    assert (row["both_right"], row["only_a"], row["only_b"], row["both_wrong"]) == (1, 1, 2, 0)
    assert row["a_accuracy"] == 0.5 and row["b_accuracy"] == 0.75
    assert row["p_value"] == sig.mcnemar_exact(1, 2)


def test_pairing_refuses_runs_that_label_the_same_image_differently():
    a = sig.keyed(_answers(["1.jpg"], ["happy"], ["happy"]), "s")
    b = sig.keyed(_answers(["1.jpg"], ["sad"], ["happy"]), "s")
    with pytest.raises(ValueError, match="label s/1.jpg differently"):
        sig.paired(a, b)


def test_stored_runs_pair_in_the_views_and_the_cli(tmp_path_factory, monkeypatch, capsys):
    root, ids = tiny_store(tmp_path_factory)
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    a, b = store.load_run(ids[MODELS[0]]), store.load_run(ids["ensemble"])
    pair = tables.paired_table(a, b)
    val = pair.set_index("subset").loc["val"]
    n_val = int((a.predictions["subset"] == "val").sum())
    assert val["n"] == n_val == val[["both_right", "only_a", "only_b", "both_wrong"]].sum()
    right_a = (a.predictions["pred"] == a.predictions["label"])[a.predictions["subset"] == "val"]
    assert val["a_accuracy"] == pytest.approx(right_a.mean())
    assert val["a_accuracy"] == pytest.approx(a.metrics["val"]["accuracy"])

    shown = tables.accuracy_intervals([a, b], {a.run_id: "A", b.run_id: "B"})
    assert set(shown["run"]) == {"A", "B"}
    assert np.all((shown["ci_low"] <= shown["accuracy"]) & (shown["accuracy"] <= shown["ci_high"]))

    assert leaderboard_cli.main(["--versus", a.run_id, b.run_id]) == 0
    out = capsys.readouterr().out
    assert f"A = {a.run_id}" in out and "p_value" in out
    assert leaderboard_cli.main(["--versus", a.run_id, "no-such-run"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert leaderboard_cli.main(["--intervals"]) == 0
    out = capsys.readouterr().out
    assert "ci_low" in out and all(rid in out for rid in ids.values())

    # every run on the dataset votes on its images; the ensemble repeats its members: left out
    assert leaderboard_cli.main(["--agreement", "--dataset", DATASET, "--subset", "val"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"2 runs on dataset '{DATASET}', val split")
    summary, hard = tables.agreement_tables([store.load_run(ids[m]) for m in MODELS], "val")
    assert f" {summary['missed_by_all'].iloc[0]}\n" in out.split("most missed")[0]
    assert hard["rel"].iloc[0] in out.split("most missed")[1]
    assert leaderboard_cli.main(["--agreement"]) == 2
    assert "needs --dataset" in capsys.readouterr().err
    assert leaderboard_cli.main(["--agreement", "--dataset", "nothing-here"]) == 2
    assert "at least two runs" in capsys.readouterr().err


def test_a_run_is_offered_for_pairing_with_every_run_scored_on_one_of_its_sets(tmp_path):
    def run(run_id, dataset, sources=None, **extra):
        manifest = {"dataset": dataset, **({"sources": sources} if sources else {}), **extra}
        return store.RunRecord(run_id=run_id, path=tmp_path / run_id, manifest=manifest)

    mine = run("mine", "a+b", ["a", "b"])
    on_b, on_c = run("peer-b", "b"), run("other-c", "c")
    gpu = run("gpu-a", "a", origin=store.runs.REFERENCE_ORIGIN + "a")  # tables only
    answered = run("gpu-b", "b", origin=store.runs.REFERENCE_ORIGIN + "b")
    answered.predictions = pd.DataFrame({"rel": ["1.jpg"], "subset": ["test"], "label": ["sad"],
                                         "pred": ["sad"]})  # its per-image answers came back
    offered = tables.pairing_candidates([mine], [mine, on_b, on_c, gpu, answered])
    assert [r.run_id for r in offered] == ["mine", "peer-b", "gpu-b"]
    assert tables.pairing_candidates([], [mine, on_b]) == []
