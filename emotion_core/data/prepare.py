"""Prepare a dataset once: index every file, clean, split (persisted) and weigh the classes.

`prepare_dataset` turns an image folder (layouts in `layout`) into `artifacts/datasets/<name>/`
(index.csv, split.csv, cleaning.csv, report.json); every model then trains and evaluates on
exactly the files in split.csv (`load_prepared`). `open_folder` reuses a stored report when it
was made from the same folder.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from emotion_core import store, words
from emotion_core.data import faces
from emotion_core.data.cleaning import (
    THUMB_SIDE,
    clean,
    count_issues,
    fingerprint,
    folder_rows,
    hash_to_hex,
)
from emotion_core.data.images import ImageDecodeError, read_image
from emotion_core.data.layout import SPLITS, discover
from emotion_core.data.subjects import (
    carve_subjects,
    compile_pattern,
    shared_subjects,
    subject_keys,
)

FACE_COLUMNS = ("fx", "fy", "fw", "fh")
SPLIT_COLUMNS = ["rel", "label", "subset", "source_split", *FACE_COLUMNS]
# prepare_dataset's options that decide the split, as the report stores them
SPLIT_SETTINGS = ("val_fraction", "test_fraction", "seed", "min_side", "drop_no_face",
                  "subject_pattern")


# ---------------------------------------------------------------------------------------------
# Index


def _index_one(path: Path, min_side: int, detect: bool) -> tuple[dict, np.ndarray | None]:
    """Read, hash, decode, fingerprint (and detect a face in) one file; never raises for bad data."""
    row: dict = {"bytes": 0, "sha1": "", "pixel_sha1": "",
                 "format": "", "mode": "", "width": np.nan, "height": np.nan,
                 "exif_rotated": False, "phash": "", "error": "", "error_detail": "",
                 "faces": -1, "face_detector": "", "face_crop": False,
                 **{c: np.nan for c in FACE_COLUMNS}}
    try:
        data = path.read_bytes()
    except OSError as exc:  # permissions, a dangling link, a file removed while indexing
        row.update(error="unreadable", error_detail=f"cannot read the file: {exc.strerror or exc}")
        return row, None
    row.update(bytes=len(data), sha1=hashlib.sha1(data).hexdigest())
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
        found = faces.find_faces(rgb)
        row.update(faces=len(found.boxes), face_detector=found.detector,
                   face_crop=found.face_crop)
        if found.boxes:
            b = found.boxes[0]
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


def carve(rows: pd.DataFrame, fraction: float, seed: int, salt: str,
          subjects: pd.Series | None = None) -> np.ndarray:
    """Boolean mask over `rows` chosen for a held-out subset: stratified by label, seeded.

    Each class is shuffled on its own (seeded by seed, `salt` and class name), so adding files to
    one class never moves another class's files; a class keeps at least one row where it has two.
    With `subjects` (aligned with `rows`, None where unknown), rows with a subject are carved as
    whole subjects (`subjects.carve_subjects`) and the others by class as above.
    """
    if subjects is not None:
        known = subjects.notna().to_numpy()
        mask = np.zeros(len(rows), dtype=bool)
        mask[~known] = carve(rows[~known], fraction, seed, salt)
        mask[known] = carve_subjects(subjects[known], fraction, seed, salt)
        return mask
    mask = np.zeros(len(rows), dtype=bool)
    if fraction <= 0:
        return mask
    labels = rows["label"].to_numpy()
    rels = rows["rel"].to_numpy()
    for label in sorted(set(labels)):
        idx = np.nonzero(labels == label)[0]
        idx = idx[np.argsort(rels[idx], kind="stable")]
        n = min(max(int(round(fraction * len(idx))), 1), len(idx) - 1) if len(idx) >= 2 else 0
        key = int.from_bytes(hashlib.sha1(f"{salt}:{label}".encode()).digest()[:4], "little")
        rng = np.random.default_rng([seed, key])
        mask[idx[rng.permutation(len(idx))[:n]]] = True
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
    """A dataset name that can name its report folder (see store.paths.checked)."""
    return store.paths.checked("dataset name", name)


MIN_TRAIN_PER_CLASS = 10  # fewer training images than this per class: trainable, but warned


def assign_subsets(kept: pd.DataFrame, val_fraction: float, test_fraction: float,
                   seed: int, subjects: pd.Series | None = None
                   ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Subsets for the kept rows: a dataset's own val/test splits stay; a missing test split is
    carved from train first (so no reported test number comes from the set that picked the
    epoch), then a missing val split. Copies never straddle subsets: cleaning kept one per group.
    `subjects` (aligned with `kept`) makes the carve take whole subjects."""
    kept = kept.assign(subset=kept["source_split"])
    sources = {}
    for subset, fraction in (("test", test_fraction), ("val", val_fraction)):
        if (kept["source_split"] == subset).any():
            sources[subset] = "dataset"
            continue
        train_rows = kept[kept["subset"] == "train"]
        chosen = carve(train_rows, fraction, seed, subset,
                       None if subjects is None else subjects.loc[train_rows.index])
        kept.loc[train_rows.index[chosen], "subset"] = subset
        sources[subset] = "carved" if chosen.any() else "none"
    order = kept["subset"].map({s: i for i, s in enumerate(SPLITS)})
    split = kept.assign(_o=order).sort_values(["_o", "label", "rel"])[SPLIT_COLUMNS]
    return split.reset_index(drop=True), sources


