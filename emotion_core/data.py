"""Dataset discovery, indexing, cleaning, the persisted split and class weights.

`prepare_dataset` turns an image folder into `artifacts/datasets/<name>/` (index.csv, split.csv,
cleaning.csv, report.json) once; every model then trains and evaluates on exactly the files in
split.csv (`load_prepared`). Layouts: `<root>/<class>/*` (everything is train) or
`<root>/<split>/<class>/*` with split folders train / valid|validation|val / test.
Class names are folder names, lower-cased (so "Angry" and "angry" are one class).
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

from . import artifacts
from .cleaning import THUMB_SIDE, clean, count_issues, fingerprint, hash_to_hex
from .images import ImageDecodeError, read_image

DEFAULT_CLASSES = ("angry", "happy", "sad")
SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "valid": "val", "validation": "val", "val": "val",
                 "test": "test"}
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif",
                              ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"})
MASK_SUFFIX = ".mask.png"  # synthetic ground-truth masks sit beside their images
FACE_COLUMNS = ("fx", "fy", "fw", "fh")
SPLIT_COLUMNS = ["rel", "label", "subset", "source_split", *FACE_COLUMNS]
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def order_classes(names: Iterable[str]) -> list[str]:
    """angry, happy, sad first (in that order) when present, the rest alphabetically."""
    unique = set(names)
    return [c for c in DEFAULT_CLASSES if c in unique] + \
        sorted(c for c in unique if c not in DEFAULT_CLASSES)


def canonical_split(folder: str) -> str | None:
    """train -> train; valid|validation|val -> val; test -> test (any case); else None."""
    return SPLIT_ALIASES.get(folder.strip().lower())


def _visible_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(class_dir: Path) -> list[Path]:
    """Image files under a class folder (recursively), skipping hidden files and masks."""
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            low = fn.lower()
            if fn.startswith(".") or low.endswith(MASK_SUFFIX):
                continue
            if os.path.splitext(low)[1] in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / fn)
    return found


def discover(root: Path) -> tuple[list[str], pd.DataFrame]:
    """Classes and a file table (rel, source_split, label) for an image-folder dataset."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    top = _visible_dirs(root)
    split_dirs = [d for d in top if canonical_split(d.name)]
    if split_dirs and len(split_dirs) != len(top):
        others = sorted(d.name for d in top if d not in split_dirs)
        raise ValueError(f"{root} mixes split folders ({', '.join(d.name for d in split_dirs)}) "
                         f"with other folders ({', '.join(others)}); use <root>/<class>/* or "
                         f"<root>/<split>/<class>/* with splits train, valid|validation|val, test")
    layout = [(canonical_split(d.name), d) for d in split_dirs] if split_dirs else [("train", root)]
    rows = []
    for split, split_dir in layout:
        for class_dir in _visible_dirs(split_dir):
            label = class_dir.name.strip().lower()
            for f in _image_files(class_dir):
                rows.append((f.relative_to(root).as_posix(), split, label))
    if not rows:
        raise ValueError(f"no image files found under {root} (expected <root>/<class>/*.jpg or "
                         f"<root>/<split>/<class>/*.jpg)")
    files = pd.DataFrame(rows, columns=["rel", "source_split", "label"])
    classes = order_classes(files["label"])
    order = files["source_split"].map({s: i for i, s in enumerate(SPLITS)})
    files = files.assign(_o=order).sort_values(["_o", "label", "rel"]).drop(columns="_o")
    return classes, files.reset_index(drop=True)


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
        from .faces import detect_faces

        boxes = detect_faces(rgb)
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
    artifacts.save_dataset_table(name, "index", index)
    artifacts.save_dataset_table(name, "split", split)
    artifacts.save_dataset_table(name, "cleaning", result.report)
    artifacts.save_dataset_json(name, "report.json", report)
    return PreparedDataset(name=name, root=root, classes=classes, split=split, report=report)


def load_prepared(name: str) -> PreparedDataset:
    """A dataset prepared earlier, exactly as saved (the split is never recomputed here)."""
    try:
        report = artifacts.load_dataset_json(check_name(name), "report.json")
        split = artifacts.load_dataset_table(name, "split")
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"dataset '{name}' is not prepared (no report under "
                                f"{artifacts.dataset_dir(name)}); run `python -m "
                                f"scripts.prepare_data --data DIR --name {name}` first") from exc
    split["rel"] = split["rel"].astype(str)
    split["label"] = split["label"].astype(str)
    for col in FACE_COLUMNS:
        split[col] = pd.to_numeric(split[col], errors="coerce")
    return PreparedDataset(name=report["name"], root=Path(report["root"]),
                           classes=list(report["classes"]), split=split, report=report)
