"""A true linear probe: features through the frozen backbone computed once, then a logistic
regression head chosen on validation, written into the model's own classifier.

Why: a pretrained backbone's features are often good enough that a linear head, fitted exactly
(convex, no learning-rate schedule), beats epochs of AdamW through the frozen network, at a small
fraction of the cost: each image passes through the backbone once (twice with the flip), and the
features are cached on disk keyed by everything that determines them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn
from tqdm.auto import tqdm

from emotion_core import store
from emotion_core.data.cache import CachedLoader, DecodedCache
from emotion_core.evaluation import metrics as ev
from emotion_core.models import SCRATCH, spec_of
from emotion_core.training.planner import Phase
from emotion_core.training.state import RunState
from emotion_core.training.writer import RunContext, write_run

if TYPE_CHECKING:  # loop imports this module; the type only
    from emotion_core.training.loop import Setup

BATCH = 128  # images per forward pass while extracting features
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)  # inverse L2 strengths tried on validation


def head_inputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the model's classifier receives for a batch (the backbone's features)."""
    head = spec_of(model).head(model)
    seen: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        handle.remove()
    return seen[0].flatten(1).float()


def feature_key(manifest_part: dict, cache: DecodedCache, rows: np.ndarray, flip: bool) -> str:
    blob = json.dumps({**manifest_part, "cache": cache.key, "flip": flip,
                       "rows": hashlib.sha256(np.asarray(rows, np.int64).tobytes()).hexdigest()},
                      sort_keys=True)
    return "features-" + hashlib.sha256(blob.encode()).hexdigest()[:20]


def _features_path(key: str) -> Path:
    return store.paths.cache_dir(key) / "features.npy"


def extract_batches(rows: np.ndarray, flip: bool, key: str, batch_size: int = BATCH) -> int:
    """Forward batches `extract` will run for these rows (none when their features are cached)."""
    return 0 if _features_path(key).is_file() else math.ceil(len(rows) / batch_size) * (1 + flip)


def extract(model: nn.Module, cache: DecodedCache, rows: np.ndarray, *, mean: Sequence[float],
            std: Sequence[float], flip: bool, key: str, batch_size: int = BATCH,
            on_batch: Callable[[], None] | None = None) -> np.ndarray:
    """Features of cache rows `rows` (and of their mirror images after them when `flip`),
    read from the feature cache when this exact computation was done before; `on_batch()`
    after each forward batch (progress)."""
    path = _features_path(key)
    if path.is_file():
        return np.load(path)
    model.eval()
    device = next(model.parameters()).device
    loader = CachedLoader(cache, rows, batch_size, shuffle=False, aug=None, mean=mean, std=std)
    feats = []
    for mirrored in (False, True) if flip else (False,):
        parts = []
        for x, _ in loader:
            x = x.flip(-1) if mirrored else x
            parts.append(head_inputs(model, x.to(device)).cpu().numpy())
            if on_batch is not None:
                on_batch()
        feats.append(np.concatenate(parts))
    out = np.concatenate(feats).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with store.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, out)
    return out


@dataclass
class ProbeFit:
    c: float  # chosen inverse regularisation strength
    val_scores: dict[float, float]  # macro-F1 on validation per C tried
    weight: np.ndarray  # (classes, features) in the model's own feature space
    bias: np.ndarray  # (classes,)


def _macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    f1s = []
    for c in range(k):
        tp = np.sum((pred == c) & (y == c))
        p = tp / max(1, np.sum(pred == c))
        r = tp / max(1, np.sum(y == c))
        f1s.append(0.0 if p + r == 0 else 2 * p * r / (p + r))
    return float(np.mean(f1s))


def fit_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
             n_classes: int, *, class_weighted: bool = True, seed: int = 0) -> ProbeFit:
    """Multinomial logistic regression on standardised features, C chosen by validation
    macro-F1; returned as a linear layer on the raw features."""
    mu, sigma = train_x.mean(0), train_x.std(0) + 1e-6
    xs, vs = (train_x - mu) / sigma, (val_x - mu) / sigma
    scores, fits = {}, {}
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced" if class_weighted else None,
                                 random_state=seed)
        clf.fit(xs, train_y)
        scores[c] = _macro_f1(val_y, clf.predict(vs), n_classes)
        fits[c] = clf
    best = max(C_GRID, key=lambda c: (scores[c], -c))  # ties: the stronger regulariser
    clf = fits[best]
    coef = np.zeros((n_classes, xs.shape[1]))
    inter = np.full(n_classes, -1e4)  # a class absent from train never wins
    binary = len(clf.classes_) == 2  # sklearn keeps one row, for classes_[1]: its logit vs 0
    coef[clf.classes_] = np.vstack([np.zeros_like(clf.coef_), clf.coef_]) if binary else clf.coef_
    inter[clf.classes_] = np.concatenate([[0.0], clf.intercept_]) if binary else clf.intercept_
    weight = coef / sigma
    bias = inter - weight @ mu
    return ProbeFit(best, scores, weight.astype(np.float32), bias.astype(np.float32))


