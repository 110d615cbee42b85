"""Shared plumbing of the explainers: a per-model lock, input checks, map scaling, rendering.

Why: the app shares one cached model between sessions, so explanations of one model are
serialised and run in eval mode with every module's previous mode restored afterwards. Every map
leaves as float32 in [0, 1] at the input's size, every picture as uint8 RGB (OpenCV colormap).
"""
from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import torch
from torch import nn

HEAD_FUSIONS = ("mean", "max", "min")


class NotApplicableError(ValueError):
    """A method that does not apply to this model (e.g. attention maps of a CNN)."""


_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


@contextmanager
def explaining(model: nn.Module) -> Iterator[None]:
    """Serialise explanations of one (possibly shared) model; eval mode inside, restored after.
    A model that is not a torch module (an ONNX Runtime session: no hooks, no modes, safe to
    call from several threads at once) goes straight through."""
    if not isinstance(model, nn.Module):
        yield
        return
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(model, threading.RLock())
    with lock:
        modes = {m: m.training for m in model.modules()}
        model.eval()
        try:
            yield
        finally:
            for m, mode in modes.items():
                m.training = mode


def batch_of(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) -> (1, 3, H, W); check that a batch is (N, 3, H, W)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a (3, H, W) image or (N, 3, H, W) batch, got {tuple(x.shape)}")
    return x


def to_model_device(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`x` on the device of the model's weights (explanations run wherever the model was loaded)."""
    p = next(model.parameters(), None)
    return x if p is None else x.to(p.device)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' = the GPU when there is one, else the CPU; 'cpu' / 'cuda' / 'cuda:1' as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' asked for, but torch sees no CUDA GPU")
    return device


def to_heatmap(grid: np.ndarray, size: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """Resize a 2-D map to (H, W) and min-max it into [0, 1] (a constant map becomes zeros)."""
    g = np.nan_to_num(np.asarray(grid, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    h, w = size
    # Constant within float32 rounding: resizing a 1x1 grid leaves ~1e-7 ripples that min-max
    # would stretch into a full-range noise map.
    if float(g.max()) - float(g.min()) <= 1e-6 * max(float(np.abs(g).max()), 1e-30):
        return np.zeros((h, w), np.float32)
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    g = cv2.resize(g, (w, h), interpolation=interp) if g.shape != (h, w) else g
    lo, hi = float(g.min()), float(g.max())
    if hi - lo <= 1e-12:
        return np.zeros((h, w), np.float32)
    return np.clip((g - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def colorize(heat: np.ndarray, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """[0, 1] map -> uint8 RGB through an OpenCV colormap."""
    u8 = np.uint8(np.clip(np.nan_to_num(np.asarray(heat, np.float32)), 0.0, 1.0) * 255)
    return cv2.cvtColor(cv2.applyColorMap(u8, colormap), cv2.COLOR_BGR2RGB)


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.5,
            colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Blend a [0, 1] heat map (resized to the image if needed) over an RGB uint8 image."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be in [0, 1]")
    h, w = rgb.shape[:2]
    heat = np.asarray(heat, np.float32)
    if heat.shape != (h, w):
        heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    blend = (1 - alpha) * rgb.astype(np.float32) + alpha * colorize(heat, colormap).astype(np.float32)
    return np.clip(blend + 0.5, 0, 255).astype(np.uint8)
