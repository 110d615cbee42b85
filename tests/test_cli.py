"""The real CLIs: train --dry-run end to end as a subprocess, evaluate, leaderboard, errors."""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys

import pytest

from emotion_core import store
from emotion_core.jobs import progress
from emotion_core.store.events import read_events
from scripts import evaluate as evaluate_cli
from scripts import leaderboard as leaderboard_cli
from scripts import train as train_cli
from tests import tiny_shapes


@pytest.mark.slow
def test_train_dry_run_end_to_end_then_evaluate_and_leaderboard(tmp_path, capsys):
    data = tiny_shapes.make_folder(tmp_path / "shapes")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    events = tmp_path / "events.jsonl"
    proc = subprocess.run([sys.executable, "-m", "scripts.train", "--data", str(data), "--models",
                           "resnet34,efficientnet_b4", "--profile", "quick", "--dry-run", "--quiet",
                           "--events", str(events)],
                          cwd=store.paths.REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[1/2] resnet34" in proc.stdout and "[2/2] efficientnet_b4" in proc.stdout
    assert "ensemble: wrote" in proc.stdout and "leaderboard" in proc.stdout
    runs, broken = store.list_runs()
    assert not broken
    kinds = sorted(r.manifest["kind"] for r in runs)
    assert kinds == ["ensemble", "model", "model"]
    assert all(r.manifest["headline"]["epochs_run"] == 1 for r in runs if r.manifest["kind"] == "model")

    # the structured events a background job's status is computed from
    seen = read_events(events)
    kinds = [e["event"] for e in seen]
    assert kinds[0] == "train_started" and kinds[-1] == "train_finished" and "ensemble_written" in kinds
    assert [(e["model"], e["index"], e["of"]) for e in seen if e["event"] == "run_written"] == \
        [("resnet34", 1, 2), ("efficientnet_b4", 2, 2)]
    assert seen[-1]["returncode"] == 0 and not seen[-1]["failures"]
    done = progress.summarize(seen)
    assert done.fraction == 1.0 and done.message == "2 of 2 models trained; training finished"

    # cross-dataset evaluation of one stored run on another folder with the same classes
    other = tiny_shapes.make_folder(tmp_path / "other", seed=5,
                                    per_class={"train": 3, "valid": 2})
    run_id = next(r.run_id for r in runs if r.manifest["model"] == "resnet34")
    assert evaluate_cli.main(["--run", run_id, "--data", str(other), "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"accuracy: [01]\.\d{4} macro_f1: [01]\.\d{4}", last), last
    assert "other:all" in store.load_run(run_id).metrics["cross_dataset"]

    assert leaderboard_cli.main([]) == 0
    out = capsys.readouterr().out
    assert run_id in out and "ensemble(resnet34+efficientnet_b4)" in out


def test_user_mistakes_exit_2_with_one_sentence(tmp_path, capsys):
    assert train_cli.main(["--data", str(tmp_path / "nope"), "--models", "resnet34"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no such folder" in err and "Traceback" not in err
    data = tiny_shapes.make_folder(tmp_path / "d", per_class={"train": 1})
    assert train_cli.main(["--data", str(data), "--models", "resnet99"]) == 2
    assert "unknown model resnet99;" in capsys.readouterr().err
    assert train_cli.main(["--data", str(data), "--models", "resnet99,vgg99"]) == 2
    assert "unknown models resnet99, vgg99;" in capsys.readouterr().err
    assert train_cli.main(["--data", str(data), "--models", ","]) == 2
    assert "no model named; choose from" in capsys.readouterr().err
    assert train_cli.main(["--data", str(data), "--profile", "huge"]) == 2
    assert "unknown profile" in capsys.readouterr().err
    assert evaluate_cli.main(["--run", "no-such-run", "--data", str(data)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_budget_flag_replaces_the_time_budget(capsys):
    args = train_cli.parse_args(["--data", "d", "--budget-tflop", "2.5"])
    assert args.budget_tflop == 2.5
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--data", "d", "--time-budget", "85"])
    assert "--time-budget" in capsys.readouterr().err


def test_leaderboard_without_runs(capsys):
    assert leaderboard_cli.main([]) == 0
    assert "no runs yet" in capsys.readouterr().out
    assert leaderboard_cli.main(["--dataset", "x"]) == 2


@pytest.mark.parametrize("name", ["bundle", "cross_eval", "evaluate", "explain", "export",
                                  "fetch_weights", "get_data", "leaderboard", "predict",
                                  "prepare_data", "reference", "start_demo", "train"])
def test_every_script_names_itself_as_it_is_run_in_its_usage(name, capsys):
    module = importlib.import_module(f"scripts.{name}")
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m scripts.{name} ")


def test_run_app_help_says_whose_options_follow(capsys):
    from scripts import run_app

    with pytest.raises(SystemExit) as stop:
        run_app.main(["--help"])
    out = capsys.readouterr().out
    assert stop.value.code == 0 and out.startswith("Usage: python -m scripts.run_app [OPTIONS]")
    assert "Usage: streamlit run [OPTIONS]" in out and "scripts.streamlit" not in out
