"""A compact copy of a decode-once cache, for a machine that has no images (a lent GPU).

`export_cache` writes one npz of per-image encoded bytes (WebP by default) plus a json of labels,
split and the dataset report; `load_exported_cache` decodes it once into a local cache, and
`dataset_of` gives the PreparedDataset it describes, so training reads it like any dataset.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from emotion_core import store
from emotion_core.data.cache import (
    CacheError,
    DecodedCache,
    decode_workers,
    fill_parallel,
    write_cache,
)
from emotion_core.data.prepare import PreparedDataset
from emotion_core.data.transforms import resize_square

CODECS = {"jpeg": ".jpg", "webp": ".webp", "png": ".png"}


def is_export(folder: Path) -> bool:
    """Whether `folder` holds an exported cache (cache.npz + meta.json)."""
    folder = Path(folder)
    return (folder / store.paths.EXPORT_ARCHIVE).exists() and (folder / store.paths.CACHE_META).exists()


def dataset_of(cache: DecodedCache, name: str | None = None) -> PreparedDataset:
    """The prepared dataset an imported cache holds: its split, classes and stored report."""
    meta = cache.meta
    extra = dict(meta.get("extra") or {})
    split = cache.split_table()
    sources = extra.get("sources")
    if isinstance(sources, list) and len(sources) == len(split):  # a combination of sets
        split["source"] = sources
    return PreparedDataset(name=name or str(meta.get("name", cache.key)),
                           root=Path(str(meta.get("root", cache.path))), classes=list(cache.classes),
                           split=split, report=dict(extra.get("report") or extra))


def export_dataset(ds: PreparedDataset, cache: DecodedCache, out_dir: Path, **kwargs: Any) -> Path:
    """`export_cache` with what `dataset_of` needs to give `ds` back on the other side: its
    report and, for a combination of sets, the set of every row."""
    extra: dict[str, Any] = {"report": ds.report}
    if "source" in ds.split.columns:
        extra["sources"] = ds.split["source"].astype(str).tolist()
    return export_cache(cache, out_dir, extra=extra, **kwargs)


def export_cache(cache: DecodedCache, out_dir: Path, *, codec: str = "webp", quality: int = 90,
                 size: int | None = None, budget_mib: float | None = None,
                 extra: dict[str, Any] | None = None, progress: bool = True) -> Path:
    """Write `out_dir/cache.npz` (encoded images, offsets, labels) and `out_dir/meta.json`.

    WebP at quality 90 is about 1/15 of the raw size at ~40 dB PSNR (affectnet3, 112 px: 34.5
    MiB); "jpeg" (4:2:0) is faster to encode but ~1.6x larger at the same fidelity; "png" is
    lossless. `size` re-encodes at another side; `budget_mib` lowers the quality in steps of 5
    (not below 50) until the npz fits. `extra` (e.g. the dataset report) travels in meta.json.
    """
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {', '.join(CODECS)}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    out_size = int(size or cache.size)

    def encode_all(q: int) -> list[bytes]:
        params = {"jpeg": [cv2.IMWRITE_JPEG_QUALITY, q], "webp": [cv2.IMWRITE_WEBP_QUALITY, q],
                  "png": [cv2.IMWRITE_PNG_COMPRESSION, 9]}[codec]

        def encode(i: int) -> bytes:
            img = np.asarray(cache.images[i])
            if out_size != cache.size:
                img = resize_square(img, out_size)
            ok, buf = cv2.imencode(CODECS[codec], cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)
            if not ok:
                raise CacheError(f"could not encode image {i} of cache {cache.key} as {codec}")
            return buf.tobytes()

        with ThreadPoolExecutor(decode_workers()) as pool:
            return list(tqdm(pool.map(encode, range(len(cache))), total=len(cache), unit="img",
                             desc=f"export {cache.key} {codec} q{q}", disable=not progress))

    blobs = encode_all(quality)
    while budget_mib and sum(map(len, blobs)) > budget_mib * 2**20:
        if codec == "png" or quality - 5 < 50:
            raise CacheError(f"{codec} export of {cache.key} needs {sum(map(len, blobs)) / 2**20:.1f} "
                             f"MiB, over the {budget_mib} MiB budget; export at a smaller size")
        quality -= 5
        blobs = encode_all(quality)
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with store.atomic_path(out_dir / store.paths.EXPORT_ARCHIVE) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, data=data, offsets=offsets, labels=cache.labels.astype(np.int64))
    meta = dict(cache.meta)
    meta.update(size=out_size, source_key=cache.key, codec=codec, quality=quality,
                extra=dict(extra or cache.meta.get("extra") or {}))
    store.write_json(out_dir / store.paths.CACHE_META, meta)
    return out_dir


def load_exported_cache(src: Path, *, size: int | None = None, progress: bool = True) -> DecodedCache:
    """Decode an exported cache once into a local memmapped cache (reused on later calls).

    `size` resizes while decoding (e.g. a compact 112 px export trained at 224 px on a GPU).
    """
    src = Path(src)
    if not is_export(src):
        raise CacheError(f"{src} is not an exported cache (needs cache.npz and meta.json; "
                         f"make one with emotion_core.data.cache_export.export_cache)")
    meta = store.read_json(src / store.paths.CACHE_META)
    h = hashlib.sha256()
    # the meta too: two exports of the same pictures may differ in what they say of them (how
    # their faces were cut), and the imported cache keeps that meta
    h.update((src / store.paths.CACHE_META).read_bytes())
    with open(src / store.paths.EXPORT_ARCHIVE, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    stored = int(meta["size"])
    size = int(size or stored)
    key = f"{meta['name']}-{size}px-import{stored}-{h.hexdigest()[:16]}"
    final = store.paths.cache_dir(key)
    if (final / store.paths.CACHE_META).exists():
        return DecodedCache.open(final)
    with np.load(src / store.paths.EXPORT_ARCHIVE) as z:
        data, offsets, labels = z["data"], z["offsets"], z["labels"]
    n = len(labels)
    if len(offsets) != n + 1 or len(meta["rels"]) != n:
        raise CacheError(f"exported cache at {src} is inconsistent ({n} labels, "
                         f"{len(offsets) - 1} images, {len(meta['rels'])} files)")

    def decode(i: int) -> np.ndarray:
        img = cv2.imdecode(data[offsets[i]:offsets[i + 1]], cv2.IMREAD_COLOR)
        if img is None or img.shape != (stored, stored, 3):
            raise CacheError(f"image {i} ({meta['rels'][i]}) of {src} does not decode")
        return resize_square(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), size)

    new_meta = dict(meta, key=key, size=size, stored_size=stored, imported_from=str(src))
    return write_cache(final, new_meta, labels,
                        lambda images: fill_parallel(images, n, decode, f"import {key}", progress))
