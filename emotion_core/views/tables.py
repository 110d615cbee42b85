"""Tables of runs the app shows (scores, costs, confusion, histories, cross-dataset and paired
comparisons), computed from the artifact store (pandas only: no torch, no Streamlit). A
dataset's own tables are in `dataset_tables`; which runs a page shows first, in `run_choice`.

Why here and not in the pages: the pages hold widgets and charts only; every number they show
comes from these functions, which the tests call directly too. Every run is labelled with the
weights source it really started from, so no accuracy is ever shown without it, and the labels of
the runs in one table are distinct (`labels.run_labels`), so no two runs merge in a chart.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from emotion_core import store
from emotion_core.evaluation import agreement, significance
from emotion_core.evaluation.metrics import run_constant_answer
from emotion_core.models import REGISTRY, STUDY_ENSEMBLE, STUDY_ENSEMBLE_ACCURACY
from emotion_core.views.labels import created_stamp, run_labels, weights_label

STUDY_NOTE = ("The study's own reported validation accuracies on its data (HES), not ours: "
              "ResNet-34 52%, EfficientNet-B4 76%, the from-scratch ViT 44%, the ResNet-34 + "
              "EfficientNet-B4 ensemble 84% and the pretrained Hugging Face ViT 96.9%. VGG-16 has "
              "no number: the study used it for feature maps.")

TABLE_COLUMNS = ["run_id", "model", "kind", "role", "weights_source", "dataset", "profile",
                 "val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1", "val_ece",
                 "params", "flops", "latency_ms", "train_seconds", "epochs_run"]
TRAINED_HERE = "trained here"


def run_role(manifest: Mapping[str, Any]) -> str:
    """Where a run's model learned: "trained here", "GPU reference (set, date, commit)" (or CPU),
    "bundled release model", or "external reference (<its training data>)" for a model trained
    elsewhere (kind "reference"), so no external number passes for one of ours."""
    role = _origin(manifest)
    if store.runs.is_refit(manifest):  # why its val columns are empty
        role += "; refit on train + val, so no val scores"
    return role


def commit_label(manifest: Mapping[str, Any]) -> str:
    """The run's code commit, short, marked when its checkout had uncommitted changes."""
    commit = str(manifest.get("git_commit") or "")[:8] or "commit unrecorded"
    return commit + (" + uncommitted changes" if manifest.get("git_changed") else "")


def _origin(manifest: Mapping[str, Any]) -> str:
    kind = manifest.get("kind", "model")
    ref_set = store.runs.reference_set_of(manifest)
    external = f"external reference ({manifest.get('trained_on') or 'data unknown'}"
    if ref_set is not None:  # made elsewhere (a lent GPU, a long CPU job); its tables committed
        made = created_stamp(manifest.get("created"))
        commit = commit_label(manifest)
        if kind == "reference":  # an external model's scores: never one of ours
            return f"{external}; tables of set {ref_set}, {made}, {commit})"
        return f"{store.runs.reference_kind(manifest)} (set {ref_set}, {made}, {commit})"
    if manifest.get("bundled_at"):
        return "bundled release model (see its model card)"
    if kind == "reference":
        return f"{external})"
    if kind == "ensemble":
        refs = sorted({str(REGISTRY[m].trained_on) for m in manifest.get("member_models") or []
                       if m in REGISTRY and not REGISTRY[m].trainable})
        return (f"ensemble with external reference ({', '.join(refs)})" if refs
                else f"ensemble of runs {TRAINED_HERE}")
    return TRAINED_HERE


def study_accuracy(model: str) -> float | None:
    """The study's reported validation accuracy for a registry model or its ensemble, if any."""
    if model == study_ensemble_name():
        return STUDY_ENSEMBLE_ACCURACY
    spec = REGISTRY.get(model)
    return spec.study_accuracy if spec is not None else None


def study_ensemble_name() -> str:
    """How a stored ensemble of the study's pair is named (`ensemble(resnet34+efficientnet_b4)`)."""
    return "ensemble(" + "+".join(STUDY_ENSEMBLE) + ")"


