"""The one training loop for every registry model (torchvision-references style, nanoGPT-sized).

`fit` trains one model on a prepared dataset from its decode-once cache, keeps the best
validation macro-F1 weights, evaluates them on val and test, and writes a complete run through
`store.save_run`. Pretrained models follow the study's recipe: head-only epochs with the
backbone frozen, then everything unfrozen at a lower rate. Runs resume from a per-epoch
checkpoint, and the same code runs data-parallel under `torchrun` (rank 0 evaluates and writes).
"""
from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from emotion_core import data, models, store
from emotion_core.data.cache import CachedLoader, DecodedCache, build_cache
from emotion_core.data.prepare import PreparedDataset
from emotion_core.data.transforms import AugmentConfig
from emotion_core.evaluation import cost as cost_mod
from emotion_core.evaluation import metrics as ev
from emotion_core.evaluation.inference import collect_probs
from emotion_core.store.runs import git_commit, split_hash  # shared with evaluation.reference
from emotion_core.training import checkpoint, distributed
from emotion_core.training import planner as budget
from emotion_core.training.config import TrainConfig


@dataclass(frozen=True)
class Phase:
    name: str  # "train" (from scratch), "head" (backbone frozen) or "finetune" (all unfrozen)
    epochs: int
    lr: float


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def plan_phases(config: TrainConfig, pretrained_used: bool) -> list[Phase]:
    """The study's recipe for pretrained backbones, a single phase otherwise."""
    if pretrained_used and config.head_epochs > 0:
        if config.epochs <= config.head_epochs:  # a linear probe: the backbone stays frozen
            return [Phase("head", config.epochs, config.lr)]
        return [Phase("head", config.head_epochs, config.lr),
                Phase("finetune", config.epochs - config.head_epochs, config.finetune_lr)]
    lr = config.finetune_lr if pretrained_used else config.lr
    return [Phase("train", config.epochs, lr)]


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float):
    """LR multiplier: linear warm-up to 1, then cosine decay to `min_ratio`."""
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def train_one_epoch(model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    loader: Iterable, device: torch.device, scheduler: Any, *, amp: bool = False,
                    channels_last: bool = False, max_batches: int = 0, grad_clip: float = 0.0,
                    desc: str = "train", show: bool = True) -> dict[str, float]:
    """One pass over `loader`, stepping the scheduler per batch; returns loss/correct sums."""
    model.train()
    loss_sum, correct, n = 0.0, 0, 0
    total = min(len(loader), max_batches) if max_batches else len(loader)
    bar = tqdm(loader, total=total, desc=desc, leave=False, disable=not show, dynamic_ncols=True)
    for i, (x, y) in enumerate(bar):
        if max_batches and i >= max_batches:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
            loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
        optimizer.step()
        scheduler.step()
        loss_sum += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
        bar.set_postfix(loss=f"{loss_sum / n:.3f}", acc=f"{correct / n:.3f}")
    return {"loss_sum": loss_sum, "correct": float(correct), "n": float(n)}


