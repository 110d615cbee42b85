"""Serve the app: `streamlit run app.py` with the heavy imports started at once (`make app` and
`make run` call this).

    python -m scripts.run_app [streamlit options, e.g. --server.port 8501]

Why: the app needs torch and torchvision (which pulls in torch._dynamo) the first time a page or
the model warm-up builds a model; on 2 cores those imports take about 5 s. Streamlit runs app.py
only when a browser connects, so without this the first page, the warm-up and a new user's first
photo all wait for them. Here a thread imports them in the server process while the server
starts and the person opens the browser; the pages then find them in `sys.modules`. Then it
loads the bundled models and runs the face detector and each model once (pages/_warmup.py,
`server_start`), so a photo that arrives with the first page does not wait for them.
"""
from __future__ import annotations

import atexit
import gc
import importlib
import os
import sys
import threading
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"
# what the first page, the warm-up and Predict import; the first two are most of the time
PRELOAD = ("torch", "torchvision", "emotion_core.evaluation", "emotion_core.views.live",
           "emotion_core.data.faces", "plotly.express")
PRELOAD_THREAD = "preload-imports"


def preload(modules: tuple[str, ...] = PRELOAD, *, warm: bool = True) -> list[str]:
    """Import `modules` in order, then (`warm`) load and prime what a fresh store's Predict
    needs (`pages._warmup.server_start`); returns the modules that failed to import (the pages
    report them when used)."""
    failed = []
    # Imports make objects that live as long as the process: the full collections they set off
    # (six while torch and the rest import, 1.4 s of the cores at a server's start) walk them
    # again and again. One collection after them finds the little garbage they leave (about
    # 10,000 objects), then the heap is frozen out of every later one (_warmup.settle_heap).
    gc.disable()
    try:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:
                failed.append(name)
    finally:
        gc.collect()
        gc.freeze()
        gc.enable()
    if warm:
        try:
            from pages import _warmup

            _warmup.server_start()
        except Exception:  # the pages' own warm-up and loads report any problem
            pass
    return failed


def _join(thread: threading.Thread) -> None:
    thread.join(timeout=60)  # an interpreter leaving mid-import of torch can abort the process


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):  # Streamlit's help follows: say whose options they are (and import nothing)
        print("Usage: python -m scripts.run_app [OPTIONS]: serves app.py with Streamlit; every "
              "option of `streamlit run` below is accepted (the app file is given for you).\n")
    else:
        thread = threading.Thread(target=preload, args=(PRELOAD,), name=PRELOAD_THREAD,
                                  daemon=True)
        thread.start()
        atexit.register(_join, thread)
    try:
        from streamlit.web import cli

        sys.argv = ["streamlit", "run", str(APP), *args]
        return cli.main(prog_name="streamlit")
    except KeyboardInterrupt:  # Ctrl-C before the server was up (Streamlit handles it after)
        print("Stopped before the app started.", file=sys.stderr)
        os._exit(130)  # now: no waiting for, or teardown noise from, a half-done torch import


if __name__ == "__main__":
    raise SystemExit(main())
