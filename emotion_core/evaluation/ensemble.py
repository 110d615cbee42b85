"""Ensembles of stored runs: (weighted) probability averaging and greedy selection on val.

Ensembles are built from the members' stored per-image probabilities (predictions.csv), so no
model is re-run. Members must share the split (same split hash, hence the same val/test images)
and the class list, otherwise the average would mix different questions; such sets are refused.
An ensemble is stored like a run (kind "ensemble", members listed, no weights file).
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from emotion_core import store
from emotion_core.evaluation import calibration
from emotion_core.evaluation import metrics as ev
from emotion_core.evaluation.inference import run_temperature
from emotion_core.models import STUDY_ENSEMBLE
from emotion_core.store import reference

KEY = ["subset", "rel"]


class EnsembleError(ValueError):
    """Runs that cannot be combined (different split, classes or images), or a bad request."""


def average_probs(tables: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of aligned probability tables (weights normalised to sum 1)."""
    if not tables:
        raise EnsembleError("an ensemble needs at least one member")
    stack = np.stack([np.asarray(t, dtype=np.float64) for t in tables])
    w = np.ones(len(tables)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(tables),) or (w < 0).any() or w.sum() <= 0:
        raise EnsembleError(f"weights must be {len(tables)} non-negative numbers, not all zero")
    return np.tensordot(w / w.sum(), stack, axes=1)


def check_compatible(records: Sequence[store.RunRecord]) -> tuple[list[str], str]:
    """The shared (classes, split hash) of `records`, or an EnsembleError naming the odd one."""
    if not records:
        raise EnsembleError("an ensemble needs at least one member run")
    ref = records[0].manifest
    for rec in records[1:]:
        m = rec.manifest
        if list(m.get("classes", [])) != list(ref.get("classes", [])):
            raise EnsembleError(f"run '{rec.run_id}' has classes {m.get('classes')} but "
                                f"'{records[0].run_id}' has {ref.get('classes')}; cannot ensemble")
        if m.get("split_hash") != ref.get("split_hash"):
            raise EnsembleError(f"run '{rec.run_id}' was trained on a different split "
                                f"({m.get('dataset')}, split {m.get('split_hash')}) than "
                                f"'{records[0].run_id}' ({ref.get('dataset')}, split "
                                f"{ref.get('split_hash')}); cannot ensemble")
    return list(ref["classes"]), str(ref.get("split_hash"))


def _load_member(run_id: str, references: bool) -> store.RunRecord:
    if references and not store.paths.run_dir(run_id).is_dir():
        rec = reference.find_reference_run(run_id)
        if rec is not None:
            return rec
    return store.load_run(run_id)


def load_members(run_ids: Sequence[str], *, references: bool = False) -> list[store.RunRecord]:
    """The member runs, loaded; with `references`, a run not in this store may be a reference
    set's (tables only: fine for scoring answers, never for a stored ensemble, whose members
    Predict loads with their weights)."""
    if len(set(run_ids)) != len(run_ids):
        raise EnsembleError(f"duplicate member runs in {list(run_ids)}")
    records = [_load_member(r, references) for r in run_ids]
    for rec in records:
        if rec.is_ensemble:
            raise EnsembleError(f"run '{rec.run_id}' is itself an ensemble; list its members instead")
    return records


def aligned_probs(records: Sequence[store.RunRecord],
                  classes: Sequence[str]) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Members' probability tables in one common row order (subset, rel), with labels."""
    base = records[0].predictions.sort_values(KEY).reset_index(drop=True)
    tables = []
    for rec in records:
        df = rec.predictions.sort_values(KEY).reset_index(drop=True)
        if len(df) != len(base) or not (df[KEY].to_numpy() == base[KEY].to_numpy()).all():
            raise EnsembleError(f"run '{rec.run_id}' has predictions for different images than "
                                f"'{records[0].run_id}'; cannot ensemble")
        if not (df["label"].to_numpy() == base["label"].to_numpy()).all():
            raise EnsembleError(f"run '{rec.run_id}' labels the same images differently")
        tables.append(ev.probs_from_predictions(df, classes))
    # members trained on several sets say which set each image is from
    cols = ["rel", "subset", "label"] + (["source"] if "source" in base.columns else [])
    return base[cols], tables


