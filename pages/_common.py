"""Shared Streamlit pieces: cached loaders, the sidebar (dataset/run picker, Train controls).

Caches are keyed by plain strings: the artifacts root, the run id and a fingerprint of the files
on disk, so a retrained run or a run that appears mid-session is picked up without a restart,
and two artifact folders (tests) never share an entry.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from emotion_core import jobs, store
from emotion_core.models import REGISTRY
from emotion_core.views import tables

MODEL_CACHE_ENTRIES = 12  # models kept in memory at once (quick-profile models are small)


def _stamp(path: Path) -> str:
    try:
        st_ = path.stat()
        return f"{st_.st_mtime_ns}-{st_.st_size}"
    except OSError:
        return "missing"


def runs_fingerprint() -> str:
    """Changes whenever a run folder appears, disappears or is rewritten."""
    base = store.paths.runs_dir()
    if not base.is_dir():
        return f"{store.paths.root()}|none"
    parts = [f"{p.name}:{_stamp(p / store.paths.MANIFEST)}:{_stamp(p / store.paths.METRICS)}"
             for p in sorted(base.iterdir()) if not p.name.startswith(".")]
    return f"{store.paths.root()}|" + "|".join(parts)


@st.cache_data(show_spinner=False, max_entries=32)
def _runs(fingerprint: str) -> tuple[list[store.RunRecord], dict[str, str]]:
    return store.list_runs()


def all_runs() -> tuple[list[store.RunRecord], dict[str, str]]:
    """(complete runs, {broken run id: reason}) for the current artifacts folder."""
    return _runs(runs_fingerprint())


@st.cache_data(show_spinner=False, max_entries=64)
def _run_full(root: str, run_id: str, stamp: str) -> store.RunRecord:
    return store.load_run(run_id, tables=True)


def run_record(run_id: str) -> store.RunRecord:
    """A run with its tables (history, confusion, predictions); BrokenRunError if broken."""
    return _run_full(str(store.paths.root()), run_id,
                     _stamp(store.paths.run_file(run_id, store.paths.PREDICTIONS)))


_LOADED: set[tuple[str, str, str]] = set()  # (root, run id, stamp) built by _model so far
_LOADED_LOCK = threading.Lock()


@st.cache_resource(show_spinner="Loading model...", max_entries=MODEL_CACHE_ENTRIES)
def _model(root: str, run_id: str, stamp: str) -> tuple[Any, dict[str, Any]]:
    from emotion_core import evaluation as evaluate

    out = evaluate.load_model(run_id)
    with _LOADED_LOCK:
        _LOADED.add((root, run_id, stamp))
    return out


def model_key(run_id: str) -> tuple[str, str, str]:
    """The model cache's key for a run: artifacts root, run id, weights file stamp."""
    return (str(store.paths.root()), run_id, _stamp(store.paths.run_file(run_id, store.paths.WEIGHTS)))


def model_loaded(run_id: str) -> bool:
    """Whether this process has built the run's current model (it may since have been evicted)."""
    with _LOADED_LOCK:
        return model_key(run_id) in _LOADED


def load_model(run_id: str) -> tuple[Any, dict[str, Any]]:
    """A run's model, built once per process (bounded cache) and shared by all sessions."""
    return _model(*model_key(run_id))


@st.cache_data(show_spinner=False, max_entries=32)
def dataset_table(root: str, name: str, table: str, stamp: str) -> pd.DataFrame:
    return store.load_dataset_table(name, table)


def table(name: str, which: str) -> pd.DataFrame:
    """A prepared dataset's index/split/cleaning table (FileNotFoundError if not prepared)."""
    return dataset_table(str(store.paths.root()), name, which,
                         _stamp(store.paths.dataset_table_path(name, which)))


# ---------------------------------------------------------------------------------------------
# Selection shared by every page


def current_dataset() -> str | None:
    names = store.list_datasets()
    runs, _ = all_runs()
    names = sorted(set(names) | {str(r.manifest.get("dataset")) for r in runs})
    if not names:
        return None
    chosen = st.session_state.get("dataset")
    return chosen if chosen in names else names[0]


