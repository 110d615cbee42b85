"""Small-loss selection (`--forget-rate R`): learn each batch from the pictures whose labels the
model finds most believable, leaving out the fraction R it disagrees with most.

Noisy labels are learnt late: a network fits the clean majority first, so in each batch the
pictures with the highest loss are where most wrong labels are (Han et al. 2018, co-teaching's
single-network form; Jiang et al. 2018). Each step ranks the batch's pictures by their loss
without class weights (label smoothing and mixup as the run has them), keeps the
n - floor(R * n) lowest, and takes the run's own loss (class weights, smoothing, mixup) over those
alone. A `--sam` step's second pass keeps the same pictures; a `--distill` teacher's term still
covers the whole batch (its answers are not the labels in doubt). The first epoch learns from
every picture, so the model has answers of its own before it judges labels (co-teaching ramps
its rate up over the first epochs for the same reason). Train loss is over the kept pictures,
train accuracy over all. Validation and evaluation never select.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from emotion_core.training import mixup


def check(rate: float, recipe: str) -> None:
    """Refuse a rate outside [0, 1), or selection for the probe, which takes no batch steps."""
    if rate and recipe == "probe":
        raise ValueError("--forget-rate leaves pictures out of training steps; the probe fits "
                         "its head on features computed once: drop --forget-rate")
    if not 0 <= rate < 1:
        raise ValueError(f"--forget-rate must be in [0, 1), e.g. 0.1 (0 turns it off); got {rate:g}")


def rate_at(rate: float, epoch: int) -> float:
    """The rate epoch `epoch` (1-based) uses: none in the first, `rate` from the second on."""
    return rate if epoch > 1 else 0.0


def kept_count(n: int, rate: float) -> int:
    """Pictures a batch of n keeps: n - floor(rate * n), at least one."""
    return max(1, n - math.floor(rate * n))


class Selector:
    """Picks a batch's rows to learn from: the lowest-loss `kept_count` of them."""

    def __init__(self, criterion: nn.CrossEntropyLoss, rate: float) -> None:
        check(rate, "finetune")
        self.rate = rate
        # unweighted: class weights would rank every picture of a rare class as less believable
        self.ranking = nn.CrossEntropyLoss(label_smoothing=criterion.label_smoothing,
                                           reduction="none")

    @torch.no_grad()
    def rows(self, logits: torch.Tensor, y: torch.Tensor,
             mix: mixup.Mix | None = None) -> torch.Tensor:
        """Indices (ascending) of the rows to keep, from float logits of the whole batch."""
        losses = self.ranking(logits, y) if mix is None else mix.loss(self.ranking, logits, y)
        keep = kept_count(len(y), self.rate)
        return torch.topk(losses, keep, largest=False).indices.sort().values


def label_loss(criterion: nn.Module, logits: torch.Tensor, y: torch.Tensor,
               mix: mixup.Mix | None, rows: torch.Tensor | None) -> torch.Tensor:
    """The run's loss against the labels (mixed when mixing), over `rows` only when given."""
    if mix is None:
        return criterion(logits, y) if rows is None else criterion(logits[rows], y[rows])
    return mix.loss(criterion, logits, y, rows)
