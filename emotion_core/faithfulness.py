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
`evaluate_run` computes the scores per method on a run's held-out images and stores them in the
run's metrics.json under "faithfulness" (keyed by score kind).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from emotion_core import explain as ex

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
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
    return mask_energy_share(ex.to_heatmap(cells, inside.shape), inside)


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
    x = ex.to_model_device(model, ex.batch_of(x)[:1])
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
    with ex.explaining(model), torch.no_grad():
        for name, start, end in (("deletion", x, base), ("insertion", base, x)):
            probs = []
            for i in range(0, steps + 1, batch_size):
                m = masks[i:i + batch_size]
                out = ex.logits_of(model(start * (1 - m) + end * m))
                probs.append(torch.softmax(out.float(), dim=-1)[:, target])
            curves[name] = torch.cat(probs).cpu().numpy()
    auc = {k: float(np.trapezoid(v, dx=1.0 / steps)) for k, v in curves.items()}
    return {**auc, "deletion_curve": curves["deletion"].tolist(),
            "insertion_curve": curves["insertion"].tolist()}


def heat_batch(model: nn.Module, spec: Any, x: torch.Tensor, method: str,
               targets: Sequence[int], *, seed: int = 0, cam_layer: str | None = None) -> np.ndarray:
    """Maps [N, H, W] in [0, 1] for a batch: CAM methods (at `cam_layer`, None = the registry's
    target), attention (last layer), rollout, random."""
    size = tuple(x.shape[-2:])
    if method == REFERENCE:
        rng = np.random.default_rng(seed)
        return rng.random((x.shape[0], *size)).astype(np.float32)
    if method in ex.CAM_METHODS:
        return ex.compute_cams(model, spec, x, method=method, target=list(targets), layer=cam_layer)
    if method in ex.ATTENTION_METHODS:
        if not getattr(spec, "has_attention", False):
            raise ex.NotApplicableError(f"model '{spec.name}' has no attention maps")
        att = ex.attention_batch(model, x).numpy()
        grids = (ex.rollout(att) if method == "rollout"
                 else np.stack([ex.cls_attention(a) for a in att]))
        return np.stack([ex.to_heatmap(g, size) for g in grids])
    raise ValueError(f"method '{method}' has no saliency map to score")


def default_methods(spec: Any) -> list[str]:
    """Every map worth scoring: all methods but the slow scorecam and the feature-map grid."""
    return [m for m in ex.methods_for(spec) if m not in ("scorecam", "featuremap")]


