"""Planning epochs to a time budget: timing leaves the model untouched, the plan fits the budget."""
from __future__ import annotations

import torch
from torch import nn

from emotion_core import models, store
from emotion_core.training import loop as train
from emotion_core.training import planner as budget
from emotion_core.training.config import PROFILES
from tests import tiny_shapes


def test_timing_steps_leaves_weights_statistics_and_rng_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(),
                          nn.LazyLinear(3))
    model(torch.randn(2, 3, 8, 8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [(torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])) for _ in range(4)]
    rng = torch.get_rng_state()
    per_image = budget.seconds_per_image(model, nn.CrossEntropyLoss(), batches, torch.device("cpu"))
    assert per_image > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    assert all(p.grad is None for p in model.parameters())


def test_plans_fit_the_budget():
    cfg = PROFILES["quick"].override(epochs=8, head_epochs=2, batch_size=10, time_budget_s=100)
    plan = budget.plan_within_budget
    # scratch, 100 train + 30 val images: 0.1 s/image -> 11 s an epoch -> all 8 fit
    assert plan(cfg, 0.1, 100, 30) is cfg
    assert plan(cfg, 0.2, 100, 30).epochs == 4  # 22 s an epoch
    # not one epoch fits: part of one (val costs 10 s, then 10 s a batch of 10 -> 9 batches)
    part = plan(cfg, 1.0, 100, 30)
    assert (part.epochs, part.max_batches) == (1, 9)
    assert plan(cfg, 100.0, 100, 30).max_batches == 1  # never fewer than one batch
    # pretrained: head epochs cost a forward pass (1/3), so 1 head + 4 fine-tune epochs fit
    five = plan(cfg, 0.2, 100, 30, pretrained=True)
    assert (five.epochs, five.head_epochs) == (5, 1)
    assert [(p.name, p.epochs) for p in train.plan_phases(five, True)] == [("head", 1), ("finetune", 4)]
    # no room for head + fine-tune: a linear probe of the frozen backbone (43 s a head epoch)
    probe = plan(cfg, 1.0, 100, 30, pretrained=True)
    assert (probe.epochs, probe.head_epochs) == (2, 2)
    assert [(p.name, p.epochs) for p in train.plan_phases(probe, True)] == [("head", 2)]
    assert plan(cfg.override(time_budget_s=0), 10.0, 100, 30) == cfg.override(time_budget_s=0)


def test_fit_plans_fewer_epochs_when_the_budget_is_short(tmp_path, monkeypatch):
    ds = tiny_shapes.prepared(tiny_shapes.make_folder(tmp_path / "tiny"))
    monkeypatch.setattr(budget, "seconds_per_image", lambda *a, **k: 1.0)  # 36 train + 12 val: 40 s/epoch
    cfg = PROFILES["quick"].override(image_size=32, batch_size=8, epochs=5, tiny=True, patience=10,
                                     eval_batch_size=32, time_budget_s=100, measure_speed=False)
    run_id = train.fit("vit_scratch", ds, cfg, progress=False)
    rec = store.load_run(run_id)
    assert rec.manifest["headline"]["epochs_planned"] == 2 and len(rec.history) == 2
    assert models.get_spec("vit_scratch")  # registry untouched


def test_probe_skips_a_one_image_remainder_batch():
    batches = [(torch.zeros(4, 3, 8, 8), torch.zeros(4)), (torch.zeros(1, 3, 8, 8), torch.zeros(1)),
               (torch.zeros(4, 3, 8, 8), torch.zeros(4))]
    assert [len(y) for _, y in budget.probe_batches(batches)] == [4, 4]
