"""Probe one stored run on one picture for the app: feature maps, CAMs, ViT attention, faithfulness.

Thin glue over emotion_core.explain so the pages never touch torch: each function takes the model
and manifest (from a cached loader), an RGB picture, and returns display-ready uint8 images and
numbers. Preprocessing is the run's own (`Preprocess.of(manifest)`, the training cache's recipe),
so what is explained is exactly what the model saw.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotion_core import explain
from emotion_core.data import faces
from emotion_core.data.images import load_rgb
from emotion_core.data.layout import mask_path
from emotion_core.data.transforms import Preprocess, resize_square
from emotion_core.evaluation.inference import probabilities, run_flips
from emotion_core.explain.attention import (
    attention_maps,
    cls_attention,
    patch_grid_overlay,
    rollout,
)
from emotion_core.explain.faithfulness import deletion_insertion, mask_energy_share
from emotion_core.explain.feature_maps import conv_layers, feature_grid, feature_maps
from emotion_core.models import patch_size


@dataclass
class MapView:
    """One explanation map ready to show."""

    title: str
    overlay: np.ndarray  # uint8 RGB at model input size
    heat: np.ndarray  # float [0, 1] HxW
    predicted: str
    faithfulness: dict[str, float]  # e.g. {"mask energy share": 0.71} or {"deletion AUC": ...}
    layer: str | None = None  # the CAM layer when it is not the registry's default


def to_input(rgb: np.ndarray, manifest: dict[str, Any]) -> tuple[torch.Tensor, np.ndarray]:
    """(normalised 1x3xSxS tensor, the resized uint8 picture) as the run's cache prepared it."""
    return Preprocess.of(manifest)(rgb)


def predicted_class(model: torch.nn.Module, x: torch.Tensor,
                    manifest: dict[str, Any]) -> tuple[int, str]:
    """(id, name) of the class the run answers for this input, with its own flip test-time
    augmentation when it was trained with one: the class Predict shows, so a map is drawn for
    the answer beside it (a single pass can pick another class when two are close)."""
    i = int(probabilities(model, x, tta_flip=run_flips(manifest)).argmax(dim=1)[0])
    return i, list(manifest["classes"])[i]


def conv_layer_names(model: torch.nn.Module) -> list[str]:
    return [name for name, _ in conv_layers(model)]


def feature_map_grid(model: torch.nn.Module, manifest: dict[str, Any], rgb: np.ndarray,
                     layer: str, top_k: int = 16) -> tuple[np.ndarray, list[int], np.ndarray]:
    """(channel grid image, channel ids, the resized input) for one conv layer."""
    x, small = to_input(rgb, manifest)
    fm = feature_maps(model, x, layer, top_k=top_k)
    return feature_grid(fm, cols=4, tile=96), fm.channels, small


def _faithfulness(model: torch.nn.Module, x: torch.Tensor, heat: np.ndarray, target: int,
                  mask: np.ndarray | None, score: bool) -> dict[str, float]:
    """This map's faithfulness on this picture.

    The mask energy share (synthetic faces with a ground-truth mask) costs nothing, so it is always
    given; deletion/insertion AUCs cost ~20 extra forward passes, so only when `score` is asked.
    """
    if mask is not None:
        return {"mask energy share": float(mask_energy_share(heat, mask))}
    if not score:
        return {}
    res = deletion_insertion(model, x, heat, target, steps=10)
    return {f"{k} AUC": float(res[k]) for k in ("deletion", "insertion")}


def load_mask(image_path: Path | None, size: int, cut: faces.Cut | None = None
              ) -> np.ndarray | None:
    """The synthetic ground-truth mask beside an image, cut like the picture (`cut`: a face
    crop of it) and resized to the model input (or None)."""
    mp = mask_path(Path(image_path)) if image_path is not None else None
    if mp is None or not mp.exists():
        return None
    mask = load_rgb(mp)
    if cut is not None:
        mask = cut[0].cut(mask, cut[1])
    return resize_square(mask, size)[..., 0] > 127


def cam_view(model: torch.nn.Module, manifest: dict[str, Any], rgb: np.ndarray, method: str,
             *, image_path: Path | None = None, cut: faces.Cut | None = None, score: bool = False,
             finer: int = 0) -> MapView:
    """A CAM-family map for the predicted class, its overlay and a faithfulness score.

    `finer`: 0 = the registry's CAM layer; k = the layer k feature-grid resolutions finer
    (clamped to the finest one the model has), see cam_layers.cam_layer_choices.
    """
    x, small = to_input(rgb, manifest)
    target, name = predicted_class(model, x, manifest)
    choices = explain.cam_layer_choices(model, small.shape[0])
    layer = choices[max(0, len(choices) - 1 - max(0, int(finer)))]
    heat = explain.compute_cam(model, x, method=method, target=target,
                               layer=None if layer.default else layer.name)
    mask = load_mask(image_path, small.shape[0], cut)
    grid = "x".join(map(str, layer.grid)) if all(layer.grid) else "?"
    return MapView(f"{manifest['model']} · {method} · {layer.name} ({grid})",
                   explain.overlay(small, heat), heat, name,
                   _faithfulness(model, x, heat, target, mask, score),
                   None if layer.default else layer.name)


def attention_layout(model: torch.nn.Module, manifest: dict[str, Any], rgb: np.ndarray) -> np.ndarray:
    """[layers, heads, T, T] attention for the picture (to size the layer/head sliders)."""
    x, _ = to_input(rgb, manifest)
    return attention_maps(model, x)


def attention_view(model: torch.nn.Module, manifest: dict[str, Any], rgb: np.ndarray, att: np.ndarray,
                   *, layer: int, head: int | None, image_path: Path | None = None,
                   cut: faces.Cut | None = None, score: bool = False) -> MapView:
    """CLS-to-patch attention of one layer/head as an overlay, with its faithfulness."""
    x, small = to_input(rgb, manifest)
    grid = cls_attention(att, layer, head)
    heat = explain.to_heatmap(grid, small.shape[:2], nearest=True)
    target, name = predicted_class(model, x, manifest)
    mask = load_mask(image_path, small.shape[0], cut)
    head_name = "mean of heads" if head is None else f"head {head}"
    return MapView(f"layer {layer}, {head_name}", explain.overlay(small, heat), heat, name,
                   _faithfulness(model, x, heat, target, mask, score))


def rollout_view(model: torch.nn.Module, manifest: dict[str, Any], rgb: np.ndarray, att: np.ndarray,
                 *, discard_ratio: float, head_fusion: str, image_path: Path | None = None,
                 cut: faces.Cut | None = None, score: bool = False) -> MapView:
    x, small = to_input(rgb, manifest)
    grid = rollout(att, discard_ratio=discard_ratio, head_fusion=head_fusion)
    heat = explain.to_heatmap(grid, small.shape[:2])
    target, name = predicted_class(model, x, manifest)
    mask = load_mask(image_path, small.shape[0], cut)
    return MapView(f"rollout ({head_fusion}, discard {discard_ratio:.2f})",
                   explain.overlay(small, heat), heat, name,
                   _faithfulness(model, x, heat, target, mask, score))


def patch_grid(model: torch.nn.Module, manifest: dict[str, Any], rgb: np.ndarray) -> np.ndarray | None:
    """The picture at input size with the ViT's token grid drawn (None for non-patch models)."""
    _, small = to_input(rgb, manifest)
    p = patch_size(model)
    return patch_grid_overlay(small, p) if p else None
