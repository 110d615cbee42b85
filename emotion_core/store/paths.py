"""Where everything lives on disk: the one module that knows artifact locations and file names.

    artifacts/                       ($EMOTION_ARTIFACTS overrides it; tests point it at a tmp dir)
      data/<name>/                   generated datasets (the synthetic demo faces)
      cache/<key>/                   decode-once image caches (memory-mapped uint8)
      datasets/<name>/               dataset report: index, split, cleaning report, EDA
      runs/<run_id>/                 one trained model (or ensemble) on one dataset split
      leaderboard.csv                one row per run, rebuilt from the manifests
      jobs/                          background training jobs (lock, per-job spec, log, events)
      weights/<model>/               locally converted or downloaded pretrained weights
      work/<key>/                    resumable checkpoint of a run in progress
      reference/                     committed evaluation tables (no weights)

Other modules ask here for a folder or a file and own only what they write inside it.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_ROOT = "EMOTION_ARTIFACTS"  # overrides the artifacts folder
ENV_WEIGHTS_DIR = "EMOTION_WEIGHTS_DIR"  # overrides the local pretrained-weights folder
REPO_ROOT = Path(__file__).resolve().parents[2]

# A run folder
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
HISTORY = "history.csv"
METRICS = "metrics.json"
CONFUSION = "confusion.csv"
PREDICTIONS = "predictions.csv"
RUN_FILES = (MANIFEST, WEIGHTS, HISTORY, METRICS, CONFUSION, PREDICTIONS)
ENSEMBLE_FILES = tuple(f for f in RUN_FILES if f != WEIGHTS)

# A dataset report folder
REPORT = "report.json"
DATASET_TABLES = ("index", "split", "cleaning")  # <table>.csv
EDA = "eda"
EDA_SUMMARY = "eda.json"

# A job folder and the jobs folder
JOB_LOCK = "lock.json"
JOB_SPEC = "job.json"
JOB_LOG = "log.txt"
JOB_EVENTS = "events.jsonl"
JOB_RESULT = "result.json"

# A resumable checkpoint folder (training/checkpoint.py)
CHECKPOINT_LAST = "last.safetensors"  # tensors + the JSON run state in its metadata, one file
CHECKPOINT_BEST = "best-e{epoch:04d}.safetensors"  # the best weights, named by their epoch
CHECKPOINT_BEST_GLOB = "best-e*.safetensors"

# A decode-once cache folder, and its compact export
CACHE_META = "meta.json"
CACHE_IMAGES = "images.npy"
CACHE_LABELS = "labels.npy"
EXPORT_ARCHIVE = "cache.npz"

LOCAL_WEIGHTS = "model.safetensors"  # weights/<model>/model.safetensors


def root() -> Path:
    return Path(os.environ.get(ENV_ROOT, REPO_ROOT / "artifacts")).resolve()


def generated_data_dir(name: str) -> Path:
    return root() / "data" / name


def cache_dir(key: str) -> Path:
    return root() / "cache" / key


def datasets_dir() -> Path:
    return root() / "datasets"


def dataset_dir(name: str) -> Path:
    return datasets_dir() / name


def dataset_table_path(name: str, table: str) -> Path:
    return dataset_dir(name) / f"{table}.csv"


def eda_dir(name: str) -> Path:
    return dataset_dir(name) / EDA


def runs_dir() -> Path:
    return root() / "runs"


def run_dir(run_id: str) -> Path:
    return runs_dir() / run_id


def run_file(run_id: str, name: str) -> Path:
    return run_dir(run_id) / name


def leaderboard_path() -> Path:
    return root() / "leaderboard.csv"


def jobs_dir() -> Path:
    return root() / "jobs"


def job_dir(job_id: str) -> Path:
    return jobs_dir() / job_id


def job_lock_path() -> Path:
    return jobs_dir() / JOB_LOCK


def work_dir(key: str) -> Path:
    """Where the in-progress checkpoint of `key` (dataset-model-profile) lives."""
    return root() / "work" / key


def weights_dir() -> Path:
    """Local pretrained weights: $EMOTION_WEIGHTS_DIR, else <artifacts>/weights."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    return Path(env).resolve() if env else root() / "weights"


def local_weights_path(model: str) -> Path:
    return weights_dir() / model / LOCAL_WEIGHTS


def reference_dir() -> Path:
    return root() / "reference"


def shared_data_dir(name: str) -> Path:
    """The team's real face sets live beside the checkout (never inside it)."""
    return REPO_ROOT.parent / "shared" / "data" / name
