"""Data: class distribution per split, samples and mean faces, image statistics, cleaning report."""
from __future__ import annotations

import plotly.express as px
import streamlit as st

from emotion_core import store
from emotion_core.data import images
from emotion_core.views import tables
from pages import _common as common

st.title("Data")
ds = common.current_dataset()
if ds is None or ds not in store.list_datasets():
    st.info("No prepared dataset yet: run `python -m scripts.prepare_data --data DIR` or start the "
            "quick demo from Home.")
    st.stop()
kind, where = tables.data_source(ds)
st.caption(f"Dataset **{ds}** · source: {kind} · `{where}`")

st.subheader("Class distribution per split")
counts = tables.class_counts(ds)
if counts.empty:
    st.info("report.json holds no counts.")
else:
    st.plotly_chart(px.bar(counts, x="split", y="n", color="class", barmode="group"),
                    width="stretch")

st.subheader("Samples and mean faces")
eda = store.paths.eda_dir(ds)
pngs = sorted(eda.glob("*.png")) if eda.is_dir() else []
if pngs:
    for p in pngs:
        st.image(str(p), caption=p.stem.replace("_", " "))
else:
    st.info("No EDA images saved for this dataset yet (they are written by prepare_data).")

st.subheader("Image size and mode")
try:
    stats = tables.image_stats(ds)
    st.dataframe(stats, hide_index=True, width="stretch")
except FileNotFoundError as exc:
    st.info(str(exc))

st.subheader("Cleaning report")
rep = store.load_report(ds)
issues = rep.get("issues") or {}
if issues:
    st.plotly_chart(px.bar(x=list(issues), y=list(issues.values()),
                           labels={"x": "issue", "y": "files"}), width="stretch")
try:
    cleaning = common.table(ds, "cleaning")
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
root = tables.dataset_root(ds)
if root is not None and len(shown):
    f = st.selectbox("View an offending image", list(shown["file"].astype(str))[:500],
                     key="data_offending")
    row = shown[shown["file"].astype(str) == f].iloc[0]
    try:
        st.image(images.load_rgb(root / f), caption=f"{f} · {row['issue']} · {row['action']}",
                 width=320)
    except images.ImageDecodeError as exc:
        st.warning(f"This file cannot be shown: {exc}")
    except FileNotFoundError:
        st.warning(f"{f} is no longer in {root}.")
