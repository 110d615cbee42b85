"""Tiny learnable image folders for training tests: one coloured shape per class, 32 px."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("angry", "happy", "sad")
_COLOURS = {"angry": (220, 40, 40), "happy": (40, 200, 60), "sad": (50, 70, 220)}


def draw(rng: np.random.Generator, label: str, size: int = 32) -> np.ndarray:
    """A noisy background with a jittered square (angry), disc (happy) or bar (sad)."""
    img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    cy, cx = rng.integers(size // 3, 2 * size // 3, 2)
    r = int(rng.integers(size // 6, size // 4))
    yy, xx = np.mgrid[:size, :size]
    if label == "angry":
        mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
    elif label == "happy":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    else:
        mask = (abs(yy - cy) <= r // 3) & (abs(xx - cx) <= r + 4)
    img[mask] = _COLOURS[label]
    return img


def make_folder(root: Path, *, per_class: dict[str, int] | None = None, seed: int = 0,
                classes: tuple[str, ...] = CLASSES, size: int = 32) -> Path:
    """`root/<split>/<class>/<n>.png`; default 12 train, 4 valid, 4 test images per class."""
    per_class = per_class or {"train": 12, "valid": 4, "test": 4}
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for label in classes:
            d = root / split / label
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(draw(rng, label if label in _COLOURS else "sad", size)).save(
                    d / f"{label}_{split}_{i:03d}.png")
    return root


def prepared(root: Path, name: str = "tiny"):
    """A PreparedDataset built directly from the folder layout (no cleaning), for fit/cache."""
    import pandas as pd

    from emotion_core import data
    from emotion_core.data import layout

    rows = []
    for p in sorted(root.rglob("*.png")):
        rel = p.relative_to(root)
        split = {"train": "train", "valid": "val", "test": "test"}[rel.parts[0]]
        rows.append({"rel": rel.as_posix(), "label": rel.parts[1], "subset": split,
                     "fx": np.nan, "fy": np.nan, "fw": np.nan, "fh": np.nan})
    split = pd.DataFrame(rows)
    classes = layout.order_classes(sorted(split["label"].unique()))
    return data.PreparedDataset(name=name, root=root, classes=classes, split=split, report={})
