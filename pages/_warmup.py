"""Background model warm-up: load the current dataset's models before a page asks for them.

Why: importing timm and pytorch-grad-cam and building a model from its checkpoint take seconds on
2 cores, so without this the first visit to Feature maps or Explain would freeze on them, and a
new user's first photo on Predict would wait 2 s for the bundled model. When the app starts, one
daemon thread per process and run set runs the face detector once, imports those libraries and
fills the model cache of `_cache` in the order the pages need the models: first the bundled
models Predict ticks for a dataset without real-face runs (a fresh clone, the demo), then the
dataset's runs; each model answers one blank picture once loaded (first calls set up kernels),
and after the first model Predict's chart is built once, unseen. The slow imports go piece by
piece, each only once no page has run for a while, and within a piece each import statement
waits while a page runs (`_YieldingImport`), so they do not slow a person's first photo.
A page that needs a model the thread has not reached yet shows a short note and reruns itself
when the model is there, instead of blocking; while a page waits so, the warm-up yields to no
page (its person is waiting for the warm-up, and the page's polls would otherwise hold it).

State: the thread object is the only record of the warm-up (which root, which runs, which of
them it has dealt with); `_started` keeps one per process and run set, `_STOP` ends it at exit.
"""
from __future__ import annotations

import atexit
import builtins
import gc
import importlib
import importlib._bootstrap  # noqa: F401  (the import locks, read by _waited_on_by_others)
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from emotion_core import words
from emotion_core.store import paths as store_paths
from emotion_core.views import run_choice, stamps
from pages import _cache, _charts, _sidebar

WARM_UP_ENV = "EMOTION_APP_WARMUP"  # "0" turns the background model warm-up off (the tests do)
# Slow first imports the explanation pages need (about 3.5 s on 2 cores), in pieces of at most
# about a second so that a page that starts meanwhile waits for one piece, not all of them:
# pytorch_grad_cam's own imports (matplotlib, scipy, scikit-learn's KernelPCA) come first.
WARM_UP_IMPORTS = ("matplotlib.pyplot", "scipy.ndimage", "sklearn.decomposition", "timm",
                   "pytorch_grad_cam")
SCRIPT_THREAD = "ScriptRunner.scriptThread"  # Streamlit's thread for one session's page runs
QUIET_WAIT_S = 20.0  # the longest an import waits for pages to finish before it goes ahead
QUIET_FOR_S = 3.0  # ...and how long no page must have run: a person picks a photo meanwhile
YIELD_MAX_S = 1.0  # within a piece, the longest one import statement waits for a running page
WARM_UP_THREAD = "model-warm-up"
# A page that waits for the warm-up polls it every second (`_poll`); for this long after its
# last poll the warm-up stops yielding to pages: the person is waiting for it, not the reverse.
WAITED_ON_S = 3.0
_STOP = threading.Event()
_page_seen: float | None = None  # when the warm-up last saw a page running (monotonic clock)
_waited_on: float | None = None  # when a page last stopped to wait for the warm-up (monotonic)
_primed: set[tuple] = set()  # (root, the runs' model-cache keys) primed in this process


# Threads that fill the process-wide caches without a session, on purpose: the warm-up and
# the server's preload thread (`server_start`'s caller). They never draw.
_SESSIONLESS = {WARM_UP_THREAD}


class _Quiet(logging.Filter):
    """Drop Streamlit's "missing ScriptRunContext" warning for the threads in `_SESSIONLESS`:
    a person starting the app should not read a warning about nothing wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName not in _SESSIONLESS


logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(_Quiet())


@atexit.register
def _stop() -> None:
    """Let a running warm-up finish its current model before the interpreter goes: a daemon
    thread killed inside torch's C++ code aborts the process ("terminate called ...")."""
    _STOP.set()
    for t in threading.enumerate():
        if t.name == WARM_UP_THREAD:
            t.join(timeout=60)


class _WarmUp(threading.Thread):
    def __init__(self, root: str, run_ids: tuple[str, ...]) -> None:
        super().__init__(name=WARM_UP_THREAD, daemon=True)
        self.root, self.run_ids = root, run_ids
        # run ids loaded (or failed) so far: only this thread rebinds it, readers get a snapshot
        self.done: frozenset[str] = frozenset()

    def run(self) -> None:
        _prime()
        for i, rid in enumerate(self.run_ids):
            # a changed artifacts folder (tests switch it) must not be cached under this key
            if _STOP.is_set() or stamps.root() != self.root:
                return
            _load_and_prime(rid)
            self.done = self.done | {rid}
            if i == 0:  # Feature maps' model first (no CAM library needed), then the imports
                _prime_chart()
                _import_slow_libraries()
            settle_heap()