def comparison_table(records: list[store.RunRecord], dataset: str | None = None) -> pd.DataFrame:
    """One row per run: model, `role` (trained here or external reference, with its training
    data), weights source, val/test accuracy and macro-F1, ECE, cost, and `label`, the run's
    name among these runs (distinct per row)."""
    records = [r for r in records if not dataset or r.manifest.get("dataset") == dataset]
    labels = run_labels(records)
    rows = []
    for rec in records:
        m = rec.manifest
        row = {"run_id": rec.run_id, "model": m.get("model"), "kind": m.get("kind", "model"),
               "role": run_role(m), "weights_source": weights_label(m.get("weights_source")),
               "dataset": m.get("dataset"),
               "profile": m.get("profile")}
        row.update({k: v for k, v in (m.get("headline") or {}).items() if k in TABLE_COLUMNS})
        row["timed_on"] = timed_on(m)
        row["label"] = labels[rec.run_id]
        row["created"] = created_stamp(m.get("created"))
        row["study_val_accuracy"] = study_accuracy(str(m.get("model")))
        rows.append(row)
    df = pd.DataFrame(rows, columns=[*TABLE_COLUMNS, "timed_on", "label", "created",
                                     "study_val_accuracy"])
    return df.sort_values("val_macro_f1", ascending=False, na_position="last").reset_index(drop=True)


