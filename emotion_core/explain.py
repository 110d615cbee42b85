"""Interpretability engine: feature maps, Grad-CAM family, ViT attention maps and rollout.

Why one module: the app, the scripts and the tests must show the same maps. Every function takes
a model and a normalised input batch; per-model knowledge comes only from the registry's
`ModelSpec` (`cam_target`, `reshape_transform`, `has_attention`). Nothing here leaves a hook on a
model: every hook is removed in a `finally`, and pytorch-grad-cam is always used in its `with`
form, because the app shares one cached model between sessions (a per-model lock serialises them).

Maps returned to callers are float arrays in [0, 1] at the input's size; `overlay` turns them
into uint8 RGB with an OpenCV colormap.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from emotion_core.attention import (  # noqa: F401
    attention_batch,
    attention_maps,
    cls_attention,
    patch_grid_overlay,
    patch_size,
    rollout,
)
from emotion_core.cam_layers import CamLayer, cam_layer_choices, resolve_cam_layer  # noqa: F401
from emotion_core.explain_base import (  # noqa: F401
    HEAD_FUSIONS,
    LogitsModel,
    NotApplicableError,
    batch_of,
    colorize,
    explaining,
    logits_of,
    overlay,
    resolve_device,
    to_heatmap,
    to_model_device,
)

# LayerCAM weighs each position by its own positive gradient, so it stays sharp on the finer
# layers of cam_layers.cam_layer_choices (Jiang et al., 2021)
CAM_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "eigencam", "scorecam")
ATTENTION_METHODS = ("attention", "rollout")
ALL_METHODS = (*CAM_METHODS, *ATTENTION_METHODS, "featuremap")
SCORECAM_MAX_BATCH = 4  # ScoreCAM runs one forward pass per channel and image: keep batches tiny
SCORECAM_CHUNK = 64  # masked copies per forward pass inside ScoreCAM


# ---------------------------------------------------------------------------------------------
# Feature maps


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


# ---------------------------------------------------------------------------------------------
# Grad-CAM family


def cam_methods(spec: Any) -> list[str]:
    """CAM methods that apply to a registry model (all of them, given a CAM target layer)."""
    return list(CAM_METHODS) if getattr(spec, "cam_target", None) is not None else []


def methods_for(spec: Any) -> list[str]:
    """Every explanation this module can produce for a registry model."""
    extra = list(ATTENTION_METHODS) if getattr(spec, "has_attention", False) else []
    return [*cam_methods(spec), *extra, "featuremap"]


def tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
    """Fallback reshape for ViTs: drop the CLS/register prefix, fold patches to (N, C, g, g)."""
    if tokens.ndim == 4:
        return tokens
    t = tokens.shape[1]
    side = math.isqrt(t - 1)
    prefix = t - side * side
    return tokens[:, prefix:].reshape(tokens.shape[0], side, side, -1).permute(0, 3, 1, 2)


def eigen_projection(activations: np.ndarray) -> np.ndarray:
    """EigenCAM's map [N, H, W]: each image's centred activations projected on their first
    principal component, as pytorch-grad-cam's `get_2d_projection`, with its sign fixed.

    Why our own: the library's SVD uses full_matrices=True, which builds an (H*W) x (H*W) matrix
    nobody reads: 10 GB for a 224x224 feature grid (VGG-16's first block at 224 px), enough to
    kill the app's process. The thin SVD has the same first right-singular vector.
    Why the sign: SVD leaves a component's sign arbitrary, and LAPACK builds differ, so the
    library can show the negative of the map, whose positive part (all a CAM keeps) is then the
    background (jacobgil/pytorch-grad-cam#315). Each map is oriented so that its largest-magnitude
    location is positive, as sklearn's svd_flip does.
    """
    batch = np.array(activations, dtype=np.float32)
    batch[np.isnan(batch)] = 0
    out = []
    for act in batch:
        flat = act.reshape(act.shape[0], -1).T
        flat = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(flat, full_matrices=False)
        proj = flat @ vt[0]
        if proj[np.argmax(np.abs(proj))] < 0:
            proj = -proj
        out.append(proj.reshape(act.shape[1:]))
    return np.asarray(out, dtype=np.float32)


@lru_cache(maxsize=1)
def _thin_eigen_cam() -> type:
    from pytorch_grad_cam import EigenCAM

    class ThinEigenCAM(EigenCAM):
        """EigenCAM with `eigen_projection` (bounded memory on fine feature grids)."""

        def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads,
                          eigen_smooth):
            return eigen_projection(activations)

    return ThinEigenCAM


def _cam_class(method: str) -> type:
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM

    classes = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM,
               "layercam": LayerCAM, "eigencam": _thin_eigen_cam(), "scorecam": ScoreCAM}
    if method not in classes:
        raise ValueError(f"unknown CAM method '{method}'; choose one of {', '.join(CAM_METHODS)}")
    return classes[method]


def compute_cams(model: nn.Module, spec: Any, x: torch.Tensor, *, method: str = "gradcam",
                 target: int | Sequence[int] | None = None, layer: str | None = None) -> np.ndarray:
    """CAM maps [N, H, W] in [0, 1] for a batch; target = class id(s), None = predicted class.

    `layer`: a module name to target (see cam_layers.cam_layer_choices), None = the registry's.

    Parameters are frozen for the pass (gradients are needed only w.r.t. activations, which also
    makes it faster) and restored after; the input gets requires_grad so activations always
    carry gradients, even for a model whose parameters are frozen.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_cls = _cam_class(method)
    if not cam_methods(spec):
        raise NotApplicableError(f"model '{getattr(spec, 'name', '?')}' has no CAM target layer")
    x = to_model_device(model, batch_of(x))
    if method == "scorecam" and x.shape[0] > SCORECAM_MAX_BATCH:
        raise ValueError(f"scorecam runs one forward pass per channel: use at most "
                         f"{SCORECAM_MAX_BATCH} images per call (got {x.shape[0]})")
    layers = resolve_cam_layer(model, spec, layer)
    reshape = spec.reshape_transform
    if reshape is None and getattr(spec, "family", "cnn") == "vit":
        reshape = tokens_to_grid
    targets = None
    if target is not None:
        ids = [int(target)] * x.shape[0] if np.isscalar(target) else [int(t) for t in target]
        if len(ids) != x.shape[0] or min(ids) < 0:
            raise ValueError(f"need one non-negative class id per image ({x.shape[0]}), got {ids}")
        targets = [ClassifierOutputTarget(t) for t in ids]
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    with explaining(model), torch.inference_mode(False), torch.enable_grad():
        try:
            for p in params:
                p.requires_grad_(False)
            inp = x.detach().clone().requires_grad_(True)
            grayscale = None
            with cam_cls(model=LogitsModel(model), target_layers=layers,
                         reshape_transform=reshape) as cam:
                if method == "scorecam":
                    cam.batch_size = SCORECAM_CHUNK
                grayscale = cam(input_tensor=inp, targets=targets)
            if grayscale is None:  # the library's __exit__ swallows IndexError
                raise RuntimeError(f"{method} failed on '{getattr(spec, 'name', '?')}' "
                                   "(index error inside pytorch-grad-cam: is the target class in range?)")
        finally:
            for p, f in zip(params, flags, strict=True):
                p.requires_grad_(f)
    size = tuple(x.shape[-2:])
    return np.stack([to_heatmap(g, size) for g in np.asarray(grayscale)])


def compute_cam(model: nn.Module, spec: Any, x: torch.Tensor, *, method: str = "gradcam",
                target: int | None = None, layer: str | None = None) -> np.ndarray:
    """One image's CAM map, HxW float in [0, 1] at the input size."""
    return compute_cams(model, spec, batch_of(x)[:1], method=method, target=target, layer=layer)[0]


# ---------------------------------------------------------------------------------------------
# One entry point for the CLI and the app


@dataclass
class Explanation:
    """A rendered explanation of one image."""

    method: str
    image: np.ndarray  # uint8 RGB picture to show or save (overlay, or the feature-map grid)
    heat: np.ndarray | None  # [H, W] float32 in [0, 1] at the model's input size (None: featuremap)
    target: int  # class explained (the predicted one unless chosen)
    probs: np.ndarray  # the model's class probabilities for the image
    info: dict[str, Any]  # layer / head / channels / fusion used


def prepare_image(rgb: np.ndarray, image_size: int, mean: Sequence[float], std: Sequence[float]
                  ) -> tuple[torch.Tensor, np.ndarray]:
    """The model's view of an RGB uint8 image, exactly as training saw it: (1,3,S,S) + uint8 view."""
    from emotion_core.transforms import model_input

    return model_input(rgb, image_size, mean, std)


def explain_image(model: nn.Module, spec: Any, x: torch.Tensor, view: np.ndarray, method: str, *,
            layer: str | int | None = None, head: int | None = None, target: int | None = None,
            discard_ratio: float = 0.9, head_fusion: str = "mean", top_k: int = 16,
            alpha: float = 0.5) -> Explanation:
    """Compute `method` for image x[0] and render it over `view` (its uint8 RGB at input size).

    `layer`: a conv layer name for featuremap, a module name for CAMs (default: the registry's
    target), a block index for attention (default: last).
    `head`: attention head (default: mean of heads). Raises NotApplicableError for a method the
    model does not support and ValueError for a bad layer, head or class.
    """
    name = getattr(spec, "name", "?")
    if method not in ALL_METHODS:
        raise ValueError(f"unknown method '{method}'; choose one of {', '.join(ALL_METHODS)}")
    if method not in methods_for(spec):
        raise NotApplicableError(f"method '{method}' does not apply to model '{name}' "
                                 f"(it supports {', '.join(methods_for(spec))})")
    x = to_model_device(model, batch_of(x)[:1])
    with explaining(model), torch.no_grad():
        probs = torch.softmax(logits_of(model(x)).float(), dim=-1)[0].cpu().numpy()
    if target is not None and not 0 <= int(target) < probs.shape[0]:
        raise ValueError(f"class index {target} out of range: the model has {probs.shape[0]} classes")
    cls = int(probs.argmax()) if target is None else int(target)
    size = tuple(x.shape[-2:])
    info: dict[str, Any] = {}
    if method in CAM_METHODS:
        heat = compute_cam(model, spec, x, method=method, target=cls,
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


def time_explanations(model_names: Sequence[str] | None = None, *, image_size: int | None = None,
                      methods: Sequence[str] | None = None, repeats: int = 3, tiny: bool = False,
                      progress: bool = True) -> list[dict[str, Any]]:
    """Seconds per map (median of `repeats` after one warm-up) per registry model and method.

    Defaults: every registry model at the quick profile's input size, every applicable method
    except scorecam (one forward pass per channel: name it in `methods` to time it).
    For `python -m scripts.benchmark`; the issue's target is <= 1 s per map on 2 CPU cores.
    """
    import time

    from tqdm import tqdm

    from emotion_core import models
    from emotion_core.config import PROFILES

    size = int(image_size or PROFILES["quick"].image_size)
    names = list(model_names or models.REGISTRY)
    rows: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(0)
    for name in tqdm(names, desc="explain timing", disable=not progress):
        spec = models.get_spec(name)
        model, _ = models.build_model(name, 3, pretrained=False, image_size=size, tiny=tiny)
        x = torch.randn(1, 3, size, size, generator=gen)
        view = np.zeros((size, size, 3), np.uint8)
        wanted = [m for m in methods_for(spec) if m != "scorecam"] if methods is None else methods
        for method in wanted:
            row: dict[str, Any] = {"model": name, "method": method, "image_size": size}
            if method not in methods_for(spec):
                rows.append({**row, "seconds": float("nan"), "error": "not applicable"})
                continue
            try:
                times = []
                for _ in range(repeats + 1):
                    t0 = time.perf_counter()
                    explain_image(model, spec, x, view, method)
                    times.append(time.perf_counter() - t0)
                rows.append({**row, "seconds": float(np.median(times[1:])), "error": ""})
            except Exception as exc:  # a benchmark reports failures rather than stopping
                rows.append({**row, "seconds": float("nan"), "error": f"{type(exc).__name__}: {exc}"})
    return rows