def _prime(*run_ids: str) -> None:
    """The face detector's first search (no run given), or a loaded run's first forward, on a
    blank picture (views.live.prime), here rather than on a user's first photo; once per
    process and artifacts root (the server-start warm-up and a page's warm-up share them).
    Both models of a run with an export answer once: the ONNX session Predict asks, and the
    PyTorch model its why-maps and Explain use."""
    from emotion_core.views import live  # imports torch: in the thread, not the page

    key = (stamps.root(), tuple((*_cache.model_key(rid), stamps.export_stamp(rid))
                                for rid in run_ids))  # a retrained or newly exported run anew
    if key in _primed:
        return
    try:
        live.prime(run_ids, loader=_cache.load_predictor)
        if any(_cache.load_predictor(rid)[0] is not _cache.load_model(rid)[0] for rid in run_ids):
            live.prime(run_ids, loader=_cache.load_model)
    except Exception:  # a detector or run that cannot answer is reported by the page
        return
    _primed.add(key)


def _load_and_prime(run_id: str) -> bool:
    """Load a run's models into the model caches (the ONNX session that answers Predict where
    the run has an export, first, then the PyTorch model) and prime them; False when it cannot
    load (a broken run is reported by the page that opens it)."""
    try:
        _cache.load_predictor(run_id)
        _cache.load_model(run_id)
    except Exception:
        return False
    _prime(run_id)
    return True


def _prime_chart() -> None:
    """Predict's probability bars once, unseen: plotly builds its figure classes and JSON
    encoder on first use, which cost a first photo about 0.3 s."""
    try:
        _charts.probability_bars([{"run": "warm-up", "name": "warm-up", "run_id": "",
                                   "class": "warm-up", "probability": 0.5,
                                   "latency_ms": 0.0}]).to_json()
    except Exception:  # the page draws (and reports) its own chart
        pass


def _pages_quiet(timeout: float = QUIET_WAIT_S, quiet_for: float = QUIET_FOR_S) -> None:
    """Wait until no session has run a page for `quiet_for` seconds (or `timeout`). An import
    holds the interpreter lock most of the time: one running beside a person's first photo
    slowed its face search and forward about four-fold (profiled with py-spy on a fresh
    server's first upload), and right after a page is drawn its person is likely to act."""
    global _page_seen
    now = time.monotonic()
    end = now + timeout
    if _page_seen is None:
        _page_seen = now  # the warm-up starts from a page run
    while not _STOP.is_set() and now < end and not _someone_waits():
        if _page_running():
            _page_seen = now
        elif now - _page_seen >= quiet_for:
            return
        time.sleep(0.05)
        now = time.monotonic()


def _page_running() -> bool:
    return any(t.name == SCRIPT_THREAD and t.is_alive() for t in threading.enumerate())


def _someone_waits() -> bool:
    """A page waits for the warm-up (`wait_for`): its polls run pages every second, so yielding
    to running pages would hold each import piece for QUIET_WAIT_S: Explain opened first on a
    fresh server said "Loading" for 71 s, 11.5 s with this rule (docs/app.md)."""
    return _waited_on is not None and time.monotonic() - _waited_on < WAITED_ON_S


def _note_waiting() -> None:
    global _waited_on
    _waited_on = time.monotonic()


def _waited_on_by_others() -> bool:
    """True when another thread waits for a module this thread is importing: it would wait for
    us while we wait for it. Reads CPython's import-lock bookkeeping (`_blocking_on`: thread id
    to the module lock, or in later versions the locks, it waits for); False where it differs."""
    me = threading.get_ident()
    try:
        for locks in list(importlib._bootstrap._blocking_on.values()):  # type: ignore[attr-defined]
            for lock in locks if isinstance(locks, list) else [locks]:
                if getattr(lock, "owner", None) == me:
                    return True
    except Exception:
        pass
    return False


class _YieldingImport:
    """`builtins.__import__` while the warm-up imports: before each import statement the
    warm-up thread runs, it waits while a page runs, so a photo that arrives during an import
    piece (scikit-learn alone takes about 2 s) waits for one module, not the piece. Other
    threads pass straight through. It never waits for a page that waits for it (a module this
    thread holds), at most YIELD_MAX_S at a time, and QUIET_WAIT_S in all per piece."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real, self.thread = real, threading.get_ident()
        self.budget = QUIET_WAIT_S

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == self.thread and self.budget > 0:
            start = time.monotonic()
            end = start + min(YIELD_MAX_S, self.budget)
            while (not _STOP.is_set() and time.monotonic() < end and _page_running()
                   and not _waited_on_by_others() and not _someone_waits()):
                time.sleep(0.01)
            self.budget -= time.monotonic() - start
        return self.real(name, *args, **kwargs)


def _import_yielding(name: str) -> None:
    real = builtins.__import__
    hook = _YieldingImport(real)
    builtins.__import__ = hook
    try:
        importlib.import_module(name)
    finally:
        if builtins.__import__ is hook:  # another hook installed meanwhile keeps its place
            builtins.__import__ = real


def _import_slow_libraries() -> None:
    for name in WARM_UP_IMPORTS:
        _pages_quiet()
        if _STOP.is_set():
            return
        try:
            _import_yielding(name)
        except Exception:  # missing, or the interpreter is shutting down: the pages import it
            pass
        settle_heap()


def server_start() -> list[str]:
    """What every fresh store's Predict needs, before any browser connects (scripts.run_app
    calls this in its preload thread): the face detector, the bundled models with a first
    forward each, and Predict's chart, then their ONNX exports where this store lacks them
    (`_export_bundled`); the page warm-up then finds them in the process-wide caches. Without
    it a photo that arrives with the server's first page waited for that
    page's warm-up. Returns the bundled run ids loaded; nothing when the warm-up is off."""
    if threading.current_thread().name != SCRIPT_THREAD:  # never mute a page's own warnings
        _SESSIONLESS.add(threading.current_thread().name)
    if os.environ.get(WARM_UP_ENV, "1") == "0":
        return []
    from emotion_core import store

    runs, _ = store.list_runs()
    bundled = [r.run_id for r in runs if r.bundled and r.has_weights]
    bundled = bundled[:_cache.MODEL_CACHE_ENTRIES]
    _prime()
    loaded = [rid for rid in bundled if _load_and_prime(rid)]
    if loaded:
        _prime_chart()
    settle_heap()
    _export_bundled(loaded)
    return loaded