def selected_runs() -> list[store.RunRecord]:
    """The runs ticked in the sidebar (all runs of the current dataset by default)."""
    runs, _ = all_runs()
    ds = current_dataset()
    mine = [r for r in runs if r.manifest.get("dataset") == ds]
    ids = st.session_state.get("runs")
    if ids:
        chosen = [r for r in mine if r.run_id in ids]
        if chosen:
            return chosen
    return mine


def runs_or_stop(empty_message: str, *, models_only: bool = False
                 ) -> tuple[list[store.RunRecord], dict[str, str]]:
    """The selected runs (trained models only if asked) and their labels; stops the page with
    `empty_message` when there are none."""
    runs = selected_runs()
    if models_only:
        runs = [r for r in runs if r.manifest.get("kind", "model") == "model"]
    if not runs:
        st.info(empty_message)
        st.stop()
    return runs, {r.run_id: tables.run_label(r.manifest) for r in runs}


def render_sidebar() -> None:
    """Dataset and run pickers plus the Train controls, on every page."""
    runs, broken = all_runs()
    names = sorted(set(store.list_datasets()) | {str(r.manifest.get("dataset")) for r in runs})
    with st.sidebar:
        if names:
            st.selectbox("Dataset", names, key="dataset")
            ds = current_dataset()
            mine = [r for r in runs if r.manifest.get("dataset") == ds]
            labels = {r.run_id: tables.run_label(r.manifest) for r in mine}
            st.multiselect("Runs", list(labels), default=list(labels), key="runs",
                           format_func=lambda rid: labels.get(rid, rid))
        else:
            st.caption("No prepared dataset yet.")
        if broken:
            st.warning(f"{len(broken)} broken run(s) skipped: " + "; ".join(
                f"{k} ({v})" for k, v in broken.items()))
        with st.expander("Train", expanded=False):
            train_controls(names)
        job_panel(compact=True)


def _model_names() -> list[str]:
    return list(REGISTRY)


def train_controls(datasets: list[str]) -> None:
    """Choose dataset, models, profile and epochs; start a background job."""
    sources = {n: tables.dataset_root(n) for n in datasets}
    sources = {n: p for n, p in sources.items() if p is not None}
    if not sources:
        st.caption("No dataset folder to train on yet: start the quick demo from Home.")
        return
    ds = st.selectbox("Train on", list(sources), key="train_dataset")
    names = _model_names()
    chosen = st.multiselect("Models", names, default=names[:2], key="train_models")
    profile = st.selectbox("Profile", ["quick", "full"], key="train_profile")
    epochs = st.number_input("Epochs (0 = profile default)", 0, 200, 0, key="train_epochs")
    if st.button("Start training", key="train_start", disabled=not chosen):
        args = ["--data", str(sources[ds]), "--name", ds, "--models", ",".join(chosen),
                "--profile", profile]
        if epochs:
            args += ["--epochs", str(int(epochs))]
        try:
            info = jobs.start_job(args)
            st.success(f"Started job {info.job_id} ({', '.join(chosen)}).")
        except jobs.JobBusyError as exc:
            st.error(str(exc))


def _job_body(job_id: str, compact: bool, was_running: bool) -> None:
    now = jobs.job_status(job_id)
    if now is None:
        return
    label = {"running": "Training job running", "succeeded": "Last job finished",
             "failed": "Last job failed", "cancelled": "Last job cancelled"}[now.state]
    st.caption(f"{label} · {now.job_id}")
    st.progress(min(1.0, max(0.0, now.progress)), text=now.message[:120])
    if now.running and st.button("Cancel job", key=f"cancel_{'c' if compact else 'f'}"):
        jobs.cancel_job()
        st.rerun()
    lines = jobs.read_log(now.job_id).splitlines()
    st.code("\n".join(lines[-(8 if compact else 200):]) or "(no output yet)", language=None)
    if was_running and not now.running:
        st.rerun()  # the job just ended: rerun the whole app so its new runs appear


