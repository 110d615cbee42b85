"""How small a face can Predict read? The answers of stored runs as the faces in the photos shrink.

    python -m scripts.bench.face_size --data ../shared/data/webfaces3 [--data DIR ...]
        [--subset test] [--sizes 16 20 24 32 48 64 96] [--runs RUN,RUN] [--limit N] [--csv FILE]

Each photo of the split (each set's own persisted split, prepared as `scripts.evaluate` prepares
it) whose face Predict finds at the photo's own size is given the detail of a photo whose face
(the largest box found) is S px wide: shrunk by area averaging, then brought back to its own size,
so the face stands where it stood and only the detail goes, as in a group photo taken from
farther away. Predict's path then answers it (`views.live.predict_faces`: the same detector,
each run's own framing of the face, the face and its mirror, the mean of the runs). Per size:
how many faces are found again (a box that holds the native face's centre), the accuracy of each
run and of their mean on those, and over all faces with a lost one counted as wrong. "native"
is the photo as it is. Sizes at or above the photo's own face width are left out for it.
By default the bundled models answer (`--runs` names others). Prints one table a set and one
for all; `--csv` writes one row per photo, size and run.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

NATIVE = 0  # the size key of the photo as it is


def at_face_width(rgb: np.ndarray, box_w: int, size: int) -> np.ndarray:
    """The photo with the detail of one whose face is `size` px wide: shrunk (area averaging, as
    a camera farther away would record it) until a box `box_w` px wide is `size` px, then brought
    back to its own size (bilinear, as Predict's resize of a small crop to a run's input)."""
    import cv2

    h, w = rgb.shape[:2]
    scale = size / box_w
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _holds(box: Any, x: float, y: float) -> bool:
    return box.x <= x <= box.x + box.w and box.y <= y <= box.y + box.h


def answer_sizes(rgb: np.ndarray, label: str, run_ids: Sequence[str], sizes: Sequence[int],
                 predict: Callable[..., Any]) -> list[dict[str, Any]]:
    """Rows {size, found, run, predicted, right} for one photo: the native answer, then one per
    size smaller than its own face; no rows when no face is found at its own size."""
    native = predict(rgb, run_ids, max_faces=1)
    if not native.predictions or native.predictions[0].box is None:
        return []
    box = native.predictions[0].box
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    rows = _rows(NATIVE, box.w, native.predictions[0], label)
    for size in sizes:
        if size >= box.w:
            continue
        res = predict(at_face_width(rgb, box.w, size), run_ids, max_faces=None)
        hits = [p for p in res.predictions if p.box is not None and _holds(p.box, cx, cy)]
        if hits:
            rows += _rows(size, box.w, hits[0], label)
        else:
            lost = [*run_ids, "mean"] if len(run_ids) > 1 else list(run_ids)
            rows += [{"size": size, "native_w": box.w, "found": False, "run": r,
                      "predicted": "", "right": False} for r in lost]
    return rows


def _rows(size: int, native_w: int, face: Any, label: str) -> list[dict[str, Any]]:
    answers = [(p.run_id, p.predicted) for p in face.runs]
    if face.ensemble is not None:
        answers.append(("mean", face.ensemble.predicted))
    return [{"size": size, "native_w": native_w, "found": True, "run": rid, "predicted": pred,
             "right": pred == label} for rid, pred in answers]


def summary(rows: Sequence[dict[str, Any]], runs: Sequence[str]) -> list[dict[str, Any]]:
    """Per size (native first, then smallest first): faces, found, and per run the accuracy
    among found faces and over all faces (a lost face wrong)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    out = []
    for size in sorted(df["size"].unique(), key=lambda s: (s != NATIVE, s)):
        at = df[df["size"] == size]
        first = at[at["run"] == at["run"].iloc[0]]
        row: dict[str, Any] = {"size": "native" if size == NATIVE else f"{size} px",
                               "faces": len(first), "found": int(first["found"].sum())}
        for r in runs:
            mine = at[at["run"] == r]
            if len(mine):
                found = mine[mine["found"]]
                row[f"{r} found"] = float(found["right"].mean()) if len(found) else float("nan")
                row[f"{r} all"] = float(mine["right"].mean())
        out.append(row)
    return out


