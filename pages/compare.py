"""Compare: the runs side by side, per-class recall, training curves, and the study's numbers."""
from __future__ import annotations

import plotly.express as px
import streamlit as st

from emotion_core import store
from emotion_core.views import tables
from pages import _cache, _sidebar

st.title("Compare")
runs = _sidebar.selected_runs()
if not runs:
    st.info("No runs for this dataset yet: train some from the sidebar or start the demo on Home.")
    st.stop()
table = tables.comparison_table(runs)
names = dict(zip(table["run_id"], table["label"], strict=True))  # each run's label, everywhere
st.subheader("Comparison table")
st.caption("Every row names the weights the model started from; test columns are empty when the "
           "dataset has no test split of its own.")
shown = table.drop(columns=["study_val_accuracy"])
st.dataframe(shown[["label", *(c for c in shown.columns if c != "label")]], hide_index=True,
             width="stretch", column_config={
                 "label": "run", **{c: st.column_config.NumberColumn(format="%.3f") for c in
                                    ("val_accuracy", "val_macro_f1", "test_accuracy",
                                     "test_macro_f1", "val_ece")}})

metric = st.selectbox("Bar chart metric", ["val_accuracy", "val_macro_f1", "test_accuracy",
                                           "test_macro_f1", "val_ece", "latency_ms", "params",
                                           "train_seconds"], key="cmp_metric")
st.plotly_chart(px.bar(table, x="label", y=metric, color="weights_source",
                       labels={"label": "run"}), width="stretch")

st.subheader("Per-class recall (validation)")
full = []
for r in runs:
    try:
        full.append(_cache.run_record(r.run_id))
    except store.BrokenRunError as exc:
        st.warning(str(exc))
per = tables.per_class_long(full, "val", names)
if len(per):
    st.plotly_chart(px.bar(per, x="class", y="recall", color="run", barmode="group"),
                    width="stretch")

st.subheader("Training curves")
hist = tables.history_long(full, names)
ycols = [c for c in ("val_macro_f1", "val_acc", "val_loss", "train_loss", "train_acc", "lr")
         if c in hist.columns]
if len(hist) and ycols:
    y = st.selectbox("Curve", ycols, key="cmp_curve")
    st.plotly_chart(px.line(hist, x="epoch", y=y, color="run", markers=True), width="stretch")
else:
    st.info("No training history (ensembles have none).")

st.subheader("The study's reported numbers (for reference)")
st.caption(tables.STUDY_NOTE)
st.dataframe(tables.study_table(table), hide_index=True, width="stretch")
