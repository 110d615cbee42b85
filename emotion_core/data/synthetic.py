"""Procedural faces: the embedded, offline default dataset, with ground-truth masks.

The expression lives ONLY in the eyebrows and the mouth (angry: brows lowered toward the nose,
pressed mouth; happy: raised mouth corners; sad: inner brows raised, corners down), so a later
issue can score saliency maps against the brow+mouth mask saved beside every image. Everything
else (position, scale, rotation, skin tone, lighting, background, blur, noise, hair, glasses) is
nuisance drawn independently of the label. The drawing itself lives in emotion_core.cartoon.
"""
from __future__ import annotations

import json
import multiprocessing
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from emotion_core import store
from emotion_core.data.cartoon import (
    SUPPORTED_CLASSES,
    render_face,
    sample_expression,
    sample_nuisance,
)
from emotion_core.data.layout import DEFAULT_CLASSES, MASK_SUFFIX, mask_path

DEFAULT_SPLITS: dict[str, float] = {"train": 0.7, "valid": 0.15, "test": 0.15}
GENERATOR_VERSION = 1  # bump when the drawing changes: old generated folders are then rebuilt
METADATA_FILE = "synthetic.json"
DEMO_DATASET = "synthetic"  # the embedded default's dataset name (make run, the demo job)


def draw_face(rng: np.random.Generator, label: str, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Draw a random face showing `label`: (RGB uint8 HxWx3, brow+mouth mask uint8 in {0,255})."""
    nuisance = sample_nuisance(rng)  # always sampled first, so it never depends on the label
    return render_face(nuisance, sample_expression(rng, label), size)


# ---------------------------------------------------------------------------------------------
# Dataset folders


def _plan(n: int, classes: Sequence[str], splits: Mapping[str, float]) -> list[tuple[int, str, str]]:
    """(index, split, class) for every image: classes interleaved and balanced, splits per class."""
    k = len(classes)
    per_class = [n // k + (c < n % k) for c in range(k)]
    total = sum(splits.values())
    bounds = []
    for nc in per_class:  # cumulative split boundaries within each class
        acc, edges = 0.0, []
        for frac in splits.values():
            acc += frac / total
            edges.append(int(round(acc * nc)))
        edges[-1] = nc  # float rounding must never drop the last images
        bounds.append(edges)
    names = list(splits)
    plan = []
    for i in range(n):
        c, j = i % k, i // k
        s = next(si for si, edge in enumerate(bounds[c]) if j < edge)
        plan.append((i, names[s], classes[c]))
    return plan


def _check_args(n: int, size: int, classes: Sequence[str], splits: Mapping[str, float]) -> None:
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct and non-empty, got {list(classes)}")
    unknown = [c for c in classes if c not in SUPPORTED_CLASSES]
    if unknown:
        raise ValueError(f"cannot draw {unknown}; supported: {', '.join(SUPPORTED_CLASSES)}")
    if n < len(classes):
        raise ValueError(f"n must be at least the number of classes ({len(classes)}), got {n}")
    if not 32 <= size <= 1024:
        raise ValueError(f"size must be between 32 and 1024 px, got {size}")
    if not splits or any(f < 0 for f in splits.values()) or sum(splits.values()) <= 0:
        raise ValueError(f"split fractions must be non-negative with a positive sum, got {dict(splits)}")


def describe(n: int, size: int, seed: int, classes: Sequence[str],
             splits: Mapping[str, float]) -> dict:
    """The parameters that fully determine a generated folder (stored as synthetic.json)."""
    return {"generator": "emotion_core.synthetic", "version": GENERATOR_VERSION, "n": int(n),
            "size": int(size), "seed": int(seed), "classes": list(classes),
            "splits": {k: float(v) for k, v in splits.items()}}


def dataset_matches(out_dir: Path, n: int = 1500, size: int = 128, seed: int = 0,
                    classes: Sequence[str] = DEFAULT_CLASSES,
                    splits: Mapping[str, float] = DEFAULT_SPLITS) -> bool:
    """True when `out_dir` already holds a complete folder generated with these parameters."""
    meta_path = Path(out_dir) / METADATA_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    want = describe(n, size, seed, classes, splits)
    if {k: meta.get(k) for k in want} != want:
        return False
    images = [p for p in Path(out_dir).glob("*/*/*.png") if not p.name.endswith(MASK_SUFFIX)]
    return len(images) == n and all(mask_path(p).exists() for p in images)


def _write_png(path: Path, arr: np.ndarray) -> None:
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), arr):
        raise OSError(f"could not write {path}")


def _write_chunk(folder: Path, seed: int, size: int, chunk: Sequence[tuple[int, str, str]]) -> int:
    """Draw and save a slice of the plan (runs in a worker process when workers > 1)."""
    for i, split, label in chunk:
        rgb, mask = draw_face(np.random.default_rng([seed, i]), label, size)
        path = folder / split / label / f"{i + 1:05d}.png"
        _write_png(path, rgb)
        _write_png(mask_path(path), mask)
    return len(chunk)


class _Serial:
    """In-process stand-in for an executor (no start-up cost for small jobs and tests)."""

    def map(self, fn, items):  # noqa: ANN001, ANN201 - mirrors Executor.map
        return map(fn, items)

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _pool(workers: int) -> _Serial | ProcessPoolExecutor:
    if workers <= 1:
        return _Serial()
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def generate_dataset(out_dir: Path, n: int = 1500, size: int = 128, seed: int = 0,
                     classes: Sequence[str] = DEFAULT_CLASSES,
                     splits: Mapping[str, float] | None = None, progress: bool = True,
                     force: bool = False, workers: int = 1) -> Path:
    """Write `<out>/<split>/<class>/<00001>.png` + `.mask.png`, balanced, deterministic by seed.

    Image i is drawn from the seed sequence (seed, i), so its pixels do not depend on generation
    order. The folder is assembled beside `out_dir` and renamed into place, so it is complete or
    absent; an existing folder with the same parameters is reused unless `force`. A non-empty
    `out_dir` that is not a generated folder is never overwritten. `workers` > 1 draws in that
    many processes (same pixels, less wall time).
    """
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    _check_args(n, size, classes, splits)
    out_dir = Path(out_dir)
    if not force and dataset_matches(out_dir, n, size, seed, classes, splits):
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / METADATA_FILE).exists():
        raise FileExistsError(f"{out_dir} is not empty and holds no {METADATA_FILE}; "
                              f"refusing to overwrite it (choose another --out)")
    from tqdm.auto import tqdm

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = store.files.make_temp_dir(out_dir)
    try:
        counts: dict[str, dict[str, int]] = {s: {c: 0 for c in classes} for s in splits}
        plan = _plan(n, classes, splits)
        for split, label in {(s, c) for _, s, c in plan}:
            (tmp / split / label).mkdir(parents=True, exist_ok=True)
        chunks = [plan[k:k + 50] for k in range(0, n, 50)]
        job = partial(_write_chunk, tmp, seed, size)
        bar = tqdm(total=n, desc="synthetic faces", unit="img", disable=not progress)
        with bar, _pool(workers) as pool:
            for done in pool.map(job, chunks):
                bar.update(done)
        for _, split, label in plan:
            counts[split][label] += 1
        meta = describe(n, size, seed, classes, splits)
        meta.update(counts=counts, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        store.publish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
