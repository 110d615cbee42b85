"""Score a stored run, or a stored ensemble, on any image-folder dataset with the same classes.

The dataset is prepared like any other (its own cleaning and split) and read through the
decode-once cache at the run's input size, with the run's face-crop setting. An ensemble is
scored by running its members and averaging their probabilities with the ensemble's weights.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emotion_core import store
from emotion_core.data import CachedLoader, PreparedDataset, build_cache, faces, open_folder
from emotion_core.evaluation.ensemble import average_probs
from emotion_core.evaluation.inference import collect_probs, run_flips, run_temperature
from emotion_core.evaluation.loading import load_model, run_manifest
from emotion_core.evaluation.metrics import compute_metrics, metrics_by_subset, predictions_table


def _rows(ds: PreparedDataset, subset: str) -> np.ndarray:
    """Split-table row numbers of `subset` ("all" for every row)."""
    subsets = ds.split["subset"].to_numpy()
    idx = np.arange(len(subsets)) if subset == "all" else np.flatnonzero(subsets == subset)
    if len(idx) == 0:
        raise ValueError(f"dataset '{ds.name}' has no '{subset}' images")
    return idx


def run_probs(run_id: str, ds: PreparedDataset, rows: np.ndarray, *,
              progress: bool = True) -> np.ndarray:
    """A run's class probabilities (in the run's class order) for split rows `rows` of `ds`."""
    manifest = run_manifest(run_id)
    if manifest.get("kind") == "ensemble":
        members = [run_probs(m, ds, rows, progress=progress) for m in manifest["members"]]
        return average_probs(members, manifest.get("weights"))
    model, manifest = load_model(run_id)
    spec = faces.crop_spec(manifest)  # the framing the run was trained on
    cache = build_cache(ds, int(manifest["image_size"]), crop_faces=spec is not None,
                        **({} if spec is None else {"face_margin": spec.margin,
                                                    "face_fit": spec.fit,
                                                    "face_align": spec.align}),
                        progress=progress)
    loader = CachedLoader(cache, rows, 64, shuffle=False, aug=None, mean=manifest["mean"],
                          std=manifest["std"])
    probs, _ = collect_probs(model, loader, tta_flip=run_flips(manifest),
                             temperature=run_temperature(manifest))
    return probs


def _crops(manifest: dict[str, Any]) -> bool:
    """Whether a run (or any member of an ensemble) reads face crops."""
    if manifest.get("kind") == "ensemble":
        return any(_crops(store.load_run(m, tables=False).manifest) for m in manifest["members"])
    return faces.crop_spec(manifest) is not None


def evaluate_on_folder(run_id: str, root: str | Path, *, name: str | None = None,
                       subset: str = "all", progress: bool = True) -> dict[str, Any]:
    """Score a run on an image folder: {"dataset", "subset", "metrics", "by_subset",
    "predictions"}; refuses a dataset whose classes differ from the run's."""
    manifest = store.load_run(run_id, tables=False).manifest
    classes = list(manifest["classes"])
    ds = open_folder(root, name, detect_faces=_crops(manifest), progress=progress)
    if set(ds.classes) != set(classes):
        raise ValueError(f"dataset '{ds.name}' has classes {list(ds.classes)} but run '{run_id}' "
                         f"was trained on {classes}; cross-dataset evaluation needs the same classes")
    rows = _rows(ds, subset)
    probs = run_probs(run_id, ds, rows, progress=progress)
    files = ds.split.iloc[rows]
    y = files["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)
    preds = predictions_table(files["rel"], files["subset"], y, probs, classes)
    return {"dataset": ds.name, "subset": subset, "metrics": compute_metrics(y, probs, classes),
            "by_subset": metrics_by_subset(preds, classes), "predictions": preds}


SUMMARY_KEYS = ("n", "accuracy", "macro_f1", "top2_accuracy", "ece", "loss")


def record(run_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """Store a result's summary in the run's metrics under cross_dataset["<dataset>:<subset>"]
    (bundled runs are read-only: their cross-dataset numbers are made before bundling)."""
    summary = {k: result["metrics"][k] for k in SUMMARY_KEYS}
    if not store.paths.is_bundled(run_id):
        previous = store.load_run(run_id, tables=False).metrics.get("cross_dataset", {})
        store.update_run_metrics(run_id, {"cross_dataset": {
            **previous, f"{result['dataset']}:{result['subset']}": summary}})
    return summary


def matrix(run_ids: list[str], folders: list[str | Path], *, subset: str = "test",
           progress: bool = True) -> pd.DataFrame:
    """Train on X, test on every Y: one row per run, one column per dataset, the accuracy on
    that dataset's `subset` (each set's own persisted split); results stored as by `record`."""
    rows = []
    for rid in run_ids:
        row: dict[str, Any] = {"run_id": rid}
        for folder in folders:
            res = evaluate_on_folder(rid, folder, subset=subset, progress=progress)
            row[res["dataset"]] = record(rid, res)["accuracy"]
        rows.append(row)
    return pd.DataFrame(rows)
