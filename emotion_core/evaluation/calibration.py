"""One temperature per run, so that its percentages mean what they say (Guo et al. 2017).

A run's answer p (the softmax, flip-averaged where the run uses flip TTA) becomes
softmax(log p / T): T < 1 sharpens, T > 1 softens, and the chosen class never changes. For a
single view this is exactly temperature scaling of the logits; applied to the final answer it
is also what `fit_temperature` fits, so fit and use agree for flip-averaged answers too.

T is fitted on validation answers by least negative log-likelihood (one parameter, so the
validation set cannot be overfitted to any useful degree) and stored in the run's manifest as
`calibration` (see `scripts.calibrate`); `inference.run_temperature` reads it back.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from emotion_core.evaluation import metrics as ev

LOG_T_RANGE = (math.log(0.05), math.log(20.0))  # T searched in [0.05, 20]
_EPS = 1e-12


def scale(probs: np.ndarray | torch.Tensor, temperature: float) -> np.ndarray | torch.Tensor:
    """softmax(log p / T) row-wise, in the type given; T = 1 returns `probs` unchanged."""
    check(temperature)
    if temperature == 1.0:
        return probs
    if isinstance(probs, torch.Tensor):
        return torch.softmax(torch.log(probs.clamp_min(_EPS)) / temperature, dim=-1)
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, None)) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def check(temperature: float) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
            and temperature > 0):
        raise ValueError(f"a temperature must be a positive number, not {temperature!r}")


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    p = np.asarray(probs, dtype=np.float64)[np.arange(len(y)), np.asarray(y)]
    return float(-np.log(np.clip(p, _EPS, None)).mean())


def fit_temperature(probs: np.ndarray, y: np.ndarray, *, tol: float = 1e-4) -> float:
    """The T in [0.05, 20] that minimises the NLL of `scale(probs, T)` (golden-section search
    on log T: the NLL is smooth and unimodal in it)."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    if probs.ndim != 2 or len(probs) != len(y) or len(y) == 0:
        raise ValueError("fit_temperature needs an N x classes table and N labels, N > 0")
    logp = np.log(np.clip(probs, _EPS, None))

    def loss(log_t: float) -> float:
        z = logp / math.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        return float((np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]).mean())

    lo, hi = LOG_T_RANGE
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = loss(a), loss(b)
    while hi - lo > tol:
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = loss(b)
    return round(math.exp((lo + hi) / 2), 4)


def summary(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """What calibration changes: NLL, ECE and the mean top probability beside the accuracy."""
    probs = np.asarray(probs, dtype=np.float64)
    return {"images": int(len(y)), "accuracy": float((probs.argmax(1) == y).mean()),
            "mean_top_probability": float(probs.max(1).mean()), "nll": nll(probs, y),
            "ece": float(ev.ece(probs, y))}


def calibration_record(probs: np.ndarray, y: np.ndarray, *, fitted_on: str,
                       subset: str = "val") -> dict[str, Any]:
    """The manifest's `calibration` entry: T and what it did on the answers it was fitted on."""
    t = fit_temperature(probs, y)
    return {"temperature": t, "fitted_on": fitted_on, "subset": subset,
            "before": summary(probs, y), "after": summary(scale(probs, t), y)}
