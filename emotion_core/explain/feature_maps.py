"""Feature maps: a conv layer's strongest channels for one image, and a tiled picture of them.

The study showed VGG-16's feature maps layer by layer; any CNN in the registry works the same way.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from emotion_core.explain.base import (
    NotApplicableError,
    batch_of,
    colorize,
    explaining,
    to_model_device,
)


def conv_layers(model: nn.Module, x: torch.Tensor | None = None) -> list[tuple[str, nn.Module]]:
    """The model's Conv2d layers in forward order (registration order, or execution order if `x`)."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if x is None:
        return convs
    order: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda mod, i, o: order.append(mod)) for _, m in convs]
    try:
        with explaining(model), torch.no_grad():
            model(to_model_device(model, batch_of(x)[:1]))
    finally:
        for h in handles:
            h.remove()
    rank = {id(m): i for i, m in reversed(list(enumerate(order)))}
    return sorted(convs, key=lambda nm: rank.get(id(nm[1]), len(order)))


@dataclass
class FeatureMaps:
    """Activations of one layer for one image, each channel min-max normalised to [0, 1]."""

    layer: str
    maps: np.ndarray  # [k, h, w] float32
    channels: list[int]  # channel id of each map
    mean_activation: list[float]  # raw mean activation of each shown channel


def feature_maps(model: nn.Module, x: torch.Tensor, layer: str, *, top_k: int = 16,
                 channels: Sequence[int] | None = None) -> FeatureMaps:
    """Top-k channels by mean activation (or the chosen `channels`) of `layer` for image x[0]."""
    modules = dict(model.named_modules())
    if layer not in modules:
        names = [n for n, _ in conv_layers(model)]
        raise ValueError(f"unknown layer '{layer}'; conv layers are: {', '.join(names[:8])}"
                         + (" ..." if len(names) > 8 else ""))
    captured: list[torch.Tensor] = []
    handle = modules[layer].register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    try:
        with explaining(model), torch.no_grad():
            model(to_model_device(model, batch_of(x)[:1]))
    finally:
        handle.remove()
    act = captured[0][0].float()
    if act.ndim != 3:
        raise NotApplicableError(f"layer '{layer}' outputs shape {tuple(act.shape)}, not a "
                                 "(channels, h, w) feature map")
    means = act.mean(dim=(1, 2))
    if channels is None:
        ids = torch.argsort(means, descending=True)[: max(1, top_k)].tolist()
    else:
        ids = [int(c) for c in channels]
        bad = [c for c in ids if not 0 <= c < act.shape[0]]
        if bad:
            raise ValueError(f"layer '{layer}' has {act.shape[0]} channels; got {bad}")
    sel = act[ids]
    lo = sel.amin(dim=(1, 2), keepdim=True)
    span = (sel.amax(dim=(1, 2), keepdim=True) - lo).clamp_min(1e-12)
    maps = ((sel - lo) / span).cpu().numpy().astype(np.float32)
    return FeatureMaps(layer, maps, ids, [float(means[i]) for i in ids])


def feature_grid(fm: FeatureMaps, *, cols: int = 4, tile: int = 96) -> np.ndarray:
    """Tile the maps (colormapped) into one uint8 RGB image for display or saving."""
    k = len(fm.channels)
    cols = max(1, min(cols, k))
    rows = math.ceil(k / cols)
    out = np.full((rows * (tile + 2), cols * (tile + 2), 3), 255, np.uint8)
    for i, m in enumerate(fm.maps):
        r, c = divmod(i, cols)
        img = colorize(cv2.resize(m, (tile, tile), interpolation=cv2.INTER_NEAREST))
        out[r * (tile + 2) + 1: r * (tile + 2) + 1 + tile, c * (tile + 2) + 1: c * (tile + 2) + 1 + tile] = img
    return out
