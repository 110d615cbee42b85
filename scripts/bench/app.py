"""Benchmark the app: per-page render time with AppTest, and live side-by-side prediction latency.

    python -m scripts.bench.app [--repeats 3] [--image PHOTO]

Uses the artifacts already on disk (EMOTION_ARTIFACTS or artifacts/). Three numbers per page:
- fresh: a new process renders Home, then switches to the page at once, while the app's
  background model warm-up is still running (the worst first visit); pages that need models
  the warm-up has not loaded yet say so and rerun themselves: *ready* is the time until the page
  shows its content;
- first: a new process renders Home, waits for the warm-up to finish (the app has been open a
  few seconds), then renders the page for the first time: what a user normally sees;
- warm: the median of `--repeats` further renders of the page (every cache full);
- warm-up: seconds from Home's first render until every model is loaded (imports included).
Live prediction runs every stored run (ensembles included) on one 640x480 picture, detection
included, after one warm-up call.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
PAGES = [None, "data", "compare", "confusion", "feature_maps", "explain", "predict", "train"]


def photo(path: str | None):
    """The given picture resized to 640x480, or a synthetic face pasted on a 640x480 canvas."""
    import cv2
    import numpy as np

    from emotion_core.data import faces, images, synthetic

    if path:
        return cv2.resize(images.load_rgb(path), (640, 480), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    canvas = rng.normal(120, 20, (480, 640, 3)).clip(0, 255).astype(np.uint8)
    for i in range(200):
        face, _ = synthetic.draw_face(rng, ("angry", "happy", "sad")[i % 3], size=220)
        if faces.detect_faces(face):
            canvas[130:350, 210:430] = face
            return canvas
    return canvas


def render_page(page: str | None, repeats: int, wait_warm_up: bool) -> dict[str, float]:
    """Seconds for the first render of `page` after Home in this process, and the warm median."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    t_home = time.perf_counter()
    at.run()  # Home: starts the background model warm-up
    from pages._warmup import WARM_UP_THREAD  # already imported by the app run above

    warm_up = float("nan")
    if wait_warm_up:
        for t in threading.enumerate():
            if t.name == WARM_UP_THREAD:
                t.join()
        warm_up = time.perf_counter() - t_home
    t0 = time.perf_counter()
    if page:
        at.switch_page(f"pages/{page}.py")
    at.run()
    first = time.perf_counter() - t0
    while any("in the background" in str(i.value) for i in at.info):  # the page waits for models
        time.sleep(0.25)
        at.run()
    ready = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t0)
    if at.exception:
        print(f"warning: page {page or 'home'} raised: {at.exception[0].value}", file=sys.stderr)
    return {"first": first, "ready": ready, "warm": statistics.median(times), "warm_up": warm_up}


def fresh_process(page: str | None, repeats: int, wait_warm_up: bool, threads: int) -> dict[str, float]:
    """`render_page` in a new Python process, so no model or table is cached beforehand."""
    cmd = [sys.executable, "-m", "scripts.bench.app", "--one-page", page or "home",
           "--repeats", str(repeats), "--threads", str(threads)]
    if wait_warm_up:
        cmd.append("--wait-warm-up")
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_pages(repeats: int, threads: int) -> list[tuple[str, float, float, float, float, float]]:
    """(page, fresh-process first render with the warm-up racing, seconds until that page shows
    its content, first render after the warm-up, warm median, seconds from Home's render to the
    end of the warm-up), each page in its own new processes."""
    rows = []
    for page in PAGES:
        racing = fresh_process(page, 0, False, threads)
        settled = fresh_process(page, repeats, True, threads)
        rows.append((page or "home", racing["first"], racing["ready"], settled["first"],
                     settled["warm"], settled["warm_up"]))
    return rows


def bench_live(image: str | None, repeats: int) -> tuple[list[str], float, float, list[tuple[str, float]]]:
    from emotion_core import evaluation as evaluate
    from emotion_core import store
    from emotion_core.views import live

    runs, _ = store.list_runs()
    ids = [r.run_id for r in runs]
    cache: dict[str, tuple] = {}

    def loader(rid: str):
        if rid not in cache:
            cache[rid] = evaluate.load_model(rid)
        return cache[rid]

    rgb = photo(image)
    live.predict_faces(rgb, ids, loader=loader, whole_image=True)  # warm-up: loads every model
    totals, last = [], None
    for _ in range(repeats):
        last = live.predict_faces(rgb, ids, loader=loader, whole_image=True)
        totals.append(last.total_ms)
    per_run = [(f"{p.model} [{p.weights_source}]", p.latency_ms)
               for p in (last.predictions[0].runs if last and last.predictions else [])]
    return ids, statistics.median(totals), last.detect_ms if last else 0.0, per_run


