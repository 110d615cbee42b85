"""Background training jobs started from the app: one at a time, outside the Streamlit process.

Why a separate process: training for minutes inside Streamlit would block every session and die
with a page reload. A job is a small runner (`python -m emotion_core.jobs.runner <job_dir>`) started
in its own session (process group; see runner.py); it runs its steps (normally `python -m
scripts.train ...`, with data-generation steps first for the demo) one after another, writing
everything they print to one log file, and records the outcome in `result.json`.

State on disk, under `store.paths.jobs_dir()`, so it survives reloads and app restarts:
    lock.json             {pid, start_ticks, job_id, models, pgid}: present while a job runs (lock.py)
    <job_id>/job.json     the steps, the models asked for, when it started
    <job_id>/log.txt      stdout+stderr of every step, for people (tqdm's carriage returns included)
    <job_id>/events.jsonl JSON-lines events: the runner's steps and training's progress
                          (training/progress.py); progress and the status line come from these only
    <job_id>/result.json  {state, returncode, finished[, note]} written by the runner when it ends,
                          or here when the runner was killed and its training ended on its own

The lock follows the runner's whole process group (lock.py): a runner killed alone leaves the job
running while its training child lives, and the job's state then says so.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from emotion_core import store
from emotion_core.data.synthetic import DEMO_DATASET
from emotion_core.jobs.lock import (
    acquire_lock,
    group_members,
    lock_is_live,
    pid_alive,
    process_start_ticks,
    read_lock,
    release_lock,
    replace_lock,
)
from emotion_core.jobs.progress import JobProgress, summarize
from emotion_core.models import select
from emotion_core.store.events import ENV_EVENTS, read_events

LOG_NAME = store.paths.JOB_LOG
SPEC_NAME = store.paths.JOB_SPEC
RESULT_NAME = store.paths.JOB_RESULT
EVENTS_NAME = store.paths.JOB_EVENTS
CANCEL_GRACE_S = 5.0  # SIGTERM first, SIGKILL after this many seconds


@dataclass
class JobInfo:
    """What the app shows about the latest job."""

    job_id: str
    state: str  # "running" | "succeeded" | "failed" | "cancelled"
    pid: int | None
    started: float  # unix time
    models: list[str] = field(default_factory=list)
    steps: list[list[str]] = field(default_factory=list)
    log_path: Path | None = None
    returncode: int | None = None
    finished: float | None = None
    progress: float = 0.0  # 0..1, from the job's events
    message: str = ""  # one line: what it is doing now (or how it ended)
    processes: list[int] = field(default_factory=list)  # live pids of the job's process group
    warnings: dict[str, str] = field(default_factory=dict)  # model -> its standing warning

    @property
    def running(self) -> bool:
        return self.state == "running"


# ---------------------------------------------------------------------------------------------
# Starting, status, cancel


def _read_spec(job_id: str) -> dict[str, Any] | None:
    try:
        return json.loads((store.paths.job_dir(job_id) / SPEC_NAME).read_text())
    except (OSError, ValueError):
        return None


def train_command(args: list[str]) -> list[str]:
    """The exact CLI the job runs: `python -m scripts.train <args>` with this interpreter."""
    return [sys.executable, "-m", "scripts.train", *args]


def models_from_args(args: list[str]) -> list[str]:
    """The model names a `scripts.train` argument list asks for ("all" expanded when possible)."""
    names: list[str] = []
    for i, a in enumerate(args):
        if a == "--models" and i + 1 < len(args):
            names = [n.strip() for n in args[i + 1].split(",") if n.strip()]
        elif a.startswith("--models="):
            names = [n.strip() for n in a.split("=", 1)[1].split(",") if n.strip()]
    return select("all") if names == ["all"] else names  # "all": the trainable models


def start_job(args: list[str], *, pre_steps: list[list[str]] | None = None,
              env: dict[str, str] | None = None) -> JobInfo:
    """Start `python -m scripts.train <args>` in the background; JobBusyError if one is running.

    `pre_steps` are full commands run first (e.g. generating the demo data); the job stops at the
    first step that fails. Returns at once.
    """
    steps = [list(s) for s in (pre_steps or [])] + [train_command(args)]
    return start_steps(steps, models=models_from_args(args), env=env)


def start_steps(steps: list[list[str]], *, models: list[str],
                env: dict[str, str] | None = None) -> JobInfo:
    """Run `steps` (commands) one after another in a detached job holding the one job slot."""
    job_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    acquire_lock(job_id, models)
    try:
        jdir = store.paths.job_dir(job_id)
        jdir.mkdir(parents=True, exist_ok=False)
        spec = {"job_id": job_id, "steps": steps, "models": list(models), "started": time.time()}
        store.write_json(jdir / SPEC_NAME, spec)
        (jdir / LOG_NAME).write_text("")
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {}),
                     ENV_EVENTS: str(jdir / EVENTS_NAME)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "emotion_core.jobs.runner", str(jdir)],
            cwd=str(store.paths.REPO_ROOT), env=child_env, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # hand the lock to the runner: from now on its process group decides whether the job is alive
        replace_lock({"pid": proc.pid, "start_ticks": _wait_ticks(proc.pid), "job_id": job_id,
                      "models": list(models), "pgid": proc.pid})  # the runner leads its session
    except BaseException:
        release_lock(job_id)
        raise
    return job_status(job_id) or JobInfo(job_id=job_id, state="running", pid=proc.pid,
                                         started=spec["started"], models=list(models))


def demo_plan() -> tuple[list[list[str]], list[str]]:
    """(pre-steps, train args) of the quick demo: make and prepare the synthetic faces if missing,
    then train every registry model with the quick profile."""
    data_dir = store.paths.generated_data_dir(DEMO_DATASET)
    pre: list[list[str]] = []
    if not data_dir.is_dir() or not any(data_dir.iterdir()):
        pre.append([sys.executable, "-m", "scripts.get_data", "synthetic", "--out", str(data_dir)])
    if DEMO_DATASET not in store.list_datasets():
        pre.append([sys.executable, "-m", "scripts.prepare_data", "--data", str(data_dir),
                    "--name", DEMO_DATASET])
    args = ["--data", str(data_dir), "--models", "all", "--profile", "quick"]
    return pre, args


def start_demo() -> JobInfo:
    """Start the quick demo job (JobBusyError if a job runs)."""
    pre, args = demo_plan()
    return start_job(args, pre_steps=pre, env={"EMOTION_OFFLINE": "1"})  # the demo never downloads


def _wait_ticks(pid: int) -> int | None:
    for _ in range(50):
        ticks = process_start_ticks(pid)
        if ticks is not None:
            return ticks
        time.sleep(0.01)
    return None


def latest_job_id() -> str | None:
    base = store.paths.jobs_dir()
    if not base.is_dir():
        return None
    ids = sorted(p.name for p in base.iterdir() if p.is_dir() and (p / SPEC_NAME).exists())
    return ids[-1] if ids else None


def read_log(job_id: str, max_chars: int = 20_000) -> str:
    """The tail of a job's log with tqdm's carriage-return redraws collapsed to the last one."""
    path = store.paths.job_dir(job_id) / LOG_NAME
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_chars * 4))
            raw = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.split("\r")[-1] if "\r" in line.rstrip("\r") else line.rstrip("\r")
             for line in raw.split("\n")]
    return "\n".join(lines)[-max_chars:]


def job_progress(job_id: str) -> JobProgress:
    """The job's progress from its events: fraction, status line, models trained and failed."""
    spec = _read_spec(job_id) or {}
    events = read_events(store.paths.job_dir(job_id) / EVENTS_NAME)
    return summarize(events, list(spec.get("models", [])))


