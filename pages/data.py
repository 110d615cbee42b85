"""Data: class distribution per split, samples and mean faces, image statistics, cleaning report."""
from __future__ import annotations

import plotly.express as px
import streamlit as st

from emotion_core import store
from emotion_core.data import images
from emotion_core.views import samples, tables
from pages import _cache, _sidebar

st.title("Data")
ds = _sidebar.current_dataset()
if ds is None or ds not in store.list_datasets():
    st.info("No prepared dataset yet: run `python -m scripts.prepare_data --data DIR` or start the "
            "quick demo from Home.")
    st.stop()
kind, where = tables.data_source(ds)
st.caption(f"Dataset **{ds}** · source: {kind} · `{where}`")

st.subheader("Class distribution per split")
counts = tables.class_counts(ds)
if counts.empty:
    st.info("The dataset report holds no class counts.")
else:
    st.plotly_chart(px.bar(counts, x="split", y="n", color="class", barmode="group"),
                    width="stretch")

st.subheader("Samples and mean faces")
gallery = samples.eda_gallery(ds)
for picture, caption in gallery:
    st.image(str(picture), caption=caption)
if not gallery:
    st.info("No EDA images saved for this dataset yet (they are written by prepare_data).")

st.subheader("Image size and mode")
try:
    st.dataframe(tables.image_stats(ds), hide_index=True, width="stretch")
except FileNotFoundError as exc:
    st.info(str(exc))

st.subheader("Cleaning report")
issues = tables.issue_counts(ds)
if len(issues):
    st.plotly_chart(px.bar(issues, x="issue", y="files"), width="stretch")
try:
    cleaning = _cache.table(ds, "cleaning")
except FileNotFoundError as exc:
    st.info(str(exc))
    st.stop()
if cleaning.empty:
    st.success("No issue found: every file was readable, unique and consistently labelled.")
    st.stop()
kinds = sorted(cleaning["issue"].astype(str).unique())
pick = st.multiselect("Issue kinds", kinds, default=kinds, key="data_issue_kinds")
shown = cleaning[cleaning["issue"].astype(str).isin(pick)]
st.dataframe(shown, hide_index=True, width="stretch")
if tables.dataset_root(ds) is not None and len(shown):
    f = st.selectbox("View an offending image", list(shown["file"].astype(str))[:500],
                     key="data_offending")
    row = shown[shown["file"].astype(str) == f].iloc[0]
    try:
        rgb, _ = samples.load_sample(ds, f)
        st.image(rgb, caption=f"{f} · {row['issue']} · {row['action']}", width=320)
    except images.ImageDecodeError as exc:
        st.warning(f"This file cannot be shown: {exc}")
    except FileNotFoundError as exc:
        st.warning(f"{f} cannot be shown: {exc}")
