"""Checkpoints: a crash at any point of a save leaves a checkpoint whose tensors, state and best
weights belong together, and --resume after such a crash trains exactly what an uninterrupted run
trains."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from emotion_core import store
from emotion_core.training import checkpoint
from emotion_core.training import loop as train
from emotion_core.training.config import PROFILES
from emotion_core.training.planner import Plan
from emotion_core.training.state import RunState
from tests import tiny_shapes


class Crash(Exception):
    """A simulated power cut."""


def _save(folder: Path, epoch: int, fill: float) -> None:
    """A checkpoint after `epoch` whose model weights (and best weights) all equal `fill`."""
    model = nn.Linear(2, 2)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(fill)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    with torch.no_grad():  # the optimizer step moved them: set them again
        for p in model.parameters():
            p.fill_(fill)
    state = RunState(run_id="r", model="m", config={}, plan=Plan(3, 0), epoch=epoch,
                     best_epoch=epoch, best_f1=epoch / 10, history=[{"epoch": e} for e in range(1, epoch + 1)])
    checkpoint.save_checkpoint(folder, state=state, model_state=model.state_dict(), optimizer=opt,
                               scheduler=sched, best_state=model.state_dict())


def test_a_crash_at_any_write_of_a_save_leaves_a_consistent_checkpoint(tmp_path, monkeypatch):
    """The old layout wrote last.safetensors, then state.json: a crash between them paired epoch-2
    weights with epoch-1 state. Every rename of a save is tried as the crash point here."""
    first = tmp_path / "epoch1"
    _save(first, epoch=1, fill=1.0)
    real_replace = os.replace
    for crash_at in range(1, 10):
        folder = tmp_path / f"crash{crash_at}"
        shutil.copytree(first, folder)
        calls = {"n": 0}

        def replace(src, dst, crash_at=crash_at, calls=calls):
            calls["n"] += 1
            if calls["n"] == crash_at:
                raise Crash(f"power cut at rename {crash_at}")
            return real_replace(src, dst)

        with monkeypatch.context() as m:
            m.setattr(os, "replace", replace)
            try:
                _save(folder, epoch=2, fill=2.0)
                finished = True
            except Crash:
                finished = False
        ckpt = checkpoint.load_checkpoint(folder)
        assert ckpt is not None, crash_at
        fill = float(ckpt.state.epoch)  # epoch 1 was saved with 1.0, epoch 2 with 2.0
        assert ckpt.state.epoch in (1, 2) and len(ckpt.state.history) == ckpt.state.epoch
        assert all(torch.all(v == fill) for v in ckpt.model_state().values()), crash_at
        assert ckpt.best is not None and all(torch.all(v == fill) for v in ckpt.best.values())
        assert [p.name for p in folder.glob("best-*")] == [checkpoint.best_name(ckpt.state.epoch)]
        assert not list(folder.glob(".*.tmp"))  # no temporary file left behind
        if finished:
            assert ckpt.state.epoch == 2
            break
    else:
        pytest.fail("the save never completed")
    assert crash_at > 1  # at least one crash point was inside the save


@pytest.mark.slow
# with --ema the average resumes too; with --mixup the draws continue where they were
@pytest.mark.parametrize("more", [{}, {"ema": 0.9}, {"mixup": 0.4}])
def test_resume_after_a_crash_while_checkpointing_matches_an_uninterrupted_run(tmp_path, monkeypatch,
                                                                               more):
    ds = tiny_shapes.prepared(tiny_shapes.make_folder(tmp_path / "tiny"))
    cfg = PROFILES["quick"].override(image_size=32, batch_size=8, epochs=3, tiny=True, patience=10,
                                     eval_batch_size=32, measure_speed=False, budget_tflop=0,
                                     **more)
    reference = train.fit("vit_scratch", ds, cfg, progress=False)
    real_atomic = store.atomic_path
    saves = {"n": 0}

    @contextlib.contextmanager
    def crash_before_the_second_commit(path):
        with real_atomic(path) as tmp:
            yield tmp
            if Path(path).name == store.paths.CHECKPOINT_LAST:
                saves["n"] += 1
                if saves["n"] == 2:  # epoch 2's checkpoint is written but not yet renamed
                    raise Crash("power cut while checkpointing epoch 2")

    with monkeypatch.context() as m:
        m.setattr(store, "atomic_path", crash_before_the_second_commit)
        with pytest.raises(Crash):
            train.fit("vit_scratch", ds, cfg, progress=False)
    work = next(store.paths.root().glob("work/*"))
    assert checkpoint.load_checkpoint(work).state.epoch == 1
    run_id = train.fit("vit_scratch", ds, cfg, resume=True, progress=False)
    hist, ref = store.load_run(run_id).history, store.load_run(reference).history
    assert hist["epoch"].tolist() == [1, 2, 3]
    for col in ("train_loss", "val_loss", "val_macro_f1", "lr"):
        np.testing.assert_allclose(hist[col], ref[col], rtol=1e-6)
    got, want = store.load_weights(run_id)[0], store.load_weights(reference)[0]
    assert all(torch.allclose(got[k], want[k], atol=1e-6) for k in want)