def status_line(job_id: str | None = None) -> str:
    """One line for the app: "2 of 8 models trained; mobilenet_v2 epoch 3/8; next: ..."."""
    info = job_status(job_id)
    return "no job has run yet" if info is None else info.message


def job_status(job_id: str | None = None) -> JobInfo | None:
    """The latest (or given) job's state, progress and pid; None when no job ever ran."""
    job_id = job_id or latest_job_id()
    if job_id is None:
        return None
    spec = _read_spec(job_id)
    if spec is None:
        return None
    jdir = store.paths.job_dir(job_id)
    lock = read_lock()
    ours = bool(lock) and lock.get("job_id") == job_id
    running = ours and lock_is_live(lock)
    result = _read_result(jdir)
    progress = job_progress(job_id)
    processes: list[int] = []
    if running:
        state, message = "running", progress.message
        processes = group_members(int(lock["pgid"])) if lock.get("pgid") else [int(lock["pid"])]
        if lock.get("pgid") and not pid_alive(int(lock["pid"]), lock.get("start_ticks")):
            pids = ", ".join(str(p) for p in processes if p != int(lock["pid"])) or "?"
            message = f"runner killed; training still running (pid {pids}); {progress.message}"
    else:
        if not result:  # the runner vanished without writing one: what do the events say?
            result = _outcome_without_runner(jdir, progress)
        if ours:
            store.paths.job_lock_path().unlink(missing_ok=True)  # stale lock recovery
        state, message = str(result.get("state", "failed")), _final_message(result, progress)
    return JobInfo(job_id=job_id, state=state, pid=int(lock["pid"]) if running else None,
                   started=float(spec["started"]), models=list(progress.models or spec.get("models", [])),
                   steps=spec.get("steps", []), log_path=jdir / LOG_NAME,
                   returncode=result.get("returncode"), finished=result.get("finished"),
                   progress=1.0 if state == "succeeded" else progress.fraction, message=message,
                   processes=processes, warnings=dict(progress.warnings))


