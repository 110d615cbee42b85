"""Which train rows an epoch visits when several sets train together.

`proportional` (the default) visits every train row once per epoch, so each set is seen as
often as it has images: a set of 400 photos beside one of 12,000 is 3% of every epoch.
`sqrt` draws an epoch of the same length with replacement so that each set's share is
proportional to the square root of its size (400 beside 12,000: 15% instead of 3%), the usual
middle way between drowning a small set and repeating it until it is learnt by heart. `equal`
gives every set the same share. The draw is seeded by (seed, epoch): the same command visits
the same rows on any machine, and the epoch's length, so the planned schedule, is unchanged.
"""
from __future__ import annotations

import numpy as np

from emotion_core.data.prepare import PreparedDataset

SET_SAMPLINGS = ("proportional", "sqrt", "equal")
_POWER = {"sqrt": 0.5, "equal": 0.0}


def _check(mode: str) -> None:
    if mode not in SET_SAMPLINGS:
        raise ValueError(f"unknown set sampling '{mode}'; choose one of {', '.join(SET_SAMPLINGS)}")


def row_sources(ds: PreparedDataset, mode: str = "proportional") -> np.ndarray | None:
    """The set each split row (= cache row) came from, None for a single set; ValueError when
    `mode` mixes sets and `ds` is one."""
    _check(mode)
    if "source" in ds.split.columns:
        return ds.split["source"].astype(str).to_numpy()
    if mode != "proportional":
        raise ValueError(f"set sampling '{mode}' mixes several sets; '{ds.name}' is one "
                         "(give --data more than once)")
    return None


def set_shares(sources: np.ndarray, mode: str) -> dict[str, float]:
    """Each set's expected fraction of an epoch's draws under `mode`."""
    _check(mode)
    names, counts = np.unique(np.asarray(sources).astype(str), return_counts=True)
    weight = counts.astype(float) ** _POWER.get(mode, 1.0)
    return {str(n): float(w / weight.sum()) for n, w in zip(names, weight, strict=True)}


def epoch_rows(train: np.ndarray, sources: np.ndarray | None, mode: str, *, seed: int,
               epoch: int) -> np.ndarray:
    """The train rows epoch `epoch` visits: `train` itself under `proportional` (or one set),
    else len(train) rows drawn with replacement to the shares of `set_shares`.
    `sources` names the set of every cache row (None: a single set)."""
    _check(mode)
    train = np.asarray(train, dtype=np.int64)
    if mode == "proportional" or sources is None or len(train) == 0:
        return train
    row_sets = np.asarray(sources).astype(str)[train]
    shares = set_shares(row_sets, mode)
    if len(shares) < 2:
        return train
    names, counts = np.unique(row_sets, return_counts=True)
    per_row = np.array([shares[s] for s in row_sets]) / counts[np.searchsorted(names, row_sets)]
    rng = np.random.default_rng([seed, epoch, 7919])  # its own stream: the loader's order uses (seed, epoch)
    return np.sort(rng.choice(train, size=len(train), replace=True, p=per_row / per_row.sum()))
