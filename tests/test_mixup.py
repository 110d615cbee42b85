"""--mixup: training batches mixed with a shuffled copy of themselves, labels too; draws from a
stream of their own, so a run without mixup is unchanged and a resumed run draws the same."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from emotion_core import store
from emotion_core.training import loop as train
from emotion_core.training import mixup
from emotion_core.training.config import PROFILES
from emotion_core.views import model_card
from tests import tiny_shapes

CFG = PROFILES["quick"].override(image_size=32, batch_size=8, epochs=2, tiny=True, patience=10,
                                 eval_batch_size=32, budget_tflop=0, measure_speed=False,
                                 pretrained=False)


def test_a_mix_blends_pictures_losses_and_right_answers_with_one_weight():
    mix = mixup.Mix(0.7, torch.tensor([2, 0, 1]))
    x = torch.arange(3.0).view(3, 1) * 10  # rows 0, 10, 20
    assert mix.inputs(x).flatten().tolist() == pytest.approx([0.7 * 0 + 0.3 * 20, 0.7 * 10 + 0.3 * 0,
                                                              0.7 * 20 + 0.3 * 10])
    assert x.flatten().tolist() == [0, 10, 20]  # the batch itself is left alone
    logits, y = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]]), torch.tensor([0, 1, 1])
    ce = nn.CrossEntropyLoss(label_smoothing=0.1)
    want = 0.7 * ce(logits, y) + 0.3 * ce(logits, torch.tensor([1, 0, 1]))
    assert mix.loss(ce, logits, y).item() == pytest.approx(want.item())
    # predictions 0, 1, 2 against labels 0, 1, 1 (2 right) and partners' 1, 0, 1 (none right)
    assert mix.correct(torch.tensor([0, 1, 2]), y) == pytest.approx(0.7 * 2 + 0.3 * 0)


def test_draws_depend_on_seed_epoch_and_rank_only_and_leave_the_global_streams_alone():
    def draws(**key) -> list[tuple[float, list[int]]]:
        mixer = mixup.Mixer(0.2, **key)
        return [(m.lam, m.perm.tolist()) for m in (mixer.draw(16) for _ in range(5))]

    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    first = draws(seed=0, epoch=3, rank=0)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()
    assert draws(seed=0, epoch=3, rank=0) == first
    for other in ({"seed": 1, "epoch": 3, "rank": 0}, {"seed": 0, "epoch": 4, "rank": 0},
                  {"seed": 0, "epoch": 3, "rank": 1}):
        assert draws(**other) != first
    lams = [lam for lam, _ in first]
    assert all(0.0 <= lam <= 1.0 for lam in lams) and len(set(lams)) == len(lams)
    assert all(sorted(perm) == list(range(16)) for _, perm in first)


def test_refusals():
    for bad in (-0.1, -1.0):
        with pytest.raises(ValueError, match="--mixup must be >= 0"):
            mixup.check(bad, "finetune")
    with pytest.raises(ValueError, match="drop --mixup"):
        mixup.check(0.2, "probe")
    mixup.check(0.0, "probe")  # off is always fine
    with pytest.raises(ValueError, match="alpha > 0"):
        mixup.Mixer(0.0, seed=0, epoch=1)


def test_an_epoch_trains_on_the_mixed_batch_with_the_mixed_loss():
    seen = []

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.detach().clone())
            return self.fc(x)

    torch.manual_seed(0)
    model, ce = Spy(), nn.CrossEntropyLoss()
    x, y = torch.randn(6, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # nothing moves: the loss can be recomputed
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    sums = train.train_one_epoch(model, ce, opt, [(x, y)], torch.device("cpu"), sched, show=False,
                                 mixer=mixup.Mixer(0.4, seed=5, epoch=1))
    mix = mixup.Mixer(0.4, seed=5, epoch=1).draw(6)  # the same stream, so the same draw
    assert torch.allclose(seen[0], mix.inputs(x))
    with torch.no_grad():
        logits = model.fc(mix.inputs(x))
    assert sums["loss_sum"] / 6 == pytest.approx(mix.loss(ce, logits, y).item(), rel=1e-6)
    assert sums["correct"] == pytest.approx(mix.correct(logits.argmax(1), y))


def test_a_run_records_mixup_and_trains_differently_from_one_without(tmp_path: Path):
    ds = tiny_shapes.prepared(tiny_shapes.make_folder(tmp_path / "tiny"))
    plain = train.fit("vit_scratch", ds, CFG, progress=False)
    mixed = train.fit("vit_scratch", ds, CFG.override(mixup=0.2), progress=False)
    a, b = store.load_weights(plain)[0], store.load_weights(mixed)[0]
    assert any(not torch.equal(a[k], b[k]) for k in a)
    m = store.load_run(mixed).manifest
    assert m["recipe"]["mixup"] == 0.2 and m["config"]["mixup"] == 0.2
    assert "--mixup 0.2" in model_card.training_command(m)
    assert "mixup (alpha 0.2)" in model_card.model_card(mixed)
    assert "--mixup" not in model_card.training_command(store.load_run(plain).manifest)
    assert "mixup" not in model_card.model_card(plain)
