"""Many runs on the same images: which images they all miss, and what their vote would score.

An image that every run misses, whatever its architecture, recipe or training data, is a hard
face or a questionable label. How many such images a split holds says how far any of these
models is from a target; the images themselves are worth a look (data.md: label noise).
"""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from emotion_core.evaluation import significance

KEY = ["source", "subset", "item"]
IMAGE_COLUMNS = [*KEY, "rel", "label", "missed", "runs", "said_instead"]
SUMMARY_COLUMNS = ["source", "images", "runs", "best_run_accuracy", "majority_right",
                   "any_right", "missed_by_all"]


def answers(predictions: Mapping[str, pd.DataFrame], datasets: Mapping[str, str],
            subset: str) -> pd.DataFrame:
    """{run id: predictions.csv} -> one row per image of `subset` that every run answered:
    its key, `rel` (as the first run names it), label and one column per run with its answer.

    `datasets` gives each run's dataset (to key runs on one set and on several alike). Raises
    ValueError for fewer than two runs or when two runs label an image differently."""
    if len(predictions) < 2:
        raise ValueError("pick at least two runs: agreement needs several answers per image")
    answered, labels = [], []
    for run_id, table in predictions.items():
        table = table[table["subset"] == subset]
        keyed = significance.keyed(table, datasets[run_id])
        keyed = keyed.assign(rel=table["rel"].astype(str)).set_index(KEY)
        if not answered:
            answered.append(keyed[["rel", "label"]])
        answered.append(keyed["pred"].rename(run_id))
        labels.append(keyed["label"].rename(run_id))
    # one join for all runs (a merge per run cost seconds with 20 runs on the page's reruns)
    label = pd.concat(labels, axis=1, join="inner")
    bad = label.ne(label.iloc[:, 0], axis=0).any(axis=1)
    if bad.any():
        key, row = next(iter(label[bad].iterrows()))
        other = row[row != row.iloc[0]].iloc[0]
        raise ValueError(f"runs label {key[0]}/{key[2]} differently ({row.iloc[0]} vs {other}); "
                         "they answer different questions")
    merged = pd.concat(answered, axis=1, join="inner").reset_index()
    return merged[[*KEY, "rel", "label", *predictions]]


def hardest(table: pd.DataFrame, runs: list[str]) -> pd.DataFrame:
    """The images of an `answers` table, most missed first: how many of the runs missed each
    (`missed` of `runs`) and the wrong answer given most often (`said_instead`, "" if none)."""
    right = table[runs].eq(table["label"], axis=0)
    out = table[[*KEY, "rel", "label"]].copy()
    out["missed"] = (~right).sum(axis=1).astype(int)
    out["runs"] = len(runs)
    wrong = table[runs].where(~right)
    classes = sorted({str(a) for a in pd.unique(wrong.to_numpy().ravel()) if pd.notna(a)})
    if classes:  # per image, how often each wrong answer was given; the commonest wins
        counts = pd.concat({c: wrong.eq(c).sum(axis=1) for c in classes}, axis=1)
        out["said_instead"] = counts.idxmax(axis=1).where(counts.max(axis=1) > 0, "")
    else:
        out["said_instead"] = ""
    return out.sort_values(["missed", "source", "item"], ascending=[False, True, True],
                           kind="stable").reset_index(drop=True)[IMAGE_COLUMNS]


def summary(table: pd.DataFrame, runs: list[str]) -> pd.DataFrame:
    """Per set (and all sets, when there are several): images, runs, the best single run's
    accuracy, the share right by more than half of the runs, by at least one, and the number
    missed by every run."""
    right = table[runs].eq(table["label"], axis=0)
    parts = [("all", right)] if table["source"].nunique() > 1 else []
    parts += [(str(s), right[table["source"] == s]) for s in sorted(table["source"].unique())]
    rows = [{"source": name, "images": len(part), "runs": len(runs),
             "best_run_accuracy": float(part.mean().max()),
             "majority_right": float((part.sum(axis=1) * 2 > len(runs)).mean()),
             "any_right": float(part.any(axis=1).mean()),
             "missed_by_all": int((~part.any(axis=1)).sum())} for name, part in parts]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
