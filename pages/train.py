"""Train: the background job's live progress and full log, cancel, and the runs it produced."""
from __future__ import annotations

import streamlit as st

from emotion_core import jobs
from emotion_core.views import tables
from pages import _cache, _jobs

st.title("Train")
st.markdown("Choose dataset, models, profile and epochs under **Train** in the sidebar. The job "
            "runs `python -m scripts.train` in its own process; only one job runs at a time, and "
            "closing or reloading this page does not stop it.")
_jobs.job_panel(compact=False)
info = jobs.job_status()
if info is not None:
    st.caption("Command: `" + " ".join(info.steps[-1][1:] if info.steps else []) + "`")
st.subheader("Runs on disk")
runs, broken = _cache.all_runs()
if runs:
    st.dataframe(tables.comparison_table(runs)[["label", "run_id", "model", "weights_source",
                                                  "dataset", "profile", "val_macro_f1",
                                                  "train_seconds"]],
                 hide_index=True, width="stretch", column_config={"label": "run"})
else:
    st.info("No runs yet.")
for rid, why in broken.items():
    st.warning(f"Broken run `{rid}`: {why}")
