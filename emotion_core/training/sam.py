"""Sharpness-aware minimisation (`--sam RHO`, Foret et al. 2021): seek weights whose whole
neighbourhood has a low loss, not just a sharp low point, which is said to generalise better,
above all with noisy labels.

Each step computes the gradient g at the weights w, moves to w + RHO * g / ||g|| (the worst
nearby point to first order, `ascend`), computes the gradient there on the same batch, returns
to w (`descend`) and lets the optimizer step with that second gradient. So a step costs two
forward and backward passes (`PASSES`, which the FLOP planner counts). Batch-norm running
statistics are left alone during the second pass (`norm_stats_frozen`, as in the authors'
PyTorch port), so the stored statistics are those of the unperturbed weights. The norm is taken
over every trainable parameter together; the optimizer (AdamW, its weight decay) is unchanged.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

PASSES = 2  # forward + backward passes per training step with SAM on


def check(rho: float, recipe: str) -> None:
    """Refuse a negative radius, or SAM for the probe, which takes no gradient steps."""
    if rho and recipe == "probe":
        raise ValueError("--sam changes each gradient step; the probe fits its head in one "
                         "solve: drop --sam")
    if rho < 0:
        raise ValueError(f"--sam must be >= 0, e.g. 0.05 (0 turns it off); got {rho:g}")


def passes(rho: float) -> int:
    """Forward + backward passes per training step: PASSES with SAM, 1 without."""
    return PASSES if rho else 1


@torch.no_grad()
def ascend(params: list[nn.Parameter], rho: float) -> list[torch.Tensor | None]:
    """Move each parameter by rho * grad / ||grad|| (norm over all of them); the moves made."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return [None] * len(params)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = rho / (norm + 1e-12)
    moves: list[torch.Tensor | None] = []
    for p in params:
        if p.grad is None:
            moves.append(None)
            continue
        move = p.grad * scale
        p.add_(move)
        moves.append(move)
    return moves


@torch.no_grad()
def descend(params: list[nn.Parameter], moves: list[torch.Tensor | None]) -> None:
    """Undo `ascend`: each parameter back where it was (its gradient is left as it is)."""
    for p, move in zip(params, moves, strict=True):
        if move is not None:
            p.sub_(move)


@contextmanager
def norm_stats_frozen(model: nn.Module) -> Iterator[None]:
    """Batch norm normalises with the batch as usual but leaves its running statistics alone."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    kept = [(m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None
             else None) for m in norms]
    try:
        for m in norms:
            m.momentum = 0.0
        yield
    finally:
        for m, momentum, tracked in kept:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)
