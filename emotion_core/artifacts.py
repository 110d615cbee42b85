"""The only module that knows where artifacts live and in which format.

Layout (see README "Artifacts"):
    artifacts/
      data/<name>/                 generated datasets (the synthetic demo faces)
      cache/<key>/                 decode-once image caches (memory-mapped uint8)
      datasets/<name>/             dataset report: index, split, cleaning report, EDA tables
      runs/<run_id>/               one trained model (or ensemble) on one dataset split
      leaderboard.csv              one row per run, rebuilt from the manifests
      jobs/                        background training job state (lock, log)
      reference/                   committed evaluation tables (no weights)

Every write goes to a temporary name in the same folder and is renamed into place, so a crash
never leaves a half-written file; a run folder is assembled under a temporary name and renamed
as a whole, so a run is either complete or absent.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ENV_ROOT = "EMOTION_ARTIFACTS"  # overrides the artifacts folder (tests point it at a tmp dir)
REPO_ROOT = Path(__file__).resolve().parent.parent

RUN_FILES = ("manifest.json", "weights.safetensors", "history.csv", "metrics.json",
             "confusion.csv", "predictions.csv")
ENSEMBLE_FILES = tuple(f for f in RUN_FILES if f != "weights.safetensors")


def root() -> Path:
    return Path(os.environ.get(ENV_ROOT, REPO_ROOT / "artifacts")).resolve()


def generated_data_dir(name: str) -> Path:
    return root() / "data" / name


def cache_dir(key: str) -> Path:
    return root() / "cache" / key


def dataset_dir(name: str) -> Path:
    return root() / "datasets" / name


def runs_dir() -> Path:
    return root() / "runs"


def run_dir(run_id: str) -> Path:
    return runs_dir() / run_id


def jobs_dir() -> Path:
    return root() / "jobs"


def reference_dir() -> Path:
    return root() / "reference"


def leaderboard_path() -> Path:
    return root() / "leaderboard.csv"


def shared_data_dir(name: str) -> Path:
    """The team's real face sets live beside the checkout (never inside it)."""
    return REPO_ROOT.parent / "shared" / "data" / name


# ---------------------------------------------------------------------------------------------
# Atomic writers


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_dir(tmp: Path, final: Path) -> None:
    """Move a fully written folder `tmp` to `final`, replacing any old one only once the new one
    is complete, so readers see the old folder or the new one, never a half-written one."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_csv(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB (or grayscale) uint8 array as PNG."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ---------------------------------------------------------------------------------------------
# Dataset reports

DATASET_TABLES = ("index", "split", "cleaning")  # <name>.csv in the dataset folder


def save_dataset_table(name: str, table: str, df: pd.DataFrame) -> Path:
    path = dataset_dir(name) / f"{table}.csv"
    write_csv(path, df)
    return path


def load_dataset_table(name: str, table: str) -> pd.DataFrame:
    path = dataset_dir(name) / f"{table}.csv"
    if not path.exists():
        raise FileNotFoundError(f"dataset '{name}' has no {table} table at {path}; "
                                f"run `python -m scripts.prepare_data` first")
    return read_csv(path)


def save_dataset_json(name: str, filename: str, obj: Any) -> Path:
    path = dataset_dir(name) / filename
    write_json(path, obj)
    return path


def load_dataset_json(name: str, filename: str) -> Any:
    return read_json(dataset_dir(name) / filename)


def eda_dir(name: str) -> Path:
    return dataset_dir(name) / "eda"


def list_datasets() -> list[str]:
    base = root() / "datasets"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "report.json").exists())


# ---------------------------------------------------------------------------------------------
# Runs


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
        return self.path / "weights.safetensors"


class BrokenRunError(RuntimeError):
    """A run folder that is missing a file or holds an unreadable one."""


def save_run(run_id: str, *, manifest: Mapping[str, Any], metrics: Mapping[str, Any],
             history: pd.DataFrame, confusion: pd.DataFrame, predictions: pd.DataFrame,
             state_dict: Mapping[str, Any] | None = None) -> Path:
    """Write a complete run folder atomically (assemble under a temp name, then rename).

    `state_dict` is required for trained models and absent for ensembles (which point to their
    member runs in the manifest). An existing run with the same id is replaced.
    """
    from safetensors.torch import save_file

    final = run_dir(run_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_id}.", dir=final.parent))
    try:
        write_json(tmp / "manifest.json", dict(manifest))
        write_json(tmp / "metrics.json", dict(metrics))
        write_csv(tmp / "history.csv", history)
        write_csv(tmp / "confusion.csv", confusion)
        write_csv(tmp / "predictions.csv", predictions)
        if state_dict is not None:
            tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
            save_file(tensors, str(tmp / "weights.safetensors"),
                      metadata={"model": str(manifest.get("model", "")),
                                "classes": ",".join(manifest.get("classes", []))})
        publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def update_run_metrics(run_id: str, extra: Mapping[str, Any]) -> None:
    """Merge keys into a run's metrics.json (e.g. faithfulness computed later)."""
    path = run_dir(run_id) / "metrics.json"
    metrics = read_json(path)
    metrics.update(extra)
    write_json(path, metrics)


def load_run(run_id: str, *, tables: bool = True) -> RunRecord:
    """Load a run's manifest, metrics and tables; raise BrokenRunError with the reason."""
    path = run_dir(run_id)
    if not path.is_dir():
        raise BrokenRunError(f"run '{run_id}' does not exist under {runs_dir()}")
    try:
        manifest = read_json(path / "manifest.json")
    except (OSError, ValueError) as exc:
        raise BrokenRunError(f"run '{run_id}': manifest.json unreadable ({exc})") from exc
    expected = ENSEMBLE_FILES if manifest.get("kind") == "ensemble" else RUN_FILES
    missing = [f for f in expected if not (path / f).exists()]
    if missing:
        raise BrokenRunError(f"run '{run_id}' is missing {', '.join(missing)}")
    rec = RunRecord(run_id=run_id, path=path, manifest=manifest)
    try:
        rec.metrics = read_json(path / "metrics.json")
        if tables:
            rec.history = read_csv(path / "history.csv")
            rec.confusion = read_csv(path / "confusion.csv")
            rec.predictions = read_csv(path / "predictions.csv")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise BrokenRunError(f"run '{run_id}': unreadable file ({exc})") from exc
    return rec


def list_runs() -> tuple[list[RunRecord], dict[str, str]]:
    """All complete runs (manifest+metrics only) and, separately, broken run ids with reasons."""
    base = runs_dir()
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
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = run_dir(run_id) / "weights.safetensors"
    if not path.exists():
        raise BrokenRunError(f"run '{run_id}' has no weights.safetensors")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise BrokenRunError(f"run '{run_id}': weights unreadable ({exc})") from exc


def delete_run(run_id: str) -> None:
    shutil.rmtree(run_dir(run_id), ignore_errors=True)


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
    write_csv(leaderboard_path(), df)
    return df
