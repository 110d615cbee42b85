"""Runs on disk: save one atomically, load it (or say why it is broken), list them, the leaderboard.

A run is one trained model (or ensemble, or external reference model) on one dataset split: `runs/<run_id>/` holds
manifest.json, weights.safetensors (not for ensembles), history.csv, metrics.json,
confusion.csv and predictions.csv (file names in `paths`). A run folder is assembled under a
temporary name and renamed whole, so a run is either complete or absent.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emotion_core.store import files, paths
from emotion_core.store.files import (
    file_sha256,
    publish_dir,
    read_csv,
    read_json,
    write_csv,
    write_json,
)

HISTORY_COLUMNS = ["epoch", "phase", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                   "val_macro_f1", "seconds"]  # history.csv: one row per epoch


REFERENCE_ORIGIN = "reference:"  # manifest "origin" of a run read from reference/<set>/


def reference_set_of(manifest: Mapping[str, Any]) -> str | None:
    """The reference set a run was read from (made elsewhere, tables only), or None for a local run."""
    origin = str(manifest.get("origin", ""))
    return origin[len(REFERENCE_ORIGIN):] if origin.startswith(REFERENCE_ORIGIN) else None


def trained_on_machine(manifest: Mapping[str, Any]) -> str | None:
    """"GPU" or "CPU": the device a run trained on (its manifest's timings), None where unrecorded
    (an ensemble, a run older than the record)."""
    device = str((manifest.get("timings") or {}).get("device") or "")
    if device.startswith("cuda"):
        return "GPU"
    return "CPU" if device == "cpu" else None


def is_refit(manifest: Mapping[str, Any]) -> bool:
    """Whether a run trained on train + val (`--refit`): it has no validation numbers."""
    return bool((manifest.get("config") or {}).get("refit"))


def reference_kind(manifest: Mapping[str, Any]) -> str:
    """"external reference" for an external model's scores (kind "reference"), else "GPU
    reference", "CPU reference" (the machine its set was made on) or "reference"."""
    if manifest.get("kind") == "reference":
        return "external reference"
    machine = manifest.get("reference_machine")
    return f"{machine} reference" if machine else "reference"


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
    def is_reference(self) -> bool:
        """An external reference model evaluated here, trained elsewhere (kind "reference")."""
        return self.manifest.get("kind") == "reference"

    @property
    def tables_only(self) -> bool:
        """A run made elsewhere (a lent GPU) of which only the evaluation tables were committed
        (store.reference): shown in Compare and Confusion, never loaded."""
        return reference_set_of(self.manifest) is not None

    @property
    def has_weights(self) -> bool:
        """A model of its own (trained here, or a reference) that can be loaded and explained."""
        return self.manifest.get("kind", "model") in ("model", "reference") and not self.tables_only

    @property
    def weights_path(self) -> Path:
        return self.path / paths.WEIGHTS

    @property
    def bundled(self) -> bool:
        """A release model committed with the code (read-only)."""
        return self.path.parent == paths.bundled_dir()

    @property
    def own(self) -> bool:
        """Made in this store (trained or evaluated here): neither bundled nor a reference's tables."""
        return not self.bundled and not self.tables_only


class ReadOnlyRunError(PermissionError):
    """A write to a bundled (committed, read-only) run."""


def _writable(run_id: str) -> None:
    if paths.is_bundled(run_id):
        raise ReadOnlyRunError(f"run '{run_id}' is a bundled release model under "
                               f"{paths.bundled_dir()}; it is read-only (train or copy a new run)")


def split_hash(rels: Iterable[str], labels: Iterable[str], subsets: Iterable[str]) -> str:
    """Identity of a split: runs (and ensemble members) are comparable only when this matches."""
    rows = sorted(f"{r}\t{lab}\t{s}" for r, lab, s in zip(rels, labels, subsets, strict=True))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def git_commit() -> str | None:
    """The checkout's commit, recorded in every manifest (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.REPO_ROOT,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_changed() -> bool | None:
    """Whether tracked files differ from that commit (None outside a git checkout). A lent GPU
    machine gets a copy of the working tree whose git still names the session's first commit, so
    the commit alone can name code that did not run there."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=10)
        return bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


class BrokenRunError(RuntimeError):
    """A run folder that is missing a file or holds an unreadable one."""


def new_run_id(prefix: str, *, when: datetime | None = None) -> str:
    """A new run's id, `<prefix>-<YYYYmmdd-HHMMSS>`, with -2, -3, ... appended while a run (or a
    run still training, in this process or another) holds it, so two runs started in the same
    second never replace each other. The id is held by a marker file created exclusively
    (`paths.run_reservation`), which save_run removes; one left by a crash holds only its own
    second's id."""
    stamp = (when or datetime.now()).strftime("%Y%m%d-%H%M%S")
    paths.runs_dir().mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        run_id = f"{prefix}-{stamp}" + (f"-{n}" if n > 1 else "")
        if not paths.run_dir(run_id).exists() and _reserve(paths.run_reservation(run_id)):
            return run_id
    raise AssertionError("itertools.count never ends")


def _reserve(marker: Path) -> bool:
    """Create `marker` unless it exists (atomic across processes); True if this call made it."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except FileExistsError:
        return False
    return True


def save_run(run_id: str, *, manifest: Mapping[str, Any], metrics: Mapping[str, Any],
             history: pd.DataFrame, confusion: pd.DataFrame, predictions: pd.DataFrame,
             state_dict: Mapping[str, Any] | None = None) -> Path:
    """Write a complete run folder atomically (assemble under a temp name, then rename).

    `state_dict` is required for trained models and absent for ensembles (which point to their
    member runs in the manifest). An existing run with the same id is replaced.
    """
    from safetensors.torch import save_file  # imports torch: only where weights are written

    _writable(run_id)
    final = paths.run_dir(run_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = files.make_temp_dir(final)
    try:
        write_json(tmp / paths.METRICS, dict(metrics))
        write_csv(tmp / paths.HISTORY, history)
        write_csv(tmp / paths.CONFUSION, confusion)
        write_csv(tmp / paths.PREDICTIONS, predictions)
        manifest = dict(manifest)
        if state_dict is not None:
            tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
            save_file(tensors, str(tmp / paths.WEIGHTS),
                      metadata={"model": str(manifest.get("model", "")),
                                "classes": ",".join(manifest.get("classes", []))})
            os.chmod(tmp / paths.WEIGHTS, files.mode_for_file())
            manifest["weights_sha256"] = file_sha256(tmp / paths.WEIGHTS)
            manifest["weights_bytes"] = (tmp / paths.WEIGHTS).stat().st_size
        write_json(tmp / paths.MANIFEST, manifest)
        publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    paths.run_reservation(run_id).unlink(missing_ok=True)  # the folder holds the id now
    return final


def update_run_metrics(run_id: str, extra: Mapping[str, Any]) -> None:
    """Merge keys into a run's metrics.json (e.g. faithfulness computed later)."""
    _writable(run_id)
    path = paths.run_file(run_id, paths.METRICS)
    metrics = read_json(path)
    metrics.update(extra)
    write_json(path, metrics)


def update_run_manifest(run_id: str, changes: Mapping[str, Any], *,
                        remove: Sequence[str] = ()) -> None:
    """Replace top-level keys of a run's manifest.json (e.g. a latency measured again later)
    and drop those in `remove`."""
    _writable(run_id)
    path = paths.run_file(run_id, paths.MANIFEST)
    manifest = read_json(path)
    manifest.update(changes)
    for key in remove:
        manifest.pop(key, None)
    write_json(path, manifest)


REQUIRED_MANIFEST = {"model": str, "classes": list}  # what every reader of a run relies on


def _check_manifest(run_id: str, manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict):
        raise BrokenRunError(f"run '{run_id}': manifest.json holds a {type(manifest).__name__}, "
                             f"not an object")
    for key, kind in REQUIRED_MANIFEST.items():
        if not isinstance(manifest.get(key), kind):
            raise BrokenRunError(f"run '{run_id}': manifest.json lacks a valid '{key}'")
    if not manifest["classes"] or not all(isinstance(c, str) for c in manifest["classes"]):
        raise BrokenRunError(f"run '{run_id}': manifest.json 'classes' must be class names")
    return manifest


def _check_weights(run_id: str, path: Path, manifest: dict[str, Any], *, full: bool) -> None:
    """The weights file is the one the run wrote: its size always, its content hash when `full`
    (once per file version and process). Runs written before hashes were recorded pass."""
    expected = manifest.get("weights_bytes")
    size = path.stat().st_size
    if expected is not None and size != expected:
        raise BrokenRunError(f"run '{run_id}': weights.safetensors is {size} bytes but the run "
                             f"wrote {expected} (truncated or replaced)")
    if full and manifest.get("weights_sha256") and \
            _cached_sha256(str(path), size, path.stat().st_mtime_ns) != manifest["weights_sha256"]:
        raise BrokenRunError(f"run '{run_id}': weights.safetensors does not match the content hash "
                             f"recorded when the run was written (corrupted on disk)")


@lru_cache(maxsize=256)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def load_run(run_id: str, *, tables: bool = True) -> RunRecord:
    """Load a run's manifest, metrics and tables; raise BrokenRunError with the reason."""
    path = paths.run_dir(run_id)
    if not path.is_dir():
        raise BrokenRunError(f"run '{run_id}' does not exist under {paths.runs_dir()}")
    try:
        manifest = _check_manifest(run_id, read_json(path / paths.MANIFEST))
    except (OSError, ValueError) as exc:
        raise BrokenRunError(f"run '{run_id}': manifest.json unreadable ({exc})") from exc
    expected = paths.ENSEMBLE_FILES if manifest.get("kind") == "ensemble" else paths.RUN_FILES
    missing = [f for f in expected if not (path / f).exists()]
    if missing:
        raise BrokenRunError(f"run '{run_id}' is missing {', '.join(missing)}")
    if paths.WEIGHTS in expected:
        _check_weights(run_id, path / paths.WEIGHTS, manifest, full=False)
    rec = RunRecord(run_id=run_id, path=path, manifest=manifest)
    try:
        rec.metrics = read_json(path / paths.METRICS)
        if not isinstance(rec.metrics, dict):
            raise ValueError("metrics.json is not an object")
        if tables:
            rec.history = read_csv(path / paths.HISTORY)
            rec.confusion = read_csv(path / paths.CONFUSION)
            rec.predictions = read_csv(path / paths.PREDICTIONS)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise BrokenRunError(f"run '{run_id}': unreadable file ({exc})") from exc
    return rec


def list_runs() -> tuple[list[RunRecord], dict[str, str]]:
    """All complete runs (manifest+metrics only), the user's first, then the bundled release
    models; and, separately, broken run ids with reasons."""
    good: list[RunRecord] = []
    broken: dict[str, str] = {}
    seen: set[str] = set()
    for base in (paths.runs_dir(), paths.bundled_dir()):
        if not base.is_dir():
            continue
        for p in sorted(base.iterdir()):
            if not p.is_dir() or p.name.startswith(".") or p.name in seen:
                continue
            seen.add(p.name)
            try:
                rec = load_run(p.name, tables=False)
                if not rec.is_ensemble:
                    _check_weights(rec.run_id, rec.weights_path, rec.manifest, full=True)
                good.append(rec)
            except (BrokenRunError, ValueError) as exc:  # ValueError: a name that is no run id
                broken[p.name] = str(exc)
    return good, broken


def load_weights(run_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Load a run's safetensors weights (never pickle) and their metadata."""
    from safetensors import safe_open  # imports torch: only where weights are read
    from safetensors.torch import load_file

    rec = load_run(run_id, tables=False)
    path = rec.weights_path
    if not path.exists():
        raise BrokenRunError(f"run '{run_id}' has no weights.safetensors")
    _check_weights(run_id, path, rec.manifest, full=True)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise BrokenRunError(f"run '{run_id}': weights unreadable ({exc})") from exc
    # Bundled release models are stored in float16 to keep the repository small; models run
    # in float32 (the dtype every builder creates).
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, meta



def delete_run(run_id: str) -> None:
    _writable(run_id)
    shutil.rmtree(paths.run_dir(run_id), ignore_errors=True)


LEADERBOARD_COLUMNS = [
    "run_id", "model", "kind", "dataset", "weights_source", "profile", "epochs_run",
    "val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1", "val_ece",
    "params", "flops", "latency_ms", "train_seconds", "created",
]


def write_leaderboard(runs: list[RunRecord] | None = None) -> pd.DataFrame:
    """Rebuild artifacts/leaderboard.csv from every complete run's manifest headline; `runs`:
    `list_runs()`'s records where the caller holds them already (it reads every run's weights)."""
    runs = list_runs()[0] if runs is None else runs
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
