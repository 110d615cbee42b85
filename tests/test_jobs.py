"""Background jobs: one at a time, a lock that survives the starting process, cancel, stale locks."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from emotion_core import jobs, store
from emotion_core.jobs import lock, progress, runner, status
from emotion_core.jobs.runner import JOB_NICENESS, session_group
from tests.polling import wait_until

PY = sys.executable


def _wait(pred, timeout: float = 90.0) -> bool:
    # Generous: a job process imports torch before its first line of work, and these waits
    # timed out at 20 s on 2 cores shared with a training run. Only a failing wait runs long.
    return wait_until(pred, timeout, every=0.1)


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


def test_job_steps_run_below_the_apps_cpu_priority() -> None:
    status.start_steps([[PY, "-c", "import os; print('niceness', os.nice(0))"]], models=[])
    assert _wait(lambda: status.job_status().state != "running")
    st = status.job_status()
    assert st.state == "succeeded"
    assert f"niceness {min(19, os.nice(0) + JOB_NICENESS)}" in status.read_log(st.job_id)


def test_session_group_reads_the_kernels_line_and_none_where_the_file_is_empty(tmp_path,
                                                                               monkeypatch) -> None:
    # Some sandboxed kernels show /proc/self/autogroup but leave it empty: that is no autogroup.
    fake = tmp_path / "autogroup"
    monkeypatch.setattr(runner, "AUTOGROUP", fake)
    fake.write_text("/autogroup-1252 nice 10\n")
    assert session_group() == ("/autogroup-1252", 10)
    for text in ("", "garbage\n"):
        fake.write_text(text)
        assert session_group() is None
    fake.unlink()
    assert session_group() is None


@pytest.mark.skipif(session_group() is None,
                    reason="the kernel does not group sessions for scheduling (no autogroup)")
def test_a_jobs_session_group_runs_below_the_app_where_the_kernel_groups_sessions() -> None:

    # Without this the job's own session competes with the app as an equal group, whatever
    # the nice value of its processes.
    status.start_steps([[PY, "-c", "print('group', open('/proc/self/autogroup').read())"]],
                       models=[])
    assert _wait(lambda: status.job_status().state != "running")
    log = status.read_log(status.job_status().job_id)
    mine = session_group()[0]
    line = next(ln for ln in log.splitlines() if ln.startswith("group "))
    assert line.split()[1] != mine, "the job runs in a session (group) of its own"
    assert line.endswith(f"nice {JOB_NICENESS}"), line


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


def _ev(event: str, **fields) -> dict:
    return {"event": event, "time": 0.0, **fields}


def _model(name: str, index: int, of: int = 3) -> dict:
    return {"model": name, "index": index, "of": of}


def test_progress_and_status_line_come_from_events_only():
    models = ["resnet34", "mobilenet_v2", "vgg16"]
    events = [_ev("step_started", index=1, of=2, argv=[PY, "-m", "scripts.get_data", "synthetic"])]
    p = progress.summarize(events, models=[])
    assert (p.fraction, p.message) == (0.0, "step 1 of 2: scripts.get_data synthetic")
    events += [_ev("step_started", index=2, of=2, argv=[PY, "-m", "scripts.train"]),
               _ev("train_started", models=models, dataset="d", profile="quick"),
               _ev("run_started", **_model("resnet34", 1), run_id="r1", planned_epochs=2),
               _ev("epoch_finished", **_model("resnet34", 1), epoch=1, epochs=2, metrics={}),
               _ev("epoch_finished", **_model("resnet34", 1), epoch=2, epochs=2, metrics={}),
               _ev("run_written", **_model("resnet34", 1), run_id="r1", headline={}),
               _ev("run_started", **_model("mobilenet_v2", 2), run_id="r2", planned_epochs=8),
               _ev("epoch_finished", **_model("mobilenet_v2", 2), epoch=2, epochs=8, metrics={}),
               _ev("epoch_started", **_model("mobilenet_v2", 2), epoch=3, epochs=8, batches=10),
               _ev("batches_done", **_model("mobilenet_v2", 2), epoch=3, done=5, batches=10)]
    p = progress.summarize(events, models=["ignored: train_started names the models"])
    assert p.message == "1 of 3 models trained; mobilenet_v2 epoch 3/8; next: vgg16"
    assert p.fraction == pytest.approx((1 + 2.5 / 8) / 3)
    events += [_ev("model_failed", **_model("mobilenet_v2", 2), error="ValueError: boom")]
    p = progress.summarize(events)
    assert p.message == "1 of 3 models trained, 1 failed (mobilenet_v2); next: vgg16"
    assert p.fraction == pytest.approx(2 / 3) and p.failed == {"mobilenet_v2": "ValueError: boom"}
    events += [_ev("run_started", **_model("vgg16", 3), run_id="r3", planned_epochs=1),
               _ev("epoch_finished", **_model("vgg16", 3), epoch=1, epochs=1, metrics={}),
               _ev("run_written", **_model("vgg16", 3), run_id="r3", headline={}),
               _ev("train_finished", returncode=1, runs={}, failures={})]
    p = progress.summarize(events)
    assert p.fraction == 1.0 and p.trained == ["resnet34", "vgg16"]
    assert p.message.endswith("training ended with exit code 1")


def test_a_warning_stands_until_a_later_epoch_passes_without_one():
    vgg = _model("vgg16", 1, of=1)
    events = [_ev("train_started", models=["vgg16"], dataset="d", profile="full"),
              _ev("run_started", **vgg, run_id="r", planned_epochs=9),
              _ev("warning", **vgg, text="epoch 1: constant", epoch=1),
              _ev("epoch_finished", **vgg, epoch=1, epochs=9, metrics={})]
    assert progress.summarize(events).warnings == {"vgg16": "epoch 1: constant"}
    events += [_ev("warning", **vgg, text="epoch 2: constant", epoch=2),
               _ev("epoch_finished", **vgg, epoch=2, epochs=9, metrics={})]
    assert progress.summarize(events).warnings == {"vgg16": "epoch 2: constant"}
    recovered = events + [_ev("epoch_finished", **vgg, epoch=3, epochs=9, metrics={})]
    assert progress.summarize(recovered).warnings == {}
    written = events + [_ev("warning", **vgg, text="the run answers a constant", epoch=None),
                        _ev("run_written", **vgg, run_id="r", headline={})]
    assert progress.summarize(written).warnings == {"vgg16": "the run answers a constant"}


def test_status_reads_a_running_jobs_events_not_its_log(tmp_path):
    """A step writes a misleading progress bar to the log and real events to $EMOTION_EVENTS:
    the status follows the events."""
    code = ("import os, sys, time; from emotion_core.store.events import EventLog; "
            "log = EventLog.from_env(); "
            "log.emit('train_started', models=['a', 'b'], dataset='d', profile='quick'); "
            "m = log.bind(model='a', index=1, of=2); "
            "m.emit('run_started', run_id='r', planned_epochs=4); "
            "m.emit('epoch_finished', epoch=1, epochs=4, metrics={}); "
            "print('Epoch 9/9 100%|#####|', file=sys.stderr, flush=True); "
            f"[time.sleep(0.05) for _ in iter(lambda: os.path.exists({str(tmp_path / 'go')!r}), True)]")
    info = status.start_steps([[PY, "-c", code]], models=["a", "b"])
    try:
        assert _wait(lambda: "epoch" in status.job_status(info.job_id).message)
        st = status.job_status(info.job_id)
        assert st.state == "running" and st.message == "0 of 2 models trained; a epoch 2/4; next: b"
        assert st.progress == pytest.approx(0.25 / 2)
        assert jobs.status_line() == st.message
    finally:
        (tmp_path / "go").touch()
    assert _wait(lambda: status.job_status(info.job_id).state == "succeeded")


def _fake_training(tmp_path, returncode: int) -> list[str]:
    """A training step that reports its pid, waits for `go`, then reports how it ended."""
    code = ("import os, sys, time; from emotion_core.store.events import EventLog; "
            f"d = {str(tmp_path)!r}; open(os.path.join(d, 'pid'), 'w').write(str(os.getpid())); "
            "log = EventLog.from_env(); "
            "log.emit('train_started', models=['m'], dataset='d', profile='quick'); "
            "[time.sleep(0.05) for _ in iter(lambda: os.path.exists(os.path.join(d, 'go')), True)]; "
            f"rc = {returncode}; "
            "rc or log.emit('run_written', model='m', index=1, of=1, run_id='r', headline={}); "
            "rc and log.emit('model_failed', model='m', index=1, of=1, error='boom'); "
            "log.emit('train_finished', returncode=rc, runs={}, failures={}); sys.exit(rc)")
    return [PY, "-c", code]


@pytest.mark.parametrize("returncode,final", [(0, "succeeded"), (1, "failed")])
def test_runner_killed_alone_keeps_the_slot_while_its_training_runs(tmp_path, returncode, final):
    """kill -9 of the runner only: its training child runs on in the runner's process group, so
    the job is still running (and says so), no second job may start, and once the child ends the
    job reads as what really happened."""
    info = status.start_steps([_fake_training(tmp_path, returncode)], models=["m"])
    try:
        assert _wait(lambda: (tmp_path / "pid").exists() and "0 of 1" in status.job_status().message)
        child = int((tmp_path / "pid").read_text())
        os.kill(info.pid, 9)  # the runner alone, not its group
        assert _wait(lambda: not lock.pid_alive(info.pid))
        st = status.job_status(info.job_id)
        assert st.state == "running" and st.message.startswith(
            f"runner killed; training still running (pid {child})")
        assert child in st.processes
        with pytest.raises(jobs.JobBusyError, match="already running"):
            status.start_steps([[PY, "-c", "pass"]], models=[])
    finally:
        (tmp_path / "go").touch()
    assert _wait(lambda: status.job_status(info.job_id).state != "running")
    st = status.job_status(info.job_id)
    assert st.state == final and st.returncode == returncode and "runner killed" in st.message
    assert ("finished on its own" if returncode == 0 else "exit code 1") in st.message
    assert status.job_status(info.job_id).message == st.message  # recorded, stable
    assert not store.paths.job_lock_path().exists()
    second = status.start_steps([[PY, "-c", "pass"]], models=[])  # the slot is free again
    assert _wait(lambda: status.job_status(second.job_id).state == "succeeded")


def test_lock_follows_the_runners_process_group():
    group = subprocess.Popen([PY, "-c", "import subprocess, sys, time; "
                              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                              "time.sleep(60)"], start_new_session=True)
    try:
        ticks = lock.process_start_ticks(group.pid)
        assert _wait(lambda: len(lock.group_members(group.pid)) == 2)
        group.kill()  # the leader alone
        group.wait()
        assert lock.group_alive(group.pid, ticks)  # its child still runs in the group
        assert lock.lock_is_live({"pid": group.pid, "start_ticks": ticks, "pgid": group.pid})
        assert not lock.lock_is_live({"pid": group.pid, "start_ticks": ticks})  # pid-only: dead
    finally:
        os.killpg(group.pid, 9)
    assert _wait(lambda: not lock.group_alive(group.pid, ticks))


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
