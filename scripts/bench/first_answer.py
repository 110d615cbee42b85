"""A new user's first answer: a fresh store (nothing trained), the app, a real photo on Predict.

    python -m scripts.bench.first_answer --image PHOTO [--think 0 5] [--repeats 3] [--demo-job]
        [--no-bytecode]

For each think time, starts the app's server as `make app` does (`scripts.run_app`) on an empty
artifacts folder (as right after a fresh clone: the bundled models under artifacts/bundled/ are
what Predict offers), then
`--repeats` times opens Predict in a new headless-Chromium session, waits until the uploader is
on screen plus the think time (a person finding the photo), hands the photo to the uploader and
times the seconds until every ticked model's answer line (`<model> -> <class> (...)`) is on
screen. The first session of each server is the server's first page: it pays the imports, and
the answer waits for the background warm-up (face detector, bundled models) unless the think
time covered it. `--demo-job` also starts the quick demo job in that store first, as `make run`
does (it trains at niceness 10 on the same cores). The server writes and reads byte code under
.venv/pycache as under `make` (the Makefile); `--no-bytecode` starts it as on a machine that sets
PYTHONDONTWRITEBYTECODE=1 outside `make`, where every start compiles its imports from source.
Prints the load average beside the numbers: without `--demo-job`, take them on an otherwise
idle machine.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.bench import appserver

REPO = appserver.REPO
ANSWER = re.compile(r"→ \w+ \(\d\.\d\d\) · [\d.]+ ms")  # one answer line of Predict


@dataclass
class Upload:
    page_s: float  # from opening Predict until the uploader was on screen
    answer_s: float  # from handing over the photo until every ticked model's answer showed


def measure(image: Path, repeats: int, think: float, demo_job: bool = False,
            preload: bool = True, bytecode: bool = True) -> tuple[float, list[Upload]]:
    """(seconds from the server's start until it answered its health check, the uploads)."""
    from playwright.sync_api import sync_playwright

    env = appserver.store_env("first_answer_", bytecode)
    if demo_job:
        appserver.demo_job(env, "start")
    port = appserver.free_port()
    t_start = time.perf_counter()
    proc = subprocess.Popen(
        appserver.command(port) if preload else
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), *appserver.flags(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    uploads = []
    try:
        appserver.wait_healthy(url, proc, timeout=120)
        healthy_s = time.perf_counter() - t_start
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(appserver.CHROMIUM), args=["--no-sandbox"])
            for _ in range(repeats):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})  # a new session
                page.set_default_timeout(180_000)
                t_open = time.perf_counter()
                page.goto(f"{url}/predict")
                uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]').first
                uploader.wait_for(state="attached")
                page_s = time.perf_counter() - t_open
                picker = page.locator('[data-testid="stMain"] [data-testid="stMultiSelect"]').first
                ticked = picker.inner_text().count("bundled")  # not the sidebar's run picker
                if not ticked:
                    raise SystemExit("Predict ticked no bundled model: are there any under "
                                     "artifacts/bundled/?")
                page.wait_for_timeout(think * 1000)
                t0 = time.perf_counter()
                uploader.set_input_files(str(image))
                main = page.locator('[data-testid="stMain"]')
                while len(ANSWER.findall(main.inner_text())) < ticked:
                    page.wait_for_timeout(10)
                uploads.append(Upload(page_s, time.perf_counter() - t0))
                page.close()
            browser.close()
    finally:
        appserver.stop(proc, env, demo_job)
    return healthy_s, uploads


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", required=True, type=Path, help="a photo with one face")
    ap.add_argument("--think", type=float, nargs="+", default=[0.0, 5.0],
                    help="seconds between the uploader showing and the photo handed over; "
                         "a fresh server for each value")
    ap.add_argument("--repeats", type=int, default=3, help="new sessions per server")
    ap.add_argument("--demo-job", action="store_true",
                    help="start the quick demo job first, as `make run` does")
    ap.add_argument("--no-preload", dest="preload", action="store_false",
                    help="plain `streamlit run app.py` instead of scripts.run_app (whose import "
                         "preload this measures)")
    ap.add_argument("--no-bytecode", dest="bytecode", action="store_false",
                    help="the server never writes byte code (PYTHONDONTWRITEBYTECODE=1, as some "
                         "machines set it outside `make`): every start compiles from source")
    args = ap.parse_args(argv)
    if not args.image.is_file():
        ap.error(f"{args.image} is not a file")
    if args.repeats < 1 or any(t < 0 for t in args.think):
        ap.error("--repeats must be at least 1 and --think at least 0")
    print(f"first answer on Predict, fresh store, bundled models, {args.image.name}"
          + (", the quick demo job training" if args.demo_job else "")
          + ("" if args.preload else ", no import preload")
          + ("" if args.bytecode else ", no byte code"))
    for think in args.think:
        load = os.getloadavg()[0]
        healthy_s, ups = measure(args.image, args.repeats, think, args.demo_job, args.preload,
                                 args.bytecode)
        print(f"think {think:g} s: server up after {healthy_s:.1f} s; answers after "
              + ", ".join(f"{u.answer_s:.2f}" for u in ups)
              + " s (uploader shown after " + ", ".join(f"{u.page_s:.1f}" for u in ups)
              + f" s; the first is the server's first page); load average {load:.1f} -> "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
