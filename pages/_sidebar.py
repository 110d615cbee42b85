"""The selection every page shares: the dataset and the runs ticked in the sidebar.

`render` draws the sidebar on every page (dataset and run pickers, a link to the Train page
and the latest job's state and progress); the pages read the choice back through `current_dataset`, `selected_runs` and
`runs_or_stop`. The choice lives in the session's widget state (keys "dataset" and "runs").
Runs are offered and named by their labels (labels.run_labels), distinct among the runs shown,
so two runs of one model never merge into one option.
"""
from __future__ import annotations

import streamlit as st

from emotion_core import store
from emotion_core.views import labels as run_names
from pages import _cache, _jobs


def dataset_names() -> list[str]:
    """Prepared datasets plus those that only runs mention (their report may be gone)."""
    runs, _ = _cache.all_runs()
    return sorted(set(store.list_datasets()) | {str(r.manifest.get("dataset")) for r in runs})


def current_dataset() -> str | None:
    names = dataset_names()
    if not names:
        return None
    chosen = st.session_state.get("dataset")
    return chosen if chosen in names else names[0]


def dataset_runs() -> list[store.RunRecord]:
    """Every complete run of the current dataset."""
    runs, _ = _cache.all_runs()
    ds = current_dataset()
    return [r for r in runs if r.manifest.get("dataset") == ds]


def selected_runs() -> list[store.RunRecord]:
    """The runs ticked in the sidebar (all runs of the current dataset by default)."""
    mine = dataset_runs()
    ids = st.session_state.get("runs")
    chosen = [r for r in mine if ids and r.run_id in ids]
    return chosen or mine


def runs_or_stop(empty_message: str, *, models_only: bool = False
                 ) -> tuple[list[store.RunRecord], dict[str, str]]:
    """The selected runs (trained models only if asked) and {run id: label}, labels distinct
    among them; stops the page with `empty_message` when there are none."""
    runs = selected_runs()
    if models_only:
        runs = [r for r in runs if r.manifest.get("kind", "model") == "model"]
    if not runs:
        st.info(empty_message)
        st.stop()
    return runs, run_names.run_labels(runs)


SEEN_KEY = "_runs_seen"  # the run ids the picker offered last time (new ones get ticked)


def _run_picker() -> None:
    """The runs multiselect: all of the dataset's runs ticked at first, and a run that appears
    later (a training job finished) ticked as it appears, so the pages show it at once."""
    labels = run_names.run_labels(dataset_runs())
    ids = list(labels)
    seen = st.session_state.get(SEEN_KEY)
    if "runs" in st.session_state:
        kept = [r for r in st.session_state["runs"] if r in labels]
        new = [r for r in ids if seen is not None and r not in seen]
        if new or kept != list(st.session_state["runs"]):
            st.session_state["runs"] = kept + new
    st.session_state[SEEN_KEY] = ids
    first = {} if "runs" in st.session_state else {"default": ids}
    st.multiselect("Runs", ids, key="runs", format_func=lambda rid: labels.get(rid, rid),
                   help="The runs every page shows. Labels: model · weights · created.\n\n"
                        + run_names.weights_help([(r.manifest.get("weights_source"),
                                                   r.manifest.get("model"))
                                                  for r in dataset_runs()]), **first)


def render() -> None:
    """Dataset and run pickers, then a link to Train and the job's state, on every page."""
    _, broken = _cache.all_runs()
    names = dataset_names()
    with st.sidebar:
        if names:
            st.selectbox("Dataset", names, key="dataset")
            _run_picker()
        else:
            st.caption("No prepared dataset yet.")
        if broken:
            st.warning(f"{len(broken)} broken run(s) skipped: " + "; ".join(
                f"{k} ({v})" for k, v in broken.items()))
        st.page_link("pages/train.py", label="Train models", icon=":material/model_training:")
        _jobs.job_panel(compact=True)
