"""Multi-process data parallelism under `torchrun` (or any launcher that sets RANK/WORLD_SIZE).

Single-process runs never touch torch.distributed: every helper degrades to a no-op, so the one
training loop is the same code with or without data parallelism.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the process group described by the launcher's env vars (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def device_for(info: DistInfo) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", info.local_rank if info.enabled else torch.cuda.current_device())
    return torch.device("cpu")


def shard_indices(indices: np.ndarray, info: DistInfo, *, epoch: int, seed: int,
                  shuffle: bool = True) -> np.ndarray:
    """DistributedSampler semantics over cache indices: same permutation on every rank (seeded by
    seed+epoch), padded by wrapping so every rank gets the same number, then every world_size-th."""
    indices = np.asarray(indices)
    if not info.enabled:
        return indices
    order = indices
    if shuffle:
        order = indices[np.random.default_rng(seed + epoch).permutation(len(indices))]
    per_rank = -(-len(order) // info.world_size)
    total = per_rank * info.world_size
    if total > len(order):
        order = np.concatenate([order, order[: total - len(order)]])
    return order[info.rank:total:info.world_size]


def all_reduce_sums(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum a few scalars over ranks (train loss/accuracy bookkeeping)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_floats(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Rank 0's values on every rank (validation metrics and the stop decision)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return t.tolist()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group. A DistributedDataParallel wrapper can sit in a reference cycle
    (measured: a fresh process's does), so a finished phase's wrapper (its reducer holds the
    group and gradient buckets) can outlive its last reference until a garbage collection:
    collect now, while the group and the interpreter are alive, rather than leave it to
    interpreter shutdown, where freeing a gloo group's work is known to abort the process
    (pytorch/pytorch#179291)."""
    if info.enabled and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def broadcast_str(value: str, info: DistInfo) -> str:
    """Rank 0's string on every rank (the run id, so all ranks agree on it)."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])
