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

from emotion_core.config import TrainConfig

PROBE_WARMUP = 2  # untimed steps: CPU kernels and the allocator settle over the first few steps
PROBE_STEPS = 3  # timed steps; the fastest one is the estimate (timing noise only adds time)
PROBE_BATCH = 16  # images per probe step: enough for a stable time, cheap on big models
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


def epochs_within_budget(config: TrainConfig, per_image_s: float, n_train: int, n_val: int,
                         pretrained: bool = False) -> int:
    """How many epochs (at least 1, at most config.epochs) fit config.time_budget_s.

    For a pretrained model the head epochs (frozen backbone, no backbone gradients) cost about a
    forward pass, so they are counted at EVAL_COST of a training step.
    """
    if not config.time_budget_s:
        return config.epochs
    full = per_image_s * (n_train + EVAL_COST * n_val)
    head = per_image_s * EVAL_COST * (n_train + n_val)
    for epochs in range(config.epochs, 0, -1):
        h = budgeted_config(config, epochs).head_epochs if pretrained else 0
        if h * head + (epochs - h) * full <= config.time_budget_s:
            return epochs
    return 1


def batches_within_budget(config: TrainConfig, per_image_s: float, n_train: int, n_val: int) -> int:
    """Batches per epoch when not even one whole epoch fits the budget (0 = the whole epoch).

    Large models on 2 CPU cores (VGG-16, ViT-B/16) need minutes an epoch; the quick profile then
    trains on part of one epoch rather than overrunning the budget several times over.
    """
    if not config.time_budget_s:
        return config.max_batches
    batch_s = per_image_s * config.batch_size
    left = config.time_budget_s - per_image_s * EVAL_COST * n_val
    if batch_s * -(-n_train // config.batch_size) <= left:
        return config.max_batches
    fit = max(1, int(left // max(batch_s, 1e-9)))
    return min(fit, config.max_batches) if config.max_batches else fit


def budgeted_config(config: TrainConfig, epochs: int, max_batches: int | None = None) -> TrainConfig:
    """`config` with `epochs` (about a third kept for the frozen-backbone head phase) and, when
    given, `max_batches` per epoch."""
    if max_batches is not None and max_batches != config.max_batches:
        config = config.override(max_batches=max_batches)
    if epochs >= config.epochs:
        return config
    head = min(config.head_epochs, epochs // 3)
    return config.override(epochs=epochs, head_epochs=head)


def probe_batches(loader: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first PROBE_WARMUP + PROBE_STEPS batches of a loader (use a small batch size: big models are slow)."""
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) >= PROBE_WARMUP + PROBE_STEPS:
            break
    return out
