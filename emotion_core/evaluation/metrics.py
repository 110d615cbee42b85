"""Metrics from probabilities: accuracy, loss, macro-F1, per-class P/R/F1, top-2, calibration,
and whether a model answers one class for every image (a collapsed model).

Every score in a run's metrics.json and every leaderboard column comes from `compute_metrics`,
so training, ensembles, cross-dataset evaluation and the reference models are scored identically.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

ECE_BINS = 15  # equal-width confidence bins for expected calibration error


# ---------------------------------------------------------------------------------------------
# Metrics


def ece(probs: np.ndarray, y_true: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error: sum over confidence bins of |accuracy - confidence| * weight."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            total += abs(correct[sel].mean() - conf[sel].mean()) * sel.mean()
    return float(total)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return m


def confusion_table(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """Rows = true class, columns = predicted class (counts), as stored in confusion.csv."""
    m = confusion_matrix(y_true, y_pred, len(classes))
    df = pd.DataFrame(m, columns=list(classes))
    df.insert(0, "true", list(classes))
    return df


CONSTANT_MIN_IMAGES = 30  # fewer images cannot tell a collapsed model from a weak one


def constant_answer(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> str | None:
    """The class a model gives every image of a subset when it never gives another, on at least
    CONSTANT_MIN_IMAGES images of at least two true classes: a model whose training collapsed
    to a constant output (from scratch at too high a rate, a plain VGG's dead start) or never
    started, whose scores are a fixed guess's. None when it answers two classes or more, or
    the subset cannot tell."""
    m = np.asarray(confusion, dtype=np.int64)
    if m.ndim != 2 or m.shape != (len(classes), len(classes)) or m.sum() < CONSTANT_MIN_IMAGES:
        return None
    answered, present = np.flatnonzero(m.sum(axis=0)), np.flatnonzero(m.sum(axis=1))
    return classes[int(answered[0])] if len(answered) == 1 and len(present) >= 2 else None


def run_constant_answer(metrics: Mapping[str, Any]) -> tuple[str, str] | None:
    """(subset, class) when a run's model gives that class to every image of its validation
    split (its test split for a refit, which has none), from its metrics (metrics.json)."""
    for subset in ("val", "test"):
        confusion = (metrics.get(subset) or {}).get("confusion")
        if confusion is not None:  # the first subset the run has decides
            answer = constant_answer(confusion, metrics.get("classes") or [])
            return None if answer is None else (subset, answer)
    return None


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, NLL loss, macro-F1, per-class P/R/F1, top-2 accuracy, ECE and the confusion."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(classes)
    if probs.ndim != 2 or probs.shape[1] != k or len(probs) != len(y_true):
        raise ValueError(f"probabilities of shape {probs.shape} do not match {len(y_true)} labels "
                         f"and {k} classes")
    n = len(y_true)
    pred = probs.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    m = confusion_matrix(y_true, pred, k)
    per_class: dict[str, dict[str, float]] = {}
    f1s = []
    for i, c in enumerate(classes):
        tp, fp, fn = m[i, i], m[:, i].sum() - m[i, i], m[i, :].sum() - m[i, i]
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        per_class[c] = {"precision": float(p), "recall": float(r), "f1": float(f),
                        "support": int(m[i, :].sum())}
        if m[i, :].sum():  # classes absent from y_true do not drag macro-F1 to zero
            f1s.append(f)
    top_k = min(2, k)
    top2 = np.argsort(-probs, axis=1)[:, :top_k] if n else np.zeros((0, top_k), dtype=np.int64)
    p_true = probs[np.arange(n), y_true] if n else np.zeros(0)
    return {
        "n": int(n),
        "accuracy": float((pred == y_true).mean()) if n else float("nan"),
        "loss": float(-np.log(np.clip(p_true, 1e-12, 1.0)).mean()) if n else float("nan"),
        "macro_f1": float(np.mean(f1s)) if f1s else float("nan"),
        "top2_accuracy": float((top2 == y_true[:, None]).any(axis=1).mean()) if n else float("nan"),
        "ece": ece(probs, y_true),
        "per_class": per_class,
        "confusion": m.tolist(),
    }


def predictions_table(rels: Sequence[str], subsets: Sequence[str], y_true: np.ndarray,
                      probs: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """One row per image: rel, subset, label, pred, p_<class>... (predictions.csv)."""
    probs = np.asarray(probs, dtype=np.float64)
    df = pd.DataFrame({"rel": list(rels), "subset": list(subsets),
                       "label": [classes[i] for i in np.asarray(y_true, dtype=np.int64)],
                       "pred": [classes[i] for i in probs.argmax(axis=1)]})
    for i, c in enumerate(classes):
        df[f"p_{c}"] = probs[:, i]
    return df


def probs_from_predictions(df: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    missing = [f"p_{c}" for c in classes if f"p_{c}" not in df.columns]
    if missing:
        raise ValueError(f"predictions table lacks columns {', '.join(missing)}")
    return df[[f"p_{c}" for c in classes]].to_numpy(dtype=np.float64)


def split_by_source(predictions: pd.DataFrame, where: Mapping[str, str], classes: Sequence[str]
                    ) -> tuple[pd.DataFrame, dict[str, dict[str, dict[str, Any]]]]:
    """For a run on several sets: the predictions with a `source` column (each rel's set, from
    `where`) and each set's metrics per subset, so each set's own test split is reported."""
    out = predictions.copy()
    out.insert(2, "source", out["rel"].map(where))
    by_source = {str(src): metrics_by_subset(part.drop(columns="source"), classes)
                 for src, part in out.groupby("source", sort=False)}
    return out, by_source


def test_accuracy_by_source(by_source: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Each set's test accuracy, for a run's headline."""
    return {src: m["test"]["accuracy"] for src, m in by_source.items() if "test" in m}


def metrics_by_subset(pred_df: pd.DataFrame, classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """compute_metrics for each subset present in a predictions table."""
    index = {c: i for i, c in enumerate(classes)}
    out = {}
    for subset, part in pred_df.groupby("subset", sort=False):
        y = part["label"].map(index).to_numpy(dtype=np.int64)
        out[str(subset)] = compute_metrics(y, probs_from_predictions(part, classes), classes)
    return out