def check_trainable(split: pd.DataFrame, classes: list[str]) -> list[str]:
    """Refuse (ValueError) a split no model can learn from or be selected on; return warnings
    for one that can train but will give weak or partial numbers."""
    counts = {s: split.loc[split["subset"] == s, "label"].value_counts() for s in SPLITS}
    if len(classes) < 2:
        raise ValueError(f"found only one class ({', '.join(classes) or 'none'}): a classifier "
                         f"needs at least two class folders (e.g. angry/, happy/, sad/)")
    for subset in ("train", "val"):
        empty = [c for c in classes if counts[subset].get(c, 0) == 0]
        if empty:
            raise ValueError(f"{words.noun(len(empty), 'class', 'classes')} {', '.join(empty)} "
                             f"{words.verb(len(empty), 'has', 'have')} no {subset} images after cleaning "
                             f"(a class needs at least 2 usable images: one to train on, one to "
                             f"validate); add images or remove the folder")
    warnings = [f"class '{c}' has only {counts['train'].get(c, 0)} training images"
                for c in classes if counts["train"].get(c, 0) < MIN_TRAIN_PER_CLASS]
    if len(counts["test"]):
        warnings += [f"class '{c}' has no test images: its test recall cannot be measured"
                     for c in classes if counts["test"].get(c, 0) == 0]
    return warnings


def _detectors(index: pd.DataFrame) -> str:
    """Which face detector(s) searched the images, e.g. "mtcnn" (see data.faces)."""
    return "+".join(sorted({d for d in index["face_detector"].astype(str) if d}))


