"""The committed Streamlit settings: what a visitor of `make app` gets."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads TOML")

REPO = Path(__file__).resolve().parent.parent


def test_streamlit_config_is_safe_by_default() -> None:
    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    server, client = cfg["server"], cfg["client"]
    assert server["fileWatcherType"] == "none"  # no inotify flood from watching .venv
    assert server["address"] == "127.0.0.1"  # this machine only unless opened on purpose
    assert server["enableXsrfProtection"] is True
    assert 10 <= server["maxUploadSize"] <= 50  # photos, not archives
    assert client["toolbarMode"] in ("minimal", "viewer")  # no "Deploy" button
    assert client["showErrorDetails"] == "none"  # no tracebacks for visitors
    assert cfg["browser"]["gatherUsageStats"] is False


def test_make_app_binds_to_app_address() -> None:
    make = (REPO / "Makefile").read_text()
    assert re.search(r"^APP_ADDRESS \?= 127\.0\.0\.1$", make, re.M)
    assert "--server.address $(APP_ADDRESS)" in make
