"""Confusion: the matrix per run; a cell shows the images behind it with their probabilities;
the images most of the selected runs miss."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from emotion_core import store, words
from emotion_core.data import images
from emotion_core.views import display, run_choice, samples, tables
from pages import _cache, _entry, _sidebar

_entry.require_app("pages/confusion.py")
st.title("Confusion")
runs, labels = _sidebar.runs_or_stop("No runs for this dataset yet.", tables_only_ok=True)
AGREEMENT_SHOWN = 16  # images most missed, shown as pictures


def one_run() -> None:
    """One run's matrix on a split, then the pictures behind a cell of it."""
    rid = st.selectbox("Run", run_choice.best_first(runs), format_func=labels.get, key="cm_run",
                       help="Best validation macro-F1 first, as on Compare.")
    try:
        rec = _cache.run_record(rid)
    except store.BrokenRunError as exc:
        st.error(f"This run is broken: {exc}")
        return
    subsets = tables.subsets_of(rec)
    if not subsets:
        st.info("This run stored no per-image predictions.")
        return
    subset = st.radio("Split", subsets, horizontal=True, key="cm_subset")
    norm = st.toggle("Normalise rows (recall)", key="cm_norm")
    m = tables.confusion(rec, subset, normalise=norm)
    fig = px.imshow(m.values, x=list(m.columns), y=list(m.index),
                    text_auto=".2f" if norm else True, color_continuous_scale="Blues",
                    labels={"x": "predicted", "y": "true"})
    st.plotly_chart(fig, width="stretch")
    cell_images(rec, subset, list(m.index))


def cell_images(rec: store.RunRecord, subset: str, classes: list[str]) -> None:
    """The pictures behind one cell of the run's matrix."""
    st.subheader("Images behind a cell")
    c1, c2 = st.columns(2)
    true = c1.selectbox("True class", classes, key="cm_true")
    default_pred = next((i for i, c in enumerate(classes) if c != true), 0)
    pred = c2.selectbox("Predicted class", classes, index=default_pred, key="cm_pred")
    ex = tables.cell_examples(rec, subset, true, pred)
    st.caption(f"{words.counted(len(ex), 'image')} shown · "
               f"{'correct' if true == pred else 'misclassified'}")
    prob_cols = [c for c in ex.columns if c.startswith("p_")]
    captions = [f"{row['rel']}\n" + " ".join(f"{c[2:]} {row[c]:.2f}" for c in prob_cols)
                for _, row in ex.iterrows()]
    pictures(rec.manifest, ex[["rel", *prob_cols]], captions)


def pictures(manifest: dict, rows: pd.DataFrame, captions: list[str]) -> None:
    """Four pictures a row, or their names and numbers when the images are not on this machine."""
    dataset = str(manifest.get("dataset"))
    root = samples.run_images_root(manifest)
    if root is None and len(rows):  # one line and a table, not a wall of "unavailable" captions
        st.info(f"The images of dataset '{dataset}' are not on this machine (the run read them "
                f"from `{manifest.get('dataset_root', '?')}`); their names and numbers:")
        st.dataframe(rows.rename(columns=display.HEADINGS), hide_index=True)
        return
    cols = st.columns(4)
    for i, (rel, caption) in enumerate(zip(rows["rel"], captions, strict=True)):
        with cols[i % 4]:
            try:
                st.image(samples.load_sample(dataset, rel, root)[0], caption=caption)
            except (images.ImageDecodeError, FileNotFoundError):
                st.caption(f"{caption} (image unavailable)")


def most_missed() -> None:
    """The images most of the selected runs miss, and what a vote of the runs would score."""
    st.subheader("Images most runs miss")
    st.caption("Every run in the sidebar's selection with per-image answers, on the images all "
               "of the runs picked here answered. An image that every run misses, whatever its "
               "model and training data, is a hard face or a questionable label; \"right by "
               "most runs\" is what a majority vote of the runs would score.")
    loaded = []
    for r in runs:
        try:
            loaded.append(_cache.run_record(r.run_id))
        except store.BrokenRunError:
            pass  # reported above when picked, and on Home
    splits = [s for s in ("test", "val") if len(tables.agreement_candidates(loaded, s)) >= 2]
    if not splits:
        st.info("Pick at least two runs with per-image answers on the same split.")
        return
    split = st.radio("Split", splits, horizontal=True, key="agree_subset")
    voters = tables.agreement_candidates(loaded, split)
    ids = [r.run_id for r in voters]
    plain = [r.run_id for r in voters if r.manifest.get("kind", "model") != "ensemble"]
    picked = st.multiselect("Runs that vote", ids, default=plain if len(plain) >= 2 else ids,
                            format_func=labels.get, key="agree_runs",
                            help="Ensembles are left out at first: they repeat their members.")
    try:
        summary, hard = tables.agreement_tables([r for r in voters if r.run_id in picked], split)
    except ValueError as exc:
        st.warning(str(exc))
        return
    st.dataframe(display.styled(summary.rename(columns=display.HEADINGS)), hide_index=True,
                 width="stretch")
    hard = hard[hard["missed"] > 0].head(AGREEMENT_SHOWN)
    st.caption(f"The {words.counted(len(hard), 'image')} most missed, most first.")
    captions = [f"{row['rel']}\nlabelled {row['label']} · missed by {row['missed']} of "
                f"{row['runs']} · most said {row['said_instead']}" for _, row in hard.iterrows()]
    rows = hard[["rel", "label", "missed", "said_instead"]].rename(columns={"label": "labelled"})
    pictures(voters[0].manifest, rows, captions)


one_run()
most_missed()
