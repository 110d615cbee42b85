"""Streamlit entry point: navigation, the shared sidebar, the model warm-up, and the Home page.

Run with `streamlit run app.py` (or `make run`, which also starts the quick demo job first).
Pages hold widgets and charts only; every number comes from emotion_core. Importing this file
changes no process state (no environment variables): `main()` at the bottom draws the app.
"""
from __future__ import annotations

import streamlit as st

from emotion_core import jobs, store, words
from emotion_core.views import dataset_tables, display, tables
from pages import _cache, _charts, _entry, _sidebar, _warmup

HOME_COLUMNS = ["label", "val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1",
                "latency_ms"]  # run ids and where each latency was timed: on Compare


def main() -> None:
    st.set_page_config(page_title="Emotion benchmark", layout="wide")
    _entry.mark_app_run()
    nav = st.navigation(pages())
    _entry.resume_intended()  # a page URL that was the server's first request
    _sidebar.render()
    _warmup.start()  # load the current dataset's models in the background
    nav.run()  # Home (below) or the page chosen


def pages() -> list[st.Page]:
    return [
        st.Page(home, title="Home", icon=":material/home:", default=True),
        st.Page("pages/data.py", title="Data", icon=":material/dataset:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/leaderboard:"),
        st.Page("pages/confusion.py", title="Confusion", icon=":material/grid_on:"),
        st.Page("pages/feature_maps.py", title="Feature maps", icon=":material/layers:"),
        st.Page("pages/explain.py", title="Explain", icon=":material/visibility:"),
        st.Page("pages/predict.py", title="Predict", icon=":material/photo_camera:"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    ]


def home() -> None:
    st.title("Facial-emotion benchmark explorer")
    st.markdown(
        "Compare image classifiers (CNNs and Vision Transformers) that tell **angry**, **happy** "
        "and **sad** faces apart, look inside them (feature maps, Grad-CAM, ViT attention) and try "
        "them live on your own photos. Every number is labelled with the weights the model really "
        "started from (`scratch`, `imagenet (offline package)`, ...).")
    runs, broken = _cache.all_runs()
    on_disk = _sidebar.dataset_runs()
    if not any(r.own for r in runs):  # nothing of the user's yet
        first_run(broken)
        bundled = [r for r in runs if r.bundled]
        if bundled:
            st.success(f"Meanwhile, {words.counted(len(bundled), 'bundled real-face model')} "
                       f"{words.verb(len(bundled), 'is', 'are')} ready: open "
                       "**Predict** to try them on your photo or webcam.")
            st.page_link("pages/predict.py", label="Predict with the bundled models",
                         icon=":material/photo_camera:")
        if not on_disk:
            return
        # the dataset picked has runs all the same (bundled ones, reference tables): list them
    ds = _sidebar.current_dataset()
    kind, where = dataset_tables.data_source(ds) if ds else ("unknown", "")
    shown = _sidebar.selected_runs()
    c1, c2, c3 = st.columns(3)
    c1.metric("Dataset", ds or "none")
    c2.metric("Data source", kind)
    c3.metric("Runs shown", f"{len(shown)} of {len(on_disk)}",
              help="The runs of this dataset ticked in the sidebar, of all its runs on disk.")
    if where:
        st.caption(f"Images from `{where}`.")
    elif kind == dataset_tables.NOT_PREPARED:
        st.caption("This store holds runs of this dataset (bundled models, reference tables) but "
                   "not its images. " + dataset_tables.bring_images(ds, on_disk))
    if broken:
        st.warning("Broken runs (listed, not loaded; the others work): " + "; ".join(
            f"`{k}`: {v}" for k, v in broken.items()))
    table = tables.comparison_table(shown)
    names = dict(zip(table["run_id"], table["label"], strict=True))
    bundled_section(shown, names)
    st.subheader("Leaderboard (best validation macro-F1 first)")
    if any(store.runs.is_refit(r.manifest) for r in shown):
        st.caption("Refits (the bundled models among them) trained on their validation split "
                   "too, so they have no validation score and come last: their test columns are "
                   "theirs to compare.")
    _charts.run_table(table, HOME_COLUMNS)
    _charts.collapsed_warnings(shown, names)
    if (note := tables.timing_note(shown)) is not None:
        st.caption(note)
    _charts.score_bars(table, "val_macro_f1", display.chance_level(shown), key="home_bars")
    st.caption("Pages: Data (EDA and cleaning), Compare, Confusion, Feature maps, Explain, "
               "Predict (photo, snapshot or live webcam), Train (background jobs).")


def bundled_section(shown: list[store.RunRecord], names: dict[str, str]) -> None:
    """The ready models first: the bundled ones beside the peers, on every set's test split."""
    table = tables.bundled_vs_peers(shown, names)
    if table.empty:
        return
    st.subheader("Bundled models beside the peers")
    st.caption("Test accuracy on each set's own test split (carved from its training images "
               "where the set ships none), which chose no epoch and no model; rows in a fixed "
               "order, not ranked. The peers are models trained elsewhere, used as they ship. "
               "CPU: one image's forward pass, batch 1, on the CPU named beside it (Predict's "
               "whole path per face, with the crop and the mirror image: the README's "
               "targets). Model cards on Predict.")
    # the label already ends with "bundled" or "external reference": no role column
    # short headings, so the labels fit whole at 1400 px (their tooltips say the rest)
    shown_table = table.drop(columns="role").rename(
        columns={**display.HEADINGS, "test_accuracy": "all sets", "latency_ms": "CPU ms"})
    st.dataframe(display.styled(shown_table).format("{:.1f}", subset=["CPU ms"],
                                                               na_rep=display.MISSING),
                 hide_index=True, width="stretch", placeholder=display.MISSING,
                 column_config={display.heading("label"): st.column_config.Column(width=445),
                                "all sets": st.column_config.Column(
                                    help="test accuracy on every set's test split together"),
                                "CPU ms": st.column_config.Column(
                                    width=70, help=display.HELP["latency_ms"]),
                                display.heading("timed_on"): st.column_config.Column(
                                    width=150, help=display.HELP["timed_on"])})


def first_run(broken: dict[str, str]) -> None:
    """The empty state: say what is missing and offer to start the quick demo job."""
    missing = dataset_tables.missing_pieces()
    st.info("Nothing trained yet. This is what is missing:" if missing else
            "Nothing of yours trained yet.")
    for item in missing:
        st.markdown(f"- {item}")
    if broken:
        st.warning("Broken runs found (not loaded): " + "; ".join(
            f"`{k}`: {v}" for k, v in broken.items()))
    info = jobs.job_status()
    if info is not None and info.running:
        st.success("The demo job is running: pages fill in as each model finishes.")
        return
    st.markdown("The quick demo generates synthetic faces, then trains every model with the "
                "quick CPU profile in the background (minutes on 2 cores).")
    if st.button("Start the quick demo job", type="primary", key="start_demo"):
        try:
            job = jobs.start_demo()
            st.success(f"Started demo job {job.job_id}: progress in the sidebar.")
        except jobs.JobBusyError as exc:
            st.error(str(exc))


main()
