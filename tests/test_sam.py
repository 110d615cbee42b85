"""--sam: each step takes the gradient at the worst nearby weights on the same batch, comes back,
and steps from where it was; batch-norm statistics come from the unperturbed pass only; the
planner counts the second pass; the run records it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from emotion_core import store
from emotion_core.training import loop as train
from emotion_core.training import planner, sam
from emotion_core.training.config import PROFILES
from emotion_core.views import model_card
from tests import tiny_shapes


def test_ascend_moves_by_rho_along_the_unit_gradient_and_descend_undoes_it():
    a, b, frozen = (nn.Parameter(torch.tensor(v)) for v in ([1.0, 2.0], [3.0], [5.0]))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])  # ||g|| = 5 over both
    moves = sam.ascend([a, b, frozen], 0.5)
    assert a.tolist() == pytest.approx([1.3, 2.0]) and b.tolist() == pytest.approx([3.4])
    assert frozen.tolist() == [5.0] and moves[2] is None  # no gradient: not moved
    sam.descend([a, b, frozen], moves)
    assert a.tolist() == pytest.approx([1.0, 2.0]) and b.tolist() == pytest.approx([3.0])
    assert a.grad.tolist() == [3.0, 0.0]  # gradients are the caller's to replace


def test_the_second_pass_leaves_batch_norm_statistics_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).train()
    norm = net[1]
    with sam.norm_stats_frozen(net):
        net(torch.randn(8, 4) * 3 + 2)
    assert torch.equal(norm.running_mean, torch.zeros(4))
    assert torch.equal(norm.running_var, torch.ones(4))
    assert int(norm.num_batches_tracked) == 0 and norm.momentum == 0.1
    net(torch.randn(8, 4) * 3 + 2)  # outside, statistics follow the batch again
    assert not torch.equal(norm.running_mean, torch.zeros(4)) and int(norm.num_batches_tracked) == 1


def test_a_step_uses_the_gradient_at_the_perturbed_weights():
    torch.manual_seed(0)
    model, ce = nn.Linear(3, 3), nn.CrossEntropyLoss()
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    w0 = {k: v.clone() for k, v in model.state_dict().items()}
    rho, lr = 0.3, 0.5

    # by hand: gradient at w, move rho along its unit vector, gradient there, step from w
    ref = nn.Linear(3, 3)
    ref.load_state_dict(w0)
    loss0 = ce(ref(x), y)
    g = torch.autograd.grad(loss0, list(ref.parameters()))
    norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
    with torch.no_grad():
        for p, gi in zip(ref.parameters(), g, strict=True):
            p.add_(gi * rho / norm)
    g_adv = torch.autograd.grad(ce(ref(x), y), list(ref.parameters()))
    want = [w0[k] - lr * gi for k, gi in zip(("weight", "bias"), g_adv, strict=True)]
    plain = [w0[k] - lr * gi for k, gi in zip(("weight", "bias"), g, strict=True)]

    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    sums = train.train_one_epoch(model, ce, opt, [(x, y)], torch.device("cpu"), sched, show=False,
                                 grad_clip=0.0, sam_rho=rho)
    got = [model.weight.detach(), model.bias.detach()]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, want, strict=True))
    assert not all(torch.allclose(a, b, atol=1e-4) for a, b in zip(got, plain, strict=True))
    assert sums["loss_sum"] / 6 == pytest.approx(loss0.item(), rel=1e-6)  # the loss at w itself


def test_the_planner_counts_two_passes_per_training_step():
    cfg = PROFILES["quick"].override(epochs=8, head_epochs=2, batch_size=10, budget_tflop=0)
    one = planner.plan_schedule(cfg, forward=10**9, n_train=100, n_val=30, pretrained=True)
    two = planner.plan_schedule(cfg.override(sam=0.05), forward=10**9, n_train=100, n_val=30,
                                pretrained=True)
    val = 1e9 * 30 * 8
    assert two.planned_flops - val == pytest.approx(2 * (one.planned_flops - val))
    budget = cfg.override(budget_tflop=3.0)  # 8 epochs of one pass fit (2.24 TFLOP), not of two (4.24)
    assert planner.plan_schedule(budget, forward=10**9, n_train=100, n_val=30,
                                 pretrained=True).epochs == 8
    assert planner.plan_schedule(budget.override(sam=0.05), forward=10**9, n_train=100, n_val=30,
                                 pretrained=True).epochs < 8


def test_refusals():
    with pytest.raises(ValueError, match="--sam must be >= 0"):
        sam.check(-0.1, "finetune")
    with pytest.raises(ValueError, match="drop --sam"):
        sam.check(0.05, "probe")
    sam.check(0.0, "probe")  # off is always fine


def test_a_run_records_sam_in_its_manifest_and_card(tmp_path: Path):
    ds = tiny_shapes.prepared(tiny_shapes.make_folder(tmp_path / "tiny"))
    cfg = PROFILES["quick"].override(image_size=32, batch_size=8, epochs=2, tiny=True,
                                     eval_batch_size=32, budget_tflop=0, measure_speed=False,
                                     pretrained=False, sam=0.05)
    m = store.load_run(train.fit("vit_scratch", ds, cfg, progress=False)).manifest
    assert m["recipe"]["sam"] == 0.05 and m["config"]["sam"] == 0.05
    assert "--sam 0.05" in model_card.training_command(m)
    assert "SAM, radius 0.05" in model_card.model_card(m["run_id"])


def test_an_epoch_keeps_the_batch_norm_statistics_of_the_unperturbed_pass():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    twin = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    twin.load_state_dict(model.state_dict())
    x, y = torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # the weights stay: only statistics move
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    train.train_one_epoch(model, nn.CrossEntropyLoss(), opt, [(x, y)], torch.device("cpu"), sched,
                          show=False, sam_rho=0.5)
    twin.train()(x)  # one pass at the weights themselves
    assert torch.allclose(model[1].running_mean, twin[1].running_mean)
    assert torch.allclose(model[1].running_var, twin[1].running_var)
    assert int(model[1].num_batches_tracked) == 1
