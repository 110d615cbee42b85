"""Cached loaders for the pages: the run list, one run's tables, one run's model (and the model
that answers Predict: its ONNX export where it has one), dataset tables.

Every cache is keyed by plain strings (emotion_core.views.stamps): the artifacts root, the run
id or dataset name, and a stamp (modification time and size) of the file the entry was read from.
So a retrained run or a run that appears mid-session is picked up without a restart, and two
artifact folders (the tests switch between them) never share an entry. Models are `st.cache_resource` (one per process,
shared by every session, bounded); tables are `st.cache_data` (copied per caller).
"""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from emotion_core import store
from emotion_core.store import reference
from emotion_core.views import samples, stamps

MODEL_CACHE_ENTRIES = 12  # models kept in memory at once (quick-profile models are small)


@st.cache_data(show_spinner=False, max_entries=32)
def _runs(fingerprint: str) -> tuple[list[store.RunRecord], dict[str, str]]:
    good, broken = store.list_runs()
    try:
        good += reference.beside(good)
    except (OSError, ValueError) as exc:  # a damaged reference set hides itself, not the app
        broken["reference runs"] = str(exc)
    return good, broken


RUN_LIST_MEMO = "_run_list_memo"  # session state: (fingerprint, run list) read last


def all_runs() -> tuple[list[store.RunRecord], dict[str, str]]:
    """(complete runs: the user's, the bundled ones, the reference sets'; {broken run id:
    reason}) for the current artifacts folder. Read-only: the session shares one copy.

    Why the session memo: `st.cache_data` hands every caller a fresh unpickled copy (17 ms with
    the reference sets' tables), and one script run asks about ten times (sidebar, pickers,
    page), which cost a new photo's answer about 0.2 s on 2 cores. The fingerprint still decides
    when the list is read again."""
    fingerprint = stamps.runs_fingerprint()
    memo = st.session_state.get(RUN_LIST_MEMO)
    if memo is None or memo[0] != fingerprint:
        memo = (fingerprint, _runs(fingerprint))
        st.session_state[RUN_LIST_MEMO] = memo
    return memo[1]


def peer_runs() -> list[store.RunRecord]:
    """The external reference models whose weights are on this machine (`run_choice.peer_runs`).
    Not memoised: a few file checks, and weights fetched while the app runs count at once."""
    from emotion_core.views import run_choice

    return run_choice.peer_runs(all_runs()[0])


@st.cache_data(show_spinner=False, max_entries=64)
def _run_full(root: str, run_id: str, stamp: str) -> store.RunRecord:
    return store.load_run(run_id, tables=True)


def run_record(run_id: str) -> store.RunRecord:
    """A run with its tables (history, confusion, predictions); BrokenRunError if broken."""
    runs, _ = all_runs()
    tables_only = next((r for r in runs if r.run_id == run_id and r.tables_only), None)
    if tables_only is not None:  # a reference run: its tables came with the run list
        return tables_only
    return _run_full(stamps.root(), run_id, stamps.tables_stamp(run_id))


@st.cache_resource(show_spinner="Loading model...", max_entries=MODEL_CACHE_ENTRIES)
def _model(root: str, run_id: str, stamp: str) -> tuple[Any, dict[str, Any]]:
    from emotion_core import evaluation  # imports torch and timm: only once a model is needed

    return evaluation.load_model(run_id)


def model_key(run_id: str) -> tuple[str, str, str]:
    """The model cache's key for a run: artifacts root, run id, weights file stamp."""
    return stamps.root(), run_id, stamps.weights_stamp(run_id)


def load_model(run_id: str) -> tuple[Any, dict[str, Any]]:
    """A run's (model, manifest), built once per process (bounded cache), shared by all sessions."""
    return _model(*model_key(run_id))


# ONNX Runtime threads per predictor: one, as the latency target is measured. With two, each
# call's spinning pool fought the other threads: 1.2x-2.3x slower on a busy 2-core machine.
PREDICTOR_THREADS = 1


@st.cache_resource(show_spinner="Loading model...", max_entries=MODEL_CACHE_ENTRIES)
def _exported(root: str, run_id: str, stamp: str, export: str) -> tuple[Any, dict[str, Any]] | None:
    from emotion_core.evaluation import onnx_model

    return onnx_model.load_export(run_id, threads=PREDICTOR_THREADS)


def load_predictor(run_id: str) -> tuple[Any, dict[str, Any]]:
    """The (model, manifest) that answers a run's predictions: an ONNX Runtime session when the
    run has a usable export (the server's start makes the bundled models'; 3-4x faster on the CPU), else the
    PyTorch model of `load_model`, the same instance. Explanations need that one: `load_model`."""
    exported = _exported(*model_key(run_id), stamps.export_stamp(run_id))
    return exported if exported is not None else load_model(run_id)


@st.cache_data(show_spinner=False, max_entries=32)
def _dataset_table(root: str, name: str, table: str, stamp: str) -> pd.DataFrame:
    return store.load_dataset_table(name, table)


def table(name: str, which: str) -> pd.DataFrame:
    """A prepared dataset's index/split/cleaning table (FileNotFoundError if not prepared)."""
    return _dataset_table(stamps.root(), name, which, stamps.dataset_table_stamp(name, which))


@st.cache_data(show_spinner=False, max_entries=32)
def _sample_choices(root: str, name: str, stamp: str) -> list[str]:
    return samples.sample_choices(name)


def sample_choices(name: str) -> list[str]:
    """The held-out images a page offers to probe (FileNotFoundError if not prepared)."""
    return _sample_choices(stamps.root(), name, stamps.dataset_table_stamp(name, "split"))
