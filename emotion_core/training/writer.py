"""Writing a trained model as a run: evaluate the best weights on val and test, measure its cost,
and store everything through `store.save_run` (rank 0 only).

The manifest records the schedule that actually ran (`recipe`: the planned phases, epochs, batch
cap, steps per epoch and the compute budget), not the profile's un-budgeted defaults, and every
latency with the conditions it was measured under (evaluation/cost.py).
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from emotion_core import store
from emotion_core.data.cache import CachedLoader, DecodedCache
from emotion_core.evaluation import cost as cost_mod
from emotion_core.evaluation import metrics as ev
from emotion_core.evaluation.inference import collect_probs
from emotion_core.store.runs import git_changed, git_commit, split_hash
from emotion_core.training.config import TrainConfig
from emotion_core.training.planner import Phase, Plan
from emotion_core.training.state import RunState


@dataclass(frozen=True)
class RunContext:
    """How a run was trained: what its manifest says besides the numbers."""

    run_id: str
    model_name: str
    dataset: str
    dataset_root: str
    config: TrainConfig  # the command's config (the profile plus its overrides)
    weights_source: str  # where the starting weights really came from
    mean: list[float]
    std: list[float]
    plan: Plan
    phases: list[Phase]  # the phases the plan trains
    steps_per_epoch: int  # optimisation steps per epoch and process
    device: torch.device
    amp: bool
    channels_last: bool
    world_size: int = 1
    sources: tuple[str, ...] | None = None  # per cache row, the set it came from (combined data)
    extra: dict[str, Any] | None = None  # recipe details of a run that is not epochs (a probe)
    # torch intra-op threads when training started: CPU float sums run in a per-thread order, so
    # a seeded run repeats its numbers with the same thread count (docs/training.md#the-loop)
    threads: int = field(default_factory=torch.get_num_threads)

    def recipe(self) -> dict[str, Any]:
        """The schedule that ran: the named recipe and its options, phases (name, epochs, peak
        lr), the plan and its budget."""
        p, c = self.plan, self.config
        return {"name": c.recipe, "label_smoothing": c.label_smoothing,
                "layer_decay": c.layer_decay, "ema": c.ema, "mixup": c.mixup,
                **({"sam": c.sam} if c.sam else {}),
                **({"forget_rate": c.forget_rate} if c.forget_rate else {}),
                **({"distill": c.distill, "distill_weight": c.distill_weight,
                    "distill_temperature": c.distill_temperature} if c.distill else {}),
                "tta_flip": c.tta_flip, "crop_faces": c.crop_faces,
                "face_margin": c.face_margin if c.crop_faces else None,
                "face_fit": c.face_fit if c.crop_faces else None,
                "face_align": c.face_align if c.crop_faces else None,
                "set_sampling": c.set_sampling, "refit": c.refit, "scale_jitter": c.scale_jitter,
                "shift_jitter": c.shift_jitter, "erase": c.erase,
                **({"lowres": c.lowres} if c.lowres else {}),
                **(self.extra or {}),
                "phases": [{"name": ph.name, "epochs": ph.epochs, "lr": ph.lr} for ph in self.phases],
                "epochs": p.epochs, "head_epochs": p.head_epochs, "max_batches": p.max_batches,
                "steps_per_epoch": self.steps_per_epoch, "batch_size": self.config.batch_size,
                "budget_tflop": p.budget_flops / 1e12,
                "planned_tflop": None if p.planned_flops is None else p.planned_flops / 1e12,
                "forward_flops": p.forward_flops}


def evaluate_loader(model: nn.Module, loader: Iterable, device: torch.device,
                    classes: list[str], *, amp: bool = False, channels_last: bool = False,
                    tta_flip: bool = False) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Metrics, probabilities and labels of `model` over an evaluation loader."""
    probs, y = collect_probs(model, loader, amp=amp, channels_last=channels_last,
                             tta_flip=tta_flip)
    if len(y) == 0:
        probs = np.zeros((0, len(classes)))
    return ev.compute_metrics(y, probs, classes), probs, y