def _read_result(jdir: Path) -> dict[str, Any]:
    try:
        return json.loads((jdir / RESULT_NAME).read_text())
    except (OSError, ValueError):
        return {}


def _outcome_without_runner(jdir: Path, progress: JobProgress) -> dict[str, Any]:
    """The runner was killed (no result.json) and nothing of its group lives: if its last step,
    the training, reported how it ended (train_finished), that is the job's outcome. Recorded in
    result.json so the answer does not change later."""
    step = progress.step or {}
    last_step = step.get("index") is not None and step.get("index") == step.get("of")
    if progress.finished is not None and last_step:
        rc = progress.finished.get("returncode")
        ok = rc == 0
        note = (f"runner killed; training finished on its own ({progress.message})" if ok else
                f"runner killed; training then failed with exit code {rc} ({progress.message})")
        result = {"state": "succeeded" if ok else "failed", "returncode": rc, "note": note}
    else:
        result = {"state": "failed", "returncode": None,
                  "note": "the job process ended without reporting a result (killed?)"}
    result["finished"] = time.time()
    store.write_json(jdir / RESULT_NAME, result)
    return result


def _final_message(result: dict[str, Any], progress: JobProgress) -> str:
    if result.get("note"):
        return str(result["note"])
    state = result.get("state")
    if state == "succeeded":
        return "finished" + (f": {progress.message}" if progress.models else "")
    if state == "cancelled":
        return "cancelled" + (f" ({progress.message})" if progress.models else "")
    return f"failed with exit code {result.get('returncode')}" + (
        f" ({progress.message})" if progress.models else "")


def cancel_job() -> JobInfo | None:
    """Stop the running job's whole process group (SIGTERM, then SIGKILL); None if none runs."""
    lock = read_lock()
    if not lock or not lock_is_live(lock):
        return None
    pid, job_id = int(lock["pid"]), str(lock["job_id"])
    jdir = store.paths.job_dir(job_id)
    store.write_json(jdir / RESULT_NAME, {"state": "cancelled", "returncode": None,
                                              "finished": time.time()})
    try:
        os.killpg(pid, signal.SIGTERM)  # the runner leads its own session: pgid == pid
    except ProcessLookupError:
        pass
    deadline = time.time() + CANCEL_GRACE_S
    while time.time() < deadline and lock_is_live(lock):  # the whole group, not just the runner
        time.sleep(0.1)
    if lock_is_live(lock):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.2)
        pid_alive(pid)  # reap if it was our child
    release_lock(job_id)
    return job_status(job_id)
