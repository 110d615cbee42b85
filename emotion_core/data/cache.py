"""Decode-once image cache: every split image decoded, cropped and resized once into a uint8 memmap.

Decoding JPEGs every epoch dominates training time on 2 CPU cores. `build_cache` decodes each
image of a prepared split once (images.load_rgb, optionally faces.crop_face on the stored face
box, then transforms.resize_square: centre crop to a square, INTER_AREA resize) into
`store.paths.cache_dir(key)/images.npy`, an N x size x size x 3 uint8 array read back memory-mapped.
The key hashes the file list (rel, label, subset, face box), every file's size and mtime, the
size, the crop flag and CACHE_FORMAT_VERSION, so the cache is rebuilt exactly when its contents
or settings change and reused otherwise. The folder is assembled under a temporary name and
renamed into place, so a crash never leaves a half cache.

`CachedLoader` gathers a batch by fancy indexing the memmap (sorted indices, one pass over the
file), converts it to a tensor and augments the whole batch at once (transforms.augment_batch).
`cache_export` moves a cache to a machine without the images.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from emotion_core import store, words
from emotion_core.data import faces
from emotion_core.data.images import load_rgb
from emotion_core.data.layout import SPLITS
from emotion_core.data.prepare import FACE_COLUMNS, PreparedDataset
from emotion_core.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    augment_normalize,
    resize_square,
)

CACHE_FORMAT_VERSION = 1  # bump when the decode/resize recipe changes: every key changes with it


class CacheError(ValueError):
    """A cache that cannot be built or read (bad input, undecodable file, damaged folder)."""


@dataclass
class DecodedCache:
    """The decoded images of one prepared split, in split-table order."""

    path: Path
    key: str
    size: int
    classes: list[str]
    images: np.ndarray  # np.memmap, N x size x size x 3 uint8 RGB
    labels: np.ndarray  # int64 class ids into `classes`
    subsets: np.ndarray  # str: train / val / test
    rels: np.ndarray  # str: path relative to the dataset root
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def indices(self, subset: str) -> np.ndarray:
        """Row numbers of one subset (empty for a subset the dataset does not have)."""
        if subset not in SPLITS:
            raise ValueError(f"unknown subset {subset!r}; expected one of {', '.join(SPLITS)}")
        return np.flatnonzero(self.subsets == subset)

    def split_table(self) -> pd.DataFrame:
        """(rel, label, subset) per row: enough to train and evaluate without the images."""
        return pd.DataFrame({"rel": self.rels, "label": [self.classes[i] for i in self.labels],
                             "subset": self.subsets})

    @classmethod
    def open(cls, path: Path) -> DecodedCache:
        """Open a finished cache folder (memory-mapped, nothing decoded)."""
        path = Path(path)
        try:
            meta = store.read_json(path / store.paths.CACHE_META)
            images = np.load(path / store.paths.CACHE_IMAGES, mmap_mode="r")
            labels = np.load(path / store.paths.CACHE_LABELS).astype(np.int64)
        except (OSError, ValueError) as exc:
            raise CacheError(f"cache at {path} is damaged ({exc}); delete the folder to rebuild") from exc
        n, size = len(meta["rels"]), int(meta["size"])
        if images.shape != (n, size, size, 3) or len(labels) != n:
            raise CacheError(f"cache at {path} is inconsistent (images {images.shape}, "
                             f"{len(labels)} labels, {n} files); delete the folder to rebuild")
        return cls(path=path, key=meta["key"], size=size, classes=list(meta["classes"]),
                   images=images, labels=labels, subsets=np.asarray(meta["subsets"], dtype=str),
                   rels=np.asarray(meta["rels"], dtype=str), meta=meta)


# ---------------------------------------------------------------------------------------------
# Building


def _split_rows(ds: PreparedDataset) -> pd.DataFrame:
    split = ds.split
    missing = {"rel", "label", "subset"} - set(split.columns)
    if missing:
        raise CacheError(f"dataset '{ds.name}' split table lacks columns {sorted(missing)}")
    unknown = sorted(set(split["label"]) - set(ds.classes))
    if unknown:
        raise CacheError(f"dataset '{ds.name}' split has labels {unknown} not in its classes {ds.classes}")
    bad = sorted(set(split["subset"]) - set(SPLITS))
    if bad:
        raise CacheError(f"dataset '{ds.name}' split has unknown subsets {bad}")
    return split.reset_index(drop=True)


def _boxes(split: pd.DataFrame) -> np.ndarray:
    """N x 4 float face boxes (NaN where none or where the split has no box columns)."""
    if not all(c in split.columns for c in FACE_COLUMNS):
        return np.full((len(split), 4), np.nan)
    return split[list(FACE_COLUMNS)].to_numpy(dtype=float)


def cache_key(ds: PreparedDataset, size: int, *, crop_faces: bool = False,
              face_margin: float = faces.DEFAULT_MARGIN, face_fit: str = faces.LEGACY_FIT,
              face_align: bool = False) -> str:
    """Readable, content-addressed cache name: `<dataset>-<size>px[-faces]-<hash>`."""
    split = _split_rows(ds)
    root = Path(ds.root)
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_FORMAT_VERSION, "size": int(size), "crop": bool(crop_faces),
                         "margin": float(face_margin) if crop_faces else None,
                         "classes": list(ds.classes),
                         # only a non-legacy fit enters the key: older caches keep their names
                         **({"fit": face_fit} if crop_faces and face_fit != faces.LEGACY_FIT
                            else {}),
                         **({"align": True} if crop_faces and face_align else {})}).encode())
    boxes = _boxes(split)
    for i, (rel, label, subset) in enumerate(split[["rel", "label", "subset"]].itertuples(index=False)):
        try:
            st = os.stat(root / rel)
        except FileNotFoundError as exc:
            raise CacheError(f"{root / rel} listed in the split of '{ds.name}' is missing; "
                             f"re-run `python -m scripts.prepare_data`") from exc
        box = ",".join(f"{v:.1f}" for v in boxes[i]) if crop_faces else ""
        h.update(f"{rel}\0{label}\0{subset}\0{st.st_size}\0{st.st_mtime_ns}\0{box}\n".encode())
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(ds.name))
    return f"{safe}-{int(size)}px{'-faces' if crop_faces else ''}-{h.hexdigest()[:16]}"


def decode_resized(path: Path, size: int, box: Sequence[float] | None = None,
                   face_margin: float = faces.DEFAULT_MARGIN,
                   face_fit: str = faces.LEGACY_FIT, face_align: bool = False) -> np.ndarray:
    """The cache's per-image recipe: load_rgb, optional face crop (faces.CropSpec), resize_square."""
    rgb = load_rgb(path)
    if box is not None and np.all(np.isfinite(box)) and box[2] > 0 and box[3] > 0:
        x, y, w, h = (int(round(v)) for v in box)
        rgb = faces.CropSpec(face_margin, face_fit, face_align).cut(rgb, faces.FaceBox(x, y, w, h))
    return resize_square(rgb, size)


