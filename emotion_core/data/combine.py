"""Several prepared datasets as one training set, each keeping its own cleaning and split.

`combine` concatenates the split tables of datasets prepared on their own (same classes), with
file paths made relative to the folder that holds all of them and a `source` column naming the
set, so the decode-once cache, training and evaluation read it like any dataset, and evaluation
can report each set's test split separately. Exact copies of one picture across sets (same
decoded pixels or same bytes, from each set's index) are resolved like duplicates inside a set:
the copy in the most held-out subset survives (test > val > train); copies with different
labels are all dropped from train and val. The combination is stored like a prepared dataset.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from emotion_core import store
from emotion_core.data.layout import SPLITS
from emotion_core.data.prepare import (
    SPLIT_COLUMNS,
    PreparedDataset,
    check_name,
    class_weights,
    load_prepared,
    open_folder,
)

SOURCE = "source"
_HELD_OUT = {s: i for i, s in enumerate(SPLITS)}  # train 0 < val 1 < test 2


def combined_name(names: list[str]) -> str:
    return check_name("+".join(names))


def _fingerprints(ds: PreparedDataset) -> pd.Series:
    """rel -> pixel hash (bytes hash where the pixels were not hashed), from the set's index."""
    try:
        index = store.load_dataset_table(ds.name, "index")
    except FileNotFoundError:
        return pd.Series(dtype=object)
    key = index["pixel_sha1"].fillna("").astype(str)
    key = key.where(key != "", index["sha1"].fillna("").astype(str))
    return pd.Series(key.to_numpy(), index=index["rel"].astype(str).to_numpy())


def _cross_duplicates(split: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """(keep mask, report rows) for exact copies that sit in different sets."""
    keep = pd.Series(True, index=split.index)
    rows = []
    copies = split[split["fingerprint"] != ""].groupby("fingerprint")
    for _, group in copies:
        if group[SOURCE].nunique() < 2:
            continue  # copies inside one set were resolved by that set's cleaning
        conflict = group["label"].nunique() > 1
        best = group["subset"].map(_HELD_OUT).idxmax()
        for i, row in group.iterrows():
            held = row["subset"] == "test"
            drop = not held and (conflict or i != best)
            if i == best and not conflict:
                continue
            keep[i] = keep[i] and not drop
            rows.append({"file": row["rel"], "split": row["subset"], "label": row["label"],
                         "issue": "label_conflict" if conflict else "duplicate_across_sets",
                         "action": "dropped" if drop else "flagged",
                         "detail": f"same picture in {', '.join(sorted(set(group[SOURCE])))}"})
    return keep, pd.DataFrame(rows, columns=["file", "split", "label", "issue", "action", "detail"])


def combine(datasets: list[PreparedDataset]) -> PreparedDataset:
    """One dataset made of `datasets` (at least two, same classes); stored under "a+b"."""
    if len(datasets) < 2:
        raise ValueError("combine needs at least two prepared datasets")
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise ValueError(f"a dataset is listed twice: {names}")
    classes = datasets[0].classes
    for d in datasets[1:]:
        if set(d.classes) != set(classes):
            raise ValueError(f"dataset '{d.name}' has classes {d.classes} but '{names[0]}' has "
                             f"{classes}; only sets with the same classes can train together")
    root = Path(os.path.commonpath([str(Path(d.root).resolve()) for d in datasets]))
    parts = []
    for d in datasets:
        part = d.split.copy()
        prints = _fingerprints(d)
        part["fingerprint"] = part["rel"].map(prints).fillna("")
        part["rel"] = [os.path.relpath(Path(d.root) / r, root) for r in part["rel"]]
        part[SOURCE] = d.name
        parts.append(part)
    split = pd.concat(parts, ignore_index=True)
    keep, report_rows = _cross_duplicates(split)
    split = split[keep][[*SPLIT_COLUMNS, SOURCE]].reset_index(drop=True)
    name = combined_name(names)
    weights = class_weights(split.loc[split["subset"] == "train", "label"], classes)
    report = {
        "name": name, "root": str(root), "classes": list(classes), "sources": [
            {"name": d.name, "root": str(d.root), "val_source": d.report.get("val_source"),
             "test_source": d.report.get("test_source")} for d in datasets],
        "subset_counts": {s: {c: int(((split["subset"] == s) & (split["label"] == c)).sum())
                              for c in classes} for s in SPLITS if (split["subset"] == s).any()},
        "issues": report_rows["issue"].value_counts().to_dict(), "dropped": int((~keep).sum()),
        "class_weights": {c: float(w) for c, w in zip(classes, weights, strict=True)},
        "warnings": [w for d in datasets for w in d.report.get("warnings", [])],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    store.save_dataset_table(name, "split", split)
    store.save_dataset_table(name, "cleaning", report_rows)
    store.save_report(name, report)
    return PreparedDataset(name=name, root=root, classes=list(classes), split=split, report=report)


def sources_of(ds: PreparedDataset) -> list[str]:
    """The sets a dataset is made of (itself for an ordinary one)."""
    if SOURCE in ds.split.columns:
        return list(dict.fromkeys(ds.split[SOURCE].astype(str)))
    return [ds.name]


def load_combined(names: list[str]) -> PreparedDataset:
    """Re-combine sets prepared earlier (their stored splits, never recomputed)."""
    return combine([load_prepared(n) for n in names])


def open_sets(folders: list[str | Path], name: str | None = None, *, detect_faces: bool = False,
              progress: bool = True) -> PreparedDataset:
    """Several image folders as one dataset named 'a+b': each prepared on first use (with face
    boxes when asked) and combined. `name` is refused: each set keeps its folder's name."""
    if name is not None:
        raise ValueError("--name names one dataset; with several --data each keeps its "
                         "folder's name and the combination is named 'a+b'")
    return combine([open_folder(f, detect_faces=detect_faces, progress=progress)
                    for f in folders])
