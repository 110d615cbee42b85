"""One entry point for the CLI and the app: any method on one image, rendered over the picture.

Methods: the CAM family (`cam`), ViT CLS attention and rollout (`attention`), and feature maps
(`feature_maps`). Which apply to a model follows from its registry family (`methods_for`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from emotion_core.evaluation.inference import probabilities
from emotion_core.explain.attention import (
    attention_maps,
    cls_attention,
    patch_grid_overlay,
    rollout,
)
from emotion_core.explain.base import (
    NotApplicableError,
    batch_of,
    explaining,
    overlay,
    to_heatmap,
    to_model_device,
)
from emotion_core.explain.cam import CAM_METHODS, compute_cam
from emotion_core.explain.feature_maps import conv_layers, feature_grid, feature_maps
from emotion_core.models import ModelSpec, patch_size, spec_of

ATTENTION_METHODS = ("attention", "rollout")
ALL_METHODS = (*CAM_METHODS, *ATTENTION_METHODS, "featuremap")


def methods_for(spec: ModelSpec) -> list[str]:
    """Every explanation this package can produce for a registry model."""
    return [*CAM_METHODS, *(ATTENTION_METHODS if spec.has_attention else ()), "featuremap"]


@dataclass
class Explanation:
    """A rendered explanation of one image."""

    method: str
    image: np.ndarray  # uint8 RGB picture to show or save (overlay, or the feature-map grid)
    heat: np.ndarray | None  # [H, W] float32 in [0, 1] at the model's input size (None: featuremap)
    target: int  # class explained (the predicted one unless chosen)
    probs: np.ndarray  # the model's class probabilities for the image
    info: dict[str, Any]  # layer / head / channels / fusion used


def explain_image(model: nn.Module, x: torch.Tensor, view: np.ndarray, method: str, *,
                  layer: str | int | None = None, head: int | None = None, target: int | None = None,
                  discard_ratio: float = 0.9, head_fusion: str = "mean", top_k: int = 16,
                  alpha: float = 0.5, tta_flip: bool = False,
                  temperature: float = 1.0) -> Explanation:
    """Compute `method` for image x[0] and render it over `view` (its uint8 RGB at input size).

    `tta_flip`: the class probabilities (and so the default target) are the mean over the
    picture and its mirror, as a run trained with flip test-time augmentation answers;
    `temperature`: the run's calibration (`inference.run_temperature`), as Predict answers.

    `layer`: a conv layer name for featuremap, a module name for CAMs (default: the registry's
    target), a block index for attention (default: last).
    `head`: attention head (default: mean of heads). Raises NotApplicableError for a method the
    model does not support and ValueError for a bad layer, head or class.
    """
    spec = spec_of(model)
    name = spec.name
    if method not in ALL_METHODS:
        raise ValueError(f"unknown method '{method}'; choose one of {', '.join(ALL_METHODS)}")
    if method not in methods_for(spec):
        raise NotApplicableError(f"method '{method}' does not apply to model '{name}' "
                                 f"(it supports {', '.join(methods_for(spec))})")
    x = to_model_device(model, batch_of(x)[:1])
    with explaining(model):
        probs = probabilities(model, x, tta_flip=tta_flip, temperature=temperature)[0].cpu().numpy()
    if target is not None and not 0 <= int(target) < probs.shape[0]:
        raise ValueError(f"class index {target} out of range: the model has {probs.shape[0]} classes")
    cls = int(probs.argmax()) if target is None else int(target)
    size = tuple(x.shape[-2:])
    info: dict[str, Any] = {}
    if method in CAM_METHODS:
        heat = compute_cam(model, x, method=method, target=cls,
                           layer=None if layer is None else str(layer))
        image = overlay(view, heat, alpha)
        if layer is not None:
            info["layer"] = str(layer)
    elif method in ATTENTION_METHODS:
        att = attention_maps(model, x)
        if method == "attention":
            idx = -1 if layer is None else int(layer)
            grid = cls_attention(att, idx, head)
            info.update(layer=idx, head="mean" if head is None else head, layers=att.shape[0],
                        heads=att.shape[1])
        else:
            grid = rollout(att, discard_ratio, head_fusion)
            info.update(discard_ratio=discard_ratio, head_fusion=head_fusion)
        heat = to_heatmap(grid, size, nearest=True)
        image = overlay(view, heat, alpha)
        p = patch_size(model)
        if p:
            image = patch_grid_overlay(image, p)
            info["patch"] = p
    else:
        convs = [n for n, _ in conv_layers(model)]
        chosen = convs[-1] if layer is None else str(layer)
        fm = feature_maps(model, x, chosen, top_k=top_k)
        heat, image = None, feature_grid(fm)
        info.update(layer=chosen, channels=fm.channels)
    return Explanation(method, image, heat, cls, probs, info)
