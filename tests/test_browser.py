"""The real browser: the app server as `make app` starts it (scripts.run_app) + headless Debian Chromium driven by Playwright.

Opens every page at 1400 px (the server's first request is a page URL, not Home), checks that no
table is wider than its container, that the Data page shows its mean faces, that a tall upload
keeps the page short, that Explain draws every overlay at one size, that Feature maps keeps its
slider and maps on one layer, and that Predict answers with every run, the ensembles and a
why-map each. A second test streams a fake camera (a .y4m clip written from a face picture)
through the live webcam mode over WebRTC and asserts that labelled frames come back.
Screenshots (whole pages) land in test-output/ (git-ignored). Skipped where /usr/bin/chromium
or the playwright package is absent (no browser is ever downloaded).
"""
from __future__ import annotations

import io
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotion_core import store
from scripts.bench import appserver
from tests.fixtures_runs import MODELS, face_image, photo_640x480, tiny_store

CHROMIUM = appserver.CHROMIUM
REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "test-output"
PAGES = {"data": "Data", "compare": "Compare", "confusion": "Confusion",
         "feature_maps": "Feature maps", "explain": "Explain", "predict": "Predict", "train": "Train"}
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
# A fake camera that WebRTC can reach over loopback (see /work/shared/notes: host candidates
# must not hide behind mDNS names the Python side cannot resolve).
CAMERA_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
               "--disable-features=WebRtcHideLocalIpsWithMdns"]
WIDTH = 1400
LIVE_WAIT_S = 120  # for the first labelled frames (model load + ICE on 2 busy cores)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def app_url(tmp_path_factory: pytest.TempPathFactory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    root, ids = tiny_store(tmp_path_factory)
    port = appserver.free_port()
    env = {**os.environ, store.paths.ENV_ROOT: str(root), "HF_HUB_OFFLINE": "1",
           "EMOTION_APP_WARMUP": "1"}  # as a user runs it: models load in the background
    log = open(tmp_path_factory.mktemp("streamlit") / "server.log", "w+")  # noqa: SIM115
    # the committed .streamlit/config.toml applies (cwd = repo); the flags repeat what it says
    proc = subprocess.Popen(
        appserver.command(port, "--server.fileWatcherType", "none"),
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        appserver.wait_healthy(url, proc)
        yield url, ids, log
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


# ---------------------------------------------------------------------------------------------
# Helpers


def _no_exception(page) -> None:
    errs = page.locator('[data-testid="stException"]')
    assert errs.count() == 0, errs.first.inner_text()


def _main_height(page) -> int:
    return page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")


def _settle(page, timeout_s: float = 120) -> None:
    """Wait until the script has finished and the page stopped growing (charts, images)."""
    end, last, stable = time.time() + timeout_s, -1, 0
    while time.time() < end and stable < 3:
        size = page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight"
                             " + document.images.length")
        busy = page.locator('[data-testid="stStatusWidget"]').count()
        stable = stable + 1 if size == last and not busy else 0
        last = size
        page.wait_for_timeout(700)


def _shot(page, name: str) -> None:
    """The whole page (the main block scrolls by itself, so the viewport is grown to fit)."""
    height = min(_main_height(page) + 40, 12_000)
    page.set_viewport_size({"width": WIDTH, "height": height})
    page.wait_for_timeout(800)
    page.screenshot(path=str(OUT / f"{name}.png"))
    page.set_viewport_size({"width": WIDTH, "height": 1000})


