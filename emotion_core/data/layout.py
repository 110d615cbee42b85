"""How an image-folder dataset is laid out: class folders, split folders, image files, masks.

Layouts: `<root>/<class>/*` (everything is train) or `<root>/<split>/<class>/*` with split folders
train / valid|validation|val / test. Class names are folder names, lower-cased (so "Angry" and
"angry" are one class). The one place for split names, image extensions and the mask suffix.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

DEFAULT_CLASSES = ("angry", "happy", "sad")
SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "valid": "val", "validation": "val", "val": "val",
                 "test": "test"}
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif",
                              ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"})
MASK_SUFFIX = ".mask.png"  # synthetic ground-truth masks sit beside their images


def mask_path(image_path: Path) -> Path:
    """The ground-truth mask beside a synthetic face image."""
    image_path = Path(image_path)
    return image_path.with_name(image_path.stem + MASK_SUFFIX)


def is_image_file(path: Path) -> bool:
    """An image by its extension, and not a mask or a hidden file."""
    low = Path(path).name.lower()
    return (not low.startswith(".") and not low.endswith(MASK_SUFFIX)
            and os.path.splitext(low)[1] in IMAGE_EXTENSIONS)


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
        found += [Path(dirpath) / fn for fn in sorted(filenames) if is_image_file(Path(fn))]
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
