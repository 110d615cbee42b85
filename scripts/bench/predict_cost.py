"""CPU cost per face of stored runs on Predict's path, alone and together (the mean's cost).

    python -m scripts.bench.predict_cost --runs realfaces-mobilenet_v2,realfaces-mini_xception
        [--images ../shared/data/webfaces3/valid] [--faces 40] [--passes 3] [--threads 1]
        [--engines predict,torch]

Predict answers a face by cutting it the way each run was trained to see faces, preprocessing
it and running the network on the crop and its mirror as one batch (`views.live._predict_one`),
through the run's ONNX export where it has one (the bundled models' are made by the app's
first start, or `scripts.export --bundled`); the mean shown
under the answers costs the sum of its runs' times. This times exactly that, per run and per
face, with `--threads` threads (Predict's ONNX Runtime: 1), and with `--engines predict,torch`
through PyTorch too, face by face in the same rotation, for a ratio taken in one run. Faces are
found once in the first `--faces` photos under `--images` (the detector is not timed: it runs
once for all runs), one pass is dropped as warm-up, then `--passes` passes each visit every
face and, per face, every run in a rotating order, so a busy moment lands on all runs alike.
Prints, per run and for all runs together, the median and 90th percentile per face, and the
load average at start and end: take it on a machine doing nothing else.
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


def _key(name: str, engine: str) -> str:
    return f"{name} [{engine}]" if engine else name


def measure(run_ids: Sequence[str], crops: Sequence, passes: int,
            loader: Callable[[str], tuple[Any, dict[str, Any]]] | None = None, *,
            engines: dict[str, Callable[[str], tuple[Any, dict[str, Any]]]] | None = None
            ) -> dict[str, list[float]]:
    """Milliseconds per face for each run (key: run id) and for all together (key: "all");
    `loader` (run id -> (model, manifest)) defaults to the store's, each run loaded once.
    `engines` ({name: loader}) instead times every run through every loader, all in one
    rotation per face, under keys "RUN [name]" and "all [name]"."""
    from emotion_core.views import live

    if engines is None:
        if loader is None:
            from emotion_core.evaluation import load_model
            loaded = {rid: load_model(rid) for rid in run_ids}
            loader = loaded.__getitem__
        engines = {"": loader}
    entries = [(rid, eng) for eng in engines for rid in run_ids]
    times: dict[str, list[float]] = {_key(rid, eng): [] for rid, eng in entries}
    times |= {_key("all", eng): [] for eng in engines}
    for n in range(passes + 1):  # pass 0 warms up and is not kept
        for i, crop in enumerate(crops):
            k = (i + n) % len(entries)
            order = entries[k:] + entries[:k]
            answers = {(rid, eng): live._predict_one(engines[eng], rid, crop)
                       for rid, eng in order}
            failed = [a for a in answers.values() if a.error]
            if failed:
                raise SystemExit(f"{failed[0].run_id}: {failed[0].error}")
            if n:
                for (rid, eng), a in answers.items():
                    times[_key(rid, eng)].append(a.latency_ms)
                for eng in engines:
                    times[_key("all", eng)].append(
                        sum(a.latency_ms for (_, e), a in answers.items() if e == eng))
    return times


def engine_loaders(names: Sequence[str], run_ids: Sequence[str], threads: int
                   ) -> dict[str, Callable[[str], tuple[Any, dict[str, Any]]]]:
    """{engine: loader} with each run loaded once: "predict" is what Predict answers with (the
    run's ONNX export through ONNX Runtime with `threads` threads where it has a usable one,
    else PyTorch), "torch" the PyTorch model."""
    from emotion_core.evaluation import load_model
    from emotion_core.evaluation.onnx_model import load_predictor

    make = {"predict": lambda rid: load_predictor(rid, threads=threads), "torch": load_model}
    return {name: {rid: make[name](rid) for rid in run_ids}.__getitem__ for name in names}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench.predict_cost",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="comma-separated run ids (bundled ones too)")
    ap.add_argument("--images", type=Path, default=Path("../shared/data/webfaces3/valid"),
                    help="a folder of face photos (searched recursively)")
    ap.add_argument("--faces", type=int, default=40, help="photos to use (the first N, sorted)")
    ap.add_argument("--passes", type=int, default=3, help="timed passes after one warm-up pass")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch and ONNX Runtime threads (Predict's ONNX Runtime: 1)")
    ap.add_argument("--engines", default="predict",
                    help="comma-separated: predict (what Predict answers with: the run's ONNX "
                         "export where it has one, else PyTorch), torch (PyTorch); two are "
                         "timed face by face in one rotation, for their ratio")
    args = ap.parse_args(argv)
    run_ids = [r.strip() for r in args.runs.split(",") if r.strip()]
    engines = list(dict.fromkeys(e.strip() for e in args.engines.split(",") if e.strip()))
    if not run_ids or args.faces < 1 or args.passes < 1 or args.threads < 1:
        ap.error("need at least one run id, and --faces, --passes, --threads >= 1")
    if not engines or set(engines) - {"predict", "torch"}:
        ap.error(f"--engines {args.engines}: give predict, torch or both")
    if not args.images.is_dir():
        ap.error(f"--images {args.images}: no such folder")

    import torch

    from emotion_core import words

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    crops = _faces(_photos(args.images, args.faces))
    if not crops:
        raise SystemExit(f"--images {args.images}: no face found in the first {args.faces} photos")
    loaders = engine_loaders(engines, run_ids, args.threads)
    times = measure(run_ids, crops, args.passes, engines=loaders)
    used = {name: sorted({getattr(loaders[name](rid)[0], "engine", "torch") for rid in run_ids})
            for name in engines}
    print(f"{words.counted(len(crops), 'face')} from {args.images}, "
          f"{words.counted(args.passes, 'pass', 'passes')} after a warm-up, "
          f"{words.counted(args.threads, 'thread')} per engine, the face and its mirror as one "
          f"batch, load average {load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          + "; ".join(f"{name}: {'+'.join(used[name])}" for name in engines))
    for key, ms in times.items():
        name = key.replace("all", "all runs together (the mean's cost)", 1) \
            if key.startswith("all") else key
        print(f"  {name}: median {statistics.median(ms):.1f} ms, p90 {percentile(ms, 90):.1f} ms "
              f"per face")
    if len(engines) == 2:
        a, b = engines
        for rid in [*run_ids, "all"]:
            ratio = statistics.median(times[_key(rid, b)]) / statistics.median(times[_key(rid, a)])
            print(f"  {rid}: {b} / {a} = {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