def _tables_fit(page, where: str) -> None:
    """No table is wider than its container (nothing cut off on the right)."""
    sizes = page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="stDataFrame"]'))
        .map(d => { const s = d.querySelector('.dvn-scroller') || d;
                    return [s.scrollWidth, s.clientWidth]; })""")
    for k, (scroll, client) in enumerate(sizes):
        assert scroll <= client + 1, f"{where}: table {k + 1} is {scroll} px wide in {client} px"


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _upload(page, name: str, rgb: np.ndarray) -> None:
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
        {"name": name, "mimeType": "image/png", "buffer": _png(rgb)})


def _image_widths(page, caption_has: str) -> list[float]:
    return page.evaluate("""(needle) => Array.from(document.querySelectorAll('[data-testid="stImage"]'))
        .filter(e => e.innerText.includes(needle))
        .map(e => e.querySelector('img').getBoundingClientRect().width)""", caption_has)


# ---------------------------------------------------------------------------------------------


def test_every_page_in_chromium(app_url) -> None:
    from playwright.sync_api import sync_playwright

    url, ids, _ = app_url
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROME_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
            page.set_default_timeout(120_000)
            # the server's first request is a page URL: it still gets the app's navigation
            page.goto(f"{url}/train")
            page.get_by_role("heading", name="Train", exact=True).wait_for()
            page.get_by_text("Dataset", exact=True).first.wait_for()  # the app's sidebar
            assert page.evaluate("() => document.querySelector('[data-testid=stMainBlockContainer]')"
                                 ".clientWidth") > 900  # the wide layout of app.py
            page.goto(url)
            page.get_by_role("heading", name="Facial-emotion benchmark explorer").wait_for()
            _settle(page)
            _no_exception(page)
            _tables_fit(page, "home")
            _shot(page, "home")
            for path, title in PAGES.items():
                page.goto(f"{url}/{path}")
                page.get_by_role("heading", name=title, exact=True).wait_for()
                if path in ("feature_maps", "explain"):  # models load in the background first
                    page.get_by_text("in the background").wait_for(state="detached")
                _settle(page)
                _no_exception(page)
                _tables_fit(page, path)
                _shot(page, path)

            # Data: the mean faces are on the page, as pictures that loaded
            page.goto(f"{url}/data")
            mean = page.locator('[data-testid="stImage"]', has_text="mean face per class")
            mean.wait_for()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0",  # it loads
                                   arg=mean.locator("img").element_handle(), timeout=30_000)

            # Explain: every overlay at one size, whatever the model's input size
            page.goto(f"{url}/explain")
            page.get_by_text("patch grid (each cell became one token)").wait_for()
            _settle(page)
            cams = _image_widths(page, "→")
            assert len(cams) == 2 and len(set(cams)) == 1, cams
            vit = _image_widths(page, "rollout") + _image_widths(page, "patch grid")
            assert set(vit) == set(cams), (vit, cams)

            # Feature maps: the last layer stays chosen, and drawn, after switching to upload
            page.goto(f"{url}/feature_maps")
            page.get_by_text("channels", exact=False).first.wait_for()
            page.get_by_role("slider").first.focus()
            page.keyboard.press("End")
            _settle(page)
            layer = page.locator('[data-testid="stSliderThumbValue"]').first.inner_text()
            page.get_by_text("upload", exact=True).click()
            _upload(page, "face.png", photo_640x480(1))
            page.get_by_text(f"{layer}: channels").wait_for()
            _settle(page)
            assert page.locator('[data-testid="stSliderThumbValue"]').first.inner_text() == layer

            # Predict: every run, the mean computed now, the stored ensemble, a why-map each
            page.goto(f"{url}/predict")
            page.get_by_role("heading", name="Predict", exact=True).wait_for()
            _upload(page, "face.png", photo_640x480(1))
            page.get_by_text("Face 1", exact=True).wait_for()
            for name in MODELS:
                page.get_by_text(re.compile(rf"^{name} → \w+ · (Grad-CAM|attention rollout)$")).wait_for()
            _settle(page)
            body = page.locator('[data-testid="stMain"]').inner_text()
            for name in MODELS:
                assert f"{name} · " in body and "→" in body, name
            assert "mean of the 2 runs above (computed now)" in body
            assert "stored ensemble run" in body
            _no_exception(page)
            _tables_fit(page, "predict with a face")
            _shot(page, "predict_upload")

            # a 200x3800 upload (as thin as faces.MAX_ASPECT allows) stays within a few screens
            page.goto(f"{url}/predict")
            page.get_by_role("heading", name="Predict", exact=True).wait_for()
            _upload(page, "strip.png", np.full((3800, 200, 3), 90, np.uint8))
            page.get_by_text("shown scaled to fit", exact=False).wait_for()
            _settle(page)
            assert _main_height(page) < 3000
            _shot(page, "predict_tall_upload")
        finally:
            browser.close()


# ---------------------------------------------------------------------------------------------
# Live webcam over WebRTC with a fake camera


def write_y4m(path: Path, rgb: np.ndarray, frames: int = 60) -> Path:
    """A raw YUV 4:2:0 clip Chromium plays as its fake camera (the picture, drifting a little)."""
    import cv2

    h, w = rgb.shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for k in range(frames):
            shifted = np.roll(rgb, (k % 10) - 5, axis=1)  # a face that moves a few pixels
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(shifted, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def webcam_picture() -> np.ndarray:
    """The fake camera's 640x480 picture: one face 320 px high. On a busy machine WebRTC sends
    the video at half size or less, blurred; a 200 px face then went undetected in most frames
    (a JPEG/blur simulation at half size: 2 of 8 found, against 8 of 8 at 320 px)."""
    rng = np.random.default_rng(1)
    canvas = rng.normal(120, 20, (480, 640, 3)).clip(0, 255).astype(np.uint8)
    canvas[80:400, 40:360] = face_image(320, seed=0)
    return canvas


def _metric(page, label: str) -> str | None:
    box = page.locator('[data-testid="stMetric"]', has_text=label)
    return box.locator('[data-testid="stMetricValue"]').inner_text() if box.count() else None


def test_live_webcam_labels_frames_in_chromium(app_url, tmp_path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    pytest.importorskip("streamlit_webrtc", reason="streamlit-webrtc is not installed")
    url, ids, log = app_url
    OUT.mkdir(exist_ok=True)
    clip = write_y4m(tmp_path / "face.y4m", webcam_picture())
    args = [*CHROME_ARGS, *CAMERA_ARGS, f"--use-file-for-fake-video-capture={clip}"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            ctx = browser.new_context(viewport={"width": WIDTH, "height": 1000},
                                      permissions=["camera"])
            page = ctx.new_page()
            page.set_default_timeout(120_000)
            page.goto(f"{url}/predict")
            page.get_by_role("heading", name="Predict", exact=True).wait_for()
            page.get_by_text("Live webcam", exact=True).click()
            page.get_by_text("Press START", exact=False).wait_for()
            frame = next((f for _ in range(60) for f in [_webrtc_frame(page)] if f), None)
            if frame is None:
                pytest.skip("the streamlit-webrtc component's iframe never appeared in 60 s")
            try:
                frame.get_by_role("button", name="START").click(timeout=60_000)
            except PlaywrightTimeout:
                pytest.skip("the streamlit-webrtc component rendered no START button in 60 s: "
                            + frame.locator("body").inner_text()[:300])
            fps = _wait_for_fps(page, LIVE_WAIT_S)
            if fps is None:
                video = frame.locator("video").first.evaluate(
                    "v => [v.readyState, v.videoWidth, !!v.srcObject]") \
                    if frame.locator("video").count() else None
                text = frame.locator("body").inner_text()[:300]
                if not video or video[0] == 0:  # no media came back: the connection never formed
                    pytest.skip(f"WebRTC did not connect inside this machine within {LIVE_WAIT_S} s "
                                f"(loopback host candidates, no STUN, mDNS hiding off): the "
                                f"returned video never started (video {video}); component: {text!r}")
                pytest.fail(f"the video plays (readyState {video[0]}) but no labelled frame "
                            f"was counted in {LIVE_WAIT_S} s; component: {text!r}")
            # a few seconds of steady streaming for the figures; on a busy machine WebRTC sends
            # blurrier frames and the detector can miss the face on some: wait for a tracked one
            page.wait_for_timeout(8000)
            summary = ""
            for _ in range(60):
                summary = page.get_by_text(re.compile(r"frames processed")).first.inner_text()
                if re.search(r"[1-9]\d* frames processed · 1 face", summary):
                    break
                page.wait_for_timeout(1000)
            fps = float(_metric(page, "Frames per second"))
            latency = _metric(page, "Latency per frame")
            assert fps > 0 and re.search(r"[1-9]\d* frames processed · 1 face", summary), summary
            # WebRTC lowers the resolution when the CPU is busy (its degradation preference), so
            # the returned frames keep the camera's 4:3 shape but not always its 640x480 size
            ready, w, h = frame.locator("video").first.evaluate(
                "v => [v.readyState, v.videoWidth, v.videoHeight]")
            assert ready >= 2 and h > 0 and abs(w / h - 4 / 3) < 0.02 and w <= 640, \
                f"the labelled frames reach the page (readyState {ready}, {w}x{h})"
            (OUT / "live_fps.txt").write_text(
                f"{fps:.1f} FPS, {latency} per frame; {summary}; load average "
                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
            print(f"live: {fps:.1f} FPS, {latency} per frame; {summary}")
            _shot(page, "predict_live")

            for attempt in range(5):  # the frame frozen may be one the detector misses (above)
                page.get_by_role("button", name="Freeze: analyse this frame below").click()
                page.get_by_role("heading", name="Frozen frame").wait_for()
                try:
                    page.get_by_text("Face 1", exact=True).wait_for(timeout=30_000)
                    break
                except PlaywrightTimeout:
                    _shot(page, f"predict_live_frozen_miss{attempt}")
            else:
                main = page.locator('[data-testid="stMain"]').inner_text()
                pytest.fail(f"no face in 5 frozen frames: {main[-1500:]!r}")
            page.get_by_text(re.compile(r"^mobilenet_v2 → \w+ · Grad-CAM$")).wait_for()
            _settle(page, 60)
            _no_exception(page)
            _shot(page, "predict_live_frozen")
            frame.get_by_role("button", name="STOP").click()
        finally:
            browser.close()


def _webrtc_frame(page):
    page.wait_for_timeout(1000)
    return next((f for f in page.frames if "streamlit_webrtc" in f.url), None)


def _wait_for_fps(page, timeout_s: float) -> float | None:
    """The FPS figure beside the video once it is above 0 (None if it never is)."""
    end = time.time() + timeout_s
    while time.time() < end:
        value = _metric(page, "Frames per second")
        if value is not None and float(value) > 0:
            return float(value)
        page.wait_for_timeout(1000)
    return None
