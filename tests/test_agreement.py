"""Runs voting on the same images: the images all of them miss, and what their majority scores."""
from __future__ import annotations

import pandas as pd
import pytest

from emotion_core.evaluation import agreement


def _preds(rows: list[tuple[str, str, str, str]], *, source: bool = True) -> pd.DataFrame:
    """(rel, subset, label, pred) rows as predictions.csv writes them (a run on two sets names
    each row's source and starts rel with it)."""
    df = pd.DataFrame(rows, columns=["rel", "subset", "label", "pred"])
    if source:
        df.insert(2, "source", df["rel"].str.split("/").str[0])
    return df


LABELS = {"a/1.jpg": "happy", "a/2.jpg": "sad", "a/3.jpg": "angry", "b/1.jpg": "sad"}


def _run(answers: dict[str, str], subset: str = "test") -> pd.DataFrame:
    return _preds([(rel, subset, LABELS[rel], pred) for rel, pred in answers.items()])


def test_images_are_ranked_by_how_many_runs_miss_them_with_the_commonest_wrong_answer() -> None:
    runs = {
        "r1": _run({"a/1.jpg": "happy", "a/2.jpg": "angry", "a/3.jpg": "sad", "b/1.jpg": "sad"}),
        "r2": _run({"a/1.jpg": "happy", "a/2.jpg": "angry", "a/3.jpg": "happy", "b/1.jpg": "sad"}),
        "r3": _run({"a/1.jpg": "sad", "a/2.jpg": "happy", "a/3.jpg": "sad", "b/1.jpg": "sad"}),
    }
    table = agreement.answers(runs, dict.fromkeys(runs, "a+b"), "test")
    hard = agreement.hardest(table, list(runs)).set_index("rel")
    assert list(hard.index[:2]) == ["a/2.jpg", "a/3.jpg"]  # missed by 3, ties by name
    assert hard.loc["a/2.jpg", ["missed", "runs", "said_instead"]].tolist() == [3, 3, "angry"]
    assert hard.loc["a/3.jpg", "said_instead"] == "sad"  # 2 sad against 1 happy
    assert hard.loc["a/1.jpg", "missed"] == 1
    assert hard.loc["b/1.jpg", ["missed", "said_instead"]].tolist() == [0, ""]

    summary = agreement.summary(table, list(runs)).set_index("source")
    assert list(summary.index) == ["all", "a", "b"]
    a = summary.loc["a"]
    assert a["images"] == 3 and a["runs"] == 3 and a["missed_by_all"] == 2
    assert a["majority_right"] == pytest.approx(1 / 3)  # only a/1.jpg is right by 2 of 3
    assert a["any_right"] == pytest.approx(1 / 3)
    assert a["best_run_accuracy"] == pytest.approx(1 / 3)  # r1 and r2 get a/1.jpg, r3 none
    assert summary.loc["all", "images"] == 4 and summary.loc["all", "missed_by_all"] == 2
    assert summary.loc["b", "majority_right"] == 1.0


def test_a_majority_needs_more_than_half_of_the_runs() -> None:
    runs = {"r1": _run({"a/1.jpg": "happy"}), "r2": _run({"a/1.jpg": "sad"})}
    summary = agreement.summary(agreement.answers(runs, dict.fromkeys(runs, "a+b"), "test"),
                                list(runs))
    assert summary.loc[0, ["majority_right", "any_right", "missed_by_all"]].tolist() == [0.0, 1.0, 0]


def test_only_the_images_every_run_answered_on_the_split_count() -> None:
    runs = {
        "both": _preds([("a/1.jpg", "test", "happy", "happy"), ("a/2.jpg", "test", "sad", "sad"),
                        ("a/3.jpg", "val", "angry", "angry")]),
        "one_set": _preds([("1.jpg", "test", "happy", "sad"), ("3.jpg", "val", "angry", "sad")],
                          source=False),  # a run on set `a` alone: rel without the set's name
    }
    table = agreement.answers(runs, {"both": "a+b", "one_set": "a"}, "test")
    assert table["rel"].tolist() == ["a/1.jpg"]  # named as the first run names it
    assert table[["both", "one_set"]].iloc[0].tolist() == ["happy", "sad"]
    assert agreement.answers(runs, {"both": "a+b", "one_set": "a"}, "val")["item"].tolist() == ["3.jpg"]


def test_runs_that_label_an_image_differently_or_a_single_run_are_refused() -> None:
    one = _run({"a/1.jpg": "happy"})
    other = _preds([("a/1.jpg", "test", "sad", "sad")])
    with pytest.raises(ValueError, match="differently"):
        agreement.answers({"r1": one, "r2": other}, {"r1": "a+b", "r2": "a+b"}, "test")
    with pytest.raises(ValueError, match="at least two runs"):
        agreement.answers({"r1": one}, {"r1": "a+b"}, "test")
