"""Latency is stored with how it was measured, is not shown as a model's cost when the machine was
busy, and can be measured again later (scripts.bench.models --remeasure-runs)."""
from __future__ import annotations

import time

import pytest

from emotion_core import store
from emotion_core.evaluation import cost, ensemble
from emotion_core.training import loop as train
from emotion_core.training.config import PROFILES
from scripts.bench import models as bench
from tests import tiny_shapes

CFG = PROFILES["quick"].override(image_size=32, batch_size=8, epochs=1, tiny=True,
                                 eval_batch_size=32, checkpoint_every=0, measure_speed=True)


def _other_processes_use(monkeypatch: pytest.MonkeyPatch, cores: float) -> None:
    """/proc/stat as it would read if other processes kept `cores` cores busy."""
    monkeypatch.setattr(cost, "_busy_seconds",
                        lambda: time.perf_counter() * cores + time.process_time())


def test_comparable_rule():
    assert cost.is_comparable(0.4, 5.0, cores=2)  # other processes measured: load avg not used
    assert not cost.is_comparable(0.6, 0.0, cores=2)
    assert cost.is_comparable(None, 1.0, cores=2) and not cost.is_comparable(None, 1.1, cores=2)
    assert not cost.is_comparable(None, None, cores=2)
    assert cost.headline_latency({"ms": 3.0, "comparable": False}) is None
    assert cost.headline_latency({"ms": 3.0, "comparable": True}) == 3.0


def test_a_busy_machines_latency_is_stored_with_its_conditions_but_not_shown(tmp_path, monkeypatch):
    ds = tiny_shapes.prepared(tiny_shapes.make_folder(tmp_path / "tiny"))
    _other_processes_use(monkeypatch, 1.5)
    rec = store.load_run(train.fit("vit_scratch", ds, CFG, progress=False))
    lat = rec.manifest["latency"]
    assert lat["ms"] > 0 and lat["batch"] == 1 and lat["threads"] >= 1 and lat["cores"] >= 1
    assert lat["load_avg"] is not None and lat["measured_at"] and lat["rule"] == cost.COMPARABLE_RULE
    assert lat["other_cpu"] == pytest.approx(1.5, abs=0.1) and lat["comparable"] is False
    assert rec.manifest["headline"]["latency_ms"] is None  # not the model's cost
    assert rec.metrics["cost"]["latency"] == lat and rec.metrics["cost"]["latency_ms"] is None
    _other_processes_use(monkeypatch, 0.0)
    quiet = store.load_run(train.fit("vit_scratch", ds, CFG, progress=False))
    assert quiet.manifest["latency"]["comparable"] is True
    assert quiet.manifest["headline"]["latency_ms"] == round(quiet.manifest["latency"]["ms"], 3)


def test_remeasure_runs_stores_comparable_latencies_and_resums_ensembles(tmp_path, monkeypatch, capsys):
    ds = tiny_shapes.prepared(tiny_shapes.make_folder(tmp_path / "tiny"))
    _other_processes_use(monkeypatch, 2.0)  # trained while another job ran
    ids = [train.fit(m, ds, CFG, progress=False) for m in ("vit_scratch", "resnet34")]
    ens = ensemble.build_ensemble(ids)
    assert store.load_run(ens, tables=False).manifest["headline"]["latency_ms"] is None

    assert bench.main(["--remeasure-runs"]) == 0  # still busy: nothing becomes comparable
    assert "NOT comparable" in capsys.readouterr().out
    assert all(store.load_run(r, tables=False).manifest["headline"]["latency_ms"] is None for r in ids)

    _other_processes_use(monkeypatch, 0.0)  # later, on a quiet machine
    assert bench.main(["--remeasure-runs", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "2 runs timed, 2 comparable" in printed and "(1 thread, other processes" in printed
    runs = [store.load_run(r, tables=False) for r in ids]
    for rec in runs:
        lat = rec.manifest["latency"]
        assert lat["comparable"] and lat["threads"] == 1
        assert rec.manifest["headline"]["latency_ms"] == round(lat["ms"], 3)
        assert rec.metrics["cost"]["latency"] == lat
    total = sum(r.manifest["headline"]["latency_ms"] for r in runs)
    assert store.load_run(ens, tables=False).manifest["headline"]["latency_ms"] == pytest.approx(total)
    board = store.read_csv(store.paths.leaderboard_path()).set_index("run_id")
    assert board.loc[ids[0], "latency_ms"] == pytest.approx(runs[0].manifest["headline"]["latency_ms"])

    _other_processes_use(monkeypatch, 2.0)  # a busy re-measurement never replaces a comparable one
    rows = cost.remeasure_runs(ids[:1], report=lambda line: None)
    assert rows[0]["stored"] is False and not rows[0]["comparable"]
    assert store.load_run(ids[0], tables=False).manifest["latency"] == runs[0].manifest["latency"]


def test_budget_section_prints_the_plan_per_model(capsys):
    assert bench.main(["--section", "budget", "--models", "vit_scratch", "--tiny", "--steps", "1",
                       "--n-train", "40", "--n-val", "10"]) == 0
    out = capsys.readouterr().out
    assert "TFLOP per model" in out and "vit_scratch" in out and "GFLOP/s" in out


def test_interactive_inference_uses_one_thread_while_a_job_holds_the_cores():
    import threading

    import torch

    from emotion_core.evaluation import inference

    seen: list[int] = []

    def script_run() -> None:  # as an app script thread: the setting is per thread
        seen.append(inference.share_cores(busy=True))
        seen.append(torch.get_num_threads())
        seen.append(inference.share_cores(busy=False))
        seen.append(torch.get_num_threads())

    t = threading.Thread(target=script_run)
    t.start()
    t.join()
    default = inference._DEFAULT_THREADS
    assert seen == [1, 1, default, default]
    torch.set_num_threads(default)  # new threads inherit the last setting: leave the default
