"""Prepare a dataset once: index every file, clean, split (persisted) and weigh the classes.

`prepare_dataset` turns an image folder (layouts in `layout`) into `artifacts/datasets/<name>/`
(index.csv, split.csv, cleaning.csv, report.json); every model then trains and evaluates on
exactly the files in split.csv (`load_prepared`). `open_folder` reuses a stored report when it
was made from the same folder.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from emotion_core import store
from emotion_core.data import faces
from emotion_core.data.cleaning import THUMB_SIDE, clean, count_issues, fingerprint, hash_to_hex
from emotion_core.data.images import ImageDecodeError, read_image
from emotion_core.data.layout import SPLITS, discover

FACE_COLUMNS = ("fx", "fy", "fw", "fh")
SPLIT_COLUMNS = ["rel", "label", "subset", "source_split", *FACE_COLUMNS]
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ---------------------------------------------------------------------------------------------
# Index


def _index_one(path: Path, min_side: int, detect: bool) -> tuple[dict, np.ndarray | None]:
    """Read, hash, decode, fingerprint (and detect a face in) one file; never raises for bad data."""
    data = path.read_bytes()
    row: dict = {"bytes": len(data), "sha1": hashlib.sha1(data).hexdigest(), "pixel_sha1": "",
                 "format": "", "mode": "", "width": np.nan, "height": np.nan,
                 "exif_rotated": False, "phash": "", "error": "", "error_detail": "",
                 "faces": -1, **{c: np.nan for c in FACE_COLUMNS}}
    try:
        rgb, info = read_image(data, min_side=min_side, name=path.name)
    except ImageDecodeError as exc:
        row.update(error=exc.kind, error_detail=str(exc))
        return row, None
    value, thumb = fingerprint(rgb)
    row.update(pixel_sha1=hashlib.sha1(rgb.tobytes()).hexdigest(), format=info.format,
               mode=info.mode, width=info.width, height=info.height,
               exif_rotated=info.exif_rotated, phash=hash_to_hex(value))
    if detect:
        boxes = faces.detect_faces(rgb)
        row["faces"] = len(boxes)
        if boxes:
            b = boxes[0]
            row.update(fx=b.x, fy=b.y, fw=b.w, fh=b.h)
    return row, thumb


def index_dataset(root: Path, files: pd.DataFrame, *, min_side: int = 32,
                  detect_faces: bool = False, progress: bool = True,
                  workers: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Per-file facts (sizes, hashes, mode, decode errors, face box) and grey thumbnails.

    Decoding runs in a thread pool: Pillow and OpenCV release the GIL while they work.
    """
    root = Path(root)
    workers = workers or max(2, min(8, os.cpu_count() or 2))
    paths = [root / r for r in files["rel"]]
    thumbs = np.zeros((len(paths), THUMB_SIDE, THUMB_SIDE), dtype=np.float32)
    rows = []
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(paths), desc=f"indexing {root.name}", unit="img",
                 disable=not progress) as bar:
        results = pool.map(lambda p: _index_one(p, min_side, detect_faces), paths, chunksize=16)
        for k, (row, thumb) in enumerate(results):
            rows.append(row)
            if thumb is not None:
                thumbs[k] = thumb
            bar.update()
    index = pd.concat([files.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
    return index, thumbs


# ---------------------------------------------------------------------------------------------
# Split and weights


def carve_val(train: pd.DataFrame, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over `train` rows chosen for validation: stratified by label, seeded.

    Each class is shuffled on its own (seeded by seed and class name), so adding files to one
    class never moves another class's files between train and val.
    """
    mask = np.zeros(len(train), dtype=bool)
    if val_fraction <= 0:
        return mask
    labels = train["label"].to_numpy()
    rels = train["rel"].to_numpy()
    for label in sorted(set(labels)):
        idx = np.nonzero(labels == label)[0]
        idx = idx[np.argsort(rels[idx], kind="stable")]
        n_val = int(round(val_fraction * len(idx)))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        key = int.from_bytes(hashlib.sha1(label.encode()).digest()[:4], "little")
        rng = np.random.default_rng([seed, key])
        mask[idx[rng.permutation(len(idx))[:n_val]]] = True
    return mask


def class_weights(labels: Iterable[str], classes: list[str]) -> np.ndarray:
    """Inverse class frequency, normalised to mean 1 over the classes present (absent: 0)."""
    counts = pd.Series(list(labels), dtype=object).value_counts()
    n = np.array([counts.get(c, 0) for c in classes], dtype=np.float64)
    w = np.zeros(len(classes))
    present = n > 0
    if present.any():
        w[present] = 1.0 / n[present]
        w *= present.sum() / w.sum()
    return w


@dataclass
class PreparedDataset:
    """A cleaned, split dataset: what every training and evaluation run reads."""

    name: str
    root: Path
    classes: list[str]
    split: pd.DataFrame  # SPLIT_COLUMNS
    report: dict

    @property
    def has_test(self) -> bool:
        return bool((self.split["subset"] == "test").any())

    @property
    def subsets(self) -> list[str]:
        return [s for s in SPLITS if (self.split["subset"] == s).any()]

    def files(self, subset: str | None = None) -> pd.DataFrame:
        """Split rows of one subset (all rows when None), in their stored order."""
        if subset is None:
            return self.split.reset_index(drop=True)
        if subset not in SPLITS:
            raise ValueError(f"unknown subset {subset!r}; expected one of {SPLITS}")
        return self.split[self.split["subset"] == subset].reset_index(drop=True)

    def paths(self, subset: str | None = None) -> list[Path]:
        return [self.root / r for r in self.files(subset)["rel"]]

    def label_ids(self, subset: str | None = None) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.classes)}
        return self.files(subset)["label"].map(lookup).to_numpy(dtype=np.int64)


def _counts(df: pd.DataFrame, key: str, classes: list[str]) -> dict[str, dict[str, int]]:
    out = {}
    for s in SPLITS:
        part = df[df[key] == s]
        if len(part):
            vc = part["label"].value_counts()
            out[s] = {c: int(vc.get(c, 0)) for c in classes}
    return out


def check_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise ValueError(f"dataset name {name!r} must be letters, digits, '.', '_' or '-' "
                         f"(it names a folder under artifacts/datasets)")
    return name


def prepare_dataset(root: Path, name: str | None = None, *, detect_faces: bool = False,
                    val_fraction: float = 0.2, seed: int = 0, min_side: int = 32,
                    progress: bool = True, drop_no_face: bool = False) -> PreparedDataset:
    """Index, clean, split and weigh a dataset; save it through artifacts; return it."""
    t0 = time.perf_counter()
    root = Path(root).resolve()
    name = check_name(name or root.name)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    classes, files = discover(root)
    index, thumbs = index_dataset(root, files, min_side=min_side, detect_faces=detect_faces,
                                  progress=progress)
    t_index = time.perf_counter() - t0
    result = clean(index, thumbs, drop_no_face=drop_no_face)
    index["group"] = result.group
    index["kept"] = result.keep
    kept = index[result.keep].copy()
    kept["subset"] = kept["source_split"]
    has_val = bool((kept["source_split"] == "val").any())
    if not has_val:
        train_rows = kept[kept["subset"] == "train"]
        chosen = carve_val(train_rows, val_fraction, seed)
        kept.loc[train_rows.index[chosen], "subset"] = "val"
    order = kept["subset"].map({s: i for i, s in enumerate(SPLITS)})
    split = kept.assign(_o=order).sort_values(["_o", "label", "rel"])[SPLIT_COLUMNS]
    split = split.reset_index(drop=True)
    weights = class_weights(split.loc[split["subset"] == "train", "label"], classes)
    readable = index[index["error"] == ""]
    report = {
        "name": name, "root": str(root), "classes": classes,
        "counts": _counts(readable, "source_split", classes),
        "files": _counts(index, "source_split", classes),
        "subset_counts": _counts(split, "subset", classes),
        "issues": count_issues(result.report),
        "dropped": int((~result.keep).sum()),
        "class_weights": {c: float(w) for c, w in zip(classes, weights, strict=True)},
        "val_fraction": val_fraction, "val_source": "dataset" if has_val else "carved",
        "seed": seed, "min_side": min_side, "detect_faces": detect_faces,
        "drop_no_face": drop_no_face,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "timings": {"index_s": round(t_index, 2),
                    "total_s": round(time.perf_counter() - t0, 2)},
    }
    store.save_dataset_table(name, "index", index)
    store.save_dataset_table(name, "split", split)
    store.save_dataset_table(name, "cleaning", result.report)
    store.save_report(name, report)
    return PreparedDataset(name=name, root=root, classes=classes, split=split, report=report)


def load_prepared(name: str) -> PreparedDataset:
    """A dataset prepared earlier, exactly as saved (the split is never recomputed here)."""
    try:
        report = store.load_report(check_name(name))
        split = store.load_dataset_table(name, "split")
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"dataset '{name}' is not prepared (no report under "
                                f"{store.paths.dataset_dir(name)}); run `python -m "
                                f"scripts.prepare_data --data DIR --name {name}` first") from exc
    split["rel"] = split["rel"].astype(str)
    split["label"] = split["label"].astype(str)
    for col in FACE_COLUMNS:
        split[col] = pd.to_numeric(split[col], errors="coerce")
    return PreparedDataset(name=report["name"], root=Path(report["root"]),
                           classes=list(report["classes"]), split=split, report=report)


def open_folder(root: str | Path, name: str | None = None, *, progress: bool = True) -> PreparedDataset:
    """The prepared dataset of an image folder: the stored report when it was prepared from this
    same folder, otherwise prepare it now (index, clean, split)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"no such data folder: {root}")
    name = check_name(name or root.name)
    if store.is_prepared(name):
        ds = load_prepared(name)
        if Path(ds.root).resolve() == root:
            return ds
    return prepare_dataset(root, name, progress=progress)
