"""Which layers a CAM can target: the registry's default and one finer layer per resolution.

Why: a CAM is only as sharp as the feature grid it is computed on. At the quick profile's 112 px
the default (last) layer of most CNNs is a 4x4 grid, too coarse to separate a brow from an eye;
earlier stages give 7x7 to 56x56 grids that trade class specificity for resolution. Listing one
layer per resolution lets the CLI, the app and the faithfulness sweep compare them by name.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn

from emotion_core.explain.base import explaining
from emotion_core.models import spec_of


@dataclass(frozen=True)
class CamLayer:
    """A CAM target: module name, its feature grid (h, w) at the probed input size, and whether
    it is the registry's default."""

    name: str
    grid: tuple[int, int]
    default: bool


def _module_names(model: nn.Module) -> dict[int, str]:
    return {id(m): n for n, m in model.named_modules() if n}


def _record_grids(model: nn.Module, default: nn.Module, image_size: int
                  ) -> tuple[list[nn.Module], dict[int, tuple[int, int]]]:
    """Modules in the order they finish (a container after its children) up to the default
    target, and each one's output grid."""
    order: list[nn.Module] = []
    grids: dict[int, tuple[int, int]] = {}
    stop = {"hit": False}

    def hook(mod: nn.Module, _inp: object, out: object) -> None:
        if stop["hit"] or not isinstance(out, torch.Tensor) or out.ndim != 4:
            return
        if out.shape[-1] * out.shape[-2] == 1 and mod is not default:
            return  # squeeze-excitation gates and global pools are channel weights, not grids
        if out.shape[-1] != out.shape[-2] and mod is not default:
            return  # a square input keeps square grids: this is channels-last (ConvNeXt's MLP)
        order.append(mod)
        grids[id(mod)] = tuple(out.shape[-2:])
        if mod is default:
            stop["hit"] = True  # later modules (pooling, head) are no CAM targets

    with explaining(model):  # the app shares models between sessions: one probe at a time
        handles = [m.register_forward_hook(hook) for m in model.modules()]
        try:
            device = next(model.parameters()).device
            with torch.no_grad():
                model(torch.zeros(1, 3, image_size, image_size, device=device))
        finally:
            for h in handles:
                h.remove()
    return order, grids


def _stage_pool(model: nn.Module, default: nn.Module, grids: dict[int, tuple[int, int]]) -> set[int]:
    """Block-level modules that can stand for a stage: the children of the default target's
    ancestors, with containers that span several stages (more than two grids: `features`,
    `blocks`) opened up. A single block that downsamples inside (two grids) is kept whole."""
    parents = {id(c): m for m in model.modules() for c in m.children()}
    ancestors, node = [], default
    while id(node) in parents:
        node = parents[id(node)]
        ancestors.append(node)
    pool = [c for a in ancestors for c in a.children() if all(c is not b for b in ancestors)]
    out: set[int] = set()
    while pool:
        mod = pool.pop()
        inner = {grids[id(m)] for m in mod.modules() if id(m) in grids}
        if len(inner) > 2 and mod is not default:
            pool.extend(mod.children())
        elif id(mod) in grids:
            out.add(id(mod))
    return out


def cam_layer_choices(model: nn.Module, image_size: int) -> list[CamLayer]:
    """The default target plus, for CNNs, the block that ends each finer resolution before it
    (forward order, finest first). ViTs keep one token grid at every depth, so they offer only
    their default (their finer view is the attention map). Probed once per model and size."""
    known = _CHOICES.setdefault(model, {})
    if image_size not in known:
        known[image_size] = _probe_choices(model, image_size)
    return list(known[image_size])


_CHOICES: weakref.WeakKeyDictionary[nn.Module, dict[int, list[CamLayer]]] = weakref.WeakKeyDictionary()


def _probe_choices(model: nn.Module, image_size: int) -> list[CamLayer]:
    spec = spec_of(model)
    default = spec.cam_target(model)
    names = _module_names(model)
    if spec.family != "cnn":
        patch = spec.patch_size(model) if spec.patch_size else None
        side = image_size // patch if patch else 0
        return [CamLayer(names.get(id(default), "default"), (side, side), True)]
    order, grids = _record_grids(model, default, image_size)
    pool = _stage_pool(model, default, grids)
    last_at: dict[tuple[int, int], nn.Module] = {}
    for mod in order:
        if id(mod) in pool:
            last_at.pop(grids[id(mod)], None)  # keep the dict in finishing order
            last_at[grids[id(mod)]] = mod
    default_grid = grids.get(id(default), (0, 0))
    out = [CamLayer(names[id(m)], g, False) for g, m in last_at.items() if g != default_grid]
    out.append(CamLayer(names[id(default)], default_grid, True))
    return out


def resolve_cam_layer(model: nn.Module, layer: str | None) -> list[nn.Module]:
    """The target modules for `layer` (a module name; None = the registry's default)."""
    if layer is None:
        return [spec_of(model).cam_target(model)]
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        size = 64
        choices = ", ".join(c.name for c in cam_layer_choices(model, size))
        raise ValueError(f"model '{spec_of(model).name}' has no layer '{layer}' "
                         f"(CAM layers, one per resolution: {choices})")
    return [modules[layer]]
