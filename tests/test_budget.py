"""Planning epochs to a time budget: timing leaves the model untouched, the plan fits the budget."""
from __future__ import annotations

import torch
from torch import nn

from emotion_core import artifacts, budget, models, train
from emotion_core.config import PROFILES
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


def test_epochs_fit_the_budget_and_keep_a_head_phase():
    cfg = PROFILES["quick"].override(epochs=8, head_epochs=2, time_budget_s=100)
    # 0.1 s per image, 100 train + 30 val images -> 11 s an epoch -> 9 fit, capped at 8
    assert budget.epochs_within_budget(cfg, 0.1, 100, 30) == 8
    assert budget.epochs_within_budget(cfg, 0.5, 100, 30) == 1  # 55 s an epoch
    assert budget.epochs_within_budget(cfg, 10.0, 100, 30) == 1  # never fewer than one
    assert budget.epochs_within_budget(cfg.override(time_budget_s=0), 10.0, 100, 30) == 8
    # pretrained: head epochs cost a forward pass (1/3), so more epochs fit the same budget
    assert budget.epochs_within_budget(cfg, 0.2, 100, 30) == 4  # 22 s an epoch
    assert budget.epochs_within_budget(cfg, 0.2, 100, 30, pretrained=True) == 5  # 1 head + 4
    small = budget.budgeted_config(cfg, 3)
    assert (small.epochs, small.head_epochs) == (3, 1)
    phases = train.plan_phases(small, pretrained_used=True)
    assert [(p.name, p.epochs) for p in phases] == [("head", 1), ("finetune", 2)]
    assert budget.budgeted_config(cfg, 8) is cfg


def test_part_of_an_epoch_when_one_epoch_does_not_fit():
    cfg = PROFILES["quick"].override(batch_size=10, time_budget_s=100, max_batches=0)
    # 1 s per image: 10 s a batch; 30 val images cost 10 s, so 9 of the 10 batches fit
    assert budget.batches_within_budget(cfg, 1.0, 100, 30) == 9
    assert budget.batches_within_budget(cfg, 0.01, 100, 30) == 0  # the whole epoch fits
    assert budget.batches_within_budget(cfg, 100.0, 100, 30) == 1  # never fewer than one
    assert budget.budgeted_config(cfg, 1, 9).max_batches == 9


def test_fit_plans_fewer_epochs_when_the_budget_is_short(tmp_path, monkeypatch):
    ds = tiny_shapes.prepared(tiny_shapes.make_folder(tmp_path / "tiny"))
    monkeypatch.setattr(budget, "seconds_per_image", lambda *a, **k: 1.0)  # 36 train + 12 val: 40 s/epoch
    cfg = PROFILES["quick"].override(image_size=32, batch_size=8, epochs=5, tiny=True, patience=10,
                                     eval_batch_size=32, time_budget_s=100, measure_speed=False)
    run_id = train.fit("vit_scratch", ds, cfg, progress=False)
    rec = artifacts.load_run(run_id)
    assert rec.manifest["headline"]["epochs_planned"] == 2 and len(rec.history) == 2
    assert models.get_spec("vit_scratch")  # registry untouched
