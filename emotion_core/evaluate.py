"""One evaluation path: metrics, calibration, cost (params/FLOPs/latency), stored-run loading.

Every number in a run's metrics.json and every leaderboard column comes from here, so training,
ensembles and cross-dataset evaluation are scored identically.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from emotion_core import artifacts

ECE_BINS = 15  # equal-width confidence bins for expected calibration error


class CheckpointMismatchError(ValueError):
    """A stored checkpoint disagrees with its manifest (architecture or classes)."""


# ---------------------------------------------------------------------------------------------
# Metrics


def ece(probs: np.ndarray, y_true: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error: sum over confidence bins of |accuracy - confidence| * weight."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            total += abs(correct[sel].mean() - conf[sel].mean()) * sel.mean()
    return float(total)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return m


def confusion_table(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """Rows = true class, columns = predicted class (counts), as stored in confusion.csv."""
    m = confusion_matrix(y_true, y_pred, len(classes))
    df = pd.DataFrame(m, columns=list(classes))
    df.insert(0, "true", list(classes))
    return df


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, NLL loss, macro-F1, per-class P/R/F1, top-2 accuracy, ECE and the confusion."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(classes)
    if probs.ndim != 2 or probs.shape[1] != k or len(probs) != len(y_true):
        raise ValueError(f"probabilities of shape {probs.shape} do not match {len(y_true)} labels "
                         f"and {k} classes")
    n = len(y_true)
    pred = probs.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    m = confusion_matrix(y_true, pred, k)
    per_class: dict[str, dict[str, float]] = {}
    f1s = []
    for i, c in enumerate(classes):
        tp, fp, fn = m[i, i], m[:, i].sum() - m[i, i], m[i, :].sum() - m[i, i]
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        per_class[c] = {"precision": float(p), "recall": float(r), "f1": float(f),
                        "support": int(m[i, :].sum())}
        if m[i, :].sum():  # classes absent from y_true do not drag macro-F1 to zero
            f1s.append(f)
    top_k = min(2, k)
    top2 = np.argsort(-probs, axis=1)[:, :top_k] if n else np.zeros((0, top_k), dtype=np.int64)
    p_true = probs[np.arange(n), y_true] if n else np.zeros(0)
    return {
        "n": int(n),
        "accuracy": float((pred == y_true).mean()) if n else float("nan"),
        "loss": float(-np.log(np.clip(p_true, 1e-12, 1.0)).mean()) if n else float("nan"),
        "macro_f1": float(np.mean(f1s)) if f1s else float("nan"),
        "top2_accuracy": float((top2 == y_true[:, None]).any(axis=1).mean()) if n else float("nan"),
        "ece": ece(probs, y_true),
        "per_class": per_class,
        "confusion": m.tolist(),
    }


def predictions_table(rels: Sequence[str], subsets: Sequence[str], y_true: np.ndarray,
                      probs: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """One row per image: rel, subset, label, pred, p_<class>... (predictions.csv)."""
    probs = np.asarray(probs, dtype=np.float64)
    df = pd.DataFrame({"rel": list(rels), "subset": list(subsets),
                       "label": [classes[i] for i in np.asarray(y_true, dtype=np.int64)],
                       "pred": [classes[i] for i in probs.argmax(axis=1)]})
    for i, c in enumerate(classes):
        df[f"p_{c}"] = probs[:, i]
    return df


def probs_from_predictions(df: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    missing = [f"p_{c}" for c in classes if f"p_{c}" not in df.columns]
    if missing:
        raise ValueError(f"predictions table lacks columns {', '.join(missing)}")
    return df[[f"p_{c}" for c in classes]].to_numpy(dtype=np.float64)


def metrics_by_subset(pred_df: pd.DataFrame, classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """compute_metrics for each subset present in a predictions table."""
    index = {c: i for i, c in enumerate(classes)}
    out = {}
    for subset, part in pred_df.groupby("subset", sort=False):
        y = part["label"].map(index).to_numpy(dtype=np.int64)
        out[str(subset)] = compute_metrics(y, probs_from_predictions(part, classes), classes)
    return out


# ---------------------------------------------------------------------------------------------
# Inference


@torch.inference_mode()
def collect_probs(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  device: torch.device, *, amp: bool = False, channels_last: bool = False,
                  max_batches: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities and labels over an iterable of (images, labels) batches."""
    model.eval()
    all_p, all_y = [], []
    for i, (x, y) in enumerate(batches):
        if max_batches and i >= max_batches:
            break
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            logits = model(x)
        all_p.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        all_y.append(y.numpy())
    if not all_p:
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
    return np.concatenate(all_p), np.concatenate(all_y).astype(np.int64)


def predict(model: nn.Module, images_rgb: Sequence[np.ndarray], manifest: dict[str, Any],
            batch_size: int = 32) -> np.ndarray:
    """Class probabilities for RGB uint8 arrays, preprocessed exactly like the training cache."""
    from emotion_core.transforms import model_input

    size, mean, std = int(manifest["image_size"]), manifest["mean"], manifest["std"]
    device = next(model.parameters()).device
    out = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(images_rgb), batch_size):
            xb = torch.cat([model_input(im, size, mean, std)[0] for im in images_rgb[i:i + batch_size]])
            out.append(torch.softmax(model(xb.to(device)).float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(manifest["classes"])))


