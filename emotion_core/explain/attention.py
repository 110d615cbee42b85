"""ViT patch attention: per-layer/head attention maps, attention rollout and the token grid.

These read attention probabilities, not gradients, and apply to the registry's ViTs (family "vit").
Probabilities come from forward hooks on the named softmax modules `models.attention_modules`
lists (the from-scratch ViT's `attend`, and the `attend` that `models.builders.hookable_attention`
routes transformers' attention through, so SDPA's fused kernels never hide them). Hooks are
removed in a `finally`; the model's modes are restored.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from emotion_core.explain.base import (
    HEAD_FUSIONS,
    NotApplicableError,
    batch_of,
    explaining,
    to_model_device,
)
from emotion_core.models import attention_modules, spec_of


def attention_batch(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Attention probabilities of every layer: tensor [N, layers, heads, T, T]."""
    mods = attention_modules(model)
    if not mods:
        raise NotApplicableError(f"model '{spec_of(model).name}' has no attention layers to read")
    x = to_model_device(model, batch_of(x))
    captured: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda mod, i, o: captured.append(o.detach())) for m in mods]
    try:
        with explaining(model), torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return torch.stack([c.float().cpu() for c in captured], dim=1)


def attention_maps(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """One image's attention: [layers, heads, T, T] (rows sum to 1, token 0 = CLS)."""
    return attention_batch(model, batch_of(x)[:1])[0].numpy()


def _prefix_tokens(t: int, prefix: int | None) -> int:
    return t - math.isqrt(t - 1) ** 2 if prefix is None else prefix


def _to_grid(row: np.ndarray) -> np.ndarray:
    side = math.isqrt(row.shape[-1])
    if side * side != row.shape[-1]:
        raise ValueError(f"{row.shape[-1]} patch tokens do not form a square grid")
    return row.reshape(*row.shape[:-1], side, side)


def cls_attention(att: np.ndarray, layer: int = -1, head: int | None = None, *,
                  prefix_tokens: int | None = None) -> np.ndarray:
    """CLS-to-patch attention of one layer and head (None = mean of heads) as a [g, g] grid."""
    att = np.asarray(att)
    n_layers, n_heads, t, _ = att.shape
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"layer {layer} out of range: the model has {n_layers} layers")
    if head is not None and not -n_heads <= head < n_heads:
        raise ValueError(f"head {head} out of range: the model has {n_heads} heads")
    a = att[layer].mean(axis=0) if head is None else att[layer, head]
    return _to_grid(a[0, _prefix_tokens(t, prefix_tokens):])


def rollout(att: np.ndarray | torch.Tensor, discard_ratio: float = 0.9, head_fusion: str = "mean",
            *, prefix_tokens: int | None = None) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) of [layers, heads, T, T] (or batched [N, ...]).

    Per layer: fuse heads, zero the `discard_ratio` lowest entries (never CLS->CLS), add the
    identity for the residual path, renormalise rows, and multiply through the layers. Returns
    the CLS row over the patches as a [g, g] grid (or [N, g, g]).
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError("discard_ratio must be in [0, 1)")
    a = torch.tensor(np.asarray(att), dtype=torch.float64)  # a copy: the input stays untouched
    single = a.ndim == 4
    a = a.unsqueeze(0) if single else a
    n, _, _, t, _ = a.shape
    eye = torch.eye(t, dtype=a.dtype)
    result = eye.expand(n, t, t).clone()
    for layer in range(a.shape[1]):
        heads = a[:, layer]
        fused = {"mean": heads.mean(1), "max": heads.amax(1), "min": heads.amin(1)}[head_fusion]
        flat = fused.reshape(n, -1).clone()
        k = int(flat.shape[-1] * discard_ratio)
        if k:
            idx = flat.topk(k, dim=-1, largest=False).indices
            keep = flat[:, 0].clone()
            flat.scatter_(1, idx, 0.0)
            flat[:, 0] = keep
        m = (flat.reshape(n, t, t) + eye) / 2
        m = m / m.sum(dim=-1, keepdim=True)
        result = m @ result
    grid = _to_grid(result[:, 0, _prefix_tokens(t, prefix_tokens):].numpy().astype(np.float32))
    return grid[0] if single else grid


def patch_grid_overlay(rgb: np.ndarray, patch: int, color: tuple[int, int, int] = (255, 255, 255),
                       ) -> np.ndarray:
    """Draw the token grid; pixels no patch covers (the model drops them) are darkened."""
    if patch < 1:
        raise ValueError("patch must be a positive number of pixels")
    out = np.array(rgb, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    gh, gw = (h // patch) * patch, (w // patch) * patch
    uncovered = np.ones((h, w), bool)
    uncovered[:gh, :gw] = False
    out[uncovered] //= 3
    for y in range(0, gh + 1, patch):
        out[min(y, h - 1), :gw] = color
    for x in range(0, gw + 1, patch):
        out[:gh, min(x, w - 1)] = color
    return out