def _label_indices(frame: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return frame["label"].map(index).to_numpy(dtype=np.int64)


def _subset_score(frame: pd.DataFrame, probs: np.ndarray, classes: Sequence[str],
                  subset: str, metric: str) -> float:
    sel = (frame["subset"] == subset).to_numpy()
    if not sel.any():
        why = " (a refit trained on val and keeps no val answers)" if subset == "val" else ""
        raise EnsembleError(f"member predictions have no '{subset}' rows to score on{why}")
    y = _label_indices(frame, classes)[sel]
    return float(ev.compute_metrics(y, probs[sel], classes)[metric])


def greedy_subset(run_ids: Sequence[str], *, metric: str = "macro_f1",
                  max_members: int | None = None) -> list[str]:
    """Forward selection on validation only: start from the best single run, add the run that
    most improves the averaged ensemble's val `metric`, stop when nothing improves it."""
    records = load_members(run_ids)
    classes, _ = check_compatible(records)
    frame, tables = aligned_probs(records, classes)
    scores = [_subset_score(frame, t, classes, "val", metric) for t in tables]
    chosen = [int(np.argmax(scores))]
    best = scores[chosen[0]]
    limit = max_members or len(records)
    while len(chosen) < limit:
        trials = {i: _subset_score(frame, average_probs([tables[j] for j in chosen + [i]]),
                                   classes, "val", metric)
                  for i in range(len(records)) if i not in chosen}
        if not trials:
            break
        i, score = max(trials.items(), key=lambda kv: kv[1])
        if score <= best + 1e-12:
            break
        chosen.append(i)
        best = score
    return [records[i].run_id for i in chosen]


def mean_scores(run_ids: Sequence[str]) -> pd.DataFrame:
    """How the equal-weight mean of stored runs (what Predict computes) scores, without storing
    it: one row per subset (val, then test) and set, each subset's all-sets row first
    (images, right, accuracy, macro-F1). Members may be reference-set runs (their stored answers
    are all the mean needs); a calibrated member's answers are scaled by its temperature first,
    as Predict's are."""
    records = load_members(run_ids, references=True)
    classes, _ = check_compatible(records)
    frame, tables = aligned_probs(records, classes)
    probs = average_probs([calibration.scale(t, run_temperature(r.manifest))
                           for r, t in zip(records, tables, strict=True)])
    y = _label_indices(frame, classes)
    sources = frame["source"] if "source" in frame.columns else None
    rows = []
    for subset in ("val", "test"):
        sel = (frame["subset"] == subset).to_numpy()
        parts = [("all sets" if sources is not None else "", sel)]
        if sources is not None:
            parts += [(str(src), sel & (sources == src).to_numpy())
                      for src in sorted(sources[sel].unique())]
        for name, part in parts:
            if part.any():
                m = ev.compute_metrics(y[part], probs[part], classes)
                right = int((probs[part].argmax(1) == y[part]).sum())
                rows.append({"subset": subset, "set": name, "images": int(part.sum()),
                             "right": right, "accuracy": m["accuracy"],
                             "macro_f1": m["macro_f1"]})
    if not rows:
        raise EnsembleError("the runs' predictions hold no val or test images")
    return pd.DataFrame(rows)


def default_members(dataset: str, *, models: Sequence[str] = STUDY_ENSEMBLE) -> list[str]:
    """The newest run of each of `models` on `dataset` (the study's pair by default)."""
    runs, _ = store.list_runs()
    out = []
    for name in models:
        cands = [r for r in runs if r.manifest.get("kind", "model") == "model"
                 and r.manifest.get("model") == name and r.manifest.get("dataset") == dataset]
        if not cands:
            raise EnsembleError(f"no stored run of '{name}' on dataset '{dataset}' to ensemble; "
                                f"train it first")
        out.append(max(cands, key=lambda r: str(r.manifest.get("created", ""))).run_id)
    return out


def build_ensemble(run_ids: Sequence[str], *, weights: Sequence[float] | str | None = None,
                   run_id: str | None = None, label: str = "average") -> str:
    """Average members' probabilities, evaluate on val/test, store as a run; returns its id.

    weights: None (plain mean), explicit numbers, or "val_f1" (proportional to each member's
    validation macro-F1 — validation only, so test numbers stay honest)."""
    records = load_members(run_ids)
    classes, split = check_compatible(records)
    frame, tables = aligned_probs(records, classes)
    if isinstance(weights, str):
        if weights != "val_f1":
            raise EnsembleError(f"unknown weighting '{weights}'; use 'val_f1' or numbers")
        weights = [_subset_score(frame, t, classes, "val", "macro_f1") for t in tables]
    probs = average_probs(tables, weights)
    y = _label_indices(frame, classes)
    preds = ev.predictions_table(frame["rel"], frame["subset"], y, probs, classes)
    metrics: dict[str, Any] = {"classes": classes}
    conf_parts = []
    for subset in ("val", "test"):
        sel = (frame["subset"] == subset).to_numpy()
        if sel.any():
            metrics[subset] = ev.compute_metrics(y[sel], probs[sel], classes)
            conf = ev.confusion_table(y[sel], probs[sel].argmax(1), classes)
            conf.insert(0, "subset", subset)
            conf_parts.append(conf)
    if "source" in frame.columns:  # each set's own test split, as its members report it
        preds, metrics["by_source"] = ev.split_by_source(
            preds, dict(zip(frame["rel"], frame["source"], strict=True)), classes)
    ms = [r.manifest for r in records]
    hs = [m.get("headline", {}) for m in ms]

    def total(key: str) -> float | None:
        vals = [h.get(key) for h in hs]
        return None if any(v is None for v in vals) else float(sum(vals))

    member_models = [m["model"] for m in ms]
    name = "ensemble(" + "+".join(member_models) + ")"
    run_id = run_id or store.new_run_id(f"{ms[0]['dataset']}-ensemble-{'-'.join(member_models)}")
    val, test = metrics.get("val", {}), metrics.get("test", {})
    w = None if weights is None else [float(x) for x in np.asarray(weights) / np.sum(weights)]
    profiles = {m.get("profile") for m in ms}
    manifest = {
        "kind": "ensemble", "run_id": run_id, "model": name, "members": [r.run_id for r in records],
        "member_models": member_models, "weights": w, "method": label,
        "dataset": ms[0]["dataset"], "dataset_root": ms[0].get("dataset_root"), "classes": classes,
        "split_hash": split, "weights_source": " + ".join(m.get("weights_source", "?") for m in ms),
        "pretrained_requested": any(m.get("pretrained_requested") for m in ms),
        "profile": profiles.pop() if len(profiles) == 1 else "mixed", "config": None,
        "image_size": [m.get("image_size") for m in ms], "mean": None, "std": None,
        "git_commit": ms[0].get("git_commit"), "git_changed": ms[0].get("git_changed"),
        "created": datetime.now().isoformat(timespec="seconds"),
        "timings": {"train_seconds": total("train_seconds")},
        "headline": {"val_accuracy": val.get("accuracy"), "val_macro_f1": val.get("macro_f1"),
                     "test_accuracy": test.get("accuracy"), "test_macro_f1": test.get("macro_f1"),
                     "val_ece": val.get("ece"), "params": total("params"), "flops": total("flops"),
                     "latency_ms": total("latency_ms"), "train_seconds": total("train_seconds"),
                     "epochs_run": None},
    }
    if "by_source" in metrics:
        manifest["headline"]["test_accuracy_by_source"] = ev.test_accuracy_by_source(
            metrics["by_source"])
    store.save_run(run_id, manifest=manifest, metrics=metrics,
                       history=pd.DataFrame(columns=store.HISTORY_COLUMNS),
                       confusion=pd.concat(conf_parts, ignore_index=True), predictions=preds)
    return run_id
