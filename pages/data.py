"""Data: class distribution per split, samples and mean faces, image statistics, cleaning report."""
from __future__ import annotations

import plotly.express as px
import streamlit as st

from emotion_core import store
from emotion_core.data import images
from emotion_core.views import dataset_tables, display, samples
from pages import _cache, _entry, _sidebar

STRIP_MAX_PX = 720  # a mean-face strip wider than this is fitted to the page width

_entry.require_app("pages/data.py")

st.title("Data")
ds = _sidebar.current_dataset()
if ds is None or ds not in store.list_datasets():
    if ds is not None:  # known only from its runs: a fresh clone's bundled models, reference tables
        st.info(f"**{ds}** is known here only from its runs (bundled models, reference tables): "
                "its images are not on this machine, so there is nothing to count or show. "
                + dataset_tables.bring_images(ds, _sidebar.dataset_runs()))
    else:
        st.info("No prepared dataset yet: run `python -m scripts.prepare_data --data DIR` or start "
                "the quick demo from Home.")
    st.stop()
kind, where = dataset_tables.data_source(ds)
st.caption(f"Dataset **{ds}** · source: {kind} · `{where}`")


def _show(name: str) -> None:
    st.session_state["dataset"] = name  # the sidebar's dataset picker


def combined(name: str, sources: list[str]) -> None:
    """A dataset of several sets trained together: its subsets per set and the copies found
    across sets; each set's pictures and cleaning report are on its own Data page."""
    st.info(f"**{name}** is {len(sources)} prepared sets trained together. Each keeps its own "
            "cleaning and split; the sets were then checked for copies of one picture across "
            "them. Each set's folders, samples, mean faces, image statistics and cleaning "
            "report are on its own page:")
    known = set(_sidebar.dataset_names())
    for col, source in zip(st.columns(len(sources)), sources, strict=True):
        col.button(f"Show {source}", key=f"data_show_{source}", on_click=_show, args=(source,),
                   disabled=source not in known, width="stretch")
    st.subheader("Class distribution per set")
    counts = dataset_tables.counts_by_source(name)
    fig = px.bar(counts, x="split", y="n", color="class", barmode="group", facet_col="source",
                 height=340, labels={"n": "images", "split": ""})
    fig.update_yaxes(matches=None, showticklabels=True)  # a small set next to a large one
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10})
    st.plotly_chart(fig, width="stretch", key="data_counts_sources")
    st.caption("The subsets the models train and are tested on, after each set's cleaning and "
               "carving and the check across sets (each set on its own scale).")
    for source, (line, warnings) in dataset_tables.source_split_notes(sources).items():
        st.caption(f"{source}: {line}" if line else source)
        for warning in warnings:
            st.warning(f"{source}: {warning}")
    st.subheader("Copies across sets")
    across = _cache.table(name, "cleaning")
    if across.empty:
        st.success("No picture appears in two of the sets (same decoded pixels, or the same "
                   "bytes where pixels were not compared), so nothing was dropped.")
    else:
        st.caption("A copy is kept once, in the most held-out subset (test, then val, then "
                   "train); copies with different labels are dropped from train and val.")
        st.dataframe(across, hide_index=True, width="stretch", placeholder=display.MISSING)


sources = dataset_tables.dataset_sources(ds)
if sources:
    combined(ds, sources)
    st.stop()

st.subheader("Class distribution")
counts = dataset_tables.class_counts(ds)
if counts.empty:
    st.info("The dataset report holds no class counts.")
else:
    top = float(counts["n"].max()) * 1.1
    for col, stage in zip(st.columns(2), (dataset_tables.SOURCE_STAGE, dataset_tables.FINAL_STAGE), strict=True):
        part = counts[counts["stage"] == stage]
        with col:
            st.markdown(f"**{stage[0].upper() + stage[1:]}**")
            if part.empty:
                st.caption("none recorded")
                continue
            fig = px.bar(part, x="split", y="n", color="class", barmode="group", height=320,
                         labels={"n": "images", "split": ""}, range_y=[0, top])
            fig.update_layout(margin={"l": 10, "r": 10, "t": 10, "b": 10})
            st.plotly_chart(fig, width="stretch", key=f"data_counts_{stage[:5]}")
    st.caption("Left: readable images per split folder of the source. Right: the subsets after "
               "cleaning (duplicates, unreadable and mislabelled files dropped) and carving "
               "validation and test out of train where the source has none.")
split_line, split_warnings = dataset_tables.split_notes(ds)
if split_line:
    st.caption(split_line)
for warning in split_warnings:
    st.warning(warning)

st.subheader("Samples and mean faces")
gallery = samples.eda_gallery(ds)
grids = [(p, c) for p, c in gallery if p.stem.startswith("sample_grid")]
means = [(p, c) for p, c in gallery if not p.stem.startswith("sample_grid")]
if grids:
    st.image(str(grids[0][0]), caption=grids[0][1])
for picture, caption in means:  # 160 px per face; a long strip spans the page instead
    width = samples.strip_width(picture)
    st.image(str(picture), caption=caption, width=width if width <= STRIP_MAX_PX else "stretch")
if len(grids) > 1:
    with st.expander("Sample grids of the other subsets"):
        for picture, caption in grids[1:]:
            st.image(str(picture), caption=caption)
if not gallery:
    st.info("No EDA pictures saved for this dataset yet: `python -m scripts.prepare_data --data "
            "DIR` writes them (the quick demo does too).")

st.subheader("Image size and mode")
try:
    st.dataframe(dataset_tables.image_stats(ds), hide_index=True, width="stretch",
                 placeholder=display.MISSING)
except FileNotFoundError as exc:
    st.info(str(exc))

st.subheader("Cleaning report")
issues = dataset_tables.issue_counts(ds)
if len(issues):
    st.plotly_chart(px.bar(issues, x="issue", y="files", labels={"files": "files"}),
                    width="stretch")
else:
    st.success("No cleaning issue: every file was readable, unique, large enough and consistently "
               "labelled, so nothing was dropped or flagged.")
try:
    cleaning = _cache.table(ds, "cleaning")
except FileNotFoundError as exc:
    st.info(str(exc))
    st.stop()
if cleaning.empty:
    st.stop()
kinds = sorted(cleaning["issue"].astype(str).unique())
pick = st.multiselect("Issue kinds", kinds, default=kinds, key="data_issue_kinds")
shown = cleaning[cleaning["issue"].astype(str).isin(pick)]
st.dataframe(shown, hide_index=True, width="stretch", placeholder=display.MISSING)
if dataset_tables.dataset_root(ds) is not None and len(shown):
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
