"""The schedule a run trains: its phases, learning-rate shape, and epochs within a compute budget.

Why a FLOP budget and not a time budget: a benchmark command must train the same schedule, and
with a seed the same numbers, on an idle or a busy machine. Planning against wall time (timing a
few steps, then fitting epochs to seconds) gave MobileNetV2 8 epochs on an idle 2-core CPU and 6
while another job ran. A model's forward FLOPs at the training size are a property of the
architecture, so a plan here depends only on (model, image size, dataset size, config). Wall time
is measured and recorded (history.csv, manifest timings), never planned with.

The cost model, per image at the training size, with F the forward FLOPs (torch's FlopCounterMode,
2 per multiply-add):
    training step     TRAIN_STEP x F   forward + backward (the backward costs about two forwards)
    head-only step    HEAD_STEP x F    the frozen backbone runs forward only; the head is tiny
    validation pass   EVAL_PASS x F    every epoch scores the val subset
Sharpness-aware steps (--sam) run each training step's passes twice (sam.PASSES).

Rather than stopping when the budget runs out (which would cut the schedule at a high learning
rate), the plan has only as many epochs as fit, so warm-up and cosine decay complete.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from emotion_core.evaluation import cost
from emotion_core.training import sam
from emotion_core.training.config import TrainConfig

TRAIN_STEP = 3.0  # FLOPs of a training step per image, in forward passes
HEAD_STEP = 1.0  # a head-only step (backbone frozen): one forward pass
EVAL_PASS = 1.0  # a validation image: one forward pass


@dataclass(frozen=True)
class Phase:
    name: str  # "train" (from scratch), "head" (backbone frozen) or "finetune" (all unfrozen)
    epochs: int
    lr: float


@dataclass(frozen=True)
class Plan:
    """The epochs and batches a run trains, fixed before its first step (a resumed run keeps it)."""

    epochs: int
    head_epochs: int
    max_batches: int = 0  # per epoch and process; 0 = whole epochs
    forward_flops: int | None = None  # per image at the training size (None: not counted)
    budget_flops: float = 0.0  # the budget it was planned against (0 = none)
    planned_flops: float | None = None  # what this plan costs by the cost model above

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(**d)

    def apply(self, config: TrainConfig) -> TrainConfig:
        """`config` with this plan's epochs, head epochs and batch cap."""
        return config.override(epochs=self.epochs, head_epochs=self.head_epochs,
                               max_batches=self.max_batches)


def plan_phases(config: TrainConfig, pretrained_used: bool, finetune_lr_scale: float = 1.0
                ) -> list[Phase]:
    """The study's recipe for pretrained backbones, a single phase otherwise. The backbone's
    rate is the profile's finetune_lr times the model's `finetune_lr_scale` (registry)."""
    finetune_lr = config.finetune_lr * finetune_lr_scale
    if pretrained_used and config.head_epochs > 0:
        if config.epochs <= config.head_epochs:  # head-only epochs: the backbone stays frozen
            return [Phase("head", config.epochs, config.lr)]
        return [Phase("head", config.head_epochs, config.lr),
                Phase("finetune", config.epochs - config.head_epochs, finetune_lr)]
    lr = finetune_lr if pretrained_used else config.lr
    return [Phase("train", config.epochs, lr)]


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """LR multiplier: linear warm-up to 1, then cosine decay to `min_ratio`."""
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def steps_per_epoch(n_shard: int, batch_size: int, drop_last: bool, max_batches: int) -> int:
    """Optimisation steps one process takes in an epoch over `n_shard` images."""
    steps = n_shard // batch_size if drop_last else -(-n_shard // batch_size)
    return min(steps, max_batches) if max_batches else steps


def forward_flops(model: nn.Module, image_size: int) -> int:
    """Forward FLOPs of one image at `image_size` (counted, not timed: the same on any machine)."""
    return cost.count_flops(model, image_size)


def plan_cost(plan: Plan, forward: float, n_train: int, n_val: int, pretrained: bool,
              passes: int = 1) -> float:
    """FLOPs of `plan` by the cost model: head epochs, full epochs, a validation pass each;
    `passes` per training step (2 with --sam)."""
    head = plan.head_epochs if pretrained and plan.head_epochs < plan.epochs else 0
    if pretrained and plan.head_epochs >= plan.epochs:
        head = plan.epochs  # a linear probe: every epoch is head-only
    full = plan.epochs - head
    val = EVAL_PASS * n_val * plan.epochs
    return forward * (passes * (HEAD_STEP * n_train * head + TRAIN_STEP * n_train * full) + val)


def plan_schedule(config: TrainConfig, *, forward: int | None, n_train: int, n_val: int,
                  pretrained: bool, world_size: int = 1) -> Plan:
    """The longest schedule of `config` that fits config.budget_tflop (all of it without a budget).

    Fewer epochs first (about a third of them head-only for a pretrained model); a linear probe of
    the frozen backbone for a pretrained model with no room to fine-tune; part of one epoch when not
    even one fits. `n_train` counts every process's images: the plan does not depend on how many
    processes share the work.
    """
    if not pretrained:  # from scratch there is no head-only phase (plan_phases)
        config = config.override(head_epochs=0)
    passes = sam.passes(config.sam)
    base = Plan(config.epochs, config.head_epochs, config.max_batches, forward)
    if config.max_batches:  # only this many batches of every epoch are trained
        n_train = min(n_train, config.max_batches * config.batch_size * world_size)
    if not config.budget_tflop or forward is None:
        return _costed(base, forward, n_train, n_val, pretrained, passes)
    budget = config.budget_tflop * 1e12

    def fits(plan: Plan) -> bool:
        return plan_cost(plan, forward, n_train, n_val, pretrained, passes) <= budget

    for epochs in range(config.epochs, 0, -1):
        head = config.head_epochs if epochs == config.epochs else min(config.head_epochs, epochs // 3)
        cut = Plan(epochs, head, config.max_batches, forward, budget)
        if fits(cut):
            if pretrained and config.head_epochs and head == 0 and epochs < config.epochs:
                break  # too short to fine-tune well from a head trained in no time: probe instead
            return _costed(cut, forward, n_train, n_val, pretrained, passes)
    if pretrained and config.head_epochs:
        per_epoch = forward * (passes * HEAD_STEP * n_train + EVAL_PASS * n_val)
        n = max(1, min(config.epochs, int(budget // per_epoch)))
        return _costed(Plan(n, n, config.max_batches, forward, budget), forward, n_train, n_val,
                       pretrained, passes)
    per_batch = forward * passes * TRAIN_STEP * config.batch_size * world_size
    room = int((budget - forward * EVAL_PASS * n_val) // per_batch)
    batches = max(1, min(room, config.max_batches or room))
    part = Plan(1, 0, batches, forward, budget)
    n_part = min(n_train, batches * config.batch_size * world_size)
    return _costed(part, forward, n_part, n_val, pretrained, passes)


def _costed(plan: Plan, forward: int | None, n_train: int, n_val: int, pretrained: bool,
            passes: int = 1) -> Plan:
    if forward is None:
        return plan
    spent = plan_cost(plan, forward, n_train, n_val, pretrained, passes)
    return Plan(plan.epochs, plan.head_epochs, plan.max_batches, forward, plan.budget_flops, spent)
