"""What a model costs: parameters, forward FLOPs and CPU latency at batch 1."""
from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_flops(model: nn.Module, image_size: int) -> int:
    """Forward FLOPs at batch 1 (torch's FlopCounterMode counts 2 per multiply-add)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, image_size, image_size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def measure_latency(model: nn.Module, image_size: int, *, warmup: int = 3, repeats: int = 10) -> float:
    """Median CPU milliseconds for one image (batch 1), after warm-up, on a CPU copy."""
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    x = torch.randn(1, 3, image_size, image_size)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            cpu_model(x)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000.0)
    return float(statistics.median(times))