def evaluate_subsets(model: nn.Module, cache: DecodedCache, ctx: RunContext
                     ) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """(metrics per subset, predictions table, confusion table) over val and test."""
    classes = list(cache.classes)
    metrics: dict[str, Any] = {"classes": classes}
    pred_parts, conf_parts = [], []
    # a refit trained on val: its val answers would be scores on training images
    for subset in ("test",) if ctx.config.refit else ("val", "test"):
        idx = cache.indices(subset)
        if len(idx) == 0:
            continue
        loader = CachedLoader(cache, idx, ctx.config.eval_batch_size, shuffle=False, aug=None,
                              mean=ctx.mean, std=ctx.std, seed=ctx.config.seed,
                              device=ctx.device if ctx.device.type == "cuda" else None)
        m, probs, y = evaluate_loader(model, loader, ctx.device, classes, amp=ctx.amp,
                                      channels_last=ctx.channels_last,
                                      tta_flip=ctx.config.tta_flip)
        metrics[subset] = m
        pred_parts.append(ev.predictions_table([cache.rels[i] for i in idx], [subset] * len(idx),
                                               y, probs, classes))
        conf = ev.confusion_table(y, probs.argmax(1), classes)
        conf.insert(0, "subset", subset)
        conf_parts.append(conf)
    predictions = pd.concat(pred_parts, ignore_index=True)
    if ctx.sources is not None:
        where = dict(zip(cache.rels, ctx.sources, strict=True))
        predictions, metrics["by_source"] = ev.split_by_source(predictions, where, classes)
    return metrics, predictions, pd.concat(conf_parts, ignore_index=True)


def measure_cost(model: nn.Module, ctx: RunContext) -> dict[str, Any]:
    """Parameters, forward FLOPs and CPU latency at batch 1 (with its conditions) when asked."""
    out: dict[str, Any] = {"params": cost_mod.count_params(model), "flops": ctx.plan.forward_flops,
                           "latency_ms": None, "latency": None}
    if ctx.config.measure_speed:
        cpu_model = model.float().to("cpu").to(memory_format=torch.contiguous_format)
        if out["flops"] is None:
            out["flops"] = cost_mod.count_flops(cpu_model, ctx.config.image_size)
        record = cost_mod.measure_latency_record(cpu_model, ctx.config.image_size)
        out.update(latency_ms=cost_mod.headline_latency(record), latency=record)
    return out


def build_manifest(ctx: RunContext, state: RunState, cache: DecodedCache, metrics: dict[str, Any],
                   cost: dict[str, Any], eval_seconds: float) -> dict[str, Any]:
    classes = list(cache.classes)
    labels = [classes[i] for i in cache.labels]
    val, test = metrics.get("val", {}), metrics.get("test", {})
    headline = {"val_accuracy": val.get("accuracy"), "val_macro_f1": val.get("macro_f1"),
                "test_accuracy": test.get("accuracy"), "test_macro_f1": test.get("macro_f1"),
                "val_ece": val.get("ece"), "params": cost["params"], "flops": cost["flops"],
                "latency_ms": cost["latency_ms"], "train_seconds": round(state.train_seconds, 2),
                "epochs_run": state.epoch, "epochs_planned": state.plan.epochs}
    if "by_source" in metrics:  # each set's own test split, reported separately
        headline["test_accuracy_by_source"] = ev.test_accuracy_by_source(metrics["by_source"])
    return {
        "kind": "model", "run_id": ctx.run_id, "model": ctx.model_name, "dataset": ctx.dataset,
        "dataset_root": ctx.dataset_root, "classes": classes,
        "split_hash": split_hash(cache.rels, labels, cache.subsets),
        "weights_source": ctx.weights_source, "pretrained_requested": ctx.config.pretrained,
        "profile": ctx.config.profile, "config": ctx.config.to_dict(),
        "image_size": ctx.config.image_size, "mean": ctx.mean, "std": ctx.std,
        "tta_flip": ctx.config.tta_flip,
        "sources": list(dict.fromkeys(ctx.sources)) if ctx.sources is not None else [ctx.dataset],
        "git_commit": git_commit(), "git_changed": git_changed(),
        "created": datetime.now().isoformat(timespec="seconds"),
        "recipe": ctx.recipe(), "best_epoch": state.best_epoch,
        "timings": {"train_seconds": round(state.train_seconds, 2),
                    "eval_seconds": round(eval_seconds, 2), "device": str(ctx.device),
                    "world_size": ctx.world_size, "torch_threads": ctx.threads,
                    "torch": torch.__version__, "amp_bf16": ctx.amp,
                    "channels_last": ctx.channels_last},
        "latency": cost["latency"], "headline": headline,
    }


def write_run(ctx: RunContext, model: nn.Module, cache: DecodedCache, state: RunState,
              weights: dict[str, torch.Tensor]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate `model` (already holding the best weights), store the run; returns its headline
    and its metrics (per subset, as metrics.json).
    `model` is left on the CPU in fp32 after the cost measurement."""
    t0 = time.perf_counter()
    metrics, predictions, confusion = evaluate_subsets(model, cache, ctx)
    eval_seconds = time.perf_counter() - t0
    cost = measure_cost(model, ctx)
    metrics["cost"] = cost
    manifest = build_manifest(ctx, state, cache, metrics, cost, eval_seconds)
    history = pd.DataFrame(state.history, columns=store.HISTORY_COLUMNS)
    store.save_run(ctx.run_id, manifest=manifest, metrics=metrics, history=history,
                   confusion=confusion, predictions=predictions, state_dict=weights)
    return manifest["headline"], metrics
