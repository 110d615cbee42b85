"""The selection every page shares: the dataset and the runs ticked in the sidebar.

`render` draws the sidebar on every page (dataset and run pickers, a link to the Train page
and the latest job's state and progress); the pages read the choice back through `current_dataset`, `selected_runs` and
`runs_or_stop`. The choice lives in the session's widget state (keys "dataset" and "runs").
Runs are offered and named by their labels (labels.run_labels), distinct among the runs shown,
so two runs of one model never merge into one option.
"""
from __future__ import annotations

import streamlit as st

from emotion_core import store, words
from emotion_core.store import bundle
from emotion_core.views import labels as run_names
from emotion_core.views import run_choice
from pages import _cache, _jobs


def dataset_names() -> list[str]:
    """Prepared datasets first (the first is the default), then those that only runs mention:
    the user's (their report may be gone), the bundled models', the reference sets'."""
    runs, _ = _cache.all_runs()
    by_origin = sorted(runs, key=lambda r: (r.tables_only, r.bundled))
    named = [str(r.manifest.get("dataset")) for r in by_origin]
    return list(dict.fromkeys([*sorted(store.list_datasets()), *named]))


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


def runs_or_stop(empty_message: str, *, models_only: bool = False, tables_only_ok: bool = False
                 ) -> tuple[list[store.RunRecord], dict[str, str]]:
    """The selected runs and {run id: label}, labels distinct among them; stops the page with
    `empty_message` when there are none. `models_only`: runs with weights of their own (no
    ensembles); reference runs (tables only) only where `tables_only_ok`."""
    runs = [r for r in selected_runs() if tables_only_ok or not r.tables_only]
    if models_only:
        runs = [r for r in runs if r.has_weights]
    if not runs:
        st.info(empty_message)
        st.stop()
    return runs, run_names.run_labels(runs)


def photo_choice(*, models_only: bool = False) -> tuple[list[store.RunRecord], list[str]]:
    """(runs offered for a picture of the user's own, the ids ticked at first): the selected
    runs of the current dataset plus the bundled real-face models, then the external reference
    models whose weights are here (`run_choice.peer_runs`, never ticked at first); ticked: the
    bundled models when none of the dataset's runs learned from real faces (the synthetic
    demo), else the best of the dataset's runs of each model (`run_choice.best_per_model`). Both
    empty when there is nothing to offer."""
    runs, _ = _cache.all_runs()
    mine = [r for r in selected_runs() if not r.tables_only]
    own = {r.run_id for r in mine}
    bundled = [r for r in runs if r.bundled and r.run_id not in own]
    mine_models = {r.manifest.get("model") for r in mine if r.is_reference}
    peers = [r for r in _cache.peer_runs() if r.manifest.get("model") not in mine_models]
    offered = [r for r in [*mine, *bundled] if r.has_weights or not models_only] + peers
    real = [r.run_id for r in run_choice.best_per_model(  # an external model scored here: offered
        [r for r in offered if r.run_id in own and run_choice.learned_real_faces(r) and not r.is_reference])]
    default = (real or [r.run_id for r in offered if r.bundled]
               or [r.run_id for r in run_choice.best_per_model([r for r in offered if r not in peers])])
    return offered, default


def photo_runs(empty_message: str, *, models_only: bool = False
               ) -> tuple[list[store.RunRecord], dict[str, str], list[str]]:
    """Predict's and Explain's runs (`photo_choice`), their labels, and the ones ticked at
    first. Stops the page with `empty_message` when there are none."""
    offered, default = photo_choice(models_only=models_only)
    if not offered:
        st.info(empty_message)
        st.stop()
    return offered, run_names.run_labels(offered), default


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
            st.warning(f"{words.counted(len(broken), 'broken run')} skipped: " + "; ".join(
                f"{k} ({v})" for k, v in broken.items()))
        st.page_link("pages/train.py", label="Train models", icon=":material/model_training:")
        _jobs.job_panel(compact=True)


LICENCE_NOTE = ("research-only training data with no licence stated "
                "(../shared/data/README.md): not for commercial use")


def bundled_caption(offered: int, ticked: int, sets: list[str]) -> str:
    """The line under a run picker about its bundled models: how many are ticked of those
    offered (a handoff from Predict ticks one), their training sets and the licence caveat."""
    models = words.counted(offered, "bundled real-face model")
    count = f"{ticked} of the {models}" if 0 < ticked < offered else models
    return (f"{'Ticked' if ticked else 'Also offered'}: {count} that "
            f"{words.verb(offered, 'comes', 'come')} with the code, trained on {', '.join(sets)}; "
            f"{LICENCE_NOTE}.")


def bundled_note(offered: list[store.RunRecord], chosen: list[str]) -> None:
    """Under a run picker that offers bundled models: what they are, the licence caveat of their
    training data, and each one's model card on demand."""
    bundled = [r for r in offered if r.bundled]
    if not bundled:
        return
    ticked = [r for r in bundled if r.run_id in chosen]
    sets = sorted({s for r in bundled for s in r.manifest.get("sources") or [r.manifest.get("dataset")]})
    st.caption(bundled_caption(len(bundled), len(ticked), [str(s) for s in sets]))
    with st.expander("Model cards of the bundled models"):
        for r in bundled:
            st.markdown(bundle.model_card(r.run_id) or f"`{r.run_id}`: no model card")
