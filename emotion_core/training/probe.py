"""A true linear probe: features through the frozen backbone computed once, then a logistic
regression head chosen on validation, written into the model's own classifier.

Why: a pretrained backbone's features are often good enough that a linear head, fitted exactly
(convex, no learning-rate schedule), beats epochs of AdamW through the frozen network, at a small
fraction of the cost: each image passes through the backbone once (twice with the flip), and the
features are cached on disk keyed by everything that determines them.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from emotion_core import store
from emotion_core.data.cache import CachedLoader, DecodedCache
from emotion_core.models import spec_of

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


def extract(model: nn.Module, cache: DecodedCache, rows: np.ndarray, *, mean: Sequence[float],
            std: Sequence[float], flip: bool, key: str, batch_size: int = 128) -> np.ndarray:
    """Features of cache rows `rows` (and of their mirror images after them when `flip`),
    read from the feature cache when this exact computation was done before."""
    path = store.paths.cache_dir(key) / "features.npy"
    if path.is_file():
        return np.load(path)
    model.eval()
    device = next(model.parameters()).device
    loader = CachedLoader(cache, rows, batch_size, shuffle=False, aug=None, mean=mean, std=std)
    parts = []
    for x, _ in loader:
        x = x.to(device)
        parts.append(head_inputs(model, x).cpu().numpy())
    feats = [np.concatenate(parts)]
    if flip:
        mirrored = []
        for x, _ in loader:
            mirrored.append(head_inputs(model, x.flip(-1).to(device)).cpu().numpy())
        feats.append(np.concatenate(mirrored))
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


def load_head(model: nn.Module, fit: ProbeFit) -> None:
    """Write the fitted linear head into the model's classifier (an nn.Linear)."""
    head = spec_of(model).head(model)
    if not isinstance(head, nn.Linear) or head.weight.shape != fit.weight.shape:
        raise ValueError(f"the head of '{spec_of(model).name}' is not a Linear of shape "
                         f"{fit.weight.shape}; a linear probe cannot be written into it")
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(fit.weight))
        head.bias.copy_(torch.from_numpy(fit.bias))
