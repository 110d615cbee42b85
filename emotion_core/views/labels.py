"""Names for runs: one short, readable label per run, unique among the runs shown together.

Why: the pages pass these labels to Streamlit widgets as `format_func`, and Streamlit maps a
chosen label back to its option, so two runs sharing a label (one model retrained from the Train
page is enough) would silently collapse into one; charts, legends and tables group by the label
too. A label reads `model · weights source · MM-DD HH:MM` (when the run was created); runs that
still share one get the shortest tail of their run id that tells them apart.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from emotion_core import store

SEP = " · "  # between the parts of a label


def run_label(manifest: Mapping[str, Any]) -> str:
    """`model · weights source · MM-DD HH:MM`: readable, but not unique on its own."""
    parts = [str(manifest.get("model", "?")), str(manifest.get("weights_source", "?"))]
    when = created_stamp(manifest.get("created"))
    return SEP.join([*parts, when] if when else parts)


def created_stamp(created: Any) -> str:
    """An ISO time as `MM-DD HH:MM` ("" when absent or unreadable)."""
    try:
        return datetime.fromisoformat(str(created)).strftime("%m-%d %H:%M")
    except (TypeError, ValueError):
        return ""


def run_labels(records: Sequence[store.RunRecord]) -> dict[str, str]:
    """{run id: label} for the runs shown together, every label distinct (input order kept)."""
    base = {r.run_id: run_label(r.manifest) for r in records}
    counts = Counter(base.values())
    clashes: dict[str, list[str]] = {}
    for rid, label in base.items():
        if counts[label] > 1:
            clashes.setdefault(label, []).append(rid)
    out = dict(base)
    for label, ids in clashes.items():
        for rid, tail in id_tails(ids).items():
            out[rid] = f"{label}{SEP}{tail}"
    if len(set(out.values())) < len(out):  # a suffixed label met another run's plain one
        dup = Counter(out.values())
        out = {rid: f"{lab} [{rid}]" if dup[lab] > 1 else lab for rid, lab in out.items()}
    return out


def id_tails(run_ids: Sequence[str]) -> dict[str, str]:
    """The shortest `-`-separated tail of each run id that no other id in the list shares
    (`...-20241128-215301` -> `215301`; whole ids when tails never differ)."""
    parts = {rid: rid.split("-") for rid in run_ids}
    for k in range(1, max((len(p) for p in parts.values()), default=1) + 1):
        tails = {rid: "-".join(p[-k:]) for rid, p in parts.items()}
        if len(set(tails.values())) == len(tails):
            return tails
    return {rid: rid for rid in run_ids}