def head_probs(feats: np.ndarray, fit: ProbeFit, n: int) -> np.ndarray:
    """The model's probabilities for `n` images from their features (the head is linear on
    them); with 2n rows, the mean over each image and its mirror image (as flip TTA does)."""
    logits = feats.astype(np.float64) @ fit.weight.T.astype(np.float64) + fit.bias
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return probs if len(probs) == n else (probs[:n] + probs[n:]) / 2


def load_head(model: nn.Module, fit: ProbeFit) -> None:
    """Write the fitted linear head into the model's classifier (an nn.Linear)."""
    head = spec_of(model).head(model)
    if not isinstance(head, nn.Linear) or head.weight.shape != fit.weight.shape:
        raise ValueError(f"the head of '{spec_of(model).name}' is not a Linear of shape "
                         f"{fit.weight.shape}; a linear probe cannot be written into it")
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(fit.weight))
        head.bias.copy_(torch.from_numpy(fit.bias))


def run_probe(setup: Setup, ctx: RunContext, state: RunState) -> str:
    """The "probe" recipe: features of the training images and their mirror images, and of the
    validation images (their mirror images too with flip TTA), through the frozen backbone, a
    head fitted on them, then the usual run writer."""
    model, split, config, rt = setup.model, setup.split, setup.config, setup.rt
    if ctx.weights_source == SCRATCH:
        raise ValueError(f"a linear probe needs pretrained weights, but '{setup.name}' starts from "
                         f"scratch here; use the fine-tune recipe or install its weights")
    reporter = setup.reporter
    reporter.events.emit("run_started", run_id=state.run_id, planned_epochs=1, max_batches=0,
                         recipe=ctx.recipe(), resumed_after=None)
    t0 = time.perf_counter()
    part = {"model": setup.name, "weights": ctx.weights_source, "size": config.image_size,
            "mean": split.mean, "std": split.std}
    # Validation's mirror images too when the run predicts with them: its metrics then follow
    # from the features (below), with no second pass through the backbone.
    jobs = [(name, rows, flip, feature_key(part, split.cache, rows, flip)) for name, rows, flip in
            (("train", split.train, True), ("val", split.val, config.tta_flip))]
    # The forward passes are the probe's long part (minutes on a CPU): one progress "epoch".
    batches = sum(extract_batches(rows, flip, key) for _, rows, flip, key in jobs)
    reporter.epoch_started(1, 1, "probe", batches)
    bar = tqdm(total=batches, desc="probe features", leave=False, disable=not rt.show or not batches,
               dynamic_ncols=True)
    report, done = reporter.on_batch(1, batches), 0

    def on_batch() -> None:
        nonlocal done
        done += 1
        bar.update()
        report(done)

    feats = {name: extract(model, split.cache, rows, mean=split.mean, std=split.std, flip=flip,
                           key=key, on_batch=on_batch) for name, rows, flip, key in jobs}
    bar.close()
    labels = split.cache.labels
    train_y = np.concatenate([labels[split.train]] * 2)
    n_val = len(split.val)
    fit = fit_head(feats["train"], train_y, feats["val"][:n_val], labels[split.val],
                   len(split.classes), class_weighted=config.class_weighted, seed=config.seed)
    load_head(model, fit)
    vm = ev.compute_metrics(labels[split.val], head_probs(feats["val"], fit, n_val), split.classes)
    row = {"epoch": 1, "phase": "probe", "lr": 0.0, "train_loss": float("nan"),
           "train_acc": float("nan"), "val_loss": vm["loss"], "val_acc": vm["accuracy"],
           "val_macro_f1": vm["macro_f1"], "seconds": time.perf_counter() - t0}
    state.record_epoch(row, final_phase=True, patience=1)
    reporter.epoch_finished(row, epochs=1, improved=True)
    ctx = dataclasses.replace(ctx, phases=[Phase("probe", 1, 0.0)], steps_per_epoch=0,
                              extra={"probe_C": fit.c, "probe_val_macro_f1_by_C": fit.val_scores,
                                     "probe_flip_features": True})
    headline, _ = write_run(ctx, model, split.cache, state, model.state_dict())
    reporter.events.emit("run_written", run_id=state.run_id, headline=headline)
    reporter.say(f"wrote run {state.run_id}: probe C={fit.c:g}, val acc "
                 f"{headline['val_accuracy']:.4f} macro-F1 {headline['val_macro_f1']:.4f}")
    reporter.finish()
    return state.run_id
