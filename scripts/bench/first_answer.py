"""A new user's first answer: a fresh store (nothing trained), the app, a real photo on Predict.

    python -m scripts.bench.first_answer --image PHOTO [--repeats 3] [--port 8599]

Starts `streamlit run app.py` on an empty artifacts folder (as right after a fresh clone; the
bundled models under artifacts/bundled/ are what Predict offers), opens Predict in headless
Chromium, uploads PHOTO and times, per upload, the seconds from handing the file to the page
until every ticked model's answer line (`<model> -> <class> (...)`) is on screen. The first
upload includes loading the models (unless the app's warm-up already did); the later ones are
warm. Prints the load average beside the numbers: take them on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.bench import appserver

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ANSWER = re.compile(r"→ \w+ \(\d\.\d\d\) · [\d.]+ ms")  # one answer line of Predict


def measure(image: Path, repeats: int, port: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    store_dir = tempfile.mkdtemp(prefix="first_answer_")
    env = {**os.environ, "EMOTION_ARTIFACTS": store_dir, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    times = []
    try:
        appserver.wait_healthy(url, proc, timeout=120)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(180_000)
            for _ in range(repeats):
                page.goto(f"{url}/predict")
                page.get_by_role("heading", name="Predict", exact=True).wait_for()
                picker = page.locator('[data-testid="stMultiSelect"]').first.inner_text()
                ticked = picker.count("bundled")
                if not ticked:
                    raise SystemExit("Predict ticked no bundled model: are there any under "
                                     "artifacts/bundled/?")
                t0 = time.perf_counter()
                page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
                    str(image))
                while len(ANSWER.findall(page.locator('[data-testid="stMain"]').inner_text())) \
                        < ticked:
                    page.wait_for_timeout(20)
                times.append(time.perf_counter() - t0)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", required=True, type=Path, help="a photo with one face")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--port", type=int, default=0, help="0: a free port")
    args = ap.parse_args(argv)
    if not args.image.is_file():
        ap.error(f"{args.image} is not a file")
    load = os.getloadavg()[0]
    times = measure(args.image, args.repeats, args.port or appserver.free_port())
    print(f"first answer on Predict, fresh store, bundled models, {args.image.name}: "
          + ", ".join(f"{t:.2f} s" for t in times)
          + f" (first includes model loading); load average {load:.1f} -> "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
