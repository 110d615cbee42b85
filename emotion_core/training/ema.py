"""An exponential moving average of the weights (`--ema DECAY`), as timm's ModelEmaV3 keeps one.

The average follows every optimisation step; validation, early stopping and the stored run use
it instead of the raw weights. Batch-norm statistics are averaged too (`use_buffers`, as in
torchvision's classification reference). The decay warms up as min(decay, (1 + n) / (10 + n))
after n updates, so the fresh head's random start does not linger in the average of a short
fine-tune.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def warmed_decay(decay: float, updates: int) -> float:
    """The decay used at update number `updates` (0-based): short at first, `decay` later."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


def _ema_update(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor],
               n_averaged: torch.Tensor) -> None:
        d = warmed_decay(decay, int(n_averaged) - 1)  # n_averaged counts the first copy
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1.0 - d)
        else:  # integer buffers (batch-norm's num_batches_tracked) follow the model
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)
    return update


def check(decay: float, recipe: str) -> None:
    """Refuse a decay outside (0, 1), or an average for the probe, which takes no steps."""
    if decay and recipe == "probe":
        raise ValueError("--ema averages the weights over training steps; the probe fits its "
                         "head in one solve: drop --ema")
    if decay and not 0.0 < decay < 1.0:
        raise ValueError(f"--ema must be in (0, 1), e.g. 0.998 (0 turns it off); got {decay:g}")


def make_ema(model: nn.Module, decay: float, recipe: str = "finetune") -> AveragedModel | None:
    """An averaged copy of `model` updated with `decay` per step, or None when decay is 0."""
    check(decay, recipe)
    if decay == 0:
        return None
    return AveragedModel(model, multi_avg_fn=_ema_update(decay), use_buffers=True)