def evaluate_loader(model: nn.Module, loader: Iterable, device: torch.device,
                    classes: list[str], *, amp: bool = False,
                    channels_last: bool = False) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Metrics, probabilities and labels of `model` over an evaluation loader."""
    probs, y = collect_probs(model, loader, amp=amp, channels_last=channels_last)
    if len(y) == 0:
        probs = np.zeros((0, len(classes)))
    return ev.compute_metrics(y, probs, classes), probs, y


def _set_trainable(model: nn.Module, phase: Phase) -> list[nn.Parameter]:
    if phase.name == "head":
        for p in model.parameters():
            p.requires_grad_(False)
        for p in models.head_parameters(model):
            p.requires_grad_(True)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def _wandb_start(config: TrainConfig, run_id: str, extra: dict[str, Any]):
    if not config.wandb:
        return None
    try:
        import wandb
    except ImportError as exc:
        raise RuntimeError("--wandb needs the Weights & Biases client: `pip install wandb` "
                           "(or drop --wandb)") from exc
    return wandb.init(project=config.wandb_project, name=run_id, mode=config.wandb_mode,
                      config={**config.to_dict(), **extra}, reinit=True)


def fit(model_name: str, ds: PreparedDataset, config: TrainConfig, *, run_id: str | None = None,
        cache: DecodedCache | None = None, resume: bool = False, progress: bool = True) -> str:
    """Train `model_name` on `ds` (a PreparedDataset) and store the run; returns its id.
    External reference models are refused (ValueError): they are evaluated, never trained."""
    models.check_trainable([model_name])
    info = distributed.init_distributed()
    device = distributed.device_for(info)
    show = progress and info.is_main
    on_cuda = device.type == "cuda"
    amp, chl = config.amp and on_cuda, config.channels_last and on_cuda
    aug_device = device if on_cuda else None  # augment uint8 batches on the GPU: CPU stays free
    spec = models.get_spec(model_name)
    mean, std = list(spec.mean), list(spec.std)
    size = config.image_size
    if cache is None:  # rank 0 builds, the others reuse the finished cache
        if info.is_main:
            cache = build_cache(ds, size, crop_faces=config.crop_faces, progress=show)
        distributed.barrier(info)
        if not info.is_main:
            cache = build_cache(ds, size, crop_faces=config.crop_faces, progress=False)
    if int(cache.size) != int(size):
        raise ValueError(f"the cache holds {cache.size}px images but the config asks for {size}px")
    classes = list(cache.classes)
    train_idx, val_idx = cache.indices("train"), cache.indices("val")
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(f"dataset '{ds.name}' needs non-empty train and val subsets to train "
                         f"(got {len(train_idx)} train, {len(val_idx)} val images)")
    seed_everything(config.seed)
    model, weights_source = models.build_model(model_name, len(classes), pretrained=config.pretrained,
                                               image_size=size, tiny=config.tiny)
    pretrained_used = weights_source != "scratch"
    model.to(device)
    if chl:
        model.to(memory_format=torch.channels_last)
    train_labels = [classes[i] for i in cache.labels[train_idx]]  # data.class_weights takes names
    weights = data.class_weights(train_labels, classes) if config.class_weighted else None
    criterion = nn.CrossEntropyLoss(
        weight=None if weights is None else torch.as_tensor(weights, dtype=torch.float32, device=device),
        label_smoothing=config.label_smoothing)

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    key = f"{ds.name}-{model_name}-{config.profile}"
    work = store.paths.work_dir(key)
    saved = checkpoint.load_checkpoint(work) if resume else None
    if saved and (saved[0].get("config") != config.to_dict() or saved[0].get("model") != model_name):
        if show:
            print(f"  checkpoint in {work} was made with other settings; starting afresh")
        saved = None
    if resume and saved is None and show:
        print(f"  no checkpoint to resume for {key}; starting afresh")
    state: dict[str, Any] = saved[0] if saved else {
        "run_id": run_id or f"{ds.name}-{model_name}-{stamp}", "model": model_name,
        "config": config.to_dict(), "history": [], "phase_index": 0, "epoch_in_phase": 0,
        "epoch": 0, "best_f1": -1.0, "best_epoch": 0, "stale": 0, "train_seconds": 0.0,
        "done": False}
    run_id = distributed.broadcast_str(run_id or state["run_id"], info)
    state["run_id"] = run_id
    best_state = checkpoint.load_best(work) if saved else None
    if saved:  # restore the weights now; optimizer/scheduler once their phase is rebuilt
        model.load_state_dict({k[6:]: v for k, v in saved[1].items() if k.startswith("model.")})
        checkpoint.set_rng_state(saved[1], state["rng"])
        if show:
            print(f"  resuming {run_id} after epoch {state['epoch']}")
    if not resume and info.is_main:
        checkpoint.clear(work)
    wb = _wandb_start(config, run_id, {"model": model_name, "dataset": ds.name}) if info.is_main else None
    aug = AugmentConfig(enabled=config.augment)
    if "plan" not in state:  # fixed once, so a resumed run keeps the same schedule
        plan = [config.epochs, config.head_epochs, config.max_batches]
        if config.time_budget_s:
            probe = CachedLoader(cache, train_idx, config.batch_size, shuffle=True, aug=aug,
                                           mean=mean, std=std, seed=config.seed, device=aug_device)
            per_image = budget.seconds_per_image(model, criterion, budget.probe_batches(probe), device,
                                                 amp=amp, channels_last=chl)
            cut = budget.plan_within_budget(config, per_image, len(train_idx) // info.world_size,
                                            len(val_idx), pretrained=pretrained_used)
            plan = [cut.epochs, cut.head_epochs, cut.max_batches]
        plan = [int(v) for v in distributed.broadcast_floats([float(v) for v in plan], info, device)]
        state["plan"] = dict(zip(("epochs", "head_epochs", "max_batches"), plan, strict=True))
        if show and plan != [config.epochs, config.head_epochs, config.max_batches]:
            part = f" of {plan[2]} batches" if plan[2] else ""
            head = f", {plan[1]} of them head-only" if pretrained_used and plan[1] else ""
            print(f"  {plan[0]} of {config.epochs} epochs{part}{head} fit the "
                  f"{config.time_budget_s:.0f}s budget", flush=True)
    run_config = config.override(**state["plan"])
    phases = plan_phases(run_config, pretrained_used)

    val_loader = CachedLoader(cache, val_idx, config.eval_batch_size, shuffle=False,
                                        aug=None, mean=mean, std=std, seed=config.seed,
                                        device=aug_device)
    drop_last = len(train_idx) // info.world_size > config.batch_size
    net: nn.Module = model
    for pi, phase in enumerate(phases):
        if state["done"] or pi < state["phase_index"]:
            continue
        params = _set_trainable(model, phase)
        if info.enabled:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if on_cuda else None)
        shard_len = len(distributed.shard_indices(train_idx, info, epoch=0, seed=config.seed))
        steps = shard_len // config.batch_size if drop_last else -(-shard_len // config.batch_size)
        steps = min(steps, run_config.max_batches) if run_config.max_batches else steps
        optimizer = torch.optim.AdamW(params, lr=phase.lr, weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(
            steps * phase.epochs, int(config.warmup_epochs * steps), config.min_lr_ratio))
        if saved and pi == state["phase_index"] and state["epoch_in_phase"] > 0:
            checkpoint.restore(saved[1], state, model=model, optimizer=optimizer, scheduler=sched)
        elif pi > 0 or not saved:
            state["epoch_in_phase"] = 0
        if phase.name == "finetune" and state["epoch_in_phase"] == 0:
            state["stale"] = 0  # early stopping counts within the final phase
        while state["epoch_in_phase"] < phase.epochs:
            epoch = state["epoch"] + 1
            t0 = time.perf_counter()
            shard = distributed.shard_indices(train_idx, info, epoch=epoch, seed=config.seed)
            loader = CachedLoader(
                cache, shard, config.batch_size, shuffle=not info.enabled, aug=aug, mean=mean,
                std=std, seed=config.seed + 1000 * info.rank, drop_last=drop_last,
                device=aug_device)
            loader.set_epoch(epoch)
            sums = train_one_epoch(net, criterion, optimizer, loader, device, sched, amp=amp,
                                   channels_last=chl, max_batches=run_config.max_batches,
                                   grad_clip=config.grad_clip, show=show,
                                   desc=f"{model_name} {phase.name} epoch {epoch}/{run_config.epochs}")
            loss_sum, correct, n = distributed.all_reduce_sums(
                [sums["loss_sum"], sums["correct"], sums["n"]], info, device)
            vals = [0.0, 0.0, 0.0]
            if info.is_main:
                vm, _, _ = evaluate_loader(model, val_loader, device, classes, amp=amp, channels_last=chl)
                vals = [vm["loss"], vm["accuracy"], vm["macro_f1"]]
            val_loss, val_acc, val_f1 = distributed.broadcast_floats(vals, info, device)
            seconds = time.perf_counter() - t0
            row = {"epoch": epoch, "phase": phase.name, "lr": optimizer.param_groups[0]["lr"],
                   "train_loss": loss_sum / max(n, 1), "train_acc": correct / max(n, 1),
                   "val_loss": val_loss, "val_acc": val_acc, "val_macro_f1": val_f1,
                   "seconds": seconds}
            state["history"].append(row)
            state.update(epoch=epoch, epoch_in_phase=state["epoch_in_phase"] + 1,
                         train_seconds=state["train_seconds"] + seconds)
            improved = val_f1 > state["best_f1"] + 1e-9
            if improved:
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                state.update(best_f1=val_f1, best_epoch=epoch, stale=0)
            else:
                state["stale"] += 1
            last_phase = pi == len(phases) - 1
            if last_phase and state["stale"] >= config.patience:
                state["done"] = True
            if config.time_budget_s and state["train_seconds"] >= config.time_budget_s:
                state["done"] = True  # keep the best epoch so far; every rank saw the same flag below
            state["done"] = bool(distributed.broadcast_floats([float(state["done"])], info, device)[0])
            if show:
                print(f"  epoch {epoch:>3} {phase.name:<8} loss {row['train_loss']:.4f} "
                      f"acc {row['train_acc']:.3f} | val loss {val_loss:.4f} acc {val_acc:.3f} "
                      f"macro-F1 {val_f1:.3f}{' *' if improved else ''} ({seconds:.1f}s)", flush=True)
            if wb is not None:
                wb.log(row)
            if info.is_main and config.checkpoint_every and epoch % config.checkpoint_every == 0:
                if improved:
                    checkpoint.save_best(work, best_state)
                checkpoint.save_checkpoint(work, model_state=model.state_dict(), optimizer=optimizer,
                                           scheduler=sched, state=state)
            if state["done"]:
                break
        state["phase_index"] = pi + 1
    net = model
    if info.is_main:
        if best_state is not None:
            model.load_state_dict(best_state)
        _write_run(run_id, model, ds, cache, config, state, weights_source, model_name, spec,
                   device, amp, chl, info, best_state or model.state_dict(), show)
        checkpoint.clear(work)
    if wb is not None:
        wb.finish()
    distributed.barrier(info)
    return run_id


def _write_run(run_id: str, model: nn.Module, ds: Any, cache: Any, config: TrainConfig,
               state: dict[str, Any], weights_source: str, model_name: str, spec: Any,
               device: torch.device, amp: bool, chl: bool, info: distributed.DistInfo,
               weights: dict[str, torch.Tensor], show: bool) -> None:
    """Evaluate the best weights on val and test and write the complete run (rank 0 only)."""
    t0 = time.perf_counter()
    classes = list(cache.classes)
    mean, std = list(spec.mean), list(spec.std)
    metrics: dict[str, Any] = {"classes": classes}
    pred_parts, conf_parts = [], []
    for subset in ("val", "test"):
        idx = cache.indices(subset)
        if len(idx) == 0:
            continue
        loader = CachedLoader(cache, idx, config.eval_batch_size, shuffle=False,
                                        aug=None, mean=mean, std=std, seed=config.seed,
                                        device=device if device.type == "cuda" else None)
        m, probs, y = evaluate_loader(model, loader, device, classes, amp=amp, channels_last=chl)
        metrics[subset] = m
        pred_parts.append(ev.predictions_table([cache.rels[i] for i in idx], [subset] * len(idx),
                                               y, probs, classes))
        conf = ev.confusion_table(y, probs.argmax(1), classes)
        conf.insert(0, "subset", subset)
        conf_parts.append(conf)
    eval_seconds = time.perf_counter() - t0
    cpu_model = copy.deepcopy(model).float().to("cpu").to(memory_format=torch.contiguous_format)
    size = config.image_size
    cost = {"params": cost_mod.count_params(model), "flops": None, "latency_ms": None}
    if config.measure_speed:
        cost.update(flops=cost_mod.count_flops(cpu_model, size), latency_ms=cost_mod.measure_latency(cpu_model, size))
    metrics["cost"] = cost
    labels = [classes[i] for i in cache.labels]
    val, test = metrics.get("val", {}), metrics.get("test", {})
    headline = {"val_accuracy": val.get("accuracy"), "val_macro_f1": val.get("macro_f1"),
                "test_accuracy": test.get("accuracy"), "test_macro_f1": test.get("macro_f1"),
                "val_ece": val.get("ece"), **cost, "train_seconds": round(state["train_seconds"], 2),
                "epochs_run": state["epoch"], "epochs_planned": state["plan"]["epochs"]}
    manifest = {
        "kind": "model", "run_id": run_id, "model": model_name, "dataset": ds.name,
        "dataset_root": str(getattr(ds, "root", "")), "classes": classes,
        "split_hash": split_hash(cache.rels, labels, cache.subsets),
        "weights_source": weights_source, "pretrained_requested": config.pretrained,
        "profile": config.profile, "config": config.to_dict(), "image_size": size,
        "mean": mean, "std": std, "git_commit": git_commit(),
        "created": datetime.now().isoformat(timespec="seconds"),
        "recipe": [p.__dict__ for p in plan_phases(config, weights_source != "scratch")],
        "best_epoch": state["best_epoch"],
        "timings": {"train_seconds": round(state["train_seconds"], 2),
                    "eval_seconds": round(eval_seconds, 2), "device": str(device),
                    "world_size": info.world_size, "amp_bf16": amp, "channels_last": chl},
        "headline": headline,
    }
    history = pd.DataFrame(state["history"], columns=store.HISTORY_COLUMNS)
    store.save_run(run_id, manifest=manifest, metrics=metrics, history=history,
                       confusion=pd.concat(conf_parts, ignore_index=True),
                       predictions=pd.concat(pred_parts, ignore_index=True), state_dict=weights)
    if show:
        print(f"  wrote run {run_id}: val acc {headline['val_accuracy']:.4f} "
              f"macro-F1 {headline['val_macro_f1']:.4f}", flush=True)