def short_labels(labels: dict[str, str], run_ids: Sequence[str]) -> dict[str, str]:
    """Each run's model name (the label's first part), or its whole label where two runs of one
    model would otherwise share a column heading."""
    short = {rid: labels.get(rid, rid).split(" · ")[0] for rid in run_ids}
    shared = {name for name in short.values() if list(short.values()).count(name) > 1}
    return {rid: labels.get(rid, rid) if short[rid] in shared else short[rid] for rid in run_ids}


def _print(title: str, table: list[dict[str, Any]], labels: dict[str, str]) -> None:
    print(title)
    runs = [k[:-6] for k in table[0] if k.endswith(" found")]
    head = ["face", "faces", "found"] + [f"{labels.get(r, r)} (found / all)" for r in runs]
    print("  " + " | ".join(head))
    for row in table:
        cells = [row["size"], str(row["faces"]), str(row["found"])]
        cells += [f"{row[f'{r} found']:.3f} / {row[f'{r} all']:.3f}" for r in runs]
        print("  " + " | ".join(cells))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench.face_size",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True, type=Path,
                    help="an image folder (repeat for several sets)")
    ap.add_argument("--subset", default="test", choices=["train", "val", "test"],
                    help="which split's photos (default test: the bundled models trained on "
                         "train and val)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 20, 24, 32, 48, 64, 96],
                    help="face widths to shrink to (px)")
    ap.add_argument("--runs", default="", help="comma-separated run ids (default: the bundled)")
    ap.add_argument("--limit", type=int, default=0, help="at most N photos a set (0: all)")
    ap.add_argument("--csv", type=Path, default=None, help="one row per photo, size and run")
    args = ap.parse_args(argv)
    if any(s < 4 for s in args.sizes):
        ap.error("--sizes must be 4 px or more")
    for folder in args.data:
        if not folder.is_dir():
            ap.error(f"--data {folder}: no such folder")

    import functools

    import pandas as pd
    import torch
    from tqdm import tqdm

    from emotion_core import store
    from emotion_core.data import open_folder
    from emotion_core.evaluation.onnx_model import load_predictor
    from emotion_core.views import labels as run_names
    from emotion_core.views import live

    torch.set_num_threads(1)
    records = store.list_runs()[0]
    if args.runs:
        run_ids = [r.strip() for r in args.runs.split(",") if r.strip()]
    else:
        run_ids = [r.run_id for r in records if r.bundled and r.has_weights]
    if not run_ids:
        ap.error("no runs to answer with: no bundled model here; pass --runs")
    labels = short_labels(run_names.run_labels([r for r in records if r.run_id in run_ids]),
                          run_ids)
    loader = functools.cache(load_predictor)
    predict = functools.partial(live.predict_faces, loader=loader)
    sizes = sorted(set(args.sizes))
    all_rows = []
    for folder in args.data:
        ds = open_folder(folder, detect_faces=True, progress=False)
        files = ds.files(args.subset)
        if args.limit:
            files = files.iloc[:args.limit]
        rows = []
        for rel, label in tqdm(list(zip(files["rel"], files["label"], strict=True)),
                               desc=f"{ds.name} {args.subset}", unit="photo"):
            rgb = live.decode_picture(ds.root / rel)
            for row in answer_sizes(rgb, label, run_ids, sizes, predict):
                rows.append({"dataset": ds.name, "path": str(rel), "label": label, **row})
        if not rows:
            print(f"{ds.name} {args.subset}: no face found in any photo")
            continue
        _print(f"{ds.name} {args.subset}: {len(files)} photos", summary(rows, [*run_ids, "mean"]),
               labels)
        all_rows += rows
    if len(args.data) > 1 and all_rows:
        _print("all sets", summary(all_rows, [*run_ids, "mean"]), labels)
    if args.csv and all_rows:
        pd.DataFrame(all_rows).to_csv(args.csv, index=False)
        print(f"wrote {len(all_rows)} rows to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