@st.fragment(run_every=2.0)
def _live_job(job_id: str, compact: bool) -> None:
    _job_body(job_id, compact, was_running=True)


def job_panel(*, compact: bool) -> None:
    """Progress, state and log of the latest job; refreshes itself every 2 s while it runs."""
    info = jobs.job_status()
    if info is None:
        if not compact:
            st.info("No training job has run yet.")
        return
    if info.running:
        _live_job(info.job_id, compact)
    else:
        _job_body(info.job_id, compact, was_running=False)


def pick_image(key: str, dataset: str | None) -> tuple[Any, Path | None, str]:
    """Image source widget: a dataset sample or an upload. Returns (rgb or None, path, caption)."""
    from emotion_core.data import images
    from emotion_core.views import live

    source = st.radio("Image", ["dataset sample", "upload"], horizontal=True, key=f"{key}_src")
    if source == "upload":
        up = st.file_uploader("Upload a picture", type=None, key=f"{key}_upload")
        if up is None:
            return None, None, ""
        try:
            return live.decode_upload(up.getvalue()), None, up.name
        except live.UploadError as exc:
            st.error(str(exc))
            return None, None, ""
    root = tables.dataset_root(dataset) if dataset else None
    if root is None:
        st.info("The dataset folder is not available here: upload a picture instead.")
        return None, None, ""
    try:
        split = table(dataset, "split")
    except FileNotFoundError as exc:
        st.info(str(exc))
        return None, None, ""
    pool = split[split["subset"].isin(["val", "test"])].sort_values("rel").head(200)
    if pool.empty:
        return None, None, ""
    rel = st.selectbox("Sample", list(pool["rel"]), key=f"{key}_sample")
    path = root / rel
    try:
        return images.load_rgb(path), path, rel
    except (images.ImageDecodeError, FileNotFoundError) as exc:
        st.error(f"Cannot read {rel}: {exc}")
        return None, None, ""


def image_key(rgb: Any) -> str:
    """A content hash of a picture, so cached maps follow the image, not the widget."""
    import hashlib

    return hashlib.sha1(rgb.tobytes()).hexdigest() + str(rgb.shape)


@st.cache_data(show_spinner="Computing...", max_entries=128)
def _explained(root: str, run_id: str, stamp: str, kind: str, key: str, params: tuple,
               _rgb: Any, _path: Path | None) -> Any:
    from emotion_core.views import probe

    model, manifest = load_model(run_id)
    if kind == "cam":
        return probe.cam_view(model, manifest, _rgb, params[0], image_path=_path, score=params[1],
                              finer=params[2])
    if kind == "layout":
        return probe.attention_layout(model, manifest, _rgb)
    if kind == "featuremap":
        return probe.feature_map_grid(model, manifest, _rgb, params[0], params[1])
    att = _explained(root, run_id, stamp, "layout", key, (), _rgb, _path)
    if kind == "attention":
        return probe.attention_view(model, manifest, _rgb, att, layer=params[0], head=params[1],
                                    image_path=_path, score=params[2])
    if kind == "rollout":
        return probe.rollout_view(model, manifest, _rgb, att, discard_ratio=params[0],
                                  head_fusion=params[1], image_path=_path, score=params[2])
    raise ValueError(f"unknown explanation kind {kind!r}")


def explained(run_id: str, kind: str, rgb: Any, path: Path | None, *params: Any) -> Any:
    """A probe result (CAM view, attention, rollout, feature-map grid), cached per run+image."""
    return _explained(str(store.paths.root()), run_id,
                      _stamp(store.paths.run_file(run_id, store.paths.WEIGHTS)), kind,
                      image_key(rgb), tuple(params), rgb, path)


def timed(label: str):
    """Context manager that shows how long a block took, as a caption."""
    class _T:
        def __enter__(self):
            self.t = time.perf_counter()

        def __exit__(self, *exc):
            st.caption(f"{label}: {(time.perf_counter() - self.t) * 1000:.0f} ms")
    return _T()
