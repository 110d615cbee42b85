"""Ensemble arithmetic, refusal of incompatible members, greedy selection on validation only."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from emotion_core import store
from emotion_core.evaluation import ensemble

CLASSES = ["angry", "happy", "sad"]
VAL_Y = [0, 1, 2, 0]
TEST_Y = [1, 2]


def _store(run_id: str, val_p, test_p, *, split: str = "s1", classes=CLASSES, model="resnet34",
           rels=None, sources=None) -> str:
    rels = rels or [f"v{i}.png" for i in range(len(val_p))] + [f"t{i}.png" for i in range(len(test_p))]
    probs = np.vstack([val_p, test_p])
    y = VAL_Y + TEST_Y
    df = pd.DataFrame({"rel": rels, "subset": ["val"] * len(val_p) + ["test"] * len(test_p),
                       "label": [classes[i] for i in y], "pred": [classes[i] for i in probs.argmax(1)]})
    if sources is not None:  # a run on several sets stores each image's set
        df.insert(2, "source", sources)
    for i, c in enumerate(classes):
        df[f"p_{c}"] = probs[:, i]
    manifest = {"kind": "model", "model": model, "dataset": "d", "classes": list(classes),
                "split_hash": split, "weights_source": "scratch", "profile": "quick",
                "created": run_id, "headline": {"params": 10, "flops": 5, "latency_ms": 1.0,
                                                "train_seconds": 2.0}}
    store.save_run(run_id, manifest=manifest, metrics={}, history=pd.DataFrame(columns=["epoch"]),
                       confusion=pd.DataFrame(columns=["true"]), predictions=df, state_dict={"w": torch.zeros(1)})
    return run_id


A_VAL = [[.8, .1, .1], [.1, .8, .1], [.1, .1, .8], [.1, .8, .1]]  # 3/4 right
B_VAL = [[.6, .2, .2], [.5, .3, .2], [.4, .3, .3], [.9, .05, .05]]  # 2/4 right, complements A
C_VAL = [[.1, .8, .1], [.1, .1, .8], [.8, .1, .1], [.1, .1, .8]]  # all wrong on val
TEST_RIGHT = [[.1, .8, .1], [.1, .1, .8]]
TEST_WRONG = [[.8, .1, .1], [.8, .1, .1]]


def test_average_and_weighted_average_of_known_tables():
    a, b = np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([[0.0, 1.0], [0.1, 0.9]])
    np.testing.assert_allclose(ensemble.average_probs([a, b]), [[0.5, 0.5], [0.3, 0.7]])
    np.testing.assert_allclose(ensemble.average_probs([a, b], [3, 1]), [[0.75, 0.25], [0.4, 0.6]])
    with pytest.raises(ensemble.EnsembleError, match="weights"):
        ensemble.average_probs([a, b], [1, -1])


def test_build_ensemble_stores_a_run_with_averaged_probabilities():
    _store("a", A_VAL, TEST_WRONG)
    _store("b", B_VAL, TEST_RIGHT, model="efficientnet_b4")
    rid = ensemble.build_ensemble(["a", "b"])
    rec = store.load_run(rid)
    assert rec.is_ensemble and rec.manifest["members"] == ["a", "b"]
    assert not rec.weights_path.exists()
    val = rec.predictions[rec.predictions["subset"] == "val"].sort_values("rel")
    expected = (np.array(A_VAL) + np.array(B_VAL)) / 2
    np.testing.assert_allclose(val[[f"p_{c}" for c in CLASSES]].to_numpy(), expected)
    assert rec.manifest["headline"]["val_accuracy"] == 1.0
    assert rec.manifest["headline"]["params"] == 20
    weighted = store.load_run(ensemble.build_ensemble(["a", "b"], weights=[1, 3], run_id="w"))
    val = weighted.predictions[weighted.predictions["subset"] == "val"].sort_values("rel")
    np.testing.assert_allclose(val[[f"p_{c}" for c in CLASSES]].to_numpy(),
                               0.25 * np.array(A_VAL) + 0.75 * np.array(B_VAL))


def test_an_ensemble_of_runs_on_several_sets_reports_each_sets_test_split():
    # two sets, each with its own test image
    sources = ["x", "x", "y", "y", "x", "y"]
    _store("a", A_VAL, [[.1, .8, .1], [.1, .1, .8]], sources=sources)
    _store("b", B_VAL, [[.1, .3, .6], [.9, .05, .05]], sources=sources, model="efficientnet_b4")
    rec = store.load_run(ensemble.build_ensemble(["a", "b"]))
    by = rec.metrics["by_source"]
    # mean on x's test image (happy): (.1, .55, .35) -> right; on y's (sad): (.5, .075, .425) -> wrong
    assert by["x"]["test"]["n"] == 1 and by["x"]["test"]["accuracy"] == 1.0
    assert by["y"]["test"]["accuracy"] == 0.0 and by["y"]["val"]["n"] == 2
    assert rec.manifest["headline"]["test_accuracy_by_source"] == {"x": 1.0, "y": 0.0}
    assert set(rec.predictions["source"]) == {"x", "y"}


def test_incompatible_members_are_refused():
    _store("a", A_VAL, TEST_WRONG)
    _store("other_split", B_VAL, TEST_RIGHT, split="s2")
    with pytest.raises(ensemble.EnsembleError, match="different split"):
        ensemble.build_ensemble(["a", "other_split"])
    _store("other_classes", B_VAL, TEST_RIGHT, classes=["angry", "happy", "calm"])
    with pytest.raises(ensemble.EnsembleError, match="classes"):
        ensemble.build_ensemble(["a", "other_classes"])
    _store("other_images", B_VAL, TEST_RIGHT, rels=[f"x{i}.png" for i in range(6)])
    with pytest.raises(ensemble.EnsembleError, match="different images"):
        ensemble.build_ensemble(["a", "other_images"])


def test_greedy_subset_uses_validation_only():
    _store("a", A_VAL, TEST_WRONG)
    _store("b", B_VAL, TEST_WRONG)
    _store("c", C_VAL, TEST_RIGHT)  # perfect on test, useless on val: must not be chosen
    assert ensemble.greedy_subset(["c", "b", "a"]) == ["a", "b"]


def test_default_members_pick_the_study_pair():
    _store("r", A_VAL, TEST_WRONG, model="resnet34")
    _store("e", B_VAL, TEST_WRONG, model="efficientnet_b4")
    assert ensemble.default_members("d") == ["r", "e"]
    with pytest.raises(ensemble.EnsembleError, match="no stored run"):
        ensemble.default_members("elsewhere")


def test_mean_scores_counts_the_means_right_answers_per_subset_and_set_without_storing(capsys):
    sources = ["x", "x", "y", "y", "x", "y"]
    _store("a", A_VAL, [[.1, .8, .1], [.1, .1, .8]], sources=sources)
    _store("b", B_VAL, [[.1, .3, .6], [.9, .05, .05]], sources=sources, model="efficientnet_b4")
    before = {r.run_id for r in store.list_runs()[0]}
    scores = ensemble.mean_scores(["a", "b"]).set_index(["subset", "set"])
    # val: the mean gets all 4 right (as the stored ensemble above); test: x's right, y's wrong
    assert scores.loc[("val", "all sets"), "right"] == 4 and scores.loc[("val", "x"), "images"] == 2
    assert scores.loc[("test", "x"), "right"] == 1 and scores.loc[("test", "y"), "right"] == 0
    assert scores.loc[("test", "all sets"), "accuracy"] == 0.5
    assert {r.run_id for r in store.list_runs()[0]} == before  # nothing stored
    from scripts import leaderboard
    assert leaderboard.main(["--mean", "a", "b"]) == 0
    assert "all sets" in capsys.readouterr().out
    assert leaderboard.main(["--mean", "a"]) == 2
    assert leaderboard.main(["--mean", "a", "nosuch"]) == 2


def test_mean_scores_reads_a_reference_sets_runs_but_a_stored_ensemble_refuses_them():
    # b's answers exist only in a reference set (tables of a GPU run whose weights stayed there)
    sources = ["x", "x", "y", "y", "x", "y"]
    _store("a", A_VAL, [[.1, .8, .1], [.1, .1, .8]], sources=sources)
    _store("b", B_VAL, [[.1, .3, .6], [.9, .05, .05]], sources=sources, model="efficientnet_b4")
    local = ensemble.mean_scores(["a", "b"])
    b = store.load_run("b")
    folder = store.paths.reference_dir() / "gpuset"
    folder.mkdir(parents=True)
    store.write_json(folder / store.paths.REFERENCE_MANIFESTS,
                     {"note": "made elsewhere", "runs": {"ref-b": dict(b.manifest, run_id="ref-b")}})
    store.write_csv(folder / "predictions.csv", b.predictions.assign(run_id="ref-b"))
    store.delete_run("b")
    pd.testing.assert_frame_equal(ensemble.mean_scores(["a", "ref-b"]), local)
    with pytest.raises(store.BrokenRunError, match="ref-b"):
        ensemble.build_ensemble(["a", "ref-b"])
    from scripts import leaderboard
    assert leaderboard.main(["--mean", "a", "ref-b"]) == 0
    assert leaderboard.main(["--mean", "a", "nosuch"]) == 2
