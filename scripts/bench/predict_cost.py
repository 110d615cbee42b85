"""CPU cost per face of stored runs on Predict's path, alone and together (the mean's cost).

    python -m scripts.bench.predict_cost --runs realfaces-mobilenet_v2,realfaces-mini_xception
        [--images ../shared/data/webfaces3/valid] [--faces 40] [--passes 3] [--threads 1]

Predict answers a face by cutting it the way each run was trained to see faces, preprocessing
it and running the network on the crop and its mirror (`views.live._predict_one`); the mean
shown under the answers costs the sum of its runs' times. This times exactly that, per run and
per face, with `--threads` torch threads (Predict's is 1) and batch 1: faces are found once in
the first `--faces` photos under `--images` (the detector is not timed: it runs once for all
runs), one pass is dropped as warm-up, then `--passes` passes each visit every face and, per
face, every run in a rotating order, so a busy moment lands on all runs alike. Prints, per run
and for all runs together, the median and 90th percentile per face, and the load average at
start and end: take it on a machine doing nothing else.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _photos(folder: Path, limit: int) -> list[Path]:
    from emotion_core.data.layout import is_image_file

    photos = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))
    if not photos:
        raise SystemExit(f"--images {folder}: no photos found")
    return photos[:limit]


def _faces(photos: Sequence[Path]) -> list:
    """One FaceCrops per photo with a face found (the largest, which Predict lists first),
    decoded as Predict decodes."""
    from emotion_core.data import faces
    from emotion_core.views import live

    out = []
    for path in photos:
        rgb = live.decode_picture(path)
        boxes = faces.find_faces(rgb).boxes
        if boxes:
            out.append(live.FaceCrops(rgb, boxes[0]))
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between the sorted values."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def measure(run_ids: Sequence[str], crops: Sequence, passes: int,
            loader: Callable[[str], tuple[Any, dict[str, Any]]] | None = None
            ) -> dict[str, list[float]]:
    """Milliseconds per face for each run (key: run id) and for all together (key: "all");
    `loader` (run id -> (model, manifest)) defaults to the store's, each run loaded once."""
    from emotion_core.views import live

    if loader is None:
        from emotion_core.evaluation import load_model
        loaded = {rid: load_model(rid) for rid in run_ids}
        loader = loaded.__getitem__

    times: dict[str, list[float]] = {rid: [] for rid in run_ids} | {"all": []}
    for n in range(passes + 1):  # pass 0 warms up and is not kept
        for i, crop in enumerate(crops):
            k = (i + n) % len(run_ids)
            order = list(run_ids[k:]) + list(run_ids[:k])
            answers = {rid: live._predict_one(loader, rid, crop) for rid in order}
            failed = [a for a in answers.values() if a.error]
            if failed:
                raise SystemExit(f"{failed[0].run_id}: {failed[0].error}")
            if n:
                for rid, a in answers.items():
                    times[rid].append(a.latency_ms)
                times["all"].append(sum(a.latency_ms for a in answers.values()))
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench.predict_cost",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="comma-separated run ids (bundled ones too)")
    ap.add_argument("--images", type=Path, default=Path("../shared/data/webfaces3/valid"),
                    help="a folder of face photos (searched recursively)")
    ap.add_argument("--faces", type=int, default=40, help="photos to use (the first N, sorted)")
    ap.add_argument("--passes", type=int, default=3, help="timed passes after one warm-up pass")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (Predict's: 1)")
    args = ap.parse_args(argv)
    run_ids = [r.strip() for r in args.runs.split(",") if r.strip()]
    if not run_ids or args.faces < 1 or args.passes < 1 or args.threads < 1:
        ap.error("need at least one run id, and --faces, --passes, --threads >= 1")
    if not args.images.is_dir():
        ap.error(f"--images {args.images}: no such folder")

    import torch

    from emotion_core import words

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    crops = _faces(_photos(args.images, args.faces))
    if not crops:
        raise SystemExit(f"--images {args.images}: no face found in the first {args.faces} photos")
    times = measure(run_ids, crops, args.passes)
    print(f"{words.counted(len(crops), 'face')} from {args.images}, "
          f"{words.counted(args.passes, 'pass', 'passes')} after a warm-up, "
          f"{words.counted(args.threads, 'torch thread')}, batch 1, load average {load0:.1f} -> "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for key, ms in times.items():
        name = "all runs together (the mean's cost)" if key == "all" else key
        print(f"  {name}: median {statistics.median(ms):.1f} ms, p90 {percentile(ms, 90):.1f} ms "
              f"per face")
    return 0


if __name__ == "__main__":
    sys.exit(main())
