"""Train: the background job's live progress and full log, cancel, and the runs it produced."""
from __future__ import annotations

import streamlit as st

from emotion_core import jobs
from emotion_core.views import tables
from pages import _cache, _charts, _entry, _jobs, _sidebar

_entry.require_app("pages/train.py")
st.title("Train")
st.markdown("Choose one dataset or several (they train together), models, profile, epochs and "
            "recipe, then start. The job runs "
            "`python -m scripts.train` in its own process; only one job runs at a time, and "
            "closing or reloading this page does not stop it. New runs appear on every page, "
            "ticked in the sidebar, as each model finishes.")
_jobs.train_form_widgets(_sidebar.dataset_names(), _sidebar.current_dataset())
st.subheader("Latest job")
_jobs.job_panel(compact=False)
info = jobs.job_status()
if info is not None:
    st.caption("Command: `python " + " ".join(info.steps[-1][1:] if info.steps else []) + "`")
st.subheader("Runs on disk")
runs, broken = _cache.all_runs()
if runs:
    _charts.run_table(tables.comparison_table(runs), ["model", "dataset", "profile", "val_macro_f1",
                                                      "train_seconds", "run_id"],
                      {"model": 160, "dataset": 145, "profile": 75, "run_id": 345})  # long ids fit
else:
    st.info("No runs yet.")
for rid, why in broken.items():
    st.warning(f"Broken run `{rid}`: {why}")
