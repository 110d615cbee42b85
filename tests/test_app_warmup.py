"""AppTest of the background model warm-up: what it loads, and that it yields to a page that runs."""
from __future__ import annotations

import sys

import pytest

from tests.fixtures_runs import MODELS
from tests.polling import wait_until

pytest.importorskip("streamlit.testing.v1")
from tests.apptest_helpers import TIMEOUT, fresh_warm_up, join_warm_up, open_page


def test_app_start_warms_the_model_cache_for_the_pages(at_store, monkeypatch) -> None:
    at, ids = at_store
    loads, _ = fresh_warm_up(monkeypatch)
    open_page(at)  # Home only: no page needs a model yet
    join_warm_up()
    assert sorted(loads) == sorted(ids[m] for m in MODELS)  # every model run, each once
    at.switch_page("pages/explain.py").run()
    at.switch_page("pages/feature_maps.py").run()
    assert not at.exception
    assert len(loads) == len(MODELS)  # the pages found every model already loaded


def test_warm_up_imports_wait_while_a_page_runs(monkeypatch) -> None:
    import threading

    from pages import _warmup

    done: list[str] = []
    monkeypatch.setattr(_warmup, "WARM_UP_IMPORTS", ("first.piece", "second.piece"))
    monkeypatch.setattr(_warmup, "QUIET_FOR_S", 1.0)
    monkeypatch.setattr(_warmup.importlib, "import_module", done.append)
    page_done = threading.Event()
    page = threading.Thread(target=page_done.wait, args=(TIMEOUT,), name=_warmup.SCRIPT_THREAD)
    page.start()  # a session's page run, as Streamlit names its thread
    importer = threading.Thread(target=_warmup._import_slow_libraries)
    importer.start()
    importer.join(timeout=0.5)
    assert done == [] and importer.is_alive(), "no import while a page runs"
    page_done.set()
    page.join()
    importer.join(timeout=0.2)
    assert done == [] and importer.is_alive(), "nor right after one: its person may act next"
    importer.join(timeout=TIMEOUT)
    assert done == ["first.piece", "second.piece"]


def test_warm_up_imports_go_at_once_while_a_page_waits_for_the_warm_up(monkeypatch) -> None:
    """A page waiting for the warm-up polls it every second, so pages always seem to run: had
    the imports yielded to them, each piece would wait QUIET_WAIT_S (Explain said "Loading"
    for 96 s on a fresh server)."""
    import threading

    from pages import _warmup

    done: list[str] = []
    monkeypatch.setattr(_warmup, "WARM_UP_IMPORTS", ("first.piece", "second.piece"))
    monkeypatch.setattr(_warmup, "QUIET_WAIT_S", 120.0)
    monkeypatch.setattr(_warmup, "_waited_on", None)
    monkeypatch.setattr(_warmup.importlib, "import_module", done.append)
    page_done = threading.Event()
    page = threading.Thread(target=page_done.wait, args=(TIMEOUT,), name=_warmup.SCRIPT_THREAD)
    page.start()
    try:
        _warmup._note_waiting()  # what wait_for and its poll do
        importer = threading.Thread(target=_warmup._import_slow_libraries)
        importer.start()
        importer.join(timeout=30)
        assert done == ["first.piece", "second.piece"] and page.is_alive()
    finally:
        page_done.set()
        page.join()


