"""Exploratory tables and images of a prepared dataset (for the app's Data page).

Pure computations return DataFrames or arrays; `save_eda` writes them all through artifacts
under `artifacts/datasets/<name>/eda/`. Image summaries read the decode-once cache, so they show
exactly the pixels the models learn from (after crop and resize).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emotion_core import store
from emotion_core.data.cache import DecodedCache, build_cache
from emotion_core.data.cleaning import ACTIONS, ISSUE_KINDS
from emotion_core.data.layout import SPLITS
from emotion_core.data.prepare import PreparedDataset

EDA_SIZE = 112  # cache size used when save_eda has to build one itself


def class_distribution(ds: PreparedDataset) -> pd.DataFrame:
    """Images per class: source splits (readable files) and final subsets (after cleaning).

    Columns: stage ("source" | "subset"), split, label, count, share (of that split).
    """
    rows = []
    for split, by_class in (ds.report.get("counts") or {}).items():
        for label in ds.classes:
            rows.append(("source", split, label, int(by_class.get(label, 0))))
    counts = ds.split.groupby(["subset", "label"]).size()
    for split in SPLITS:
        if split in ds.split["subset"].values:
            for label in ds.classes:
                rows.append(("subset", split, label, int(counts.get((split, label), 0))))
    df = pd.DataFrame(rows, columns=["stage", "split", "label", "count"])
    totals = df.groupby(["stage", "split"])["count"].transform("sum")
    df["share"] = np.where(totals > 0, df["count"] / totals.clip(lower=1), 0.0)
    return df


def image_stats(index: pd.DataFrame | PreparedDataset) -> pd.DataFrame:
    """Size, aspect and mode statistics of the source files, per split and class and overall.

    `index` is the dataset's index table (columns source_split, label, width, height, mode,
    error) or a PreparedDataset, whose saved index is loaded.
    """
    if not isinstance(index, pd.DataFrame):
        index = store.load_dataset_table(index.name, "index")
    need = {"label", "width", "height", "mode"}
    if not need <= set(index.columns):
        raise ValueError(f"index table lacks columns {sorted(need - set(index.columns))}")
    split_col = "source_split" if "source_split" in index.columns else "split"
    df = index.copy()
    # CSV round trips turn empty text columns into float NaN: test for missing values instead.
    df["readable"] = (df["error"].isna() | (df["error"].astype(object) == "")) if "error" in df.columns \
        else True
    df["mode"] = df["mode"].astype(object).where(df["mode"].notna(), "").astype(str)
    groups = [(("all", "all"), df)]
    groups += [((str(s), str(lab)), g) for (s, lab), g in df.groupby([split_col, "label"])]
    modes = sorted(m for m in df.loc[df["readable"], "mode"].unique() if m)
    rows = []
    for (split, label), g in groups:
        ok = g[g["readable"]]
        w, h = ok["width"].astype(float), ok["height"].astype(float)
        row = {"split": split, "label": label, "files": len(g), "readable": len(ok),
               "width_min": w.min(), "width_median": w.median(), "width_max": w.max(),
               "height_min": h.min(), "height_median": h.median(), "height_max": h.max(),
               "aspect_median": (w / h).median(), "square_share": float((w == h).mean()) if len(ok) else np.nan}
        row.update({f"mode_{m}": int((ok["mode"] == m).sum()) for m in modes})
        rows.append(row)
    return pd.DataFrame(rows)


def _pick(cache: DecodedCache, subset: str, per_class: int, seed: int) -> pd.DataFrame:
    """Up to `per_class` random rows of each class in `subset` (seeded)."""
    rng = np.random.default_rng(seed)
    idx = cache.indices(subset)
    rows = []
    for c, label in enumerate(cache.classes):
        mine = idx[cache.labels[idx] == c]
        chosen = np.sort(rng.choice(mine, size=min(per_class, len(mine)), replace=False))
        rows += [(label, int(i), str(cache.rels[i])) for i in chosen]
    return pd.DataFrame(rows, columns=["label", "row", "rel"])


def _montage(tiles: np.ndarray, n_rows: int, n_cols: int, pad: int = 2) -> np.ndarray:
    """Grid of equally sized HxWx3 tiles (row-major, missing cells black), pad px apart."""
    h, w = tiles.shape[1:3]
    out = np.zeros((n_rows * (h + pad) + pad, n_cols * (w + pad) + pad, 3), np.uint8)
    for k, tile in enumerate(tiles[: n_rows * n_cols]):
        r, c = divmod(k, n_cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = tile
    return out


def sample_grid(cache: DecodedCache, subset: str = "train", per_class: int = 8, seed: int = 0) -> np.ndarray:
    """One row of random cached images per class (uint8 RGB), in class order."""
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    picks = _pick(cache, subset, per_class, seed)
    s = cache.size
    tiles = np.zeros((len(cache.classes) * per_class, s, s, 3), np.uint8)
    for c, label in enumerate(cache.classes):
        rows = picks.loc[picks["label"] == label, "row"].to_numpy()
        tiles[c * per_class: c * per_class + len(rows)] = cache.images[rows]
    return _montage(tiles, len(cache.classes), per_class)


def _mean_image(images: np.ndarray, rows: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Mean of images[rows] as float32, streamed in chunks (the cache is a memmap)."""
    total = np.zeros(images.shape[1:], np.float64)
    for k in range(0, len(rows), chunk):
        total += images[np.sort(rows[k:k + chunk])].sum(axis=0, dtype=np.float64)
    return (total / max(len(rows), 1)).astype(np.float32)