def bench_registry(image: str | None, repeats: int, profile: str) -> tuple[float, float, list[tuple[str, float]]]:
    """Every registry model at the profile's input size (untrained: speed does not depend on the
    weights), side by side through the same live path, detection included."""
    from emotion_core import models
    from emotion_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from emotion_core.training.config import get_profile
    from emotion_core.views import live

    size = get_profile(profile).image_size
    built: dict[str, tuple] = {}
    for name in models.REGISTRY:
        try:
            spec = models.get_spec(name)
            model, _ = models.build_model(name, 3, pretrained=False, image_size=size)
        except Exception as exc:  # a model that cannot be built offline is reported, not fatal
            print(f"  {name}: skipped ({exc})", file=sys.stderr)
            continue
        built[name] = (model.eval(), {"model": name, "classes": ["angry", "happy", "sad"],
                                      "image_size": size, "weights_source": "untrained",
                                      "mean": list(getattr(spec, "mean", IMAGENET_MEAN)),
                                      "std": list(getattr(spec, "std", IMAGENET_STD))})
    rgb = photo(image)
    loader = built.__getitem__
    live.predict_faces(rgb, list(built), loader=loader, whole_image=True)
    totals, last = [], None
    for _ in range(repeats):
        last = live.predict_faces(rgb, list(built), loader=loader, whole_image=True)
        totals.append(last.total_ms)
    per_run = [(p.model, p.latency_ms) for p in last.predictions[0].runs]
    return statistics.median(totals), last.detect_ms, per_run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="warm renders / predictions per item")
    p.add_argument("--image", default=None, help="a photo to predict on (resized to 640x480)")
    p.add_argument("--skip-pages", action="store_true", help="only the live prediction benchmark")
    p.add_argument("--registry", default=None, metavar="PROFILE",
                   help="also time every registry model at PROFILE's input size (untrained)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    p.add_argument("--one-page", default=None, help=argparse.SUPPRESS)  # child process mode
    p.add_argument("--wait-warm-up", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one_page:
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        page = None if args.one_page == "home" else args.one_page
        print(json.dumps(render_page(page, max(1, args.repeats),
                                     args.wait_warm_up)))
        return 0
    from emotion_core import store

    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    import torch
    print(f"torch threads: {torch.get_num_threads()}; load average: {os.getloadavg()[0]:.1f}")

    runs, broken = store.list_runs()
    print(f"artifacts: {store.paths.root()} ({len(runs)} runs, {len(broken)} broken)")
    if not args.skip_pages:
        print(f"{'page':<14}{'fresh s':>9}{'ready s':>9}{'first s':>9}{'warm s':>8}"
              f"{'warm-up s':>11}   (see the docstring)")
        for page, racing, ready, first, warm, warm_up in bench_pages(max(1, args.repeats),
                                                                     args.threads):
            print(f"{page:<14}{racing:>9.2f}{ready:>9.2f}{first:>9.2f}{warm:>8.2f}{warm_up:>11.1f}",
                  flush=True)
    if args.registry:
        total, detect, per_run = bench_registry(args.image, max(1, args.repeats), args.registry)
        for name, ms in per_run:
            print(f"  {name:<50}{ms:>8.1f} ms")
        print(f"live (registry, {args.registry} profile sizes): {len(per_run)} models on one "
              f"640x480 photo: detection {detect:.0f} ms, total {total:.0f} ms")
    if not runs:
        print("no runs: live prediction benchmark of stored runs skipped")
        return 0
    ids, total, detect, per_run = bench_live(args.image, max(1, args.repeats))
    for name, ms in per_run:
        print(f"  {name:<50}{ms:>8.1f} ms")
    print(f"live: {len(ids)} runs on one 640x480 photo: detection {detect:.0f} ms, "
          f"total {total:.0f} ms (median of {args.repeats})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
