"""--forget-rate: each batch learns from its lowest-loss pictures only (ranked without class
weights), from the second epoch on, the same pictures in both --sam passes; the run records it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from emotion_core import store
from emotion_core.training import loop as train
from emotion_core.training import mixup, small_loss
from emotion_core.training.config import PROFILES
from emotion_core.views import model_card
from tests import tiny_shapes


def test_counts_rates_and_refusals():
    assert [small_loss.kept_count(n, 0.1) for n in (48, 10, 9, 1)] == [44, 9, 9, 1]
    assert small_loss.kept_count(4, 0.99) == 1  # never an empty batch
    assert small_loss.rate_at(0.1, 1) == 0.0 and small_loss.rate_at(0.1, 2) == 0.1
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="--forget-rate must be in"):
            small_loss.check(bad, "finetune")
    with pytest.raises(ValueError, match="drop --forget-rate"):
        small_loss.check(0.1, "probe")
    small_loss.check(0.0, "probe")  # off is always fine


def test_the_rows_left_out_are_those_the_model_disagrees_with_most():
    logits = torch.tensor([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0], [4.0, 0, 0], [0, 5.0, 0]])
    y = torch.tensor([0, 1, 2, 2, 0])  # rows 3 and 4: confident answers against their labels
    # class 2 weighted 100x: a weighted ranking would drop row 2 (right, but of class 2) first
    selector = small_loss.Selector(nn.CrossEntropyLoss(weight=torch.tensor([1.0, 1.0, 100.0])), 0.4)
    assert selector.rows(logits, y).tolist() == [0, 1, 2]
    one = small_loss.Selector(nn.CrossEntropyLoss(), 0.2)
    assert one.rows(logits, y).tolist() == [0, 1, 2, 3]  # row 4, the surest against its label, goes
    # under mixup the ranking is of the mixed loss: lam 0.5 with the partner reversed
    mix = mixup.Mix(0.5, torch.tensor([4, 3, 2, 1, 0]))
    mixed = nn.CrossEntropyLoss(reduction="none")
    want = torch.topk(0.5 * mixed(logits, y) + 0.5 * mixed(logits, y[mix.perm]), 3,
                      largest=False).indices.sort().values
    assert small_loss.Selector(nn.CrossEntropyLoss(), 0.4).rows(logits, y, mix).tolist() == want.tolist()


def test_the_mixed_loss_over_rows_keeps_each_rows_partner():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    mix, ce = mixup.Mix(0.7, torch.tensor([5, 4, 3, 2, 1, 0])), nn.CrossEntropyLoss()
    rows = torch.tensor([0, 2, 5])
    want = 0.7 * ce(logits[rows], y[rows]) + 0.3 * ce(logits[rows], torch.tensor([2, 0, 0]))
    assert mix.loss(ce, logits, y, rows).item() == pytest.approx(want.item())
    assert mix.loss(ce, logits, y).item() == pytest.approx(
        (0.7 * ce(logits, y) + 0.3 * ce(logits, y[mix.perm])).item())


def _step(forget: float, **kw) -> tuple[nn.Linear, dict[str, float]]:
    torch.manual_seed(0)
    model = nn.Linear(3, 3)
    x, y = torch.randn(10, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    sums = train.train_one_epoch(model, kw.pop("criterion", nn.CrossEntropyLoss()), opt, [(x, y)],
                                 torch.device("cpu"), sched, show=False, grad_clip=0.0,
                                 forget_rate=forget, **kw)
    return model, sums


def test_a_step_learns_only_from_the_kept_pictures():
    torch.manual_seed(0)
    ref = nn.Linear(3, 3)
    x, y = torch.randn(10, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    w0 = {k: v.clone() for k, v in ref.state_dict().items()}
    weight = torch.tensor([1.0, 2.0, 3.0])
    ce = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)
    # by hand: rank by unweighted loss, keep the 7 lowest of 10, the weighted loss over those
    per = nn.CrossEntropyLoss(label_smoothing=0.1, reduction="none")(ref(x), y).detach()
    keep = torch.topk(per, 7, largest=False).indices
    loss = ce(ref(x)[keep], y[keep])
    g = torch.autograd.grad(loss, list(ref.parameters()))
    want = [w0[k] - 0.5 * gi for k, gi in zip(("weight", "bias"), g, strict=True)]

    model, sums = _step(0.3, criterion=nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1))
    got = [model.weight.detach(), model.bias.detach()]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, want, strict=True))
    everyone, _ = _step(0.0, criterion=nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1))
    assert not torch.allclose(everyone.weight, model.weight, atol=1e-4)  # leaving out mattered
    assert sums["loss_sum"] / 10 == pytest.approx(loss.item(), rel=1e-6)  # over the kept ones


def test_a_sam_step_keeps_the_same_pictures_in_both_passes(monkeypatch):
    chosen: list[torch.Tensor] = []
    original = small_loss.label_loss

    def spy(criterion, logits, y, mix, rows):
        chosen.append(rows)
        return original(criterion, logits, y, mix, rows)

    monkeypatch.setattr(small_loss, "label_loss", spy)
    _step(0.3, sam_rho=0.5)
    assert len(chosen) == 2 and chosen[0] is chosen[1] and len(chosen[0]) == 7


def test_the_first_epoch_learns_from_every_picture_and_the_run_records_the_rate(tmp_path: Path,
                                                                                 monkeypatch):
    rates: list[float] = []
    original = train.train_one_epoch

    def spy(*args, **kwargs):
        rates.append(kwargs["forget_rate"])
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "train_one_epoch", spy)
    ds = tiny_shapes.prepared(tiny_shapes.make_folder(tmp_path / "tiny"))
    cfg = PROFILES["quick"].override(image_size=32, batch_size=8, epochs=3, tiny=True,
                                     eval_batch_size=32, budget_tflop=0, measure_speed=False,
                                     pretrained=False, forget_rate=0.25, patience=5)
    m = store.load_run(train.fit("vit_scratch", ds, cfg, progress=False)).manifest
    assert rates == [0.0, 0.25, 0.25]
    assert m["recipe"]["forget_rate"] == 0.25 and m["config"]["forget_rate"] == 0.25
    assert "--forget-rate 0.25" in model_card.training_command(m)
    assert "highest-loss 25% left out" in model_card.model_card(m["run_id"])
