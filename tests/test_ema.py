"""--ema: a moving average of the weights, updated every optimizer step, is what validation
scores, early stopping compares and the run keeps."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from emotion_core import store
from emotion_core.training import ema
from emotion_core.training import loop as train
from emotion_core.training.config import PROFILES
from emotion_core.views import model_card
from tests import tiny_shapes

CFG = PROFILES["quick"].override(image_size=32, batch_size=8, epochs=2, tiny=True, patience=10,
                                 eval_batch_size=32, budget_tflop=0, measure_speed=False,
                                 pretrained=False)


def test_the_average_follows_every_step_with_a_warmed_up_decay():
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    averaged = ema.make_ema(net, 0.5)
    values = [1.0, 3.0, -2.0, 5.0, 0.5, 4.0]
    want = None
    for step, v in enumerate(values):
        with torch.no_grad():
            net[0].weight.fill_(v)
            net[1].running_mean.fill_(10 * v)
        net[1].num_batches_tracked.fill_(step + 1)
        averaged.update_parameters(net)
        # the first update copies; then decay min(0.5, (1 + n) / (10 + n)) after n updates
        d = ema.warmed_decay(0.5, step - 1) if step else 0.0
        want = v if want is None else d * want + (1 - d) * v
        got = averaged.module
        assert got[0].weight.item() == pytest.approx(want)
        assert got[1].running_mean.item() == pytest.approx(10 * want)  # statistics averaged too
        assert got[1].num_batches_tracked.item() == step + 1  # counters follow the model
    assert [ema.warmed_decay(0.998, n) for n in (0, 8, 10_000)] == pytest.approx([0.1, 0.5, 0.998])


def test_no_average_at_zero_and_a_decay_outside_0_1_is_refused():
    assert ema.make_ema(nn.Linear(1, 1), 0.0) is None
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="--ema"):
            ema.make_ema(nn.Linear(1, 1), bad)
    with pytest.raises(ValueError, match="drop --ema"):  # the probe takes no steps to average
        ema.make_ema(nn.Linear(1, 1), 0.99, "probe")


def test_a_run_validates_and_keeps_the_average_not_the_last_step(tmp_path: Path, monkeypatch):
    ds = tiny_shapes.prepared(tiny_shapes.make_folder(tmp_path / "tiny"))
    made, scored, last_step = [], [], {}
    real_make, real_eval, real_train = ema.make_ema, train.evaluate_loader, train.train_phases

    def spy_make(model, *args):
        made.append((model, real_make(model, *args)))
        return made[-1][1]

    def spy_eval(model, *args, **kwargs):
        scored.append(model)
        return real_eval(model, *args, **kwargs)

    def spy_train(setup, *args, **kwargs):  # the raw weights once training ends
        best = real_train(setup, *args, **kwargs)
        last_step.update({k: v.detach().clone() for k, v in setup.model.state_dict().items()})
        return best

    monkeypatch.setattr(ema, "make_ema", spy_make)
    monkeypatch.setattr(train, "train_phases", spy_train)
    monkeypatch.setattr(train, "evaluate_loader", spy_eval)
    # a refit keeps its last epoch, so the stored weights are the average at the end
    rid = train.fit("vit_scratch", ds, CFG.override(ema=0.9, refit=True), progress=False)
    (_, averaged), = made
    kept = store.load_weights(rid)[0]
    final = {k: v.cpu() for k, v in averaged.module.state_dict().items()}
    assert all(torch.equal(kept[k], final[k]) for k in final)
    assert any(not torch.allclose(kept[k], v.cpu()) for k, v in last_step.items()
               if v.is_floating_point())
    # a validated run scores the average each epoch
    made.clear()
    scored.clear()
    vid = train.fit("vit_scratch", ds, CFG.override(ema=0.9), progress=False)
    assert len(scored) == CFG.epochs and all(m is made[0][1].module for m in scored)
    m = store.load_run(vid).manifest
    assert m["recipe"]["ema"] == 0.9 and m["config"]["ema"] == 0.9
    assert "--ema 0.9" in model_card.training_command(m)
    assert "EMA decay 0.9" in model_card.model_card(vid)
    assert "--ema" not in model_card.training_command(store.load_run(rid).manifest | {"config": {}})
