"""The per-sample reference pipeline: torchvision.transforms.v2 on one PIL image at a time.

Not used for training: the decode-once cache (emotion_core.data.cache) with the batched kernels of
emotion_core.data.transforms is the one training path. This is what an ImageFolder-style loader
would do with the same augmentations, kept as the reference the benchmark (scripts/bench/data.py)
times against and the tests check the batched kernels against.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from emotion_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, resize_square


class SquareResize:
    """v2-compatible callable: PIL image or HxWx3 array -> `resize_square` array (first step)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, img: Image.Image | np.ndarray) -> np.ndarray:
        if isinstance(img, Image.Image):
            img = np.asarray(img.convert("RGB"), dtype=np.uint8)
        return resize_square(img, self.size)

    def __repr__(self) -> str:
        return f"SquareResize(size={self.size})"


# ---------------------------------------------------------------------------------------------
# Per-sample pipelines (slow path: ImageFolder-style datasets)


def train_transform(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                    aug: AugmentConfig | None = None) -> v2.Compose:
    """PIL/array -> normalised float CHW tensor, with the study's augmentations."""
    aug = aug if aug is not None else AugmentConfig()
    steps: list[Any] = [SquareResize(size), v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if aug.enabled:
        if aug.rotation_deg > 0:
            # fill=None: plain zero padding, so the picture's edge blends bilinearly into black
            # exactly as in the batched kernels (fill=0 would square that 1-px edge weight).
            steps.append(v2.RandomRotation(aug.rotation_deg,
                                           interpolation=v2.InterpolationMode.BILINEAR, fill=None))
        if aug.brightness > 0:
            steps.append(v2.ColorJitter(brightness=aug.brightness))
        if aug.contrast > 0:
            steps.append(v2.ColorJitter(contrast=aug.contrast))
        if aug.hflip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
    steps.append(v2.Normalize(mean=list(mean), std=list(std)))
    return v2.Compose(steps)


def eval_transform(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    """PIL/array -> normalised float CHW tensor, no augmentation."""
    return train_transform(size, mean, std, AugmentConfig(enabled=False))


class ImageFileDataset(torch.utils.data.Dataset):
    """ImageFolder-style dataset over an explicit file list: `loader(path)` then `transform`.

    The slow reference path: what torchvision.datasets.ImageFolder does per item (its default
    loader is PIL `Image.open(...).convert("RGB")`), but over exactly the files of a prepared
    subset rather than everything in a folder.
    """

    def __init__(self, paths: Sequence[str | Path], labels: Sequence[int], transform: Any = None,
                 loader: Callable[[str], Any] | None = None) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        from torchvision.datasets.folder import default_loader

        self.paths, self.labels = [str(p) for p in paths], [int(y) for y in labels]
        self.transform, self.loader = transform, loader or default_loader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        img = self.loader(self.paths[i])
        return (self.transform(img) if self.transform is not None else img), self.labels[i]
