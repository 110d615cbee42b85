"""How an image-folder dataset is laid out: class folders, split folders, image files, masks.

Layouts: `<root>/<class>/*` (everything is train) or `<root>/<split>/<class>/*` with split folders
train / valid|validation|val / test. Class names are folder names, lower-cased (so "Angry" and
"angry" are one class). The one place for split names, image extensions and the mask suffix.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
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


# Folders that archivers, file managers and NAS boxes leave beside real data: never classes.
JUNK_FOLDERS = frozenset({"__macosx", "@eadir", "__pycache__", "$recycle.bin",
                          "system volume information", "lost+found"})


@dataclass
class Discovery:
    """What is in a dataset folder: classes, a file table, and what could not be read."""

    classes: list[str]
    files: pd.DataFrame  # rel, source_split, label
    unreadable: list[str] = field(default_factory=list)  # folders (relative) that could not be listed
    ignored: list[str] = field(default_factory=list)  # junk folders skipped (__MACOSX, ...)
    loops: list[str] = field(default_factory=list)  # symlinked folders that lead back up the tree


def _visible_dirs(path: Path, found: Discovery, root: Path) -> list[Path]:
    """Sub-folders that can hold data: not hidden, not junk (recorded), readable (else recorded)."""
    try:
        entries = sorted(path.iterdir())
    except OSError as exc:
        found.unreadable.append(f"{_rel(path, root)} ({exc.strerror or exc})")
        return []
    out = []
    for p in entries:
        if not p.is_dir() or p.name.startswith("."):
            continue
        if p.name.strip().lower() in JUNK_FOLDERS:
            found.ignored.append(_rel(p, root))
            continue
        out.append(p)
    return out


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return str(path)


def _image_files(class_dir: Path, found: Discovery, root: Path) -> list[Path]:
    """Image files under a class folder, recursively. Symbolic links are followed, but never
    into a folder that contains the one being walked (a link back up the tree, such as
    `angry/up -> ..`, would relabel every other class), and never into a real folder twice."""
    files: list[Path] = []
    seen: set[str] = set()

    def on_error(exc: OSError) -> None:
        found.unreadable.append(f"{_rel(Path(exc.filename), root)} ({exc.strerror or exc})")

    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True, onerror=on_error):
        here = os.path.realpath(dirpath)
        seen.add(here)
        kept = []
        for d in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, d))
            if d.startswith("."):
                continue
            if d.strip().lower() in JUNK_FOLDERS:
                found.ignored.append(_rel(Path(dirpath) / d, root))
            elif real in seen or here == real or here.startswith(real + os.sep):
                found.loops.append(_rel(Path(dirpath) / d, root))
            else:
                kept.append(d)
        dirnames[:] = kept
        files += [Path(dirpath) / fn for fn in sorted(filenames) if is_image_file(Path(fn))]
    return files


def discover(root: Path) -> Discovery:
    """Classes and a file table (rel, source_split, label) for an image-folder dataset, plus the
    folders that could not be read, the junk folders skipped and the symlink loops cut."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    found = Discovery(classes=[], files=pd.DataFrame())
    top = _visible_dirs(root, found, root)
    split_dirs = [d for d in top if canonical_split(d.name)]
    if split_dirs and len(split_dirs) != len(top):
        others = sorted(d.name for d in top if d not in split_dirs)
        raise ValueError(f"{root} mixes split folders ({', '.join(d.name for d in split_dirs)}) "
                         f"with other folders ({', '.join(others)}); use <root>/<class>/* or "
                         f"<root>/<split>/<class>/* with splits train, valid|validation|val, test")
    layout = [(canonical_split(d.name), d) for d in split_dirs] if split_dirs else [("train", root)]
    rows = []
    for split, split_dir in layout:
        for class_dir in _visible_dirs(split_dir, found, root):
            label = class_dir.name.strip().lower()
            for f in _image_files(class_dir, found, root):
                rows.append((f.relative_to(root).as_posix(), split, label))
    if not rows:
        raise ValueError(f"no image files found under {root} (expected <root>/<class>/*.jpg or "
                         f"<root>/<split>/<class>/*.jpg)"
                         + (f"; unreadable: {', '.join(found.unreadable)}" if found.unreadable else ""))
    files = pd.DataFrame(rows, columns=["rel", "source_split", "label"])
    found.classes = order_classes(files["label"])
    order = files["source_split"].map({s: i for i, s in enumerate(SPLITS)})
    found.files = files.assign(_o=order).sort_values(["_o", "label", "rel"]).drop(columns="_o") \
        .reset_index(drop=True)
    return found
