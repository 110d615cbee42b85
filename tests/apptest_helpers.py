"""What the AppTest modules share: the app under test, page helpers and a model warm-up that
can be held and counted (the tiny store and `at_store` are fixtures in conftest.py)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures_runs import photo_640x480

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 120  # model loads and CAMs on 2 shared cores
PAGES = ["data", "compare", "confusion", "feature_maps", "explain", "predict", "train"]


def new_app() -> AppTest:
    """An AppTest of app.py (the artifacts folder is whatever the environment names)."""
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def open_page(at: AppTest, page: str | None = None) -> AppTest:
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [x.value for kind in ("info", "warning", "error", "success") for x in at.get(kind)]
    return "\n".join(str(p) for p in parts)


def face_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo_640x480(1)).save(buf, format="PNG")
    return buf.getvalue()



def fresh_warm_up(monkeypatch) -> tuple[list[str], object]:
    """Warm-up on, empty model cache, load_model counted; returns (loads, gate to hold loads)."""
    import threading

    from emotion_core import evaluation as evaluate
    from pages import _cache, _warmup

    monkeypatch.setenv(_warmup.WARM_UP_ENV, "1")
    _cache._model.clear()
    _warmup._started.clear()
    loads: list[str] = []
    gate = threading.Event()
    gate.set()
    real = evaluate.load_model

    def counted(rid, **kw):
        gate.wait(TIMEOUT)
        loads.append(rid)
        return real(rid, **kw)

    monkeypatch.setattr(evaluate, "load_model", counted)
    return loads, gate


def join_warm_up() -> None:
    import threading

    from pages import _warmup

    for t in threading.enumerate():
        if t.name == _warmup.WARM_UP_THREAD:
            t.join(timeout=TIMEOUT)



def chart_data(at: AppTest, i: int) -> list[dict]:
    return json.loads(at.get("plotly_chart")[i].proto.spec)["data"]
