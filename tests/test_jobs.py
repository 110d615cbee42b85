"""Background jobs: one at a time, a lock that survives the starting process, cancel, stale locks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from emotion_core import jobs, store
from emotion_core.jobs import lock, status

PY = sys.executable


def _wait(pred, timeout: float = 20.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def _sleeper(seconds: float) -> list[str]:
    return [PY, "-c", f"import time,sys; print('working', flush=True); time.sleep({seconds})"]


def test_job_runs_steps_logs_and_succeeds() -> None:
    info = status.start_steps([[PY, "-c", "print('step one')"],
                             [PY, "-c", "import sys; print('Epoch 2/4  50%|##   |', file=sys.stderr)"]],
                            models=["a"])
    assert info.state == "running" and info.pid
    assert _wait(lambda: status.job_status().state != "running")
    st = status.job_status()
    assert st.state == "succeeded" and st.returncode == 0 and st.progress == 1.0
    log = status.read_log(st.job_id)
    assert "step one" in log and "Epoch 2/4" in log  # stdout and stderr both captured
    assert not store.paths.job_lock_path().exists()


def test_failed_step_stops_the_job_and_reports_the_code() -> None:
    status.start_steps([[PY, "-c", "raise SystemExit(3)"], [PY, "-c", "print('never')"]], models=[])
    assert _wait(lambda: status.job_status().state != "running")
    st = status.job_status()
    assert st.state == "failed" and st.returncode == 3 and "3" in st.message
    assert "never" not in status.read_log(st.job_id)


def test_second_job_is_refused_while_one_runs_then_cancel_frees_the_slot() -> None:
    first = status.start_steps([_sleeper(60)], models=["vgg16"])
    try:
        with pytest.raises(jobs.JobBusyError, match="already running.*vgg16"):
            status.start_steps([_sleeper(1)], models=["x"])
        cancelled = status.cancel_job()
        assert cancelled is not None and cancelled.state == "cancelled"
        assert not lock.pid_alive(first.pid)
        assert status.job_status(first.job_id).state == "cancelled"
        second = status.start_steps([[PY, "-c", "pass"]], models=[])  # the slot is free again
        assert _wait(lambda: status.job_status(second.job_id).state == "succeeded")
    finally:
        status.cancel_job()


def test_lock_survives_the_starting_process() -> None:
    """A job started by another process (an app that was reloaded) still blocks a new one."""
    code = ("import sys; from emotion_core.jobs import status; "
            "status.start_steps([[sys.executable,'-c','import time; time.sleep(60)']], models=['m'])")
    subprocess.run([PY, "-c", code], check=True, cwd=store.paths.REPO_ROOT, env=os.environ.copy())
    try:
        st = status.job_status()
        assert st is not None and st.running
        with pytest.raises(jobs.JobBusyError):
            status.start_steps([_sleeper(1)], models=[])
    finally:
        assert status.cancel_job() is not None


def test_stale_lock_from_a_dead_process_is_cleared() -> None:
    proc = subprocess.Popen([PY, "-c", "pass"])
    proc.wait()
    store.paths.job_lock_path().parent.mkdir(parents=True, exist_ok=True)
    store.paths.job_lock_path().write_text(json.dumps({"pid": proc.pid, "start_ticks": 1, "job_id": "old"}))
    info = status.start_steps([[PY, "-c", "pass"]], models=[])
    assert _wait(lambda: status.job_status(info.job_id).state == "succeeded")


def test_lock_with_reused_pid_is_stale() -> None:
    """Our own pid is alive, but a different start time means another process owned the lock."""
    ticks = lock.process_start_ticks(os.getpid())
    assert lock.pid_alive(os.getpid(), ticks)
    assert not lock.pid_alive(os.getpid(), (ticks or 0) + 12345)


def test_runner_killed_hard_reads_as_failed_and_frees_the_lock() -> None:
    info = status.start_steps([_sleeper(60)], models=[])
    os.killpg(info.pid, 9)
    assert _wait(lambda: not lock.pid_alive(info.pid))
    st = status.job_status(info.job_id)
    assert st.state == "failed" and "without reporting" in st.message
    assert not store.paths.job_lock_path().exists()


def test_progress_estimate_combines_finished_runs_and_epochs() -> None:
    p, msg = status.estimate_progress("x\nEpoch 2/4 train  50%|#####     |\n", ["a", "b"], 1)
    # one of two models done, the second at (1 + 0.5) / 4 of its epochs
    assert p == pytest.approx((1 + 1.5 / 4) / 2)
    assert msg.startswith("1/2 models done")
    assert status.estimate_progress("", ["a"], 0)[0] == 0.0
    # a data-preparation step's own progress bar is not training progress
    prep = "$ python -m scripts.get_data synthetic\nfaces: 100%|#####|\n"
    assert status.estimate_progress(prep, ["a"], 0) == (0.0, "preparing data; faces: 100%|#####|")
    assert status.estimate_progress(prep + "$ python -m scripts.train\nEpoch 1/2 50%|\n", ["a"], 0)[0] \
        == pytest.approx(0.25)


def test_train_command_and_models_from_args() -> None:
    cmd = status.train_command(["--data", "d", "--models", "vgg16,resnet34"])
    assert cmd[1:3] == ["-m", "scripts.train"]
    assert status.models_from_args(["--models", "vgg16,resnet34"]) == ["vgg16", "resnet34"]
    assert status.models_from_args(["--models=vit_scratch"]) == ["vit_scratch"]


def test_log_collapses_carriage_return_redraws() -> None:
    info = status.start_steps([[PY, "-c", "import sys; sys.stderr.write('a 10%|\\ra 90%|\\n')"]],
                            models=[])
    assert _wait(lambda: status.job_status(info.job_id).state != "running")
    out_lines = status.read_log(info.job_id).splitlines()[1:]  # line 0 echoes the command
    assert "a 90%|" in out_lines and not any("10%" in ln for ln in out_lines)
