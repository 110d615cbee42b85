"""Runs on disk: save one atomically, load it (or say why it is broken), list them, the leaderboard.

A run is one trained model (or ensemble) on one dataset split: `runs/<run_id>/` holds
manifest.json, weights.safetensors (not for ensembles), history.csv, metrics.json,
confusion.csv and predictions.csv (file names in `paths`). A run folder is assembled under a
temporary name and renamed whole, so a run is either complete or absent.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emotion_core.store import paths
from emotion_core.store.files import publish_dir, read_csv, read_json, write_csv, write_json

HISTORY_COLUMNS = ["epoch", "phase", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                   "val_macro_f1", "seconds"]  # history.csv: one row per epoch


@dataclass
class RunRecord:
    """Everything stored for one run, as loaded from disk (weights loaded separately)."""

    run_id: str
    path: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    history: pd.DataFrame | None = None
    confusion: pd.DataFrame | None = None
    predictions: pd.DataFrame | None = None

    @property
    def is_ensemble(self) -> bool:
        return self.manifest.get("kind") == "ensemble"

    @property
    def weights_path(self) -> Path:
        return self.path / paths.WEIGHTS


class BrokenRunError(RuntimeError):
    """A run folder that is missing a file or holds an unreadable one."""


def save_run(run_id: str, *, manifest: Mapping[str, Any], metrics: Mapping[str, Any],
             history: pd.DataFrame, confusion: pd.DataFrame, predictions: pd.DataFrame,
             state_dict: Mapping[str, Any] | None = None) -> Path:
    """Write a complete run folder atomically (assemble under a temp name, then rename).

    `state_dict` is required for trained models and absent for ensembles (which point to their
    member runs in the manifest). An existing run with the same id is replaced.
    """
    from safetensors.torch import save_file  # imports torch: only where weights are written

    final = paths.run_dir(run_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_id}.", dir=final.parent))
    try:
        write_json(tmp / paths.MANIFEST, dict(manifest))
        write_json(tmp / paths.METRICS, dict(metrics))
        write_csv(tmp / paths.HISTORY, history)
        write_csv(tmp / paths.CONFUSION, confusion)
        write_csv(tmp / paths.PREDICTIONS, predictions)
        if state_dict is not None:
            tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
            save_file(tensors, str(tmp / paths.WEIGHTS),
                      metadata={"model": str(manifest.get("model", "")),
                                "classes": ",".join(manifest.get("classes", []))})
        publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def update_run_metrics(run_id: str, extra: Mapping[str, Any]) -> None:
    """Merge keys into a run's metrics.json (e.g. faithfulness computed later)."""
    path = paths.run_file(run_id, paths.METRICS)
    metrics = read_json(path)
    metrics.update(extra)
    write_json(path, metrics)


def update_run_manifest(run_id: str, changes: Mapping[str, Any]) -> None:
    """Replace top-level keys of a run's manifest.json (e.g. a latency measured again later)."""
    path = paths.run_file(run_id, paths.MANIFEST)
    manifest = read_json(path)
    manifest.update(changes)
    write_json(path, manifest)


def load_run(run_id: str, *, tables: bool = True) -> RunRecord:
    """Load a run's manifest, metrics and tables; raise BrokenRunError with the reason."""
    path = paths.run_dir(run_id)
    if not path.is_dir():
        raise BrokenRunError(f"run '{run_id}' does not exist under {paths.runs_dir()}")
    try:
        manifest = read_json(path / paths.MANIFEST)
    except (OSError, ValueError) as exc:
        raise BrokenRunError(f"run '{run_id}': manifest.json unreadable ({exc})") from exc
    expected = paths.ENSEMBLE_FILES if manifest.get("kind") == "ensemble" else paths.RUN_FILES
    missing = [f for f in expected if not (path / f).exists()]
    if missing:
        raise BrokenRunError(f"run '{run_id}' is missing {', '.join(missing)}")
    rec = RunRecord(run_id=run_id, path=path, manifest=manifest)
    try:
        rec.metrics = read_json(path / paths.METRICS)
        if tables:
            rec.history = read_csv(path / paths.HISTORY)
            rec.confusion = read_csv(path / paths.CONFUSION)
            rec.predictions = read_csv(path / paths.PREDICTIONS)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise BrokenRunError(f"run '{run_id}': unreadable file ({exc})") from exc
    return rec


def list_runs() -> tuple[list[RunRecord], dict[str, str]]:
    """All complete runs (manifest+metrics only) and, separately, broken run ids with reasons."""
    base = paths.runs_dir()
    good: list[RunRecord] = []
    broken: dict[str, str] = {}
    if not base.is_dir():
        return good, broken
    for p in sorted(base.iterdir()):
        if not p.is_dir() or p.name.startswith("."):
            continue
        try:
            good.append(load_run(p.name, tables=False))
        except BrokenRunError as exc:
            broken[p.name] = str(exc)
    return good, broken


def load_weights(run_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Load a run's safetensors weights (never pickle) and their metadata."""
    from safetensors import safe_open  # imports torch: only where weights are read
    from safetensors.torch import load_file

    path = paths.run_file(run_id, paths.WEIGHTS)
    if not path.exists():
        raise BrokenRunError(f"run '{run_id}' has no weights.safetensors")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise BrokenRunError(f"run '{run_id}': weights unreadable ({exc})") from exc


def delete_run(run_id: str) -> None:
    shutil.rmtree(paths.run_dir(run_id), ignore_errors=True)


LEADERBOARD_COLUMNS = [
    "run_id", "model", "kind", "dataset", "weights_source", "profile", "epochs_run",
    "val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1", "val_ece",
    "params", "flops", "latency_ms", "train_seconds", "created",
]


def write_leaderboard() -> pd.DataFrame:
    """Rebuild artifacts/leaderboard.csv from every complete run's manifest headline."""
    runs, _ = list_runs()
    rows = []
    for rec in runs:
        m = rec.manifest
        row = {"run_id": rec.run_id, "model": m.get("model"), "kind": m.get("kind", "model"),
               "dataset": m.get("dataset"), "weights_source": m.get("weights_source"),
               "profile": m.get("profile"), "created": m.get("created")}
        row.update(m.get("headline", {}))
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in LEADERBOARD_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    df = df[LEADERBOARD_COLUMNS + [c for c in df.columns if c not in LEADERBOARD_COLUMNS]]
    if len(df):
        df = df.sort_values(["dataset", "val_macro_f1"], ascending=[True, False], na_position="last")
    write_csv(paths.leaderboard_path(), df)
    return df