def mean_faces(cache: DecodedCache, subset: str = "train") -> np.ndarray:
    """Per-class mean image (C x S x S x 3 float32, 0..255; zeros for a class with no images)."""
    idx = cache.indices(subset)
    return np.stack([_mean_image(cache.images, idx[cache.labels[idx] == c])
                     for c in range(len(cache.classes))])


def _batches(cache: DecodedCache, batch_size: int, n_batches: int, seed: int, subset: str) -> list[np.ndarray]:
    """The first batches the training loader would draw in epoch 0 (same shuffle recipe)."""
    if batch_size < 1 or n_batches < 1:
        raise ValueError("batch_size and n_batches must be >= 1")
    idx = cache.indices(subset)
    order = idx[np.random.default_rng([seed, 0]).permutation(len(idx))]
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)][:n_batches]


def batch_mean_faces(cache: DecodedCache, batch_size: int = 64, n_batches: int = 8, seed: int = 0,
                     subset: str = "train") -> np.ndarray:
    """Mean image of each of the first random training batches (the study's batch-wise mean face).

    Mixed-class batches average to a near-neutral face: a sign that any single batch carries no
    class shortcut in its average appearance.
    """
    return np.stack([_mean_image(cache.images, b) for b in _batches(cache, batch_size, n_batches,
                                                                    seed, subset)])


def batch_composition(cache: DecodedCache, batch_size: int = 64, n_batches: int = 8, seed: int = 0,
                      subset: str = "train") -> pd.DataFrame:
    """Class counts of the batches behind `batch_mean_faces` (one row per batch)."""
    rows = []
    for k, b in enumerate(_batches(cache, batch_size, n_batches, seed, subset)):
        counts = np.bincount(cache.labels[b], minlength=len(cache.classes))
        rows.append({"batch": k, "size": len(b), **dict(zip(cache.classes, counts.tolist(), strict=True))})
    return pd.DataFrame(rows)


def cleaning_summary(report: pd.DataFrame | dict) -> pd.DataFrame:
    """Files per issue kind and action (dropped / kept / flagged), plus a total.

    Takes the cleaning table (columns issue, action) or report.json's dict (its "issues").
    """

    if isinstance(report, dict):
        issues = report.get("issues") or {}
        df = pd.DataFrame({"issue": list(issues), "total": [int(v) for v in issues.values()]})
        return df.sort_values("issue", key=lambda s: s.map(_kind_rank(ISSUE_KINDS))).reset_index(drop=True)
    if len(report) == 0:
        return pd.DataFrame(columns=["issue", *ACTIONS, "total"])
    table = pd.crosstab(report["issue"].astype(str), report["action"].astype(str))
    for a in ACTIONS:
        if a not in table.columns:
            table[a] = 0
    table = table[list(ACTIONS) + [c for c in table.columns if c not in ACTIONS]]
    table["total"] = table.sum(axis=1)
    out = table.reset_index().rename_axis(None, axis=1)
    return out.sort_values("issue", key=lambda s: s.map(_kind_rank(ISSUE_KINDS))).reset_index(drop=True)


def _kind_rank(kinds: tuple[str, ...]) -> dict[str, int]:
    return {k: i for i, k in enumerate(kinds)}


def save_eda(ds: PreparedDataset, cache: DecodedCache | None = None, *, per_class: int = 8, batch_size: int = 64,
             n_batches: int = 8, seed: int = 0) -> dict[str, Path]:
    """Compute every EDA table and image and write them to store.paths.eda_dir(ds.name)."""
    if cache is None:
        cache = build_cache(ds, EDA_SIZE, progress=False)
    out = store.paths.eda_dir(ds.name)
    written: dict[str, Path] = {}

    def csv(name: str, df: pd.DataFrame) -> None:
        written[name] = out / f"{name}.csv"
        store.write_csv(written[name], df)

    def png(name: str, rgb: np.ndarray) -> None:
        written[name] = out / f"{name}.png"
        store.write_png(written[name], np.clip(np.rint(rgb), 0, 255).astype(np.uint8))

    csv("class_distribution", class_distribution(ds))
    try:
        csv("image_stats", image_stats(store.load_dataset_table(ds.name, "index")))
    except FileNotFoundError:
        pass  # a dataset built in memory (tests) has no saved index
    try:
        cleaning = store.load_dataset_table(ds.name, "cleaning")
    except (FileNotFoundError, pd.errors.EmptyDataError):
        cleaning = ds.report
    csv("cleaning_summary", cleaning_summary(cleaning))
    subsets = [s for s in SPLITS if len(cache.indices(s))]
    for s in subsets:
        png(f"sample_grid_{s}", sample_grid(cache, s, per_class, seed))
        csv(f"sample_grid_{s}", _pick(cache, s, per_class, seed))
    base = "train" if "train" in subsets else subsets[0]
    means = mean_faces(cache, base)
    png("mean_face_per_class", _montage(means, 1, len(means)))
    bmeans = batch_mean_faces(cache, batch_size, n_batches, seed, base)
    png("batch_mean_faces", _montage(bmeans, 1, len(bmeans)))
    csv("batch_composition", batch_composition(cache, batch_size, n_batches, seed, base))
    written["summary"] = out / store.paths.EDA_SUMMARY
    store.write_json(written["summary"], {
        "dataset": ds.name, "cache_key": cache.key, "image_size": cache.size,
        "classes": list(cache.classes), "mean_faces_subset": base, "per_class": per_class,
        "batch_size": batch_size, "n_batches": n_batches, "seed": seed,
        "files": {k: p.name for k, p in written.items() if k != "summary"}})
    return written