def prepare_dataset(root: Path, name: str | None = None, *, detect_faces: bool = False,
                    val_fraction: float = 0.2, test_fraction: float = 0.15, seed: int = 0,
                    min_side: int = 32, progress: bool = True,
                    drop_no_face: bool = False,
                    subject_pattern: str | None = None) -> PreparedDataset:
    """Index, clean, split and weigh a dataset; save it to the store; return it.

    `subject_pattern` reads the person each photo shows from its file name
    (`data.subjects`), so carved val/test splits take whole people."""
    t0 = time.perf_counter()
    root = Path(root).resolve()
    name = check_name(name or root.name)
    for label, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise ValueError(f"{label} must be in [0, 1), got {f}")
    if subject_pattern is not None:
        compile_pattern(subject_pattern)  # a bad pattern fails before the long indexing
    found = discover(root)
    index, thumbs = index_dataset(root, found.files, min_side=min_side, detect_faces=detect_faces,
                                  progress=progress)
    t_index = time.perf_counter() - t0
    result = clean(index, thumbs, drop_no_face=drop_no_face)
    cleaning = pd.concat([folder_rows(found.unreadable, found.loops, found.ignored), result.report],
                         ignore_index=True)
    index["group"] = result.group
    index["kept"] = result.keep
    kept = index[result.keep].copy()
    keys = None if subject_pattern is None else subject_keys(kept["rel"].astype(str), subject_pattern)
    split, sources = assign_subsets(kept, val_fraction, test_fraction, seed, keys)
    warnings = check_trainable(split, found.classes)
    subject_info = None
    if subject_pattern is not None:
        subject_info, more = _subject_report(split, subject_pattern)
        warnings += more
    warnings += [f"{words.counted(len(v), what)} skipped: {', '.join(v[:3])}"
                 f"{' ...' if len(v) > 3 else ''}"
                 for what, v in (("unreadable folder", found.unreadable),
                                 ("symbolic link loop", found.loops),
                                 ("junk folder", found.ignored)) if v]
    classes = found.classes
    weights = class_weights(split.loc[split["subset"] == "train", "label"], classes)
    report = {
        "name": name, "root": str(root), "classes": classes,
        "counts": _counts(index[index["error"] == ""], "source_split", classes),
        "files": _counts(index, "source_split", classes),
        "subset_counts": _counts(split, "subset", classes),
        "issues": count_issues(cleaning), "dropped": int((~result.keep).sum()),
        "warnings": warnings,
        "class_weights": {c: float(w) for c, w in zip(classes, weights, strict=True)},
        "val_fraction": val_fraction, "test_fraction": test_fraction,
        "val_source": sources["val"], "test_source": sources["test"],
        "seed": seed, "min_side": min_side, "detect_faces": detect_faces,
        "face_detector": _detectors(index) if detect_faces else "",
        "drop_no_face": drop_no_face,
        "subject_pattern": subject_pattern, "subjects": subject_info,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "timings": {"index_s": round(t_index, 2), "total_s": round(time.perf_counter() - t0, 2)},
    }
    for table, df in (("index", index), ("split", split), ("cleaning", cleaning)):
        store.save_dataset_table(name, table, df)
    store.save_report(name, report)
    return PreparedDataset(name=name, root=root, classes=classes, split=split, report=report)


def _subject_report(split: pd.DataFrame, pattern: str) -> tuple[dict, list[str]]:
    """How many files and subjects the pattern found, the subjects the dataset's own splits
    share (a carve never adds one), and the warnings they call for."""
    keys = subject_keys(split["rel"].astype(str), pattern)
    shared = shared_subjects(split, keys)
    info = {"files": int(keys.notna().sum()), "subjects": int(keys.nunique()),
            "shared_across_subsets": len(shared), "shared_examples": shared[:10]}
    warnings = []
    if not info["files"]:
        warnings.append(f"--subject-pattern {pattern!r} matched no file name: the split is by "
                        f"file, as without it")
    if shared:
        warnings.append(f"{words.counted(len(shared), 'subject')} "
                        f"{words.verb(len(shared), 'appears', 'appear')} in more than one of the "
                        f"dataset's own splits (e.g. {', '.join(shared[:3])}): numbers on those splits are "
                        f"not subject-independent")
    return info, warnings


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


def open_folder(root: str | Path, name: str | None = None, *, detect_faces: bool = False,
                progress: bool = True) -> PreparedDataset:
    """The prepared dataset of an image folder: the stored report when it was prepared from this
    same folder (with face boxes, when `detect_faces` asks for them), otherwise prepare it now.
    Prepared again only to add face boxes, it keeps the stored split settings (fractions, seed,
    subject pattern ...), so the split stays the one the user chose."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"no such data folder: {root}")
    name = check_name(name or root.name)
    settings = {}
    if store.is_prepared(name):
        ds = load_prepared(name)
        if Path(ds.root).resolve() == root:
            if ds.report.get("detect_faces") or not detect_faces:
                return ds
            settings = {k: ds.report[k] for k in SPLIT_SETTINGS if ds.report.get(k) is not None}
    return prepare_dataset(root, name, detect_faces=detect_faces, progress=progress, **settings)
