"""Subjects: the person each photo shows, read from its file name, so held-out splits can take
whole people.

Expression sets photograph the same people many times (every expression, several shots). A
split by file leaves one shot of a person in train and another in test, and the test number
then partly measures recognising the person. Many sets name the person in the file name, and a
regular expression reads it back:

| set | file name | `--subject-pattern` |
|---|---|---|
| FACES (and the photos of it in webfaces3) | `066_y_m_a_a.jpg` | `^(\\d{3})_[yom]_[mf]_` |
| KDEF | `AF01ANS.JPG` | `^[AB]([FM]\\d{2})` |
| CK+ | `S005_001_00000011.png` | `^(S\\d{3})_` |
| JAFFE | `KA.AN1.39.tiff` | `^([A-Z]{2})\\.` |

The key is the pattern's group named `subject`, else its first group, else the whole match,
searched in the file name only (not the folders, which name the class and split). A file the
pattern does not match is a subject of its own. Cleaning runs first, so copies of one picture
are already one file.
"""
from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The compiled pattern, or a ValueError that says what is wrong with it."""
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"--subject-pattern {pattern!r} is not a regular expression: {exc}") \
            from exc
    return rx


def subject_keys(rels: pd.Series, pattern: str) -> pd.Series:
    """Each file's subject from its file name (None where the pattern does not match)."""
    rx = compile_pattern(pattern)

    def key(rel: str) -> str | None:
        m = rx.search(rel.rsplit("/", 1)[-1])
        if m is None:
            return None
        if "subject" in rx.groupindex:
            return m.group("subject")
        return m.group(1) if rx.groups else m.group(0)

    return pd.Series([key(r) for r in rels], index=rels.index, dtype=object)


def carve_subjects(subjects: pd.Series, fraction: float, seed: int, salt: str) -> np.ndarray:
    """Boolean mask over `subjects` (rows with a key) choosing whole subjects for a held-out
    subset: about `fraction` of the rows, seeded; at least one subject stays where there are two.

    Subjects are drawn in a seeded order until their rows reach the share, so the subset holds
    whole people and is stratified only as far as each person shows every class."""
    mask = np.zeros(len(subjects), dtype=bool)
    keys = sorted(set(subjects))
    if fraction <= 0 or len(keys) < 2:
        return mask
    sizes = subjects.value_counts()
    target = max(int(round(fraction * len(subjects))), 1)
    salt_key = int.from_bytes(hashlib.sha1(f"{salt}:subjects".encode()).digest()[:4], "little")
    order = np.random.default_rng([seed, salt_key]).permutation(len(keys))
    chosen, taken = [], 0
    for i in order[:len(keys) - 1]:  # never every subject: train keeps at least one
        if taken >= target:
            break
        chosen.append(keys[i])
        taken += int(sizes[keys[i]])
    mask[subjects.isin(chosen).to_numpy()] = True
    return mask


def shared_subjects(split: pd.DataFrame, keys: pd.Series) -> list[str]:
    """Subjects found in more than one subset of `split` (aligned with `keys`), sorted."""
    known = pd.DataFrame({"subject": keys.to_numpy(), "subset": split["subset"].to_numpy()})
    known = known[known["subject"].notna()]
    spread = known.groupby("subject")["subset"].nunique()
    return sorted(spread.index[spread > 1])