def constant_answers(records: list[store.RunRecord],
                     labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """{label: "'happy' for every val image"} for each run whose stored model gives one class to
    every image of its validation split (its test split for a refit, which has none;
    `metrics.run_constant_answer`): a training that collapsed or never started, whose row must not read as
    what its architecture can do. From metrics.json's confusion, so reference sets made before
    training checked for it are flagged too."""
    labels = labels or run_labels(records)
    out = {}
    for rec in records:
        if (constant := run_constant_answer(rec.metrics or {})) is not None:
            subset, answer = constant
            out[labels[rec.run_id]] = f"'{answer}' for every {subset} image"
    return out


def constant_answers_text(found: Mapping[str, str]) -> str:
    """One markdown warning for the runs `constant_answers` found."""
    lines = [f"- **{label}**: {what}" for label, what in found.items()]
    return ("These runs give one answer to every image they were scored on, so their scores are "
            "a constant guess's, not what their architecture can learn: their training "
            "collapsed or never started.\n" + "\n".join(lines))


def timed_on(manifest: Mapping[str, Any]) -> str | None:
    """Where and when a run's CPU latency was timed: "2 of 2 cores, 12-01" (torch threads of the
    CPU's cores; a reference run's is the machine it trained on), "sum of its members" for an
    ensemble, "not recorded" for a run timed before runs kept how; None when it shows no
    latency."""
    if (manifest.get("headline") or {}).get("latency_ms") is None:
        return None
    record = manifest.get("latency") or {}
    if manifest.get("kind") == "ensemble" and not record:
        return "sum of its members"
    if not record.get("threads") or not record.get("cores"):
        return "not recorded"  # timed before runs kept how
    day = created_stamp(record.get("measured_at"))[:5]  # these machines differ by day too
    return f"{record['threads']} of {record['cores']} cores" + (f", {day}" if day else "")


def timing_note(records: list[store.RunRecord]) -> str | None:
    """A sentence for runs whose shown CPU latencies were timed on CPUs of different sizes,
    None when they share one: a GPU host's 16 cores are not 2."""
    cores = sorted({int(r.manifest["latency"]["cores"]) for r in records
                    if (r.manifest.get("headline") or {}).get("latency_ms") is not None
                    and (r.manifest.get("latency") or {}).get("cores")})
    if len(cores) < 2:
        return None
    sizes = ", ".join(map(str, cores[:-1])) + f" and {cores[-1]}"
    return (f"CPU ms per image come from different machines here (CPUs of {sizes} cores): "
            "Compare's Cost table says where each run was timed.")


def bundled_vs_peers(records: list[store.RunRecord],
                     labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The bundled release models, then the external reference models (the peers), one row each:
    `label`, `role` ("bundled" or "peer"), test accuracy overall and on each source set's own
    test split (`<set> test` columns), and CPU latency with where it was timed. Empty without
    a bundled run.
    Rows keep that order: no ranking by a test score. `labels`: the names the page gives them."""
    bundled = [r for r in records if r.bundled]
    if not bundled:
        return pd.DataFrame()
    chosen = bundled + [r for r in records if r.is_reference]
    labels = labels or run_labels(chosen)
    heads = {r.run_id: r.manifest.get("headline") or {} for r in chosen}
    sets = sorted({s for h in heads.values() for s in (h.get("test_accuracy_by_source") or {})})
    rows = []
    for r in chosen:
        h = heads[r.run_id]
        by_set = h.get("test_accuracy_by_source") or {}
        rows.append({"label": labels[r.run_id], "role": "bundled" if r.bundled else "peer",
                     "test_accuracy": h.get("test_accuracy"),
                     **{f"{s} test": by_set.get(s) for s in sets},
                     "latency_ms": h.get("latency_ms"), "timed_on": timed_on(r.manifest)})
    out = pd.DataFrame(rows)
    scores = ["test_accuracy", *(f"{s} test" for s in sets)]  # None where a run lacks one
    out[scores] = out[scores].apply(pd.to_numeric, errors="coerce")
    return out


def study_table(ours: pd.DataFrame | None = None) -> pd.DataFrame:
    """The study's reported accuracy per model (VGG-16: none) beside our best validation accuracy."""
    names = [*REGISTRY, study_ensemble_name()]
    rows = []
    for model in names:
        reported = study_accuracy(model)
        if reported is None and not (model in REGISTRY and REGISTRY[model].study_feature_maps):
            continue  # a model the study did not use
        row: dict[str, Any] = {"model": model, "study's validation accuracy": reported,
                               "in the study": "feature maps" if reported is None else "classifier"}
        if ours is not None and len(ours):
            mine = ours[ours["model"] == model].sort_values("val_accuracy", ascending=False)
            row["our best validation accuracy"] = mine["val_accuracy"].iloc[0] if len(mine) else np.nan
            row["our weights"] = mine["weights_source"].iloc[0] if len(mine) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def per_class_long(records: list[store.RunRecord], subset: str = "val",
                   labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per-class precision/recall/F1 of every run on one subset (from metrics.json), with a
    `run` label column (for grouped bars); `labels`: the names the page gives these runs."""
    labels = labels or run_labels(records)
    rows = [{"run": labels[rec.run_id], "class": c, **v} for rec in records
            for c, v in (((rec.metrics or {}).get(subset) or {}).get("per_class") or {}).items()]
    return pd.DataFrame(rows, columns=["run", "class", "precision", "recall", "f1", "support"])


def history_long(records: list[store.RunRecord],
                 labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every run's training history stacked, with a `run` label column (for overlaid curves)."""
    labels = labels or run_labels(records)
    parts = []
    for rec in records:
        if rec.history is not None and len(rec.history):
            h = rec.history.copy()
            h.insert(0, "run", labels[rec.run_id])
            parts.append(h)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["run", "epoch"])


def subsets_of(rec: store.RunRecord) -> list[str]:
    if rec.predictions is None or "subset" not in rec.predictions:
        return []
    present = set(rec.predictions["subset"].astype(str))
    return [s for s in ("val", "test", "train") if s in present]


def confusion(rec: store.RunRecord, subset: str, *, normalise: bool = False) -> pd.DataFrame:
    """Rows = true class, columns = predicted class, from the per-image predictions."""
    classes = list(rec.manifest["classes"])
    p = rec.predictions
    p = p[p["subset"] == subset] if p is not None else pd.DataFrame(columns=["label", "pred"])
    m = pd.crosstab(pd.Categorical(p["label"], classes), pd.Categorical(p["pred"], classes),
                    dropna=False).reindex(index=classes, columns=classes, fill_value=0)
    m.index.name, m.columns.name = "true", "predicted"
    if normalise:
        m = m.div(m.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    return m


def cell_examples(rec: store.RunRecord, subset: str, true: str, pred: str,
                  limit: int = 24) -> pd.DataFrame:
    """The images behind one confusion cell, least confident first for errors."""
    p = rec.predictions
    sel = p[(p["subset"] == subset) & (p["label"] == true) & (p["pred"] == pred)].copy()
    sel["p_pred"] = sel[f"p_{pred}"] if f"p_{pred}" in sel else np.nan
    return sel.sort_values("p_pred", ascending=(true == pred)).head(limit).reset_index(drop=True)


def stored_faithfulness(metrics: dict[str, Any], method: str, layer: str | None = None
                        ) -> list[tuple[str, float, str]]:
    """A run's stored faithfulness of one map method, as (label, value, explanation) rows.

    Written by `python -m scripts.explain --run ID --faithfulness [--cam-layers stages]`: the
    mean over held-out images of the mask energy share (synthetic faces) or the
    deletion/insertion AUCs (real faces), explained beside the level a random map reaches.
    `layer`: a CAM layer other than the default (scores from the per-layer sweep).
    """
    scores = metrics.get("faithfulness", {}) if isinstance(metrics, dict) else {}
    if layer:  # the sweep stores each layer like a result of its own
        scores = {k: {**v, **v.get("by_layer", {}).get(layer, {"methods": {}}),
                      "cam_grid": (v.get("by_layer", {}).get(layer) or {}).get("grid")}
                  for k, v in scores.items() if isinstance(v, dict)}
    rows: list[tuple[str, float, str]] = []
    mask = scores.get("mask_energy_share", {})
    entry = mask.get("methods", {}).get(method)
    if entry:
        chance = mask.get("chance", float("nan"))
        grid = "x".join(map(str, mask.get("cam_grid") or []))
        levels = [f"{name} {mask[k]:.3f}" for k, name in (("ideal", "a mask-shaped map"),
                                                           ("ceiling", "the best possible map"))
                  if k in mask]
        ideal = f"; on the {grid} CAM grid {' and '.join(levels)}" if grid and levels else ""
        rows.append(("run mask share", float(entry["mean"]),
                     f"mean over {entry.get('n', '?')} held-out synthetic faces; a uniform map "
                     f"scores the mask's area, {chance:.3f}{ideal}"))
        if "pointing" in entry:
            rows.append(("run pointing hit rate", float(entry["pointing"]),
                         f"share of those faces whose map peaks inside the brow/mouth mask; a "
                         f"random map: {chance:.3f}"))
    di = scores.get("deletion_insertion", {})
    entry = di.get("methods", {}).get(method)
    if entry:
        rnd = di.get("methods", {}).get("random", {})
        for key, better in (("deletion", "lower"), ("insertion", "higher")):
            ref = f"; a random map: {rnd[key]:.3f}" if key in rnd else ""
            rows.append((f"run {key} AUC", float(entry[key]),
                         f"mean over {entry.get('n', '?')} held-out images, {better} is better{ref}"))
    return rows


# ---------------------------------------------------------------------------------------------
# Text tables for the CLIs


def format_table(df: pd.DataFrame) -> str:
    """Counts as integers, scores with 4 decimals, missing values as '-'."""
    out = df.copy().astype(object)
    for col in out.columns:
        if col in ("params", "flops", "epochs_run"):
            out[col] = [f"{int(v):,}" if _num(v) else "-" for v in df[col]]
        elif col == "p_value":  # tiny p-values must not print as 0.0000
            out[col] = [f"{float(v):.2g}" if _num(v) else "-" for v in df[col]]
        elif df[col].dtype.kind == "f" or col.endswith(("accuracy", "f1", "ece", "_ms", "seconds")):
            out[col] = [f"{float(v):.4f}" if _num(v) else "-" for v in df[col]]
    return out.to_string(index=False)


def _num(v: Any) -> bool:
    try:
        return v is not None and float(v) == float(v)
    except (TypeError, ValueError):
        return False


LEADERBOARD_VIEW = ["model", "weights_source", "epochs_run", "val_accuracy", "val_macro_f1",
                    "test_accuracy", "test_macro_f1", "val_ece", "params", "latency_ms",
                    "train_seconds", "run_id"]


def leaderboard_text(dataset: str | None = None, columns: list[str] | None = None) -> str:
    """The leaderboard (rebuilt from the manifests) as text for the CLIs, best val macro-F1 first."""
    df = store.write_leaderboard()
    if dataset is not None:
        df = df[df["dataset"] == dataset]
    if df.empty:
        return "leaderboard: no runs yet"
    return (f"\nleaderboard ({dataset or 'all datasets'}), by validation macro-F1:\n"
            + format_table(df[columns or LEADERBOARD_VIEW]))


def cross_matrix(records: list[store.RunRecord], subset: str = "test") -> pd.DataFrame:
    """Generalisation: rows are runs, columns datasets, cells the accuracy on that dataset's
    `subset` (from a run's own evaluation for the set(s) it trained on, from
    `scripts.cross_eval` for the others); NaN where not measured. Empty without any cross score."""
    rows = []
    for rec in records:
        m = rec.metrics or {}
        row = {"run_id": rec.run_id, "trained on": rec.manifest.get("dataset")}
        for key, summary in (m.get("cross_dataset") or {}).items():
            name, _, part = key.rpartition(":")
            if part == subset and isinstance(summary, dict):
                row[name] = summary.get("accuracy")
        for name, by in (m.get("by_source") or {}).items():
            row.setdefault(name, (by.get(subset) or {}).get("accuracy"))
        own = (m.get(subset) or {}).get("accuracy")
        if not m.get("by_source") and own is not None:
            row.setdefault(str(rec.manifest.get("dataset")), own)
        rows.append(row)
    df = pd.DataFrame(rows)
    sets = [c for c in df.columns if c not in ("run_id", "trained on")]
    if df.empty or not any(df[c].notna().sum() and c != r for c in sets
                           for r in df["trained on"].astype(str)):
        return pd.DataFrame()
    return df[["run_id", "trained on", *sorted(sets)]]


INTERVAL_COLUMNS = ["run", "subset", "source", "n", "correct", "accuracy", "ci_low", "ci_high"]


def accuracy_intervals(records: list[store.RunRecord], labels: Mapping[str, str] | None = None
                       ) -> pd.DataFrame:
    """Every run's validation and test accuracy with its image count and 95% Wilson interval,
    for all its sets together and (a run on several) for each set (`source`)."""
    labels = labels or {}
    rows = [{"run": labels.get(rec.run_id, rec.run_id), **row}
            for rec in records for row in significance.accuracy_rows(rec.metrics or {})]
    return pd.DataFrame(rows, columns=INTERVAL_COLUMNS)


def paired_runs(records: list[store.RunRecord]) -> list[store.RunRecord]:
    """The runs whose per-image answers are stored (predictions.csv), so they can be paired."""
    return [r for r in records if r.predictions is not None and len(r.predictions)]


def run_sources(manifest: Mapping[str, Any]) -> set[str]:
    """The sets a run was scored on: each source of a run on several, else its dataset."""
    return {str(s) for s in manifest.get("sources") or [manifest.get("dataset")]}


def pairing_candidates(selected: list[store.RunRecord], everything: list[store.RunRecord]
                       ) -> list[store.RunRecord]:
    """The selected runs, then every other run scored on one of their sets (a bundled model on
    several sets, the peer on one), so a run is paired with what it competes with on any set.
    Reference runs come too when their per-image answers came back with their tables."""
    sets = set().union(*(run_sources(r.manifest) for r in selected)) if selected else set()
    chosen = {r.run_id for r in selected}
    others = [r for r in everything if r.run_id not in chosen
              and (not r.tables_only or r.predictions is not None)
              and run_sources(r.manifest) & sets]
    return [*selected, *others]


def paired_table(a: store.RunRecord, b: store.RunRecord) -> pd.DataFrame:
    """Two runs on the images both were scored on, per subset and set: both right, only A,
    only B, both wrong and the exact McNemar p-value (`significance.paired`). Empty when they
    share no image; ValueError when a run has no per-image answers or the labels disagree."""
    for rec in (a, b):
        if rec.predictions is None:
            raise ValueError(f"run '{rec.run_id}' has no per-image answers (predictions.csv)")
    return significance.paired(significance.keyed(a.predictions, str(a.manifest.get("dataset"))),
                               significance.keyed(b.predictions, str(b.manifest.get("dataset"))))


def agreement_candidates(records: list[store.RunRecord], subset: str) -> list[store.RunRecord]:
    """The runs with per-image answers on `subset`, the ones that can vote on its images."""
    return [r for r in records if subset in subsets_of(r)]


def agreement_tables(records: list[store.RunRecord], subset: str
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-set summary, images most missed first) of these runs on the `subset` images that all
    of them answered (`evaluation.agreement`). ValueError for fewer than two runs with per-image
    answers, or runs that label an image differently."""
    voters = agreement_candidates(records, subset)
    preds = {r.run_id: r.predictions for r in voters if r.predictions is not None}
    table = agreement.answers(preds, {r.run_id: str(r.manifest.get("dataset")) for r in voters},
                              subset)
    return agreement.summary(table, list(preds)), agreement.hardest(table, list(preds))


def reference_notes(records: list[store.RunRecord]) -> dict[str, tuple[str, str]]:
    """{reference set: ("GPU reference", "CPU reference" or "External reference", its note:
    machine, profile, budget)} for the reference runs shown; "Reference" for a set whose runs
    name different machines or none."""
    kinds: dict[str, set[str]] = {}
    notes: dict[str, str] = {}
    for r in records:
        if r.tables_only:
            name = str(store.runs.reference_set_of(r.manifest))
            kinds.setdefault(name, set()).add(store.runs.reference_kind(r.manifest))
            notes[name] = str(r.manifest.get("reference_note", "")).rstrip(".")
    out = {}
    for name, note in notes.items():
        kind = kinds[name].pop() if len(kinds[name]) == 1 else "reference"
        out[name] = (kind[:1].upper() + kind[1:], note)  # it starts the page's sentence
    return out


def reference_caption(name: str, kind: str, note: str) -> str:
    """What Compare says under its tables about one reference set (`reference_notes`). A run
    made elsewhere left its weights there; an external model's weights come from its package,
    as its note says, and Predict and Explain run it where that package is installed."""
    if kind.startswith("External"):
        return f"{kind} set `{name}`: {note}."
    return (f"{kind} set `{name}`: {note}. Tables only (no weights came back): shown here and "
            "on Confusion, not on the pages that run a model.")
