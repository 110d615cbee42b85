"""One real-browser test: `streamlit run app.py` + headless Debian Chromium driven by Playwright.

Opens every page, uploads a face on Predict and checks that every run and the ensemble answer.
Screenshots land in test-output/ (git-ignored). Skipped where /usr/bin/chromium or the playwright
package is absent (no browser is ever downloaded).
"""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from emotion_core import store
from tests.fixtures_runs import MODELS, photo_640x480, tiny_store

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "test-output"
PAGES = {"data": "Data", "compare": "Compare", "confusion": "Confusion",
         "feature_maps": "Feature maps", "explain": "Explain", "predict": "Predict", "train": "Train"}
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")


@pytest.fixture
def app_url(tmp_path_factory: pytest.TempPathFactory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    root, ids = tiny_store(tmp_path_factory)
    port = _free_port()
    env = {**os.environ, store.paths.ENV_ROOT: str(root), "HF_HUB_OFFLINE": "1",
           "EMOTION_APP_WARMUP": "1"}  # as a user runs it: models load in the background
    log = open(tmp_path_factory.mktemp("streamlit") / "server.log", "w+")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url, ids
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.seek(0)
        server_log = log.read()
        log.close()
        if "Traceback" in server_log:
            print(server_log[-4000:])


def _no_exception(page) -> None:
    errs = page.locator('[data-testid="stException"]')
    assert errs.count() == 0, errs.first.inner_text()


def test_every_page_and_live_prediction_in_chromium(app_url) -> None:
    from playwright.sync_api import sync_playwright

    url, ids = app_url
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROME_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(url)
            page.get_by_role("heading", name="Facial-emotion benchmark explorer").wait_for()
            page.wait_for_load_state("networkidle")
            _no_exception(page)
            page.screenshot(path=str(OUT / "home.png"), full_page=True)
            for path, title in PAGES.items():
                page.goto(f"{url}/{path}")
                page.get_by_role("heading", name=title, exact=True).wait_for()
                page.wait_for_timeout(1500)  # let charts and images settle
                _no_exception(page)
                page.screenshot(path=str(OUT / f"{path}.png"), full_page=True)

            page.goto(f"{url}/predict")
            page.get_by_role("heading", name="Predict", exact=True).wait_for()
            buf = io.BytesIO()
            Image.fromarray(photo_640x480(1)).save(buf, format="PNG")
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
                {"name": "face.png", "mimeType": "image/png", "buffer": buf.getvalue()})
            page.get_by_text("Face 1", exact=True).wait_for()
            page.get_by_text("→").last.wait_for()
            body = page.locator('[data-testid="stMain"]').inner_text()
            for name in MODELS:
                assert f"{name} · " in body and "→" in body, name
            assert "ensemble" in body
            _no_exception(page)
            page.screenshot(path=str(OUT / "predict_upload.png"), full_page=True)
        finally:
            browser.close()
