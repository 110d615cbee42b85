"""Faithfulness of saliency maps: can a user trust what a map highlights?

Two scores, because only the synthetic faces have ground truth:
- `mask_energy_share`: on the synthetic faces, whose expression lives only in brows and mouth,
  the share of a map's energy inside the ground-truth mask (`<stem>.mask.png`). 1 is perfect;
  a uniform map scores the mask's area share, which is reported beside it as the chance level.
  Beside it, the pointing game (Zhang et al., 2016): how often the map's peak lies inside the
  mask (a random map hits at the area share). Two levels per CAM grid put a share in context:
  `ideal_share` (a mask-shaped map at the grid's resolution) and `ceiling_share` (the most any
  map on that grid can score).
- `deletion_insertion` (Petsiuk et al., RISE 2018) on real data: remove (insert) the most salient
  pixels first, replacing them by a blurred (or mean) baseline, and track the explained class's
  probability. Lower deletion AUC and higher insertion AUC are better. A random map is scored
  too, as the reference a map must beat.
`evaluate_maps` applies them to a run's held-out images and stores the results.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from emotion_core.explain.base import batch_of, explaining, to_heatmap, to_model_device

BASELINES = ("blur", "mean")
REFERENCE = "random"  # a seeded uniform-noise map: the level a real map must beat


def mask_energy_share(heat: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's (non-negative) energy inside the mask; mask resized to the map if needed.

    A map with no energy at all ranks nothing, so it is scored like a uniform map (area share).
    """
    h = np.clip(np.nan_to_num(np.asarray(heat, np.float64)), 0.0, None)
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.shape != h.shape:
        m = cv2.resize(m.astype(np.uint8) * (255 if m.max() <= 1 else 1), h.shape[::-1],
                       interpolation=cv2.INTER_NEAREST)
    inside = m > (127 if m.max() > 1 else 0)
    if not inside.any():
        raise ValueError("the mask is empty: there is no region to score against")
    total = h.sum()
    if total <= 1e-12:
        return float(inside.mean())
    return float(h[inside].sum() / total)


def pointing_hit(heat: np.ndarray, mask: np.ndarray) -> bool:
    """Pointing game: does the map's maximum fall inside the mask? (ties: the first maximum)"""
    h = np.nan_to_num(np.asarray(heat, np.float64), nan=-np.inf)
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.shape != h.shape:
        raise ValueError(f"mask {m.shape} and map {h.shape} differ in size")
    return bool(m.flat[int(np.argmax(h))] > 0)


def _inside(mask: np.ndarray) -> np.ndarray:
    """A mask (0/1, 0/255, bool; HxW or HxWx3) as a boolean HxW array."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    return m > (127 if m.max() > 1 else 0)


def _cells(grid: tuple[int, int]) -> tuple[int, int]:
    gh, gw = int(grid[0]), int(grid[1])
    if gh < 1 or gw < 1:
        raise ValueError(f"grid must have at least one cell per side, got {grid}")
    return gh, gw


def ideal_share(mask: np.ndarray, grid: tuple[int, int]) -> float:
    """The mask energy share of a mask-shaped map on a `grid` of cells: the mask pooled to the
    grid (area average) and resized back bilinearly, as CAMs are.

    Why: a CAM cannot be sharper than its feature grid; this is what a map that covers exactly
    the brows and mouth, at the grid's resolution, scores. It is a reference, not an upper bound:
    a map lighting only the cell most inside the mask scores higher (see `ceiling_share`).
    """
    inside, (gh, gw) = _inside(mask), _cells(grid)
    cells = cv2.resize(inside.astype(np.float32), (gw, gh), interpolation=cv2.INTER_AREA)
    return mask_energy_share(to_heatmap(cells, inside.shape), inside)


def ceiling_share(mask: np.ndarray, grid: tuple[int, int]) -> float:
    """The highest mask energy share that ANY map on a `grid` of cells can reach.

    A CAM is a non-negative grid resized bilinearly (a linear map), so its share is a ratio of two
    linear functions of the cell values; over the non-negative cells that ratio peaks with a
    single cell lit. Bilinear resizing is separable, so every cell's footprint is an outer product
    of two 1-D footprints and all cells are scored at once. Unlike `ideal_share` (a mask-shaped
    map), this is a true upper bound: a map above it cannot exist on that grid.
    """
    inside, (gh, gw) = _inside(mask).astype(np.float64), _cells(grid)
    if not inside.any():
        raise ValueError("the mask is empty: there is no region to score against")
    h, w = inside.shape
    # column i of `rows` is cell-row i's footprint along the height (the 1-D resize of e_i)
    rows = cv2.resize(np.eye(gh, dtype=np.float32), (gh, h), interpolation=cv2.INTER_LINEAR)
    cols = cv2.resize(np.eye(gw, dtype=np.float32), (gw, w), interpolation=cv2.INTER_LINEAR)
    rows, cols = rows.astype(np.float64).reshape(h, gh), cols.astype(np.float64).reshape(w, gw)
    inside_energy = rows.T @ inside @ cols
    total = np.outer(rows.sum(0), cols.sum(0))
    return float(np.max(inside_energy / np.maximum(total, 1e-12)))


def baseline_image(x: torch.Tensor, kind: str = "blur") -> torch.Tensor:
    """What removed pixels become: a heavy Gaussian blur of the image, or the dataset mean (0)."""
    if kind not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)}")
    if kind == "mean":
        return torch.zeros_like(x)
    from torchvision.transforms.functional import gaussian_blur

    side = min(x.shape[-2:])
    sigma = max(1.0, side / 16)
    k = min(2 * int(np.ceil(3 * sigma)) + 1, 2 * ((side - 1) // 2) + 1)
    return gaussian_blur(x, kernel_size=[k, k], sigma=[sigma, sigma])


def deletion_insertion(model: nn.Module, x: torch.Tensor, heat: np.ndarray, target: int,
                       steps: int = 20, *, baseline: str = "blur", batch_size: int = 32
                       ) -> dict[str, Any]:
    """Deletion and insertion curves/AUCs (in [0, 1]) of class `target` for image x[0]."""
    x = to_model_device(model, batch_of(x)[:1])
    h, w = x.shape[-2:]
    heat = np.asarray(heat, np.float64)
    if heat.shape != (h, w):
        raise ValueError(f"heat map {heat.shape} does not match the input size {(h, w)}")
    if steps < 1:
        raise ValueError("steps must be at least 1")
    order = np.argsort(-np.nan_to_num(heat).ravel(), kind="stable")
    rank = np.empty(h * w, np.int64)
    rank[order] = np.arange(h * w)
    counts = np.linspace(0, h * w, steps + 1).round().astype(np.int64)
    masks = torch.from_numpy(rank[None, :] < counts[:, None]).view(steps + 1, 1, h, w).to(x.device, x.dtype)
    base = baseline_image(x, baseline)
    curves = {}
    with explaining(model), torch.no_grad():
        for name, start, end in (("deletion", x, base), ("insertion", base, x)):
            probs = []
            for i in range(0, steps + 1, batch_size):
                m = masks[i:i + batch_size]
                out = model(start * (1 - m) + end * m)
                probs.append(torch.softmax(out.float(), dim=-1)[:, target])
            curves[name] = torch.cat(probs).cpu().numpy()
    auc = {k: float(np.trapezoid(v, dx=1.0 / steps)) for k, v in curves.items()}
    return {**auc, "deletion_curve": curves["deletion"].tolist(),
            "insertion_curve": curves["insertion"].tolist()}