def sample_images(data_dir: Path, classes: Sequence[str], n: int, *, seed: int = 0,
                  predictions: Any = None) -> list[tuple[Path, int]]:
    """Up to n (path, label id) pairs, held-out images first.

    With the run's predictions table (columns rel, subset, label) and its files under data_dir,
    test then val images are used, never training ones; otherwise every image under data_dir
    (labels from the parent folder name; -1 when it is not a class: explain the prediction).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} does not exist")
    index = {c: i for i, c in enumerate(classes)}
    rng = np.random.default_rng(seed)
    if predictions is not None and len(predictions):
        for subset in ("test", "val"):
            part = predictions[predictions["subset"] == subset]
            files = [(data_dir / r, index.get(lbl, -1)) for r, lbl in zip(part["rel"], part["label"], strict=True)]
            files = [f for f in files if f[0].is_file()]
            if files:
                pick = rng.permutation(len(files))[:n]
                return [files[i] for i in sorted(pick)]
    files = sorted(p for p in data_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.endswith(".mask.png"))
    if not files:
        raise FileNotFoundError(f"no images found under {data_dir}")
    pick = sorted(rng.permutation(len(files))[:n])
    return [(files[i], index.get(files[i].parent.name, -1)) for i in pick]


def _mask_for(path: Path) -> Path:
    return path.with_name(path.name[: -len(path.suffix)] + ".mask.png")


def evaluate_model(model: nn.Module, spec: Any, manifest: dict[str, Any], images: Sequence[tuple[Path, int]],
                   *, methods: Sequence[str] | None = None, kind: str = "auto", steps: int = 20,
                   baseline: str = "blur", batch_size: int = 8, progress: bool = True,
                   cam_layer: str | None = None) -> dict[str, Any]:
    """Per-method faithfulness of `model` on `images` (kind: auto | mask | deletion); CAM
    methods at `cam_layer` (a module name, None = the registry's target)."""
    from tqdm import tqdm

    from emotion_core.images import load_rgb
    from emotion_core.transforms import resize_square

    methods = list(methods or default_methods(spec))
    unknown = [m for m in methods if m not in (*default_methods(spec), "scorecam", REFERENCE)]
    if unknown:
        raise ex.NotApplicableError(f"method(s) {', '.join(unknown)} cannot be scored for model "
                                    f"'{spec.name}' (choose from {', '.join(default_methods(spec))})")
    have_masks = all(_mask_for(p).is_file() for p, _ in images)
    if kind == "auto":
        kind = "mask" if have_masks else "deletion"
    if kind == "mask" and not have_masks:
        raise FileNotFoundError("mask energy share needs a <stem>.mask.png beside every image")
    methods = [*methods, REFERENCE] if REFERENCE not in methods else methods
    size, mean, std = int(manifest["image_size"]), manifest["mean"], manifest["std"]
    xs, masks, labels = [], [], []
    for path, label in images:
        x, _ = ex.prepare_image(load_rgb(path), size, mean, std)
        xs.append(x[0])
        labels.append(label)
        if kind == "mask":
            m = load_rgb(_mask_for(path))  # geometry exactly like the image: same crop and resize
            masks.append(resize_square(m, size)[..., 0] > 127)
    x_all = ex.to_model_device(model, torch.stack(xs))
    with ex.explaining(model), torch.no_grad():
        preds = torch.cat([ex.logits_of(model(x_all[i:i + 32])).argmax(-1)
                           for i in range(0, len(x_all), 32)]).tolist()
    targets = [lbl if lbl >= 0 else p for lbl, p in zip(labels, preds, strict=True)]
    scores: dict[str, list[Any]] = {m: [] for m in methods}
    bar = tqdm(total=len(methods) * len(x_all), desc=f"faithfulness ({kind})", disable=not progress)
    for method in methods:
        bs = min(batch_size, ex.SCORECAM_MAX_BATCH) if method == "scorecam" else batch_size
        for i in range(0, len(x_all), bs):
            xb, tb = x_all[i:i + bs], targets[i:i + bs]
            heats = heat_batch(model, spec, xb, method, tb, seed=i, cam_layer=cam_layer)
            for j, heat in enumerate(heats):
                if kind == "mask":
                    scores[method].append((mask_energy_share(heat, masks[i + j]),
                                           pointing_hit(heat, masks[i + j])))
                else:
                    scores[method].append(deletion_insertion(model, xb[j], heat, tb[j], steps,
                                                             baseline=baseline))
            bar.update(len(xb))
    bar.close()
    choices = ex.cam_layer_choices(model, spec, size) if ex.cam_methods(spec) else []
    layer_name = cam_layer or next((c.name for c in choices if c.default), None)
    out: dict[str, Any] = {"kind": "mask_energy_share" if kind == "mask" else "deletion_insertion",
                           "n": len(x_all), "image_size": size, "cam_layer": layer_name, "target": "label (prediction if unlabelled)",
                           "accuracy_on_sample": float(np.mean([p == t for p, t in zip(preds, labels, strict=True) if t >= 0]))
                           if any(t >= 0 for t in labels) else None,
                           "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                           "methods": {}}
    if kind == "mask":
        out["chance"] = float(np.mean([m.mean() for m in masks]))
        grid = next((c.grid for c in choices if c.name == layer_name), None)
        if grid and all(grid):
            out["cam_grid"] = list(grid)
            out["ideal"] = float(np.mean([ideal_share(m, grid) for m in masks]))
            out["ceiling"] = float(np.mean([ceiling_share(m, grid) for m in masks]))
        for m, v in scores.items():
            share = [a for a, _ in v]
            out["methods"][m] = {"mean": float(np.mean(share)), "std": float(np.std(share)),
                                 "pointing": float(np.mean([hit for _, hit in v])), "n": len(v)}
    else:
        out.update(steps=steps, baseline=baseline)
        for m, v in scores.items():
            out["methods"][m] = {k: float(np.mean([d[k] for d in v])) for k in ("deletion", "insertion")}
            out["methods"][m]["n"] = len(v)
    return out


def evaluate_run(run_id: str, data_dir: Path, *, n: int = 32, methods: Sequence[str] | None = None,
                 kind: str = "auto", steps: int = 20, baseline: str = "blur", seed: int = 0,
                 progress: bool = True, store: bool = True,
                 cam_layers: Sequence[str] | str | None = None, device: str = "cpu") -> dict[str, Any]:
    """Score a stored run's maps on its dataset and merge them into its metrics.json.

    `cam_layers`: also score the CAM methods at these layers ("stages": one per resolution, see
    cam_layers.cam_layer_choices); the results go under "by_layer", with each layer's grid.
    `device`: where the model runs ("auto" = the GPU if there is one); the scores do not depend on it.
    """
    from emotion_core import artifacts, evaluate, models

    model, manifest = evaluate.load_model(run_id, device=ex.resolve_device(device))
    spec = models.get_spec(manifest["model"])
    rec = artifacts.load_run(run_id, tables=True)
    images = sample_images(Path(data_dir), manifest["classes"], n, seed=seed,
                           predictions=rec.predictions)
    result = evaluate_model(model, spec, manifest, images, methods=methods, kind=kind, steps=steps,
                            baseline=baseline, progress=progress)
    if cam_layers:
        result["by_layer"] = sweep_cam_layers(model, spec, manifest, images, cam_layers,
                                              methods=methods, kind=kind, steps=steps,
                                              baseline=baseline, progress=progress)
    result["data_dir"] = str(data_dir)
    if store:
        previous = dict(rec.metrics.get("faithfulness", {}))
        previous[result["kind"]] = result
        artifacts.update_run_metrics(run_id, {"faithfulness": previous})
    return result


def sweep_cam_layers(model: nn.Module, spec: Any, manifest: dict[str, Any],
                     images: Sequence[tuple[Path, int]], cam_layers: Sequence[str] | str,
                     *, methods: Sequence[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """{layer: {"grid": [h, w], "default": bool, "methods": {...}}} for the CAM methods only
    (attention maps do not depend on a CAM layer)."""
    size = int(manifest["image_size"])
    choices = {c.name: c for c in ex.cam_layer_choices(model, spec, size)}
    names = list(choices) if cam_layers == "stages" else list(cam_layers)
    cams = [m for m in (methods or default_methods(spec)) if m in ex.CAM_METHODS]
    if not cams:
        raise ex.NotApplicableError(f"no CAM method to score per layer for model '{spec.name}'")
    out: dict[str, Any] = {}
    for name in names:
        ex.resolve_cam_layer(model, spec, name)  # an unknown name fails before any work
        res = evaluate_model(model, spec, manifest, images, methods=cams, cam_layer=name, **kwargs)
        grid = choices[name].grid if name in choices else None
        out[name] = {"grid": list(grid) if grid else None,
                     "default": bool(name in choices and choices[name].default),
                     "methods": res["methods"],
                     **{k: res[k] for k in ("chance", "ideal", "ceiling") if k in res}}
    return out


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of one `evaluate_model` result, one row per method."""
    rows = []
    if result["kind"] == "mask_energy_share":
        levels = [f"{name} {result[k]:.3f}" for k, name in (("ideal", "mask-shaped map"),
                                                             ("ceiling", "ceiling")) if k in result]
        ideal = (f", on the {'x'.join(map(str, result['cam_grid']))} CAM grid: {', '.join(levels)}"
                 if levels and result.get("cam_grid") else "")
        head = (f"{'method':<12} {'mask share':>10} {'std':>7} {'pointing':>9}   (chance = mask "
                f"area {result['chance']:.3f}{ideal})")
        for m, v in result["methods"].items():
            hits = f"{v['pointing']:.3f}" if "pointing" in v else "-"
            rows.append(f"{m:<12} {v['mean']:>10.3f} {v['std']:>7.3f} {hits:>9}")
    else:
        head = f"{'method':<12} {'deletion (lower better)':>24} {'insertion (higher better)':>26}"
        for m, v in result["methods"].items():
            rows.append(f"{m:<12} {v['deletion']:>24.3f} {v['insertion']:>26.3f}")
    return "\n".join([head, *rows])


def format_layer_table(result: dict[str, Any]) -> str:
    """The per-layer sweep of `evaluate_run(..., cam_layers=...)`: one row per layer, one column
    per CAM method (mask share, or deletion/insertion AUCs), the registry's layer marked *."""
    by_layer = result.get("by_layer") or {}
    if not by_layer:
        return ""
    methods = list(next(iter(by_layer.values()))["methods"])
    mask = result["kind"] == "mask_energy_share"
    width = 13
    levels = [k for k in ("ideal", "ceiling") if mask and any(k in e for e in by_layer.values())]
    head = f"{'CAM layer':<18} {'grid':>7} " + " ".join(f"{m:>{width}}" for m in [*methods, *levels])
    rows = [head + ("   (mask share/pointing hit rate)" if mask else "   (deletion/insertion AUC)")]
    for name, entry in by_layer.items():
        grid = "x".join(map(str, entry["grid"])) if entry.get("grid") else "?"
        cells = [f"{v['mean']:.3f}/{v.get('pointing', float('nan')):.2f}" if mask
                 else f"{v['deletion']:.3f}/{v['insertion']:.3f}" for v in entry["methods"].values()]
        cells += [f"{entry[k]:.3f}" if k in entry else "-" for k in levels]
        star = "*" if entry.get("default") else ""
        rows.append(f"{name + star:<18} {grid:>7} " + " ".join(f"{c:>{width}}" for c in cells))
    return "\n".join(rows)
