"""scripts.run_app: the app's launcher imports the heavy modules beside the server and stops
quietly on a Ctrl-C that comes before the server is up."""
from __future__ import annotations

import sys

import pytest

from scripts import run_app


def test_preload_imports_what_it_can_and_names_what_it_cannot() -> None:
    sys.modules.pop("colorsys", None)
    assert run_app.preload(("colorsys", "no_such_module_here")) == ["no_such_module_here"]
    assert "colorsys" in sys.modules


def test_ctrl_c_before_the_server_is_up_exits_130_with_one_line(monkeypatch, capsys) -> None:
    from streamlit.web import cli

    def interrupted() -> int:
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
