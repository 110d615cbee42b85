"""The one training loop for every registry model (torchvision-references style, nanoGPT-sized).

`fit` trains one model on a prepared dataset from its decode-once cache, keeps the best
validation macro-F1 weights and hands them to `writer.write_run`, which evaluates them on val and
test and stores the run. Pretrained models follow the study's recipe: head-only epochs with the
backbone frozen, then everything unfrozen at a lower rate (planner.plan_phases). The schedule is
planned once from counted FLOPs, never from timing (planner.py), and kept in the RunState, so a
resumed run, an idle and a busy machine all train the same epochs. Runs resume from a per-epoch
checkpoint (checkpoint.py), and the same code runs data-parallel under `torchrun` (rank 0
validates, checkpoints and writes; distributed.py). bf16 autocast and channels_last apply on CUDA.

The pieces take what they need as arguments: `train_one_epoch` (one pass, torchvision's shape),
`run_epoch` (train + validate + share the numbers), `run_phase` (optimizer and LR schedule of one
phase, its epochs, checkpoints) and `train_phases`; set-up before the first epoch is in setup.py.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from emotion_core import models, store
from emotion_core.data.cache import CachedLoader, DecodedCache
from emotion_core.data.prepare import PreparedDataset
from emotion_core.data.transforms import AugmentConfig
from emotion_core.evaluation import metrics as ev
from emotion_core.training import (
    checkpoint,
    distill,
    distributed,
    ema,
    mixup,
    planner,
    sam,
    sampling,
    small_loss,
)
from emotion_core.training.config import TrainConfig
from emotion_core.training.planner import Phase
from emotion_core.training.probe import run_probe
from emotion_core.training.progress import EventLog, Reporter, start_wandb
from emotion_core.training.setup import (
    Runtime,
    Split,
    make_criterion,
    make_split,
    open_checkpoint,
    plan_run,
    seed_everything,
)
from emotion_core.training.state import RunState
from emotion_core.training.writer import RunContext, evaluate_loader, write_run

Weights = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Setup:
    """What every phase and epoch of one run needs; fixed for the run."""

    name: str  # registry model name (progress labels)
    model: nn.Module
    criterion: nn.Module
    split: Split
    config: TrainConfig  # the command's config with the plan applied
    rt: Runtime
    reporter: Reporter
    work: Path  # the checkpoint folder
    ema: AveragedModel | None = None  # --ema: the weights' moving average, what gets validated and kept
    distiller: distill.Distiller | None = None  # --distill: the frozen teacher the loss also learns from

    @property
    def evaluated(self) -> nn.Module:
        """The weights validation scores and the run keeps: the moving average under --ema."""
        return self.model if self.ema is None else self.ema.module

    @property
    def drop_last(self) -> bool:
        return len(self.split.train) // self.rt.info.world_size > self.config.batch_size

    def steps_per_epoch(self) -> int:
        shard = distributed.shard_indices(self.split.train, self.rt.info, epoch=0, seed=self.config.seed)
        return planner.steps_per_epoch(len(shard), self.config.batch_size, self.drop_last,
                                       self.config.max_batches)


def train_one_epoch(model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    loader: Iterable, device: torch.device, scheduler: Any, *, amp: bool = False,
                    channels_last: bool = False, max_batches: int = 0, grad_clip: float = 0.0,
                    desc: str = "train", show: bool = True,
                    on_batch: Callable[[int], None] | None = None,
                    on_step: Callable[[], None] | None = None,
                    mixer: mixup.Mixer | None = None,
                    distiller: distill.Distiller | None = None,
                    sam_rho: float = 0.0, forget_rate: float = 0.0) -> dict[str, float]:
    """One pass over `loader`, stepping the scheduler per batch; returns loss/correct sums.
    `on_step()` runs after each optimizer step (the weights' moving average), `on_batch(n)`
    after the n-th batch (progress events). With a `mixer` (--mixup) each batch is mixed with a
    shuffled copy of itself, and its loss and right answers count both labels. With a
    `distiller` (--distill) the loss also learns the teacher's soft answers on the same batch.
    With `sam_rho` (--sam) the step takes the gradient at the worst nearby weights (sam.py);
    the loss and right answers reported are those at the weights themselves. With
    `forget_rate` (--forget-rate) the label loss covers only the batch's lowest-loss pictures
    (small_loss.py), the same ones in both --sam passes."""
    model.train()
    selector = small_loss.Selector(criterion, forget_rate) if forget_rate else None
    params = [p for p in model.parameters() if p.requires_grad]
    loss_sum, correct, n = 0.0, 0.0, 0
    total = min(len(loader), max_batches) if max_batches else len(loader)
    bar = tqdm(loader, total=total, desc=desc, leave=False, disable=not show, dynamic_ncols=True)
    for i, (x, y) in enumerate(bar):
        if max_batches and i >= max_batches:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        mix = mixer.draw(len(y), device) if mixer is not None else None
        if mix is not None:
            x = mix.inputs(x)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        taught = None  # the teacher's answers, once a batch (a --sam step computes the loss twice)
        if distiller is not None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                taught = distiller.soft_targets(x)

        def forward(x: torch.Tensor = x, y: torch.Tensor = y, mix: mixup.Mix | None = mix,
                    taught: torch.Tensor | None = taught, rows: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
                scores = logits.float()
                if selector is not None and rows is None:
                    rows = selector.rows(scores, y, mix)
                loss = small_loss.label_loss(criterion, scores, y, mix, rows)
                if distiller is not None and taught is not None:
                    loss = distiller.loss(loss, logits, taught)
            return logits, loss, rows

        logits, loss, rows = forward()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if sam_rho:
            moves = sam.ascend(params, sam_rho)
            optimizer.zero_grad(set_to_none=True)
            with sam.norm_stats_frozen(model):
                forward(rows=rows)[1].backward()
            sam.descend(params, moves)
        if grad_clip:
            nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        if on_step is not None:
            on_step()
        scheduler.step()
        loss_sum += loss.item() * len(y)
        pred = logits.detach().argmax(1)
        correct += float((pred == y).sum()) if mix is None else mix.correct(pred, y)
        n += len(y)
        bar.set_postfix(loss=f"{loss_sum / n:.3f}", acc=f"{correct / n:.3f}")
        if on_batch is not None:
            on_batch(i + 1)
    return {"loss_sum": loss_sum, "correct": correct, "n": float(n)}


def validate(setup: Setup) -> tuple[float, float, float, str | None]:
    """(val loss, accuracy, macro-F1, the class answered for every image if only one is):
    rank 0 evaluates, every rank gets its numbers; the constant answer is rank 0's, who reports."""
    rt, split, config = setup.rt, setup.split, setup.config
    vals, constant = [0.0, 0.0, 0.0], None
    if len(split.val) == 0:  # a refit trains on val: nothing is left to validate on
        return float("nan"), float("nan"), float("nan"), None
    if rt.info.is_main:
        loader = CachedLoader(split.cache, split.val, config.eval_batch_size, shuffle=False,
                              aug=None, mean=split.mean, std=split.std, seed=config.seed,
                              device=rt.aug_device)
        vm, _, _ = evaluate_loader(setup.evaluated, loader, rt.device, split.classes, amp=rt.amp,
                                   channels_last=rt.channels_last, tta_flip=config.tta_flip)
        vals = [vm["loss"], vm["accuracy"], vm["macro_f1"]]
        constant = ev.constant_answer(vm["confusion"], split.classes)
    loss, acc, f1 = distributed.broadcast_floats(vals, rt.info, rt.device)
    return loss, acc, f1, constant


def run_epoch(setup: Setup, net: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
              phase: Phase, epoch: int, steps: int) -> dict[str, Any]:
    """Train one epoch on this rank's shard, validate, and return its history row."""
    rt, split, config = setup.rt, setup.split, setup.config
    t0 = time.perf_counter()
    rows = sampling.epoch_rows(split.train, split.sources, config.set_sampling, seed=config.seed,
                               epoch=epoch)
    shard = distributed.shard_indices(rows, rt.info, epoch=epoch, seed=config.seed)
    loader = CachedLoader(split.cache, shard, config.batch_size, shuffle=not rt.info.enabled,
                          aug=AugmentConfig(enabled=config.augment, scale=config.scale_jitter,
                                            shift=config.shift_jitter, erase=config.erase,
                                            lowres=config.lowres),
                          mean=split.mean,
                          std=split.std, seed=config.seed + 1000 * rt.info.rank,
                          drop_last=setup.drop_last, device=rt.aug_device)
    loader.set_epoch(epoch)
    setup.reporter.epoch_started(epoch, config.epochs, phase.name, steps)
    averaged = setup.ema
    on_step = None if averaged is None else (lambda: averaged.update_parameters(setup.model))
    mixer = (mixup.Mixer(config.mixup, seed=config.seed, epoch=epoch, rank=rt.info.rank)
             if config.mixup else None)
    sums = train_one_epoch(net, setup.criterion, optimizer, loader, rt.device, scheduler,
                           amp=rt.amp, channels_last=rt.channels_last,
                           max_batches=config.max_batches, grad_clip=config.grad_clip,
                           show=rt.show, on_batch=setup.reporter.on_batch(epoch, steps),
                           on_step=on_step, mixer=mixer, distiller=setup.distiller,
                           sam_rho=config.sam,
                           forget_rate=small_loss.rate_at(config.forget_rate, epoch),
                           desc=f"{setup.name} {phase.name} epoch {epoch}/{config.epochs}")
    loss_sum, correct, n = distributed.all_reduce_sums(
        [sums["loss_sum"], sums["correct"], sums["n"]], rt.info, rt.device)
    val_loss, val_acc, val_f1, constant = validate(setup)
    train_loss = loss_sum / max(n, 1)
    if constant is not None:
        setup.reporter.warn(collapse_warning(
            f"epoch {epoch}: every validation image got '{constant}'", steps=epoch * steps,
            train_loss=train_loss, classes=len(split.classes), lr=phase.lr), epoch=epoch)
    return {"epoch": epoch, "phase": phase.name, "lr": optimizer.param_groups[0]["lr"],
            "train_loss": train_loss, "train_acc": correct / max(n, 1),
            "val_loss": val_loss, "val_acc": val_acc, "val_macro_f1": val_f1,
            "seconds": time.perf_counter() - t0}


UNIFORM_LOSS_GAP = 0.01  # a training loss this close to ln(classes) is a uniform guess's


def collapse_warning(what: str, *, steps: int, train_loss: float, classes: int,
                     lr: float) -> str:
    """`what` (one answer for every image), the numbers that tell its two causes apart, and what
    to change for each: a model that has not learned yet (few steps: a small compute budget), or
    a start that collapsed, whose class-weighted training loss stays at ln(classes), a uniform
    guess's, epoch after epoch (a plain VGG from scratch at too high a rate)."""
    uniform = math.log(classes)
    at = (f", at ln {classes}: a uniform guess's" if abs(train_loss - uniform) < UNIFORM_LOSS_GAP
          else "")
    return (f"{what}: the model answers a constant after {steps} optimisation steps (training "
            f"loss {train_loss:.4f}{at}). A model that has not learned yet does this: give it "
            f"more --epochs or a larger --budget-tflop. So does a start that collapsed, whose "
            f"loss then stays at ln {classes} = {uniform:.4f} epoch after epoch (a plain VGG-16 "
            f"from scratch at too high a rate): train it again at a lower --lr (this phase's "
            f"peak: {lr:g}) or another --seed")


def set_trainable(model: nn.Module, phase: Phase) -> list[nn.Parameter]:
    """Freeze all but the head for a head phase, unfreeze everything otherwise."""
    head_only = phase.name == "head"
    for p in model.parameters():
        p.requires_grad_(not head_only)
    if head_only:
        for p in models.head_parameters(model):
            p.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


DEPTH_GROUPS = 12  # layer-wise decay: parameters in registration order, cut into this many groups


def param_groups(model: nn.Module, params: list[nn.Parameter], phase: Phase,
                 config: TrainConfig) -> list[dict[str, Any]]:
    """One group at the phase's rate, or, for a fine-tune with layer_decay < 1, DEPTH_GROUPS
    groups by registration order (input side first; every registry model registers its layers
    in depth order) whose rates fall by layer_decay per group away from the head, which keeps
    the phase's rate (discriminative fine-tuning, as in BEiT/ConvNeXt recipes)."""
    if phase.name != "finetune" or config.layer_decay >= 1.0:
        return [{"params": params, "lr": phase.lr}]
    head = {id(p) for p in models.head_parameters(model)}
    body = [p for p in params if id(p) not in head]
    groups = [{"params": [p for p in params if id(p) in head], "lr": phase.lr}]
    size = -(-len(body) // DEPTH_GROUPS)
    for g in range(DEPTH_GROUPS):
        chunk = body[g * size:(g + 1) * size]
        if chunk:
            groups.append({"params": chunk,
                           "lr": phase.lr * config.layer_decay ** (DEPTH_GROUPS - g)})
    return groups


def make_optimizer(params: list[nn.Parameter], phase: Phase, steps: int, config: TrainConfig,
                   model: nn.Module | None = None) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW at the phase's peak rate(s) with per-step warm-up + cosine decay over the phase."""
    groups = param_groups(model, params, phase, config) if model is not None else \
        [{"params": params, "lr": phase.lr}]
    optimizer = torch.optim.AdamW(groups, lr=phase.lr, weight_decay=config.weight_decay)
    factor = planner.warmup_cosine(steps * phase.epochs, int(config.warmup_epochs * steps),
                                   config.min_lr_ratio)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def run_phase(setup: Setup, phases: list[Phase], index: int, state: RunState,
              ckpt: checkpoint.Checkpoint | None, best: Weights | None) -> Weights | None:
    """Train phase `index` from where `state` stands (continuing `ckpt` when it stopped inside
    this phase); returns the best weights so far."""
    phase, model, rt = phases[index], setup.model, setup.rt
    params = set_trainable(model, phase)
    net: nn.Module = model
    if rt.info.enabled:  # rewrapped per phase: DDP fixes the set of trainable parameters
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    steps = setup.steps_per_epoch()
    optimizer, scheduler = make_optimizer(params, phase, steps, setup.config, model)
    if ckpt is not None and index == state.phase_index and state.epoch_in_phase > 0:
        checkpoint.restore(ckpt, model=model, optimizer=optimizer, scheduler=scheduler)
    else:  # early stopping counts within the final (fine-tune) phase
        state.start_phase(index, final_phase_restarts_patience=phase.name == "finetune")
    while state.epoch_in_phase < phase.epochs and not state.done:
        row = run_epoch(setup, net, optimizer, scheduler, phase, state.epoch + 1, steps)
        improved = state.record_epoch(row, final_phase=index == len(phases) - 1,
                                      patience=setup.config.patience,
                                      keep_last=setup.config.refit)
        if improved:
            best = {k: v.detach().cpu().clone() for k, v in setup.evaluated.state_dict().items()}
        setup.reporter.epoch_finished(row, epochs=setup.config.epochs, improved=improved)
        every = setup.config.checkpoint_every
        if rt.info.is_main and every and state.epoch % every == 0:
            checkpoint.save_checkpoint(setup.work, state=state, model_state=model.state_dict(),
                                       optimizer=optimizer, scheduler=scheduler, best_state=best,
                                       ema_state=None if setup.ema is None
                                       else setup.ema.state_dict())
    return best


def train_phases(setup: Setup, phases: list[Phase], state: RunState,
                 ckpt: checkpoint.Checkpoint | None) -> Weights | None:
    """Every phase from `state.phase_index` on, until the plan ends or early stopping fires."""
    best = ckpt.best if ckpt is not None else None
    for index in range(state.phase_index, len(phases)):
        if state.done:
            break
        best = run_phase(setup, phases, index, state, ckpt, best)
    return best


def make_distiller(config: TrainConfig, split: Split, rt: Runtime) -> distill.Distiller | None:
    """The --distill teacher on the run's device, or None."""
    distill.check(config.distill, config.distill_weight, config.distill_temperature, config.recipe)
    if not config.distill:
        return None
    teacher, recipe, described = distill.load_teacher(config.distill, split.classes)
    if rt.show:
        print(f"  distilling from {described}: weight {config.distill_weight:g}, "
              f"temperature {config.distill_temperature:g}", flush=True)
    return distill.Distiller(teacher, recipe, student_mean=split.mean, student_std=split.std,
                             weight=config.distill_weight, temperature=config.distill_temperature,
                             device=rt.device)


def fit(model_name: str, ds: PreparedDataset, config: TrainConfig, *, run_id: str | None = None,
        cache: DecodedCache | None = None, resume: bool = False, progress: bool = True,
        events: EventLog | None = None) -> str:
    """Train `model_name` on `ds` and store the run; returns its id. `events` receives progress
    events (progress.py; rank 0 only). External reference models are refused (ValueError):
    they are evaluated, never trained."""
    models.check_trainable([model_name])
    rt = Runtime.create(config, progress)
    split = make_split(ds, config, cache, rt, models.get_spec(model_name))
    seed_everything(config.seed)
    model, weights_source = models.build_model(model_name, len(split.classes),
                                               pretrained=config.pretrained,
                                               image_size=config.image_size, tiny=config.tiny)
    pretrained = weights_source != "scratch"
    model.to(rt.device)
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
    criterion = make_criterion(split, config, rt.device)
    averaged = ema.make_ema(model, config.ema, config.recipe)
    mixup.check(config.mixup, config.recipe)
    sam.check(config.sam, config.recipe)
    small_loss.check(config.forget_rate, config.recipe)
    distiller = make_distiller(config, split, rt)
    kind = f"{model_name}-refit" if config.refit else model_name  # a refit is its own run
    work = store.paths.work_dir(f"{ds.name}-{kind}-{config.profile}")
    say = (lambda text: print(f"  {text}", flush=True)) if rt.show else (lambda text: None)
    ckpt = open_checkpoint(work, model_name, config, resume, say)
    if ckpt is not None:
        state = ckpt.state
        model.load_state_dict(ckpt.model_state())  # optimizer/scheduler once the phase is rebuilt
        if averaged is not None:
            averaged.load_state_dict(ckpt.ema_state())
        checkpoint.set_rng_state(ckpt.tensors, ckpt.extra["rng"])
        say(f"resuming {state.run_id} after epoch {state.epoch}")
    else:
        fresh = store.new_run_id(f"{ds.name}-{kind}") if rt.info.is_main and not run_id else ""
        state = RunState(run_id=run_id or fresh, model=model_name, config=config.to_dict(),
                         plan=plan_run(model, split, config, pretrained, rt.info.world_size))
    state.run_id = distributed.broadcast_str(run_id or state.run_id, rt.info)  # rank 0's id
    if not resume and rt.info.is_main:
        checkpoint.clear(work)
    main = rt.info.is_main
    wandb_run = start_wandb(config, state.run_id, {"model": model_name, "dataset": ds.name}) if main else None
    reporter = Reporter((events or EventLog()) if main else EventLog(), show=rt.show,
                        wandb_run=wandb_run)
    run_config = state.plan.apply(config)
    phases = planner.plan_phases(run_config, pretrained,
                                 models.get_spec(model_name).finetune_lr_scale)
    setup = Setup(model_name, model, criterion, split, run_config, rt, reporter, work, averaged,
                  distiller)
    ctx = RunContext(state.run_id, model_name, ds.name, str(ds.root), config,
                     weights_source, split.mean, split.std, state.plan, phases,
                     setup.steps_per_epoch(), rt.device, rt.amp, rt.channels_last,
                     rt.info.world_size,
                     sources=None if split.sources is None else tuple(split.sources))
    if config.recipe == "probe":
        return run_probe(setup, ctx, state)
    return train_and_write(setup, ctx, phases, state, ckpt)


def train_and_write(setup: Setup, ctx: RunContext, phases: list[Phase], state: RunState,
                    ckpt: checkpoint.Checkpoint | None) -> str:
    """Announce the plan, train the phases, write the run (rank 0); returns the run id."""
    reporter, rt, model = setup.reporter, setup.rt, setup.model
    reporter.events.emit("run_started", run_id=state.run_id, planned_epochs=state.plan.epochs,
                         max_batches=state.plan.max_batches, recipe=ctx.recipe(),
                         resumed_after=state.epoch if ckpt is not None else None)
    asked = ctx.config
    if setup.config.epochs != asked.epochs or setup.config.max_batches != asked.max_batches:
        part = f" of {setup.config.max_batches} batches" if setup.config.max_batches else ""
        reporter.say(f"{setup.config.epochs} of {asked.epochs} epochs{part} fit the "
                     f"{asked.budget_tflop:g} TFLOP budget "
                     f"({ctx.recipe()['planned_tflop']:.3g} TFLOP planned)")
    best = train_phases(setup, phases, state, ckpt)
    if rt.info.is_main:
        final = best or setup.evaluated.state_dict()  # the average under --ema
        model.load_state_dict(final)
        headline, metrics = write_run(ctx, model, setup.split.cache, state, final)
        reporter.events.emit("run_written", run_id=state.run_id, headline=headline)
        reporter.say(f"wrote run {state.run_id}: {headline_text(headline)}")
        if (constant := ev.run_constant_answer(metrics)) is not None:
            subset, answer = constant
            reporter.warn(collapse_warning(
                f"run {state.run_id} gives every {subset} image '{answer}'",
                steps=len(state.history) * setup.steps_per_epoch(),
                train_loss=float(state.history[-1]["train_loss"]),
                classes=len(setup.split.classes), lr=phases[-1].lr))
        checkpoint.clear(setup.work)
    reporter.finish()
    distributed.barrier(rt.info)
    return state.run_id


def headline_text(headline: dict[str, Any]) -> str:
    """A written run's scores in one line: val when it has any (a refit has none), then test."""
    parts = [f"{key} acc {headline[f'{key}_accuracy']:.4f} macro-F1 "
             f"{headline[f'{key}_macro_f1']:.4f}" for key in ("val", "test")
             if headline.get(f"{key}_accuracy") is not None]
    return "; ".join(parts) or "no held-out images"
