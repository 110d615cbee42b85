"""Confusion: the matrix per run; a cell shows the images behind it with their probabilities."""
from __future__ import annotations

import plotly.express as px
import streamlit as st

from emotion_core import store, words
from emotion_core.data import images
from emotion_core.views import samples, tables
from pages import _cache, _entry, _sidebar

_entry.require_app("pages/confusion.py")
st.title("Confusion")
runs, labels = _sidebar.runs_or_stop("No runs for this dataset yet.", tables_only_ok=True)
rid = st.selectbox("Run", tables.best_first(runs), format_func=labels.get, key="cm_run",
                   help="Best validation macro-F1 first, as on Compare.")
try:
    rec = _cache.run_record(rid)
except store.BrokenRunError as exc:
    st.error(f"This run is broken: {exc}")
    st.stop()
subsets = tables.subsets_of(rec)
if not subsets:
    st.info("This run stored no per-image predictions.")
    st.stop()
subset = st.radio("Split", subsets, horizontal=True, key="cm_subset")
norm = st.toggle("Normalise rows (recall)", key="cm_norm")
m = tables.confusion(rec, subset, normalise=norm)
fig = px.imshow(m.values, x=list(m.columns), y=list(m.index), text_auto=".2f" if norm else True,
                color_continuous_scale="Blues", labels={"x": "predicted", "y": "true"})
st.plotly_chart(fig, width="stretch")

st.subheader("Images behind a cell")
classes = list(m.index)
c1, c2 = st.columns(2)
true = c1.selectbox("True class", classes, key="cm_true")
default_pred = next((i for i, c in enumerate(classes) if c != true), 0)
pred = c2.selectbox("Predicted class", classes, index=default_pred, key="cm_pred")
ex = tables.cell_examples(rec, subset, true, pred)
st.caption(f"{words.counted(len(ex), 'image')} shown · "
           f"{'correct' if true == pred else 'misclassified'}")
dataset = str(rec.manifest.get("dataset"))
prob_cols = [c for c in ex.columns if c.startswith("p_")]
root = samples.run_images_root(rec.manifest)
if root is None and len(ex):  # one line and a table, not a wall of "unavailable" captions
    st.info(f"The images of dataset '{dataset}' are not on this machine (the run read them from "
            f"`{rec.manifest.get('dataset_root', '?')}`); their names and probabilities:")
    st.dataframe(ex[["rel", *prob_cols]], hide_index=True)
    st.stop()
cols = st.columns(4)
for i, row in ex.iterrows():
    probs = " ".join(f"{c[2:]} {row[c]:.2f}" for c in prob_cols)
    with cols[i % 4]:
        try:
            st.image(samples.load_sample(dataset, row["rel"], root)[0],
                     caption=f"{row['rel']}\n{probs}")
        except (images.ImageDecodeError, FileNotFoundError):
            st.caption(f"{row['rel']} (image unavailable) · {probs}")
