"""Before a run's first epoch: where it computes, its data split, loss, checkpoint and plan.

Small functions `loop.fit` calls in order; each takes what it needs as arguments.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emotion_core import data, models
from emotion_core.data.cache import DecodedCache, build_cache
from emotion_core.data.prepare import PreparedDataset
from emotion_core.training import checkpoint, distributed, planner, sampling
from emotion_core.training.config import TrainConfig
from emotion_core.training.distributed import DistInfo
from emotion_core.training.planner import Plan


@dataclass(frozen=True)
class Runtime:
    """Where and how this process computes: its rank, device and precision."""

    info: DistInfo
    device: torch.device
    amp: bool  # bf16 autocast (CUDA only)
    channels_last: bool  # channels_last memory format (CUDA only)
    show: bool  # console output (rank 0, when asked)

    @classmethod
    def create(cls, config: TrainConfig, progress: bool) -> Runtime:
        info = distributed.init_distributed()
        device = distributed.device_for(info)
        cuda = device.type == "cuda"
        return cls(info, device, config.amp and cuda, config.channels_last and cuda,
                   progress and info.is_main)

    @property
    def aug_device(self) -> torch.device | None:
        return self.device if self.device.type == "cuda" else None  # GPU augments; CPU stays free


@dataclass(frozen=True)
class Split:
    """The decode-once cache, its train/val rows and the model's normalisation."""

    cache: DecodedCache
    train: np.ndarray
    val: np.ndarray
    mean: list[float]
    std: list[float]
    sources: np.ndarray | None = None  # the set each cache row came from (several sets), else None

    @property
    def classes(self) -> list[str]:
        return list(self.cache.classes)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_split(ds: PreparedDataset, config: TrainConfig, cache: DecodedCache | None, rt: Runtime,
               spec: models.ModelSpec) -> Split:
    """The cache at the config's size (rank 0 builds, the others reuse) and its train/val rows."""
    if cache is None:
        for rank_turn in (True, False):
            if rt.info.is_main == rank_turn:
                cache = build_cache(ds, config.image_size, crop_faces=config.crop_faces,
                                    face_margin=config.face_margin, face_fit=config.face_fit,
                                    face_align=config.face_align,
                                    progress=rt.show)
            distributed.barrier(rt.info)
    assert cache is not None
    if int(cache.size) != int(config.image_size):
        raise ValueError(f"the cache holds {cache.size}px images but the config asks for "
                         f"{config.image_size}px")
    train, val = cache.indices("train"), cache.indices("val")
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"dataset '{ds.name}' needs non-empty train and val subsets to train "
                         f"(got {len(train)} train, {len(val)} val images)")
    if config.refit:  # val joins training; test stays the only held-out split
        if len(cache.indices("test")) == 0:
            raise ValueError(f"--refit: dataset '{ds.name}' has no test split, so nothing would "
                             "be held out (a refit trains on train and val)")
        train, val = np.sort(np.concatenate([train, val])), val[:0]
    return Split(cache, train, val, list(spec.mean), list(spec.std),
                 sampling.row_sources(ds, config.set_sampling))


def make_criterion(split: Split, config: TrainConfig, device: torch.device) -> nn.Module:
    """Cross-entropy, weighted by inverse class frequency of the train subset when asked."""
    weight = None
    if config.class_weighted:
        names = [split.classes[i] for i in split.cache.labels[split.train]]
        weight = torch.as_tensor(data.class_weights(names, split.classes), dtype=torch.float32,
                                 device=device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)


def open_checkpoint(work: Path, model_name: str, config: TrainConfig, resume: bool,
                    say: Callable[[str], None]) -> checkpoint.Checkpoint | None:
    """The checkpoint to resume from, when asked for and made by this model and config."""
    if not resume:
        return None
    ckpt = checkpoint.load_checkpoint(work)
    # through from_dict: a checkpoint written before a config field existed has its default
    made_with = TrainConfig.from_dict(ckpt.state.config).to_dict() if ckpt is not None else None
    if ckpt is not None and (made_with != config.to_dict() or ckpt.state.model != model_name):
        say(f"checkpoint in {work} was made with other settings; starting afresh")
        return None
    if ckpt is None:
        say(f"no checkpoint to resume for {work.name}; starting afresh")
    return ckpt


def plan_run(model: nn.Module, split: Split, config: TrainConfig, pretrained: bool,
             world_size: int) -> Plan:
    """The run's schedule from counted FLOPs (planner.py): the same on any machine."""
    return planner.plan_schedule(config, forward=planner.forward_flops(model, config.image_size),
                                 n_train=len(split.train), n_val=len(split.val),
                                 pretrained=pretrained, world_size=world_size)
