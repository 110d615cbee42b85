"""Pictures of a prepared dataset for the pages: the saved EDA images, the held-out samples a
page may probe, and one image by its name relative to the dataset folder.

Why here: where these files live is the store's business and how a file is decoded is the data
layer's; a page only names a dataset and, for one image, the `rel` a table gave it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from emotion_core import store
from emotion_core.data import images
from emotion_core.views.tables import dataset_root

SAMPLE_SUBSETS = ("val", "test")  # the pages probe held-out images only
SAMPLE_LIMIT = 200  # choices offered in a sample picker


def eda_gallery(name: str) -> list[tuple[Path, str]]:
    """(picture, caption) for each EDA image saved for the dataset (`mean face per class`, ...)."""
    return [(p, p.stem.replace("_", " ")) for p in store.eda_images(name)]


def sample_choices(name: str, limit: int = SAMPLE_LIMIT) -> list[str]:
    """The held-out images a page offers to probe, by relative name, sorted (first `limit`).
    FileNotFoundError when the dataset has no split table."""
    split = store.load_dataset_table(name, "split")
    pool = split[split["subset"].isin(SAMPLE_SUBSETS)].sort_values("rel")
    return [str(r) for r in pool["rel"].head(limit)]


def load_sample(name: str, rel: str) -> tuple[np.ndarray, Path]:
    """One image of the dataset as RGB, and its path (a synthetic face's mask lies beside it).

    FileNotFoundError when the dataset's image folder or the file is gone here;
    images.ImageDecodeError when the file cannot be decoded.
    """
    root = dataset_root(name)
    if root is None:
        raise FileNotFoundError(f"the image folder of dataset '{name}' is not available here")
    path = root / rel
    return images.load_rgb(path), path