def _two_modules(tmp_path, monkeypatch, tag: str) -> tuple[str, str]:
    """A module whose first statement imports a second one, both new to this process."""
    outer, inner = f"warmup_{tag}_outer", f"warmup_{tag}_inner"
    (tmp_path / f"{outer}.py").write_text(f"import {inner}\n")
    (tmp_path / f"{inner}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return outer, inner


def test_a_warm_up_import_holds_at_its_next_statement_while_a_page_runs(tmp_path,
                                                                         monkeypatch) -> None:
    import builtins
    import threading

    from pages import _warmup

    outer, inner = _two_modules(tmp_path, monkeypatch, "hold")
    monkeypatch.setattr(_warmup, "YIELD_MAX_S", 60.0)  # only the page's end may release it
    real_import = builtins.__import__
    page_done = threading.Event()
    page = threading.Thread(target=page_done.wait, args=(TIMEOUT,), name=_warmup.SCRIPT_THREAD)
    page.start()
    importer = threading.Thread(target=_warmup._import_yielding, args=(outer,))
    importer.start()
    try:
        assert wait_until(lambda: outer in sys.modules, TIMEOUT)  # the piece has begun...
        importer.join(timeout=0.3)
        assert inner not in sys.modules and importer.is_alive(), "...and holds while a page runs"
    finally:
        page_done.set()
    importer.join(timeout=TIMEOUT)
    assert sys.modules[inner].VALUE == 1 and not importer.is_alive()
    assert builtins.__import__ is real_import  # the hook is gone after the piece


def test_a_warm_up_import_never_holds_a_module_a_page_waits_for(tmp_path, monkeypatch) -> None:
    import threading

    from pages import _warmup

    outer, inner = _two_modules(tmp_path, monkeypatch, "lock")
    monkeypatch.setattr(_warmup, "YIELD_MAX_S", 60.0)
    page_done = threading.Event()
    got: list[bool] = []

    def page() -> None:  # a page run that needs the module the warm-up is half-way through
        assert wait_until(lambda: outer in sys.modules, TIMEOUT)
        got.append(__import__(outer) is not None)
        page_done.wait(TIMEOUT)

    runner = threading.Thread(target=page, name=_warmup.SCRIPT_THREAD)
    runner.start()
    importer = threading.Thread(target=_warmup._import_yielding, args=(outer,))
    importer.start()
    try:
        # Held for the page, the warm-up would deadlock with it until YIELD_MAX_S ran out.
        assert wait_until(lambda: got == [True], timeout=10), "the page got its module"
        importer.join(timeout=10)
        assert not importer.is_alive() and inner in sys.modules
    finally:
        page_done.set()
        runner.join()


def test_a_warm_up_import_does_not_hold_while_a_page_waits_for_the_warm_up(tmp_path,
                                                                           monkeypatch) -> None:
    import threading

    from pages import _warmup

    outer, inner = _two_modules(tmp_path, monkeypatch, "waited")
    monkeypatch.setattr(_warmup, "YIELD_MAX_S", 60.0)
    monkeypatch.setattr(_warmup, "QUIET_WAIT_S", 120.0)  # without the rule it held 60 s
    monkeypatch.setattr(_warmup, "_waited_on", None)
    page_done = threading.Event()
    page = threading.Thread(target=page_done.wait, args=(TIMEOUT,), name=_warmup.SCRIPT_THREAD)
    page.start()
    try:
        _warmup._note_waiting()
        importer = threading.Thread(target=_warmup._import_yielding, args=(outer,))
        importer.start()
        importer.join(timeout=30)
        assert inner in sys.modules and not importer.is_alive() and page.is_alive()
    finally:
        page_done.set()
        page.join()


def test_explain_page_waits_for_the_warm_up_instead_of_blocking(at_store, monkeypatch) -> None:
    from pages import _warmup

    at, ids = at_store
    loads, gate = fresh_warm_up(monkeypatch)
    monkeypatch.setattr(_warmup, "_waited_on", None)
    gate.clear()  # the warm-up thread is stuck on its first model
    open_page(at)
    at.switch_page("pages/explain.py").run()
    assert not at.exception
    assert any("in the background" in i.value for i in at.info)
    assert not any("→" in c for img in at.image for c in img.captions)  # no map yet
    assert _warmup._someone_waits(), "the warm-up knows a person waits for it"
    gate.set()
    join_warm_up()
    at.run()
    assert not at.exception
    assert not any("in the background" in i.value for i in at.info)
    assert sum("→" in c for img in at.image for c in img.captions) == 2
    assert sorted(loads) == sorted(ids[m] for m in MODELS)  # loaded by the thread, once each
