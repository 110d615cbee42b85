"""The Train page's choices: which models to offer first and to tick by default.

Why: a new user who presses "Start training" without changing anything should get a useful
result in minutes, so the default is the fastest useful models: pretrained CNNs, smallest first
(by the parameter count the registry's description states), then other pretrained models, then
those trained from scratch. The order comes from the registry alone, so a new entry sorts itself.
External reference models are not offered: they are evaluated, never trained here.
"""
from __future__ import annotations

import math
import re

from emotion_core.models import REGISTRY, ModelSpec

DEFAULT_MODELS = 2  # models ticked by default
_PARAMS = re.compile(r"([\d.]+)\s*([kM]) parameters")


def parameters_m(spec: ModelSpec) -> float:
    """Millions of parameters as the registry's description states them ("2.2 M", "52 k"; inf
    when unstated)."""
    found = _PARAMS.search(spec.description)
    if not found:
        return math.inf
    return float(found.group(1)) * (1e-3 if found.group(2) == "k" else 1.0)


def model_order() -> list[str]:
    """Trainable registry models, fastest useful first: pretrained CNNs by size, other
    pretrained models by size, then models without pretrained weights."""
    def rank(spec: ModelSpec) -> tuple[int, float, str]:
        group = 0 if spec.pretrained and spec.family == "cnn" else 1 if spec.pretrained else 2
        return group, parameters_m(spec), spec.name
    return [s.name for s in sorted(REGISTRY.values(), key=rank) if s.trainable]


def default_models(n: int = DEFAULT_MODELS) -> list[str]:
    return model_order()[:n]


def model_help() -> str:
    """One line per model for the picker's tooltip: name, description, pretrained or not."""
    lines = []
    for name in model_order():
        spec = REGISTRY[name]
        start = "pretrained" if spec.pretrained else "from scratch"
        lines.append(f"**{name}** ({start}): {spec.description}")
    return "\n\n".join(lines)
