"""Faithfulness of a run's maps: score every method on held-out images and store the result.

On synthetic faces (a mask beside every image) the mask energy share and pointing game; on real
faces deletion/insertion (see `faithfulness`). `evaluate_run` writes the scores into the run's
metrics.json under "faithfulness" (keyed by score kind), where the app shows them beside each map.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from emotion_core import store, words
from emotion_core.data import faces
from emotion_core.data.images import load_rgb
from emotion_core.data.layout import is_image_file, mask_path
from emotion_core.data.transforms import Preprocess, resize_square
from emotion_core.evaluation.inference import probabilities
from emotion_core.evaluation.loading import load_model
from emotion_core.explain.attention import attention_batch, cls_attention, rollout
from emotion_core.explain.base import (
    NotApplicableError,
    explaining,
    resolve_device,
    to_heatmap,
    to_model_device,
)
from emotion_core.explain.cam import CAM_METHODS, SCORECAM_MAX_BATCH, compute_cams
from emotion_core.explain.cam_layers import cam_layer_choices, resolve_cam_layer
from emotion_core.explain.faithfulness import (
    REFERENCE,
    ceiling_share,
    deletion_insertion,
    ideal_share,
    mask_energy_share,
    pointing_hit,
)
from emotion_core.explain.render import ATTENTION_METHODS, methods_for
from emotion_core.models import ModelSpec, spec_of


def heat_batch(model: nn.Module, x: torch.Tensor, method: str,
               targets: Sequence[int], *, seed: int = 0, cam_layer: str | None = None) -> np.ndarray:
    """Maps [N, H, W] in [0, 1] for a batch: CAM methods (at `cam_layer`, None = the registry's
    target), attention (last layer), rollout, random."""
    size = tuple(x.shape[-2:])
    if method == REFERENCE:
        rng = np.random.default_rng(seed)
        return rng.random((x.shape[0], *size)).astype(np.float32)
    if method in CAM_METHODS:
        return compute_cams(model, x, method=method, target=list(targets), layer=cam_layer)
    if method in ATTENTION_METHODS:
        if not spec_of(model).has_attention:
            raise NotApplicableError(f"model '{spec_of(model).name}' has no attention maps")
        att = attention_batch(model, x).numpy()
        grids = (rollout(att) if method == "rollout"
                 else np.stack([cls_attention(a) for a in att]))
        return np.stack([to_heatmap(g, size) for g in grids])
    raise ValueError(f"method '{method}' has no saliency map to score")


def default_methods(spec: ModelSpec) -> list[str]:
    """Every map worth scoring: all methods but the slow scorecam and the feature-map grid."""
    return [m for m in methods_for(spec) if m not in ("scorecam", "featuremap")]


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
    files = sorted(p for p in data_dir.rglob("*") if is_image_file(p))
    if not files:
        raise FileNotFoundError(f"no images found under {data_dir}")
    pick = sorted(rng.permutation(len(files))[:n])
    return [(files[i], index.get(files[i].parent.name, -1)) for i in pick]


def evaluate_model(model: nn.Module, manifest: dict[str, Any], images: Sequence[tuple[Path, int]],
                   *, methods: Sequence[str] | None = None, kind: str = "auto", steps: int = 20,
                   baseline: str = "blur", batch_size: int = 8, progress: bool = True,
                   cam_layer: str | None = None) -> dict[str, Any]:
    """Per-method faithfulness of `model` on `images` (kind: auto | mask | deletion); CAM
    methods at `cam_layer` (a module name, None = the registry's target)."""
    spec = spec_of(model)
    methods = list(methods or default_methods(spec))
    unknown = [m for m in methods if m not in (*default_methods(spec), "scorecam", REFERENCE)]
    if unknown:
        raise NotApplicableError(f"{words.noun(len(unknown), 'method')} {', '.join(unknown)} "
                                 f"cannot be scored for model '{spec.name}' (choose from "
                                 f"{', '.join(default_methods(spec))})")
    have_masks = all(mask_path(p).is_file() for p, _ in images)
    if kind == "auto":
        kind = "mask" if have_masks else "deletion"
    if kind == "mask" and not have_masks:
        raise FileNotFoundError("mask energy share needs a <stem>.mask.png beside every image")
    methods = [*methods, REFERENCE] if REFERENCE not in methods else methods
    preprocess = Preprocess.of(manifest)
    size = preprocess.size
    xs, masks, labels = [], [], []
    for path, label in images:
        # a run trained on face crops is scored on the face it would read (faces.as_trained)
        rgb, cut = faces.as_trained(load_rgb(path), manifest)
        x, _ = preprocess(rgb)
        xs.append(x[0])
        labels.append(label)
        if kind == "mask":
            m = load_rgb(mask_path(path))  # geometry exactly like the image: same crop and resize
            m = m if cut is None else cut[0].cut(m, cut[1])
            masks.append(resize_square(m, size)[..., 0] > 127)
    x_all = to_model_device(model, torch.stack(xs))
    with explaining(model):
        preds = torch.cat([probabilities(model, x_all[i:i + 32]).argmax(-1)
                           for i in range(0, len(x_all), 32)]).tolist()
    targets = [lbl if lbl >= 0 else p for lbl, p in zip(labels, preds, strict=True)]
    scores: dict[str, list[Any]] = {m: [] for m in methods}
    bar = tqdm(total=len(methods) * len(x_all), desc=f"faithfulness ({kind})", disable=not progress)
    for method in methods:
        bs = min(batch_size, SCORECAM_MAX_BATCH) if method == "scorecam" else batch_size
        for i in range(0, len(x_all), bs):
            xb, tb = x_all[i:i + bs], targets[i:i + bs]
            heats = heat_batch(model, xb, method, tb, seed=i, cam_layer=cam_layer)
            for j, heat in enumerate(heats):
                if kind == "mask":
                    scores[method].append((mask_energy_share(heat, masks[i + j]),
                                           pointing_hit(heat, masks[i + j])))
                else:
                    scores[method].append(deletion_insertion(model, xb[j], heat, tb[j], steps,
                                                             baseline=baseline))
            bar.update(len(xb))
    bar.close()
    choices = cam_layer_choices(model, size)
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
                 progress: bool = True, save: bool = True,
                 cam_layers: Sequence[str] | str | None = None, device: str = "cpu") -> dict[str, Any]:
    """Score a stored run's maps on its dataset and merge them into its metrics.json.

    `cam_layers`: also score the CAM methods at these layers ("stages": one per resolution, see
    cam_layers.cam_layer_choices); the results go under "by_layer", with each layer's grid.
    `device`: where the model runs ("auto" = the GPU if there is one); the scores do not depend on it.
    """
    model, manifest = load_model(run_id, device=resolve_device(device))
    rec = store.load_run(run_id, tables=True)
    images = sample_images(Path(data_dir), manifest["classes"], n, seed=seed,
                           predictions=rec.predictions)
    result = evaluate_model(model, manifest, images, methods=methods, kind=kind, steps=steps,
                            baseline=baseline, progress=progress)
    if cam_layers:
        result["by_layer"] = sweep_cam_layers(model, manifest, images, cam_layers,
                                              methods=methods, kind=kind, steps=steps,
                                              baseline=baseline, progress=progress)
    result["data_dir"] = str(data_dir)
    if save:
        previous = dict(rec.metrics.get("faithfulness", {}))
        previous[result["kind"]] = result
        store.update_run_metrics(run_id, {"faithfulness": previous})
    return result


def sweep_cam_layers(model: nn.Module, manifest: dict[str, Any],
                     images: Sequence[tuple[Path, int]], cam_layers: Sequence[str] | str,
                     *, methods: Sequence[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """{layer: {"grid": [h, w], "default": bool, "methods": {...}}} for the CAM methods only
    (attention maps do not depend on a CAM layer)."""
    spec = spec_of(model)
    size = int(manifest["image_size"])
    choices = {c.name: c for c in cam_layer_choices(model, size)}
    names = list(choices) if cam_layers == "stages" else list(cam_layers)
    cams = [m for m in (methods or default_methods(spec)) if m in CAM_METHODS]
    if not cams:
        raise NotApplicableError(f"no CAM method to score per layer for model '{spec.name}'")
    out: dict[str, Any] = {}
    for name in names:
        resolve_cam_layer(model, name)  # an unknown name fails before any work
        res = evaluate_model(model, manifest, images, methods=cams, cam_layer=name, **kwargs)
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
