"""Background training from the app: the Train controls that start a job, and the job panel.

The job itself runs in its own process (emotion_core.jobs); these widgets only start it, show its
state, progress and log, and cancel it. While it runs the panel is a fragment that redraws itself
every 2 s, and when the job ends it reruns the whole app so the new runs appear everywhere.
"""
from __future__ import annotations

import streamlit as st

from emotion_core import jobs
from emotion_core.models import REGISTRY
from emotion_core.views import tables

JOB_REFRESH_S = 2.0  # how often a running job's panel redraws itself
LOG_LINES = {True: 8, False: 200}  # log lines shown: compact (sidebar) or full (Train page)
STATE_TEXT = {"running": "Training job running", "succeeded": "Last job finished",
              "failed": "Last job failed", "cancelled": "Last job cancelled"}


def train_controls(datasets: list[str]) -> None:
    """Choose dataset, models, profile and epochs; start a background job."""
    sources = {n: tables.dataset_root(n) for n in datasets}
    sources = {n: p for n, p in sources.items() if p is not None}
    if not sources:
        st.caption("No dataset folder to train on yet: start the quick demo from Home.")
        return
    ds = st.selectbox("Train on", list(sources), key="train_dataset")
    names = list(REGISTRY)
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


def job_panel(*, compact: bool) -> None:
    """Progress, state and log of the latest job; refreshes itself while it runs."""
    info = jobs.job_status()
    if info is None:
        if not compact:
            st.info("No training job has run yet.")
        return
    if info.running:
        _live_job(info.job_id, compact)
    else:
        _job_body(info.job_id, compact, was_running=False)


@st.fragment(run_every=JOB_REFRESH_S)
def _live_job(job_id: str, compact: bool) -> None:
    _job_body(job_id, compact, was_running=True)


def _job_body(job_id: str, compact: bool, was_running: bool) -> None:
    now = jobs.job_status(job_id)
    if now is None:
        return
    st.caption(f"{STATE_TEXT[now.state]} · {now.job_id}")
    st.progress(min(1.0, max(0.0, now.progress)), text=now.message[:120])
    if now.running and st.button("Cancel job", key=f"cancel_{'c' if compact else 'f'}"):
        jobs.cancel_job()
        st.rerun()
    lines = jobs.read_log(now.job_id).splitlines()
    st.code("\n".join(lines[-LOG_LINES[compact]:]) or "(no output yet)", language=None)
    if was_running and not now.running:
        st.rerun()  # the job just ended: rerun the whole app so its new runs appear