# ---------------------------------------------------------------------------------------------
# Cost


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_flops(model: nn.Module, image_size: int) -> int:
    """Forward FLOPs at batch 1 (torch's FlopCounterMode counts 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, image_size, image_size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def measure_latency(model: nn.Module, image_size: int, *, warmup: int = 3, repeats: int = 10) -> float:
    """Median CPU milliseconds for one image (batch 1), after warm-up, on a CPU copy."""
    import copy

    cpu_model = copy.deepcopy(model).to("cpu").eval()
    x = torch.randn(1, 3, image_size, image_size)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            cpu_model(x)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000.0)
    return float(statistics.median(times))


def measure_throughput(model: nn.Module, image_size: int, *, batch_size: int = 32,
                       warmup: int = 1, repeats: int = 3) -> float:
    """Inference images per second at `batch_size` on the model's own device."""
    device = next(model.parameters()).device
    model.eval()
    x = torch.randn(batch_size, 3, image_size, image_size, device=device)
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x)
        _sync(device)
    return batch_size * repeats / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# Stored runs


def load_model(run_id: str, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a run's architecture (no download) and load its safetensors weights.

    Refuses, with a CheckpointMismatchError naming the difference, a checkpoint whose model name,
    classes, parameter names or shapes disagree with the manifest.
    """

    rec = artifacts.load_run(run_id, tables=False)
    m = rec.manifest
    if rec.is_ensemble:
        raise CheckpointMismatchError(f"run '{run_id}' is an ensemble of {m.get('members')}; "
                                      "it has no weights of its own (use emotion_core.ensemble)")
    state, meta = artifacts.load_weights(run_id)
    classes = list(m["classes"])
    if meta.get("model") and meta["model"] != m["model"]:
        raise CheckpointMismatchError(f"run '{run_id}': weights were saved for model "
                                      f"'{meta['model']}' but the manifest says '{m['model']}'")
    if "classes" in meta and meta["classes"] != ",".join(classes):
        raise CheckpointMismatchError(f"run '{run_id}': weights were saved for classes "
                                      f"[{meta['classes']}] but the manifest lists {classes}")
    cfg = m.get("config", {})
    model = _build_empty(m["model"], len(classes), int(m["image_size"]), bool(cfg.get("tiny", False)))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensor(s) e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s) e.g. {unexpected[0]}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es) e.g. {shapes[0]}")
        raise CheckpointMismatchError(
            f"run '{run_id}': checkpoint does not match architecture '{m['model']}' with "
            f"{len(classes)} classes ({'; '.join(parts)}); refusing to load it")
    on_meta = any(t.is_meta for t in expected.values())
    model.load_state_dict(state, strict=True, assign=on_meta)
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        raise CheckpointMismatchError(f"run '{run_id}': some tensors of '{m['model']}' are not "
                                      "in its checkpoint; refusing a half-loaded model")
    return model.to(device).eval(), m


def _build_empty(name: str, num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    """The architecture without paying for a random initialisation the checkpoint overwrites.

    Built on the meta device (no memory, no init: VGG-16 2.5 s -> ~0.1 s on 2 cores) and filled
    by `load_state_dict(assign=True)`; an architecture whose construction needs real tensors
    falls back to an ordinary build.
    """
    from emotion_core import models

    try:
        with torch.device("meta"):
            model, _ = models.build_model(name, num_classes, pretrained=False,
                                          image_size=image_size, tiny=tiny)
        return model
    except Exception:  # construction computed something a meta tensor cannot give
        model, _ = models.build_model(name, num_classes, pretrained=False,
                                      image_size=image_size, tiny=tiny)
        return model


# ---------------------------------------------------------------------------------------------
# Datasets and cross-dataset evaluation


def open_image_folder(root: str | Path, name: str | None = None, *, progress: bool = True) -> Any:
    """The PreparedDataset of an image folder: the stored report when it was prepared from this
    same folder, otherwise prepare it now (index, clean, split) through emotion_core.data."""
    from emotion_core import data

    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"no such data folder: {root}")
    name = name or root.name
    if (artifacts.dataset_dir(name) / "report.json").exists():
        ds = data.load_prepared(name)
        if Path(ds.root).resolve() == root:
            return ds
    return data.prepare_dataset(root, name, progress=progress)


def evaluate_on_folder(run_id: str, root: str | Path, *, name: str | None = None,
                       subset: str = "all", progress: bool = True) -> dict[str, Any]:
    """Score a stored run on any image-folder dataset with the same classes (cross-dataset).

    Returns {"dataset", "subset", "metrics", "by_subset", "predictions"}; refuses datasets whose
    class set differs from the run's."""
    from emotion_core import cache as cache_mod

    model, manifest = load_model(run_id)
    classes = list(manifest["classes"])
    ds = open_image_folder(root, name, progress=progress)
    if set(ds.classes) != set(classes):
        raise ValueError(f"dataset '{ds.name}' has classes {list(ds.classes)} but run '{run_id}' "
                         f"was trained on {classes}; cross-dataset evaluation needs the same classes")
    crop = bool((manifest.get("config") or {}).get("crop_faces", False))
    cache = cache_mod.build_cache(ds, int(manifest["image_size"]), crop_faces=crop, progress=progress)
    if subset == "all":
        idx = np.arange(len(cache.labels))
    else:
        idx = cache.indices(subset)
        if len(idx) == 0:
            raise ValueError(f"dataset '{ds.name}' has no '{subset}' images")
    loader = cache_mod.CachedLoader(cache, idx, 64, shuffle=False, aug=None, mean=manifest["mean"],
                                    std=manifest["std"], seed=0)
    probs, y_cache = collect_probs(model, loader, torch.device("cpu"))
    remap = np.array([classes.index(c) for c in cache.classes])
    y = remap[y_cache]
    preds = predictions_table([cache.rels[i] for i in idx], [cache.subsets[i] for i in idx],
                              y, probs, classes)
    return {"dataset": ds.name, "subset": subset, "metrics": compute_metrics(y, probs, classes),
            "by_subset": metrics_by_subset(preds, classes), "predictions": preds}
