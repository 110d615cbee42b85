"""Cleaning (the study's "outlier removal") as a report: which files are dropped, kept or flagged, and why.

Source files are never touched. The rules, in the order they apply:
1. A file that does not decode (unreadable, not_an_image, too_small, too_large) is dropped.
2. Copies of one picture form a group: exact copies share the hash of their decoded pixels (or of
   their bytes); near copies (re-encoded, brightened, slightly re-cropped) have 64-bit DCT
   perceptual hashes within NEAR_HAMMING bits *and* 32x32 grey thumbnails correlated at least
   NEAR_CORRELATION after removing the dataset's mean thumbnail. The second test is needed
   because on face crops that share a layout (a face in a black oval) the pHash of different
   people is often only a few bits apart; the hash keeps the candidate search cheap and stops
   dark, low-contrast pictures from matching on correlation alone. The threshold favours
   precision: on webfaces3 two takes of one person in one pose with *different* expressions
   correlate at 0.95-0.96 and must not become a label conflict, while re-warped copies in
   affectnet3 correlate at 0.96 and above (those at 0.96-0.97 are missed).
3. A group whose copies carry different labels is a `label_conflict`: the true label is unknown,
   so every copy is dropped, except copies in the dataset's own test split, which are kept and
   flagged (the test split is fixed so that results stay comparable with published numbers).
4. Otherwise one copy survives: the one in the latest split of train < val < test (the dataset's
   evaluation splits are fixed; training copies would leak into them), then the largest, then
   the first by path. The other copies are dropped as `duplicate_within_split` /
   `duplicate_across_splits` (exact) or `near_duplicate` (near); copies inside test are kept
   and flagged instead. So no duplicate group can straddle train/val/test.
5. With face detection on, images without a face are `no_face_found`: flagged, or dropped from
   train/val when `drop_no_face` is set.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from emotion_core.data.images import DECODE_ERROR_KINDS

ISSUE_KINDS = ("unreadable", "not_an_image", "too_small", "too_large", "duplicate_within_split",
               "duplicate_across_splits", "near_duplicate", "label_conflict", "no_face_found",
               "symlink_loop", "junk_folder")
ACTIONS = ("dropped", "kept", "flagged", "skipped")
REPORT_COLUMNS = ["file", "split", "label", "issue", "action", "detail"]

NEAR_HAMMING = 10  # candidate near-duplicates: pHash distance (of 64 bits) at most this
NEAR_CORRELATION = 0.97  # confirmed when residual thumbnail correlation is at least this
COARSE_CORRELATION = 0.9  # prefilter on 8x8 thumbnails before the 32x32 check
MEAN_REMOVAL_MIN_IMAGES = 20  # below this a dataset mean says little; use per-image centring
THUMB_SIDE = 32
SPLIT_RANK = {"train": 0, "val": 1, "test": 2}  # a duplicate survives in the latest split
FIXED_SPLIT = "test"
_DETECTOR_NAMES = {"mtcnn": "MTCNN", "haar": "the Haar cascade"}  # data.faces detectors


# ---------------------------------------------------------------------------------------------
# Fingerprints


def fingerprint(rgb: np.ndarray) -> tuple[int, np.ndarray]:
    """(64-bit DCT perceptual hash, 32x32 float32 grey thumbnail) of an RGB image.

    pHash: grey, 32x32 area resize, 2-D DCT, the 8x8 lowest frequencies compared to their median.
    """
    gray = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA)
    small = small.astype(np.float32)
    low = cv2.dct(small)[:8, :8]
    bits = (low > np.median(low)).ravel()
    return int(np.packbits(bits).view(">u8")[0]), small


def hash_to_hex(value: int) -> str:
    return f"{value:016x}"


def hex_to_hashes(values: pd.Series | list[str]) -> np.ndarray:
    return np.array([int(v, 16) for v in values], dtype=np.uint64)


def popcount(x: np.ndarray) -> np.ndarray:
    """Bits set per uint64 element (np.bitwise_count where numpy has it)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    as_bytes = x.astype(np.uint64).view(np.uint8).reshape(*x.shape, 8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1).astype(np.int64)


