"""Fit a training schedule to a time budget, so the quick profile trains every model in minutes.

Cutting training off when the clock runs out would stop mid-schedule at a high learning rate.
Instead we time a few real training steps first and plan only as many epochs as fit, so the
warm-up and cosine decay complete inside the budget. `TrainConfig.time_budget_s` still stops a
run that overruns its estimate (emotion_core/train.py).
"""
from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn

from emotion_core.training.config import TrainConfig

PROBE_WARMUP = 1  # untimed steps: the first pays for allocations and kernel selection
PROBE_STEPS = 2  # timed steps; the fastest one is the estimate (timing noise only adds time)
# The probe runs at the training batch size: on CPU a step of 16 images costs about twice as
# much per image as one of 48, which made smaller probes plan half the epochs that fit.
EVAL_COST = 1 / 3  # an evaluation forward pass costs about a third of a training step per image


def seconds_per_image(model: nn.Module, criterion: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
                      device: torch.device, *, amp: bool = False, channels_last: bool = False) -> float:
    """Median wall time of one training step per image (forward, backward, AdamW update); the
    model's weights and statistics are left unchanged."""
    params = [p for p in model.parameters() if p.requires_grad]
    # lr=0 moves nothing, but AdamW still reads and writes every moment: on big layers (VGG-16's
    # 103 M-parameter classifier) the update costs as much as the backward pass.
    optimizer = torch.optim.AdamW(params, lr=0.0, weight_decay=0.0)
    snapshot = copy.deepcopy(model.state_dict())  # batch-norm statistics move in train mode
    rng = torch.get_rng_state()  # dropout draws must not shift the seeded run that follows
    was_training = model.training
    model.train()
    warmup = min(PROBE_WARMUP, len(batches) - 1)  # tiny datasets: time what there is
    times = []
    try:
        for i, (x, y) in enumerate(batches):
            t0 = time.perf_counter()
            x, y = x.to(device), y.to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = criterion(model(x).float(), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:  # the first steps pay one-off costs (allocations, kernel choice)
                times.append((time.perf_counter() - t0) / len(y))
    finally:
        model.load_state_dict(snapshot)
        torch.set_rng_state(rng)
        model.train(was_training)
    if not times:
        raise ValueError("need at least one batch to time a training step")
    return min(times)


def plan_within_budget(config: TrainConfig, per_image_s: float, n_train: int, n_val: int,
                       pretrained: bool = False) -> TrainConfig:
    """`config` cut to what fits config.time_budget_s: fewer epochs (about a third of them for the
    frozen-backbone head phase of a pretrained model), a linear probe (head only) for a pretrained
    model with no room for head + fine-tune, or part of one epoch when not even one fits.

    Head epochs compute no backbone gradients, so they are counted at EVAL_COST of a training step.
    """
    if not config.time_budget_s:
        return config
    budget_s = config.time_budget_s
    full = per_image_s * (n_train + EVAL_COST * n_val)
    head = per_image_s * EVAL_COST * (n_train + n_val)
    for epochs in range(config.epochs, 0, -1):
        cut = _with_epochs(config, epochs)
        h = cut.head_epochs if pretrained else 0
        if h * head + (epochs - h) * full <= budget_s:
            if pretrained and config.head_epochs and h == 0 and epochs < config.epochs:
                break  # too short to fine-tune well from a head trained in no time: probe instead
            return cut
    if pretrained and config.head_epochs:
        n = max(1, min(config.epochs, int(budget_s // max(head, 1e-9))))
        return config.override(epochs=n, head_epochs=n)
    batch_s = per_image_s * config.batch_size
    fit = max(1, int((budget_s - per_image_s * EVAL_COST * n_val) // max(batch_s, 1e-9)))
    return config.override(epochs=1, max_batches=min(fit, config.max_batches or fit))


def _with_epochs(config: TrainConfig, epochs: int) -> TrainConfig:
    if epochs >= config.epochs:
        return config
    return config.override(epochs=epochs, head_epochs=min(config.head_epochs, epochs // 3))


def probe_batches(loader: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first PROBE_WARMUP + PROBE_STEPS batches of a loader."""
    out = []
    for batch in loader:
        if len(batch[1]) < 2:  # a one-image remainder: batch norm cannot train on it
            continue
        out.append(batch)
        if len(out) >= PROBE_WARMUP + PROBE_STEPS:
            break
    return out
