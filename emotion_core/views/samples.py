"""Pictures of a prepared dataset for the pages: the saved EDA images, the held-out samples a
page may probe, and one image by its name relative to the dataset folder.

Why here: where these files live is the store's business and how a file is decoded is the data
layer's; a page only names a dataset and, for one image, the `rel` a table gave it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from emotion_core import store, words
from emotion_core.data import images
from emotion_core.views.dataset_tables import dataset_root

SAMPLE_SUBSETS = ("val", "test")  # the pages probe held-out images only
SAMPLE_LIMIT = 200  # choices offered in a sample picker


GRID_ORDER = ("train", "val", "test")  # sample grids shown in this order
SAMPLE_PHOTO_NAME = "sample photo (astronaut Eileen Collins, NASA portrait, public domain)"


def sample_photo() -> np.ndarray:
    """The committed real face photo as RGB (`store.paths.sample_photo`): something to try the
    bundled models on before a photo of one's own is at hand."""
    return images.load_rgb(store.paths.sample_photo())


def eda_gallery(name: str) -> list[tuple[Path, str]]:
    """(picture, caption) for each EDA image saved for the dataset: the sample grids (train
    first), the mean face per class, then the batch-wise mean faces; captions say what each
    picture is, from the EDA summary (classes, sizes, batches)."""
    pictures = {p.stem: p for p in store.eda_images(name)}
    try:
        summary = store.read_json(store.paths.eda_dir(name) / store.paths.EDA_SUMMARY)
    except (OSError, ValueError):
        summary = {}
    classes = ", ".join(summary.get("classes") or []) or "the classes"
    try:  # the batches really averaged (a small set has fewer than asked for)
        n_batches = len(store.read_csv(store.paths.eda_dir(name) / "batch_composition.csv"))
    except (OSError, ValueError):
        n_batches = summary.get("n_batches", "?")
    size, base = summary.get("image_size", "?"), summary.get("mean_faces_subset", "train")
    captions = {f"sample_grid_{s}": (
        f"sample grid ({s}): one row per class, top to bottom {classes}; "
        f"{summary.get('per_class', '?')} random images each, as the models see them ({size} px)")
        for s in GRID_ORDER}
    captions["mean_face_per_class"] = (
        f"mean face per class ({base}), left to right {classes}: the average of every image "
        f"of the class")
    captions["batch_mean_faces"] = (
        f"batch-wise mean faces: each of the first "
        f"{words.counted(n_batches, 'random training batch', 'random training batches')} "
        f"(up to {summary.get('batch_size', '?')} images each) averaged; mixed batches "
        f"average to a near-neutral face, so no batch carries a class shortcut in its average look")
    order = [k for k in captions if k in pictures] + sorted(k for k in pictures if k not in captions)
    return [(pictures[k], captions.get(k, k.replace("_", " "))) for k in order]


def strip_width(picture: Path, per_tile: int = 160) -> int:
    """Display width (px) of a one-row EDA strip (mean faces): `per_tile` px per face, so one
    batch mean is not blown up to the page width and eight are not shrunk to stamps."""
    from PIL import Image

    with Image.open(picture) as im:
        w, h = im.size
    return max(1, round(w / max(h, 1))) * per_tile


def sample_choices(name: str, limit: int = SAMPLE_LIMIT) -> list[str]:
    """The held-out images a page offers to probe, by relative name, sorted (first `limit`).
    FileNotFoundError when the dataset has no split table."""
    split = store.load_dataset_table(name, "split")
    pool = split[split["subset"].isin(SAMPLE_SUBSETS)].sort_values("rel")
    return [str(r) for r in pool["rel"].head(limit)]


def run_images_root(manifest: dict) -> Path | None:
    """Where a run's images are on this machine: its dataset as prepared here, else the folder
    its manifest recorded when that exists here (a bundled or reference run from the same
    machine layout); None when neither is."""
    root = dataset_root(str(manifest.get("dataset")))
    if root is None and manifest.get("dataset_root"):
        recorded = Path(str(manifest["dataset_root"]))
        root = recorded if recorded.is_dir() else None
    return root


def load_sample(name: str, rel: str, root: Path | None = None) -> tuple[np.ndarray, Path]:
    """One image of the dataset as RGB, and its path (a synthetic face's mask lies beside it).
    `root`: the image folder when known (`run_images_root`), else the prepared dataset's.

    FileNotFoundError when the dataset's image folder or the file is gone here;
    images.ImageDecodeError when the file cannot be decoded.
    """
    root = root or dataset_root(name)
    if root is None:
        raise FileNotFoundError(f"the image folder of dataset '{name}' is not available here")
    path = root / rel
    return images.load_rgb(path), path
