"""The GPU scripts a lent machine runs next (docs/gpu.md), run here end to end with SMOKE=1.

A lent GPU comes with 15 minutes of device time: a script that stops at a renamed option or a
changed store API wastes the call. These run each script as that machine would (bash, `python3`
on the PATH, a pack made by pack_remote), then install what it sends back with install_results.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emotion_core import evaluation, store
from emotion_core.store.reference import load_reference_runs
from scripts.gpu import install_results, pack_remote
from tests import tiny_shapes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    """A pack of tiny face crops, as `pack_remote --crop-faces` makes it for the real sets."""
    base = tmp_path_factory.mktemp("pack")
    data = tiny_shapes.make_folder(base / "tiny")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(store.paths.ENV_ROOT, str(base / "artifacts"))
        assert pack_remote.main(["--data", str(data), "--out", str(base / "pack"), "--size", "32",
                                 "--crop-faces"]) == 0
    return base / "pack"


def _run_script(name: str, pack: Path, tmp_path: Path, **env_vars: str) -> tuple[Path, str]:
    """bash scripts/gpu/NAME PACK OUT with SMOKE=1; returns OUT and the script's train.log."""
    out = tmp_path / "out"
    env = {**os.environ, **env_vars, "SMOKE": "1", "RF": str(tmp_path / "rf"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", f"scripts/gpu/{name}", str(pack), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    log = (out / "train.log").read_text() if (out / "train.log").exists() else ""
    assert proc.returncode == 0, proc.stdout + proc.stderr + log
    return out, log


def _finished(log: str) -> list[str]:
    """The runs whose line in train.log says they ended well: `[NAME: MODEL options -> exit 0 ...]`."""
    return sorted(re.findall(r"^\[([\w-]+): \w+ .*-> exit 0 in", log, flags=re.MULTILINE))


def _reference_models(name: str) -> list[str]:
    return sorted(r.manifest["model"] for r in load_reference_runs(name))


def test_converge_trains_the_four_unconverged_architectures_and_sends_their_tables(pack, tmp_path):
    out, log = _run_script("converge.sh", pack, tmp_path)
    assert _finished(log) == ["efficientnet_b4", "vgg16", "vit_hf", "vit_scratch"], log
    assert sorted(p.name for p in out.iterdir()) == ["runs.tar.gz", "train.log"]  # no weights
    assert install_results.main(["--from", str(out), "--reference", "gpu-converge"]) == 0
    assert _reference_models("gpu-converge") == ["efficientnet_b4", "vgg16", "vit_hf", "vit_scratch"]


def test_converges_second_round_trains_only_the_two_still_gaining(pack, tmp_path):
    out, log = _run_script("converge.sh", pack, tmp_path, ROUND="2")
    assert _finished(log) == ["efficientnet_b4", "vgg16"], log
    assert "--epochs 28" in log and "--epochs 22" in log
    assert install_results.main(["--from", str(out), "--reference", "gpu-converge-2"]) == 0
    assert _reference_models("gpu-converge-2") == ["efficientnet_b4", "vgg16"]


def test_converges_third_round_trains_vgg16_at_a_lower_rate_with_two_seeds(pack, tmp_path):
    out, log = _run_script("converge.sh", pack, tmp_path, ROUND="3")
    assert _finished(log) == ["vgg16-s0", "vgg16-s1"], log
    for name in ("vgg16-s0", "vgg16-s1"):  # every epoch in the log, kept for a run lost at the limit
        assert re.search(rf"^  {name} epoch 1/1 train: train loss \d\.\d{{4}} .* val acc ", log,
                         flags=re.MULTILINE), log
    assert install_results.main(["--from", str(out), "--reference", "gpu-converge-3"]) == 0
    runs = load_reference_runs("gpu-converge-3")
    assert sorted(r.manifest["config"]["seed"] for r in runs) == [0, 1]
    assert {r.manifest["config"]["lr"] for r in runs} == {2e-4}


def test_faceres_compares_both_bodies_over_two_seeds_and_sends_a_loadable_candidate(pack, tmp_path):
    out, log = _run_script("faceres.sh", pack, tmp_path)
    assert _finished(log) == ["faceres-0", "faceres-1", "mobilenet-0", "mobilenet-1"], log
    assert (out / "realfaces-faceres_mobilenet-gpu.safetensors").is_file()
    assert install_results.main(["--from", str(out), "--reference", "gpu-faceres"]) == 0
    assert _reference_models("gpu-faceres") == ["faceres_mobilenet"] * 2 + ["mobilenet_v2"] * 2
    runs = load_reference_runs("gpu-faceres")
    assert sorted(r.manifest["config"]["seed"] for r in runs) == [0, 0, 1, 1]
    assert all(r.manifest["config"]["sam"] == 0.05 for r in runs)  # the bundled recipe's flags
    (bundled,) = [r for r in store.list_runs()[0] if r.bundled]
    assert bundled.run_id == "realfaces-faceres_mobilenet-gpu"
    model, _ = evaluation.load_model(bundled.run_id)
    size = bundled.manifest["image_size"]
    with torch.no_grad():
        assert model(torch.zeros(1, 3, size, size)).shape == (1, 3)


def test_a_run_lost_at_the_waves_limit_still_leaves_its_epochs_in_the_log(tmp_path):
    """lib.sh's wave stops what runs past its seconds; the epochs such a run finished (its
    events file, as scripts.train writes it) still reach train.log, which comes back."""
    epoch = ('{"event": "epoch_finished", "time": 1, "epoch": 1, "epochs": 28, "phase": "train", '
             '"metrics": {"train_loss": 1.0412, "train_acc": 0.45, "val_loss": 0.9, '
             '"val_acc": 0.559, "val_macro_f1": 0.55}, "seconds": 10.2, "improved": true}')
    script = f"""
source scripts/gpu/lib.sh
RF={tmp_path}/rf; out={tmp_path}/out; log=$out/train.log; smoke=0; mkdir -p $RF/logs $out
( echo '{epoch}' >"$RF/logs/slow.events"; sleep 60 >"$RF/logs/slow.log" 2>&1 ) &
names+=(slow)
wave 2
"""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "out" / "train.log").read_text()
    assert "[slow: stopped at the wave's limit, run lost]" in log
    assert ("  slow epoch 1/28 train: train loss 1.0412 acc 0.450 | val acc 0.559 macro-F1 0.550 "
            "* (10.2 s)") in log
