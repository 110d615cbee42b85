"""Planning epochs to a FLOP budget: the plan fits the budget, depends on no clock, and the
manifest records the schedule that ran; the same seed gives the same weights twice."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch import nn

from emotion_core import models, store
from emotion_core.training import loop as train
from emotion_core.training import planner
from emotion_core.training.config import PROFILES, TrainConfig
from tests import tiny_shapes

GF = 1e9
TINY = PROFILES["quick"].override(image_size=32, batch_size=8, epochs=5, tiny=True, patience=10,
                                  eval_batch_size=32, measure_speed=False, checkpoint_every=0)


@pytest.fixture
def tiny_ds(tmp_path: Path):
    return tiny_shapes.prepared(tiny_shapes.make_folder(tmp_path / "tiny"))


def _plan(cfg: TrainConfig, forward: float, pretrained: bool = False, world: int = 1) -> planner.Plan:
    return planner.plan_schedule(cfg, forward=int(forward), n_train=100, n_val=30,
                                 pretrained=pretrained, world_size=world)


def test_plans_fit_the_budget():
    # 100 train + 30 val images, batch 10; a full epoch costs F x (3 x 100 + 30) FLOPs
    cfg = PROFILES["quick"].override(epochs=8, head_epochs=2, batch_size=10, budget_tflop=3.0)
    assert (_plan(cfg, 1 * GF).epochs, _plan(cfg, 1 * GF).max_batches) == (8, 0)  # 2.64 TFLOP
    assert _plan(cfg, 2 * GF).epochs == 4  # 0.66 TFLOP an epoch
    # not one epoch fits: part of one (val costs 0.3, then 0.3 TFLOP a batch of 10 -> 9 batches)
    part = _plan(cfg, 10 * GF)
    assert (part.epochs, part.max_batches) == (1, 9)
    assert _plan(cfg, 1000 * GF).max_batches == 1  # never fewer than one batch
    # two processes share the work, not the budget: the same epochs, half the batches each
    assert _plan(cfg, 2 * GF, world=2).epochs == 4
    assert _plan(cfg, 10 * GF, world=2).max_batches == 4
    # pretrained: head epochs cost one forward pass, so 1 head + 4 fine-tune epochs fit
    five = _plan(cfg, 2 * GF, pretrained=True)
    assert (five.epochs, five.head_epochs) == (5, 1)
    assert [(p.name, p.epochs) for p in planner.plan_phases(five.apply(cfg), True)] == \
        [("head", 1), ("finetune", 4)]
    # no room for head + fine-tune: a linear probe of the frozen backbone (1.3 TFLOP a head epoch)
    probe = _plan(cfg, 10 * GF, pretrained=True)
    assert (probe.epochs, probe.head_epochs) == (2, 2)
    assert [(p.name, p.epochs) for p in planner.plan_phases(probe.apply(cfg), True)] == [("head", 2)]
    for plan in (five, probe, part, _plan(cfg, 2 * GF)):
        assert plan.planned_flops <= 3e12 + 1 and plan.budget_flops == 3e12
    unbudgeted = _plan(cfg.override(budget_tflop=0), 1000 * GF, pretrained=True)
    assert (unbudgeted.epochs, unbudgeted.head_epochs, unbudgeted.max_batches) == (8, 2, 0)
    assert _plan(cfg.override(budget_tflop=0), 1 * GF).head_epochs == 0  # scratch: no head phase


def test_counting_flops_leaves_weights_statistics_and_rng_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(),
                          nn.LazyLinear(3))
    model(torch.randn(2, 3, 8, 8))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    flops = planner.forward_flops(model, 8)
    assert flops == planner.forward_flops(model, 8) > 0  # counted: the same every time
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state()) and model.training


def _budget_for_epochs(epochs: float) -> float:
    """A TFLOP budget that fits `epochs` epochs of the tiny ViT on tiny_shapes (36 train, 12 val)."""
    model, _ = models.build_model("vit_scratch", 3, pretrained=False, image_size=32, tiny=True)
    f = planner.forward_flops(model, 32)
    return f * (planner.TRAIN_STEP * 36 + planner.EVAL_PASS * 12) * epochs / 1e12


def test_manifest_records_the_schedule_that_ran(tiny_ds):
    cfg = TINY.override(budget_tflop=_budget_for_epochs(2.5))
    rec = store.load_run(train.fit("vit_scratch", tiny_ds, cfg, progress=False))
    recipe = rec.manifest["recipe"]
    assert recipe["phases"] == [{"name": "train", "epochs": 2, "lr": cfg.lr}]  # not the profile's 5
    assert (recipe["epochs"], recipe["max_batches"], recipe["steps_per_epoch"]) == (2, 0, 4)
    assert recipe["budget_tflop"] == pytest.approx(cfg.budget_tflop, rel=1e-4)
    assert recipe["planned_tflop"] <= recipe["budget_tflop"]
    assert rec.manifest["headline"]["epochs_planned"] == 2 and len(rec.history) == 2
    assert rec.manifest["config"]["epochs"] == 5  # the command asked for 5; the recipe says what ran
    # not one epoch fits: the recipe says how many batches of it ran
    part = store.load_run(train.fit("vit_scratch", tiny_ds, cfg.override(
        budget_tflop=_budget_for_epochs(0.6)), progress=False)).manifest["recipe"]
    assert part["epochs"] == 1 and 0 < part["max_batches"] == part["steps_per_epoch"] < 4


def _scaled_clock(monkeypatch: pytest.MonkeyPatch, factor: float) -> None:
    """Every clock the process reads runs `factor` times as fast (a busy or an idle machine)."""
    for name in ("perf_counter", "monotonic", "time"):
        real = getattr(time, name)
        start = real()
        monkeypatch.setattr(time, name, lambda real=real, start=start: start + (real() - start) * factor)


@pytest.mark.slow
def test_same_seed_same_schedule_and_weights_whatever_the_clock(tiny_ds, monkeypatch):
    """The plan is counted, not timed: a 1000x slower or faster clock changes nothing trained."""
    cfg = TINY.override(budget_tflop=_budget_for_epochs(3.5))
    results = []
    for factor in (1.0, 1000.0, 0.001):
        with monkeypatch.context() as m:
            _scaled_clock(m, factor)
            run_id = train.fit("vit_scratch", tiny_ds, cfg, progress=False)
        rec = store.load_run(run_id)
        results.append((rec, store.load_weights(run_id)[0]))
    (ref, ref_w), others = results[0], results[1:]
    assert ref.manifest["recipe"]["epochs"] == 3
    for rec, weights in others:
        assert rec.manifest["recipe"] == ref.manifest["recipe"]
        assert rec.metrics["val"] == ref.metrics["val"] and rec.metrics["test"] == ref.metrics["test"]
        cols = [c for c in rec.history.columns if c != "seconds"]
        assert rec.history[cols].equals(ref.history[cols])
        assert weights.keys() == ref_w.keys()
        assert all(torch.equal(weights[k], ref_w[k]) for k in ref_w)
    # wall time is a measurement: the slow clock recorded more seconds for the same training
    assert results[1][0].manifest["timings"]["train_seconds"] > ref.manifest["timings"]["train_seconds"]
