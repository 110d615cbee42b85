"""The linear probe: features read at the classifier's input, an exact logistic-regression head
chosen on validation, written into the model so it predicts like the fitted head."""
from __future__ import annotations

import numpy as np
import torch

from emotion_core import models
from emotion_core.training import probe


def _blobs(n: int, k: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, d))
    y = np.arange(n) % k
    return (centres[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y


def test_head_fitted_on_validation_separates_and_matches_sklearn_probabilities():
    all_x, all_y = _blobs(390, 3, 8, seed=0)
    x, y, vx, vy = all_x[:300], all_y[:300], all_x[300:], all_y[300:]
    fit = probe.fit_head(x, y, vx, vy, 3)
    assert fit.c in probe.C_GRID and set(fit.val_scores) == set(probe.C_GRID)
    logits = vx @ fit.weight.T + fit.bias
    assert (logits.argmax(1) == vy).mean() > 0.9


def test_two_present_classes_keep_calibrated_logits_and_an_absent_class_never_wins():
    x, y = _blobs(200, 2, 4, seed=2)
    fit = probe.fit_head(x, y, x, y, 3)  # class 2 has no training image
    logits = x @ fit.weight.T + fit.bias
    assert (logits.argmax(1) != 2).all()
    from sklearn.linear_model import LogisticRegression

    mu, sd = x.mean(0), x.std(0) + 1e-6
    ref = LogisticRegression(C=fit.c, max_iter=2000, class_weight="balanced",
                             random_state=0).fit((x - mu) / sd, y)
    p = torch.softmax(torch.from_numpy(logits[:, :2]), 1).numpy()
    np.testing.assert_allclose(p, ref.predict_proba((x - mu) / sd), atol=1e-4)


def test_head_inputs_and_load_head_on_a_registry_model():
    torch.manual_seed(0)
    model, _ = models.build_model("mobilenet_v2", 3, pretrained=False, image_size=32, tiny=True)
    model.eval()
    x = torch.randn(5, 3, 32, 32)
    feats = probe.head_inputs(model, x)
    assert feats.shape == (5, models.spec_of(model).head(model).in_features)
    w = np.random.default_rng(0).normal(size=(3, feats.shape[1])).astype(np.float32)
    b = np.array([0.1, -0.2, 0.3], np.float32)
    probe.load_head(model, probe.ProbeFit(1.0, {}, w, b))
    with torch.no_grad():
        torch.testing.assert_close(model(x), feats @ torch.from_numpy(w).T + torch.from_numpy(b))