# What makes the bundled models' missing ONNX exports: a child process, so its tracing never
# holds this server's interpreter lock, below the app's priority (`--background`).
EXPORT_COMMAND = ("-m", "scripts.export", "--bundled", "--background")


def _export_bundled(run_ids: list[str]) -> None:
    """Predict answers through the bundled models' ONNX exports, which are made on this machine
    from their committed fp16 weights (derived files stay out of git): the first server start of
    a store makes the missing ones (6-10 s on 2 cores, while the PyTorch models answer),
    then loads and primes them. Later starts find them up to date."""
    from emotion_core.evaluation import onnx_model

    if not onnx_model.onnxruntime_available():
        return
    missing = [rid for rid in run_ids if onnx_model.usable_export(rid)[0] is None]
    if not missing:
        return
    try:
        _run_export()
    except (OSError, subprocess.SubprocessError):  # Predict keeps answering through PyTorch
        return
    for rid in missing:
        _pages_quiet()  # loading a session beside a person's photo slowed its answer past 1 s
        if _STOP.is_set():
            return
        _load_and_prime(rid)
    settle_heap()


def _run_export() -> None:
    subprocess.run([sys.executable, *EXPORT_COMMAND], cwd=str(store_paths.REPO_ROOT),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                   timeout=600, check=False)


def settle_heap() -> None:
    """Take every object alive now out of the garbage collector's scans (`gc.freeze`).

    Why: Streamlit collects all generations after every page and fragment run
    (`runner.postScriptGC`), and with torch, timm, plotly and the models loaded that walks
    about 560,000 objects: 0.55 s a run on 2 cores with the interpreter lock held, so every
    click, and every poll of the job panel (2 s) or the live webcam's numbers (1 s), stalled
    the server. What is alive at these points (after an import piece, a model load, the server's
    warm-up) is modules and cached models, which live as long as the process; the collection
    then scans only what the pages made since (4-94 ms logged in a server). Frozen objects are
    still freed when their last reference goes; only a reference cycle among them would stay."""
    gc.freeze()


@st.cache_resource(show_spinner=False, max_entries=4)
def _started(root: str, run_ids: tuple[str, ...]) -> _WarmUp:
    thread = _WarmUp(root, run_ids)
    thread.start()
    return thread


def start() -> threading.Thread | None:
    """Start loading the face detector, the bundled models Predict ticks (when it ticks them)
    and the current dataset's models in the background (once per process and run set; at most
    as many models as the model cache holds); None when switched off or no runs."""
    if os.environ.get(WARM_UP_ENV, "1") == "0":
        return None
    mine = _sidebar.selected_runs()
    _, ticked = _sidebar.photo_choice(models_only=True)
    own = {r.run_id for r in mine}
    bundled_first = [rid for rid in ticked if rid not in own]
    order = list(dict.fromkeys([*bundled_first, *run_choice.warm_up_order(mine)]))
    order = order[:_cache.MODEL_CACHE_ENTRIES]
    return _started(stamps.root(), tuple(order)) if order else None


def pending(run_ids: Sequence[str]) -> list[str]:
    """Those of `run_ids` that a running warm-up has still to load (none when none runs)."""
    root = stamps.root()
    queued: set[str] = set()
    for t in threading.enumerate():
        if isinstance(t, _WarmUp) and t.is_alive() and t.root == root:
            queued.update(set(t.run_ids) - t.done)
    return [rid for rid in run_ids if rid in queued]


def wait_for(run_ids: Sequence[str], what: str) -> None:
    """Stop the page with a note while the warm-up still loads `run_ids`; rerun it when done."""
    waiting = pending(run_ids)
    if not waiting:
        return
    st.info(f"Loading {words.counted(len(waiting), 'model')} in the background; {what} appear "
            "in a few seconds.")
    _note_waiting()
    _poll(tuple(run_ids))
    st.stop()


@st.fragment(run_every=1.0)
def _poll(run_ids: tuple[str, ...]) -> None:
    if not pending(run_ids):
        st.rerun(scope="app")
    _note_waiting()
