"""Compare: the runs side by side, per-class recall, training curves, and the study's numbers."""
from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from emotion_core import store
from emotion_core.views import display, tables
from emotion_core.views import labels as run_names
from pages import _cache, _charts, _entry, _sidebar

# Rows are named by the run's label (model · weights · when · origin), distinct per row: a
# user's run and a reference run of the same model and weights would otherwise read alike.
SCORE_COLUMNS = ["label", "val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1",
                 "val_ece"]
COST_COLUMNS = ["label", "params", "flops", "latency_ms", "timed_on", "train_seconds",
                "epochs_run", "profile"]
PROVENANCE_COLUMNS = ["label", "role", "run_id"]
CURVES = {"val_macro_f1": "val macro-F1", "val_acc": "val accuracy", "val_loss": "val loss",
          "train_loss": "train loss", "train_acc": "train accuracy", "lr": "learning rate"}
BAR_METRICS = ["val_macro_f1", "val_accuracy", "test_macro_f1", "test_accuracy", "val_ece",
               "latency_ms", "params", "train_seconds"]

# px per column of the interval and paired tables, so both fit the page (the wide layout's
# main column is about 940 px at a 1400 px window)
NARROW = {"run": 300, "subset": 60, "source": 100, "n": 60, "correct": 70}


def _fitted(table: pd.DataFrame) -> dict[str, Any]:
    """Column widths for a table headed by `display.HEADINGS`: known ones narrow, others 85 px."""
    return {col: st.column_config.Column(width=NARROW.get(col, 85)) for col in table.columns}


_entry.require_app("pages/compare.py")
st.title("Compare")
runs = _sidebar.selected_runs()
if not runs:
    st.info("No runs for this dataset yet: train some on the Train page or start the demo on Home.")
    st.stop()
table = tables.comparison_table(runs)
names = dict(zip(table["run_id"], table["label"], strict=True))  # each run's label, everywhere
chance = display.chance_level(runs)
st.subheader("Scores")
st.caption("Best validation macro-F1 first. Each row is one run: model · the weights it "
           "started from · when it was made · where it came from, if not trained here (hover "
           "the heading for what each weights source is). Test columns are empty when the "
           "dataset has no test split of its own, val columns for a refit (it trained on val; "
           "see Provenance).")
_charts.run_table(table, SCORE_COLUMNS, {"label": 425})  # fits beside five numbers
_charts.collapsed_warnings(runs, names)
for name, (kind, note) in tables.reference_notes(runs).items():
    st.caption(tables.reference_caption(name, kind, note))
st.subheader("Cost")
_charts.run_table(table, COST_COLUMNS, {"label": 260, "timed_on": 180})  # fits 1400 px
st.subheader("Provenance")
st.caption("Where each model learned: trained here, a bundled release model (model card on "
           "Predict), a GPU or CPU reference run (tables only) or an external reference model.")
_charts.run_table(table, PROVENANCE_COLUMNS, {"label": 360, "role": 290, "run_id": 280})

metric = st.selectbox("Bar chart metric", BAR_METRICS, format_func=display.heading,
                      key="cmp_metric")
_charts.score_bars(table, metric, chance, key="cmp_bars")

full = []
for r in runs:
    try:
        full.append(_cache.run_record(r.run_id))
    except store.BrokenRunError as exc:
        st.warning(str(exc))

st.subheader("How sure these scores are")
st.caption("Accuracy with its 95% interval (Wilson) from the number of images behind it: on a "
           "small split one image moves it a lot (70 images: 1.4 points each). A run on several "
           "sets has a row for all of them and one per set.")
intervals = tables.accuracy_intervals(full, names)
if len(intervals):
    shown = intervals.rename(columns=display.HEADINGS)
    st.dataframe(display.styled(shown), hide_index=True, width="stretch",
                 placeholder=display.MISSING, column_config=_fitted(shown))
loaded = {r.run_id: r for r in full}
for r in tables.pairing_candidates(runs, _cache.all_runs()[0]):
    if r.run_id not in loaded:
        try:
            loaded[r.run_id] = _cache.run_record(r.run_id)
        except store.BrokenRunError:
            pass  # listed as broken on Home; nothing to pair
pairable = tables.paired_runs(list(loaded.values()))
pair_names = run_names.run_labels(pairable)
if len(pairable) >= 2:
    st.caption("Two runs on the same images (the runs shown here, and any other run scored on "
               "one of their sets): they differ only where exactly one is right. The "
               "p-value (exact McNemar test) is how often a coin would split those images at "
               "least this unevenly; above 0.05 the difference may be chance.")
    ids = [r.run_id for r in pairable]
    left, right = st.columns(2)
    a = left.selectbox("Run A", ids, format_func=pair_names.get, key="cmp_pair_a")
    b = right.selectbox("Run B", ids, index=1, format_func=pair_names.get, key="cmp_pair_b")
    if a == b:
        st.info("Pick two different runs.")
    else:
        by_id = {r.run_id: r for r in pairable}
        try:
            pair = tables.paired_table(by_id[a], by_id[b])
        except ValueError as exc:
            st.warning(str(exc))
        else:
            if len(pair):
                shown = pair.rename(columns=display.HEADINGS)
                st.dataframe(display.styled(shown), hide_index=True, width="stretch",
                             column_config=_fitted(shown))
            else:
                st.info("These two runs share no scored image (different sets or splits).")

st.subheader("Per-class recall (validation)")
per = tables.per_class_long(full, "val", names)
if len(per):
    st.plotly_chart(px.bar(per, x="class", y="recall", color="run", barmode="group"),
                    width="stretch")

st.subheader("Training curves")
hist = tables.history_long(full, names)
ycols = [c for c in ("val_macro_f1", "val_acc", "val_loss", "train_loss", "train_acc", "lr")
         if c in hist.columns]
if len(hist) and ycols:
    y = st.selectbox("Curve", ycols, key="cmp_curve", format_func=lambda c: CURVES.get(c, c))
    st.plotly_chart(px.line(hist, x="epoch", y=y, color="run", markers=True,
                            labels={y: CURVES.get(y, y)}), width="stretch")
else:
    st.info("No training history (ensembles have none).")

st.subheader("Across datasets (test accuracy)")
cross = tables.cross_matrix(runs)
if len(cross):
    st.caption("Rows are runs, columns the test split of each dataset: the set a run trained on "
               "and every other set it was scored on. A run is tuned on nothing it is tested on.")
    cross.insert(0, "run", cross.pop("run_id").map(names))
    st.dataframe(display.styled(cross), hide_index=True, width="stretch",
                 placeholder=display.MISSING)
else:
    st.caption("No run was scored on another dataset yet: `python -m scripts.cross_eval --data "
               "DIR [--data DIR ...]` scores every run on each set's test split.")

st.subheader("The study's reported numbers (for reference)")
st.caption(tables.STUDY_NOTE)
st.dataframe(display.styled(tables.study_table(table)), hide_index=True, width="stretch",
             placeholder=display.MISSING,
             column_config={"model": st.column_config.Column(width=260),
                            "our weights": st.column_config.Column(width="medium")})