def decode_workers() -> int:
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def fill_parallel(out: np.ndarray, n: int, fn: Callable[[int], np.ndarray], desc: str,
                   progress: bool) -> None:
    """out[i] = fn(i) for all i, decoded in a thread pool (PIL/cv2 release the GIL)."""
    with ThreadPoolExecutor(decode_workers()) as pool:
        for i, arr in enumerate(tqdm(pool.map(fn, range(n)), total=n, desc=desc,
                                     disable=not progress, unit="img")):
            out[i] = arr


def write_cache(final: Path, meta: dict[str, Any], labels: np.ndarray,
                 fill: Callable[[np.ndarray], None]) -> DecodedCache:
    """Assemble a cache under a temporary name, then rename it into place as a whole."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = store.files.make_temp_dir(final)
    try:
        n, size = len(labels), int(meta["size"])
        images = np.lib.format.open_memmap(tmp / store.paths.CACHE_IMAGES, mode="w+", dtype=np.uint8,
                                           shape=(n, size, size, 3))
        fill(images)
        images.flush()
        del images
        np.save(tmp / store.paths.CACHE_LABELS, labels.astype(np.int64))
        store.write_json(tmp / store.paths.CACHE_META, meta)  # written last: marks the cache complete
        if not (final / store.paths.CACHE_META).exists():  # else another process finished first: keep it
            shutil.rmtree(final, ignore_errors=True)  # a damaged leftover, if any
            try:
                os.replace(tmp, final)
            except OSError:
                if not (final / store.paths.CACHE_META).exists():
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing left once renamed
    return DecodedCache.open(final)


def build_cache(ds: PreparedDataset, size: int, *, crop_faces: bool = False,
                face_margin: float = faces.DEFAULT_MARGIN, face_fit: str = faces.LEGACY_FIT,
                face_align: bool = False, progress: bool = True) -> DecodedCache:
    """Decode every image of `ds.split` once into a memmapped cache, or reuse the matching one.

    `ds` is a data.PreparedDataset (name, root, classes, split with rel/label/subset and, for
    crop_faces, face boxes fx/fy/fw/fh; images without a box keep the centre crop). face_align:
    each face turned until its eyes are level before it is cut (faces.CropSpec).
    """
    if int(size) < 8:
        raise CacheError(f"cache image size must be at least 8 px, got {size}")
    key = cache_key(ds, size, crop_faces=crop_faces, face_margin=face_margin, face_fit=face_fit,
                    face_align=face_align)
    final = store.paths.cache_dir(key)
    if (final / store.paths.CACHE_META).exists():
        return DecodedCache.open(final)
    split = _split_rows(ds)
    root, rels = Path(ds.root), split["rel"].astype(str).tolist()
    boxes = _boxes(split) if crop_faces else None
    labels = np.array([ds.classes.index(lab) for lab in split["label"]], dtype=np.int64)
    failures: list[str] = []

    def one(i: int) -> np.ndarray:
        try:
            return decode_resized(root / rels[i], size, None if boxes is None else boxes[i],
                                  face_margin, face_fit, face_align)
        except (ValueError, OSError) as exc:  # ImageDecodeError is a ValueError
            failures.append(f"{rels[i]}: {exc}")
            return np.zeros((size, size, 3), np.uint8)

    def fill(images: np.ndarray) -> None:
        fill_parallel(images, len(rels), one, f"cache {ds.name} {size}px", progress)
        if failures:
            raise CacheError(f"{words.counted(len(failures), 'image')} of '{ds.name}' no longer "
                             f"{words.verb(len(failures), 'decodes', 'decode')} (first: "
                             f"{failures[0]}); re-run `python -m scripts.prepare_data`")

    meta = {"key": key, "format_version": CACHE_FORMAT_VERSION, "name": ds.name,
            "root": str(root), "size": int(size), "crop_faces": bool(crop_faces),
            "face_margin": float(face_margin), "face_fit": face_fit,
            "face_align": bool(crop_faces and face_align), "classes": list(ds.classes), "rels": rels,
            "subsets": split["subset"].astype(str).tolist(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return write_cache(final, meta, labels, fill)


# ---------------------------------------------------------------------------------------------
# Loading batches


class CachedLoader:
    """Batches of (normalised float NCHW tensor, int64 labels) from a cache, augmented per batch.

    `indices` are cache rows (e.g. `cache.indices("train")`, or a distributed shard). With
    `sampler_indices` (an iterable of positions into `indices`, such as a DistributedSampler;
    its `set_epoch` is called if it has one) that order is used as given; otherwise `shuffle`
    permutes `indices` with a generator seeded by (seed, epoch). Each iteration uses the current
    epoch and then advances it; `set_epoch(e)` makes the next iteration epoch e, so an epoch's
    order and augmentations are reproducible. `device` augments on that device (e.g. CUDA).
    """

    def __init__(self, cache: DecodedCache, indices: Sequence[int] | np.ndarray, batch_size: int,
                 *, shuffle: bool, aug: AugmentConfig | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, seed: int = 0, drop_last: bool = False,
                 sampler_indices: Iterable[int] | None = None,
                 device: str | torch.device | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.cache = cache
        self.indices = np.asarray(indices, dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(cache)):
            raise ValueError(f"indices must lie in [0, {len(cache)}) for this cache")
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.aug, self.mean, self.std, self.seed = aug, tuple(mean), tuple(std), int(seed)
        self.sampler = sampler_indices
        self.device = torch.device(device) if device is not None else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _num_items(self) -> int:
        return len(self.sampler) if self.sampler is not None else len(self.indices)  # type: ignore[arg-type]

    def __len__(self) -> int:
        n = self._num_items()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self, epoch: int) -> np.ndarray:
        if self.sampler is not None:
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch(epoch)
            return self.indices[np.fromiter(self.sampler, dtype=np.int64)]
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch])
            return self.indices[rng.permutation(len(self.indices))]
        return self.indices

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        order = self._order(epoch)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        for b in range(len(self)):
            rows = order[b * self.batch_size:(b + 1) * self.batch_size]
            if self.shuffle or self.sampler is not None:
                rows = np.sort(rows)  # one forward pass over the memmap; batch order is random anyway
            y = torch.from_numpy(self.cache.labels[rows])
            yield augment_normalize(self.cache.images[rows], self.aug, gen, self.mean, self.std,
                                    self.device), y
