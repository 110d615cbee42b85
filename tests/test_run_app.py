"""scripts.run_app: the app's launcher imports the heavy modules beside the server and stops
quietly on a Ctrl-C that comes before the server is up."""
from __future__ import annotations

import sys

import pytest

from scripts import export as export_cli
from scripts import run_app


def test_preload_imports_what_it_can_and_names_what_it_cannot() -> None:
    sys.modules.pop("colorsys", None)
    assert run_app.preload(("colorsys", "no_such_module_here"), warm=False) == \
        ["no_such_module_here"]
    assert "colorsys" in sys.modules


def test_preload_imports_with_the_collector_off_then_freezes_what_they_made(tmp_path,
                                                                            monkeypatch) -> None:
    """Full collections during torch's import walked the same long-lived objects six times
    (1.4 s at a server's start); after the imports the heap leaves every later collection."""
    import gc

    (tmp_path / "preload_probe.py").write_text("import gc\nCOLLECTING = gc.isenabled()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    gc.unfreeze()
    try:
        assert run_app.preload(("preload_probe", "no_such_module_here"), warm=False) == \
            ["no_such_module_here"]
        assert sys.modules["preload_probe"].COLLECTING is False
        assert gc.isenabled(), "collections go on after the imports, failed ones included"
        probe = sys.modules["preload_probe"]
        assert gc.get_freeze_count() > 0 and all(o is not probe for o in gc.get_objects())
    finally:
        gc.unfreeze()
        sys.modules.pop("preload_probe", None)


def test_server_start_loads_and_primes_the_bundled_models_before_any_page(monkeypatch) -> None:
    from emotion_core import evaluation as evaluate
    from emotion_core import store
    from emotion_core.views import live
    from pages import _cache, _warmup

    monkeypatch.setenv(store.paths.ENV_BUNDLED, str(store.paths.REPO_ROOT / "artifacts" / "bundled"))
    bundled = [r.run_id for r in store.list_runs()[0] if r.bundled and r.has_weights]
    assert bundled, "the repository ships at least one bundled model"
    loads, primed = [], []
    real = evaluate.load_model
    monkeypatch.setattr(evaluate, "load_model", lambda rid, **kw: loads.append(rid) or real(rid, **kw))
    monkeypatch.setattr(live, "prime",
                        lambda run_ids, loader: primed.append((tuple(run_ids), loader)))
    exports: list[int] = []  # the child process's work, done here (no lower priority for pytest)
    monkeypatch.setattr(_warmup, "_pages_quiet", lambda: None)  # no page runs in this test
    monkeypatch.setattr(_warmup, "_run_export",
                        lambda: exports.append(export_cli.main(["--bundled"])))
    _cache._model.clear()
    _cache._exported.clear()
    assert _warmup.server_start() == [], "off while $EMOTION_APP_WARMUP is 0 (the tests' default)"
    monkeypatch.setenv(_warmup.WARM_UP_ENV, "1")
    assert run_app.preload((), warm=True) == []
    # this store had no exports: they were made once; each bundled model then answers once
    # through its ONNX export (Predict's answers) and once through PyTorch (why-maps, Explain),
    # after a first answer through PyTorch before its export existed
    assert exports == [0] and loads == bundled and primed[0] == ((), _cache.load_predictor)
    assert set(primed[1:]) == {((r,), loader) for r in bundled
                               for loader in (_cache.load_predictor, _cache.load_model)}
    _warmup.server_start()  # as a page's warm-up after it: nothing is primed or exported twice
    assert len(primed) == 1 + 3 * len(bundled) and exports == [0]
    for rid in bundled:  # what a page's first photo calls
        assert _cache.load_predictor(rid)[0].engine == "onnx"
        _cache.load_model(rid)
    assert loads == bundled, "the pages find the models already loaded"


def test_the_server_start_takes_libraries_and_models_out_of_later_collections(monkeypatch) -> None:
    """Streamlit collects all generations after every page and fragment run; with torch and the
    models in the heap each collection walked about 560,000 objects, 0.55 s holding the
    interpreter lock on 2 cores. After the server's warm-up a collection walks only what came
    after it: the loaded models are not among the objects it scans."""
    import gc

    from emotion_core import store
    from pages import _cache, _warmup

    monkeypatch.setenv(store.paths.ENV_BUNDLED, str(store.paths.REPO_ROOT / "artifacts" / "bundled"))
    monkeypatch.setenv(_warmup.WARM_UP_ENV, "1")
    monkeypatch.setattr(_warmup, "_run_export", lambda: None)  # the child's work is not the point
    gc.unfreeze()
    try:
        scanned = len(gc.get_objects())  # torch and the app's modules are imported by now
        _cache._model.clear()
        loaded = _warmup.server_start()  # what run_app.preload calls at the server's start
        assert loaded, "the bundled models were loaded"
        assert gc.get_freeze_count() >= scanned
        left = {id(o) for o in gc.get_objects()}
        assert len(left) < scanned / 10
        assert not {id(_cache.load_model(rid)[0]) for rid in loaded} & left
    finally:
        gc.unfreeze()  # the rest of the test session collects as before


def test_the_page_warm_up_settles_the_heap_after_each_import_piece_and_model(monkeypatch) -> None:
    import gc

    from emotion_core.views import stamps
    from pages import _warmup

    frozen: list[int] = []
    monkeypatch.setattr(_warmup, "WARM_UP_IMPORTS", ("first.piece", "second.piece"))
    monkeypatch.setattr(_warmup, "_pages_quiet", lambda: None)
    monkeypatch.setattr(_warmup.importlib, "import_module", lambda name: None)
    monkeypatch.setattr(_warmup, "_prime", lambda *run_ids: None)
    monkeypatch.setattr(_warmup, "_prime_chart", lambda: None)

    def load(rid: str) -> bool:  # the heap as each model starts loading
        frozen.append(gc.get_freeze_count())
        gc.unfreeze()
        return True

    monkeypatch.setattr(_warmup, "_load_and_prime", load)
    try:
        _warmup._WarmUp(stamps.root(), ("run-a", "run-b")).run()
        frozen.append(gc.get_freeze_count())
    finally:
        gc.unfreeze()
    assert frozen[0] == 0 and frozen[1] > 0 and frozen[2] > 0, \
        "frozen after the first model and its import pieces, and after the last model"


def test_the_server_threads_missing_session_warning_is_muted_and_no_other(monkeypatch) -> None:
    """Streamlit warns "missing ScriptRunContext" for every cache call outside a page; the
    preload thread makes such calls on purpose, and a new user saw two warnings at start."""
    import logging
    import threading

    from streamlit.runtime.scriptrunner_utils import script_run_context as ctx

    from pages import _warmup

    warned: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warned.append(record.threadName)

    def server_thread() -> None:
        _warmup.server_start()  # off in the tests, yet it marks its thread as session-less
        ctx.get_script_run_ctx()

    handler = Keep()
    monkeypatch.setattr(ctx._LOGGER, "disabled", False)
    ctx._LOGGER.addHandler(handler)
    try:
        for name, target in (("test-preload", server_thread), ("test-other", ctx.get_script_run_ctx)):
            thread = threading.Thread(target=target, name=name)
            thread.start()
            thread.join()
    finally:
        ctx._LOGGER.removeHandler(handler)
        _warmup._SESSIONLESS.discard("test-preload")
    assert warned == ["test-other"]


def test_ctrl_c_before_the_server_is_up_exits_130_with_one_line(monkeypatch, capsys) -> None:
    from streamlit.web import cli

    def interrupted(**_: object) -> int:
        raise KeyboardInterrupt

    def exit_now(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr(cli, "main", interrupted)
    monkeypatch.setattr(run_app.os, "_exit", exit_now)
    monkeypatch.setattr(run_app, "PRELOAD", ())
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # main rewrites it for streamlit
    with pytest.raises(SystemExit) as stop:
        run_app.main(["--server.port", "1"])
    assert stop.value.code == 130
    assert capsys.readouterr().err.strip() == "Stopped before the app started."