def hamming_pairs(hashes: np.ndarray, max_distance: int, block: int = 512
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i<j with Hamming distance <= max_distance (blockwise all-pairs, vectorised).

    14k hashes take about a second: simpler than a BK-tree and exact.
    """
    h = np.asarray(hashes, dtype=np.uint64)
    out_i, out_j, out_d = [], [], []
    for start in range(0, len(h), block):
        rows = h[start:start + block]
        dist = popcount(rows[:, None] ^ h[None, start:])  # only j >= start: upper triangle
        ii, jj = np.nonzero(dist <= max_distance)
        keep = jj > ii  # local j offset is relative to start, so j > i means global j > i
        out_i.append(ii[keep] + start)
        out_j.append(jj[keep] + start)
        out_d.append(dist[ii[keep], jj[keep]])
    if not out_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_d)


def near_duplicate_pairs(hashes: np.ndarray, thumbs: np.ndarray, *,
                         max_distance: int = NEAR_HAMMING,
                         min_correlation: float = NEAR_CORRELATION
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Confirmed near-duplicate pairs (i, j, hamming, correlation); see the module docstring."""
    i, j, d = hamming_pairs(hashes, max_distance)
    raw = np.asarray(thumbs, dtype=np.float32)
    fine = _unit_residuals(raw.reshape(len(raw), -1))
    # A cheap 8x8 pass first: gathering 1024 floats per candidate pair is memory-bound when a
    # face set yields millions of pHash candidates; the coarse correlation of a confirmed pair
    # is higher than its fine one in practice (>= 0.969 on affectnet3), so 0.9 loses none.
    side = raw.shape[1] if raw.ndim == 3 else 0
    if side and side % 8 == 0 and side > 8:
        f = side // 8
        pooled = raw.reshape(len(raw), 8, f, 8, f).mean(axis=(2, 4))
        coarse = _unit_residuals(pooled.reshape(len(raw), -1))
        pre = _pair_dots(coarse, i, j) >= min(COARSE_CORRELATION, min_correlation)
        i, j, d = i[pre], j[pre], d[pre]
    corr = _pair_dots(fine, i, j)
    ok = corr >= min_correlation
    return i[ok], j[ok], d[ok], corr[ok]


def _unit_residuals(flat: np.ndarray) -> np.ndarray:
    """Rows centred (on the dataset mean when large enough, then per row) and scaled to norm 1."""
    if len(flat) >= MEAN_REMOVAL_MIN_IMAGES:
        flat = flat - flat.mean(axis=0, keepdims=True)
    flat = flat - flat.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(flat, axis=1, keepdims=True)
    return np.divide(flat, norm, out=np.zeros_like(flat), where=norm > 1e-6)


def _pair_dots(unit: np.ndarray, i: np.ndarray, j: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    out = np.empty(len(i), dtype=np.float32)
    for s in range(0, len(i), chunk):
        out[s:s + chunk] = np.einsum("ij,ij->i", unit[i[s:s + chunk]], unit[j[s:s + chunk]])
    return out


# ---------------------------------------------------------------------------------------------
# Cleaning


@dataclass
class CleaningResult:
    report: pd.DataFrame  # REPORT_COLUMNS, one row per (file, issue)
    keep: np.ndarray  # bool per index row: survives cleaning
    group: np.ndarray  # int per index row: duplicate group id (-1: unreadable or no copies)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def clean(index: pd.DataFrame, thumbs: np.ndarray | None = None, *, drop_no_face: bool = False,
          max_distance: int = NEAR_HAMMING, min_correlation: float = NEAR_CORRELATION
          ) -> CleaningResult:
    """Apply the module's rules to a dataset index (see data.index_dataset for its columns).

    `thumbs` (N x 32 x 32, aligned with `index` rows) enables near-duplicate search; without it
    only exact duplicates are found.
    """
    n = len(index)
    rels = index["rel"].astype(str).to_numpy()
    splits = index["source_split"].astype(str).to_numpy()
    labels = index["label"].astype(str).to_numpy()
    errors = index["error"].fillna("").astype(str).to_numpy()
    keep = errors == ""
    rows: list[dict] = []

    def add(k: int, issue: str, action: str, detail: str) -> None:
        rows.append({"file": rels[k], "split": splits[k], "label": labels[k], "issue": issue,
                     "action": action, "detail": detail})

    for k in np.nonzero(~keep)[0]:
        kind = errors[k] if errors[k] in DECODE_ERROR_KINDS else "unreadable"
        add(k, kind, "dropped", str(index["error_detail"].iloc[k]) if "error_detail" in index
            else kind)

    ok = np.nonzero(keep)[0]
    uf = _UnionFind(n)
    exact_key = np.full(n, "", dtype=object)  # decoded-pixel hash where known, else bytes hash
    for col in ("sha1", "pixel_sha1"):
        if col not in index:
            continue
        values = index[col].fillna("").astype(str).to_numpy()
        first: dict[str, int] = {}
        for k in ok:
            if values[k]:
                uf.union(first.setdefault(values[k], int(k)), int(k))
                exact_key[k] = values[k]
    near_info: dict[int, tuple[int, int, float]] = {}  # row -> (partner, hamming, corr)
    if thumbs is not None and "phash" in index and len(ok) > 1:
        hashes = hex_to_hashes(index["phash"].iloc[ok])
        pi, pj, pd_, pc = near_duplicate_pairs(hashes, np.asarray(thumbs)[ok],
                                               max_distance=max_distance,
                                               min_correlation=min_correlation)
        for a, b, d, c in zip(ok[pi], ok[pj], pd_, pc, strict=True):
            uf.union(int(a), int(b))
            near_info.setdefault(int(a), (int(b), int(d), float(c)))
            near_info.setdefault(int(b), (int(a), int(d), float(c)))

    group = np.full(n, -1, dtype=np.int64)
    members: dict[int, list[int]] = {}
    for k in ok:
        members.setdefault(uf.find(int(k)), []).append(int(k))
    pixels = (index["width"].fillna(0) * index["height"].fillna(0)).to_numpy() \
        if "width" in index else np.zeros(n)
    for gid, (_, ks) in enumerate(sorted(members.items())):
        if len(ks) < 2:
            continue
        group[ks] = gid
        _resolve_group(ks, rels, splits, labels, exact_key, pixels, near_info, keep, add)

    if "faces" in index:
        faces = index["faces"].fillna(-1).to_numpy()
        names = index.get("face_detector", pd.Series("", index=index.index)).fillna("")
        crops = index.get("face_crop", pd.Series(False, index=index.index)).fillna(False)
        for k in np.nonzero(keep & (faces == 0))[0]:
            drop = drop_no_face and splits[k] != FIXED_SPLIT
            keep[k] = keep[k] and not drop
            add(k, "no_face_found", "dropped" if drop else "flagged",
                f"no face found by {_DETECTOR_NAMES.get(str(names.iloc[k]), 'the detector')}"
                + ("; small and roughly square: probably a face filling the frame"
                   if bool(crops.iloc[k]) else "")
                + ("" if drop else "; kept (use --drop-no-face to drop it from train/val)"
                   if splits[k] != FIXED_SPLIT else "; kept: the test split is fixed"))
    report = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    return CleaningResult(report=report, keep=keep, group=group)


def _resolve_group(ks: list[int], rels, splits, labels, exact_key, pixels, near_info, keep,
                   add) -> None:
    """Decide keep/drop for one group of copies of the same picture (rules 3 and 4)."""
    where = ", ".join(f"{rels[k]} [{splits[k]}/{labels[k]}]" for k in ks[:6])
    more = f" and {len(ks) - 6} more" if len(ks) > 6 else ""
    if len(set(labels[ks])) > 1:
        for k in ks:
            fixed = splits[k] == FIXED_SPLIT
            keep[k] = fixed
            add(k, "label_conflict", "flagged" if fixed else "dropped",
                f"same picture under labels {sorted(set(labels[ks]))}: {where}{more}; "
                + ("kept: the test split is fixed" if fixed else "true label unknown"))
        return
    order = sorted(ks, key=lambda k: (-SPLIT_RANK.get(splits[k], 0), -pixels[k], rels[k]))
    keeper = order[0]
    kinds: dict[str, list[str]] = {}
    for k in order[1:]:
        if exact_key[k] and exact_key[k] == exact_key[keeper]:
            kind = "duplicate_within_split" if splits[k] == splits[keeper] \
                else "duplicate_across_splits"
            how = "exact copy"
        else:
            kind = "near_duplicate"
            partner, dist, corr = near_info.get(k, (keeper, -1, float("nan")))
            how = f"near copy (pHash distance {dist}, correlation {corr:.3f} with {rels[partner]})"
        kinds.setdefault(kind, []).append(rels[k])
        fixed = splits[k] == FIXED_SPLIT
        keep[k] = fixed
        add(k, kind, "flagged" if fixed else "dropped",
            f"{how} of {rels[keeper]} [{splits[keeper]}]; "
            + ("kept: the test split is fixed" if fixed else
               f"dropped from {splits[k]}, the copy in {splits[keeper]} is kept"))
    for kind, others in kinds.items():
        why = "the test split is fixed" if splits[keeper] == FIXED_SPLIT else \
            "evaluation splits keep their copy" if splits[keeper] == "val" else "first copy"
        add(keeper, kind, "kept", f"kept this copy ({why}); copies: {', '.join(others[:6])}"
            + (f" and {len(others) - 6} more" if len(others) > 6 else ""))


def folder_rows(unreadable: list[str], loops: list[str], ignored: list[str]) -> pd.DataFrame:
    """Report rows for folders the discovery could not read, cut as symlink loops, or ignored."""
    def parse(entry: str) -> tuple[str, str]:
        folder, _, why = entry.partition(" (")
        return folder, why.rstrip(")")
    rows = [{"file": f, "split": "", "label": "", "issue": "unreadable", "action": "dropped",
             "detail": f"folder could not be listed: {why}"} for f, why in map(parse, unreadable)]
    rows += [{"file": f, "split": "", "label": "", "issue": "symlink_loop", "action": "skipped",
              "detail": "a symbolic link back up the tree; not followed"} for f in loops]
    rows += [{"file": f, "split": "", "label": "", "issue": "junk_folder", "action": "skipped",
              "detail": "an archiver's or file manager's folder, not a class"} for f in ignored]
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


def count_issues(report: pd.DataFrame) -> dict[str, int]:
    """Files dropped or flagged per issue kind (rows saying which copy was kept are not counted)."""
    hit = report[report["action"] != "kept"]
    counts = hit.groupby("issue")["file"].nunique().to_dict() if len(hit) else {}
    return {kind: int(counts.get(kind, 0)) for kind in ISSUE_KINDS}
