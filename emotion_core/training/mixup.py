"""mixup (`--mixup ALPHA`, Zhang et al. 2018): train on convex mixtures of pairs of pictures.

Each batch is mixed with a shuffled copy of itself, x = lam * x + (1 - lam) * x[perm], with one
lam ~ Beta(alpha, alpha) per batch (timm's default "batch" mode), and the loss mixes the two
labels' losses with the same weights. Draws come from their own generator, seeded from the run's
seed, the epoch and the rank, so they take nothing from the global random state (a run without
mixup is unchanged) and a run resumed at an epoch boundary draws what it would have drawn.
Validation and evaluation never mix.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def check(alpha: float, recipe: str) -> None:
    """Refuse a negative alpha, or mixing for the probe, which trains on cached features."""
    if alpha and recipe == "probe":
        raise ValueError("--mixup mixes pictures during training steps; the probe fits its head "
                         "on features computed once: drop --mixup")
    if alpha < 0:
        raise ValueError(f"--mixup must be >= 0, e.g. 0.2 (0 turns it off); got {alpha:g}")


@dataclass(frozen=True)
class Mix:
    """One batch's draw: the mixing weight of the batch itself and the partner of each row."""

    lam: float
    perm: torch.Tensor

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(self.lam).add_(x[self.perm], alpha=1.0 - self.lam)

    def loss(self, criterion: nn.Module, logits: torch.Tensor, y: torch.Tensor,
             rows: torch.Tensor | None = None) -> torch.Tensor:
        """lam * the first label's loss + (1 - lam) * the partner's; over `rows` only when given
        (--forget-rate), each row keeping its own partner."""
        partner = y[self.perm]
        if rows is not None:
            logits, y, partner = logits[rows], y[rows], partner[rows]
        return self.lam * criterion(logits, y) + (1.0 - self.lam) * criterion(logits, partner)

    def correct(self, pred: torch.Tensor, y: torch.Tensor) -> float:
        """Right answers counted against both labels with the mixing weights."""
        return (self.lam * float((pred == y).sum())
                + (1.0 - self.lam) * float((pred == y[self.perm]).sum()))


class Mixer:
    """Draws one `Mix` per batch from a generator of its own (seed, epoch, rank)."""

    def __init__(self, alpha: float, *, seed: int, epoch: int, rank: int = 0) -> None:
        if alpha <= 0:
            raise ValueError(f"mixup needs alpha > 0; got {alpha:g}")
        self.alpha = alpha
        self._rng = np.random.default_rng([seed, epoch, rank, 0x6D6978])  # 'mix': its own stream

    def draw(self, n: int, device: torch.device | str = "cpu") -> Mix:
        lam = float(self._rng.beta(self.alpha, self.alpha))
        perm = torch.from_numpy(self._rng.permutation(n)).to(device)
        return Mix(lam, perm)
