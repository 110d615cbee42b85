"""Background training jobs started from the app: one at a time, outside the Streamlit process.

Why a separate process: training for minutes inside Streamlit would block every session and die
with a page reload. A job is a small runner (`python -m emotion_core.jobrunner <job_dir>`) started in
its own session (process group; see emotion_core/jobrunner.py); it runs its steps (normally `python -m scripts.train ...`, with a
data-generation step first for the demo) one after another, writing everything they print to one
log file, and records the outcome in `result.json`.

State on disk, under `store.paths.jobs_dir()`, so it survives reloads and app restarts:
    lock.json           {pid, start_ticks, job_id, models}: present while a job runs (see lock.py)
    <job_id>/job.json   the steps, the models asked for, when it started
    <job_id>/log.txt    stdout+stderr of every step (tqdm's carriage returns included)
    <job_id>/result.json {state, returncode, finished} written by the runner when it ends

A lock is stale when its pid is gone, is a zombie, or belongs to a different process that reused
the pid (the process start time in /proc differs); a stale lock is removed and a new job may start.
"""
from __future__ import annotations

import json
import os
import re
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
    lock_is_live,
    pid_alive,
    process_start_ticks,
    read_lock,
    release_lock,
    replace_lock,
)
from emotion_core.models import select

LOG_NAME = store.paths.JOB_LOG
SPEC_NAME = store.paths.JOB_SPEC
RESULT_NAME = store.paths.JOB_RESULT
CANCEL_GRACE_S = 5.0  # SIGTERM first, SIGKILL after this many seconds
_PERCENT = re.compile(r"(\d{1,3})%\|")  # tqdm's "  45%|####      |"
_EPOCH = re.compile(r"[Ee]poch\s+(\d+)\s*/\s*(\d+)")


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
    progress: float = 0.0  # 0..1 estimate from the log and the runs written so far
    message: str = ""  # one line: what it is doing now

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
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        proc = subprocess.Popen(
            [sys.executable, "-m", "emotion_core.jobs.runner", str(jdir)],
            cwd=str(store.paths.REPO_ROOT), env=child_env, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # hand the lock to the runner: from now on its pid decides whether the job is alive
        replace_lock({"pid": proc.pid, "start_ticks": _wait_ticks(proc.pid), "job_id": job_id,
                      "models": list(models)})
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


def estimate_progress(log: str, models: list[str], runs_done: int) -> tuple[float, str]:
    """(fraction 0..1, one-line status) from finished runs and the last epoch/percent in the log."""
    n = max(1, len(models))
    frac_current = 0.0
    lines = [ln for ln in log.replace("\r", "\n").split("\n") if ln.strip()]
    starts = [i for i, ln in enumerate(lines) if ln.startswith("$ ")]
    if starts and "scripts.train" not in lines[starts[-1]]:  # still generating/preparing data
        return 0.0, f"preparing data; {lines[-1].strip()[:200]}"
    lines = lines[starts[-1] + 1:] if starts else lines
    for line in reversed(lines):
        m = _EPOCH.search(line)
        if m and int(m.group(2)) > 0:
            frac_current = min(1.0, (int(m.group(1)) - 1) / int(m.group(2)))
            pm = _PERCENT.search(line)
            if pm:
                frac_current += min(1.0, int(pm.group(1)) / 100.0) / int(m.group(2))
            break
        pm = _PERCENT.search(line)
        if pm:
            frac_current = min(1.0, int(pm.group(1)) / 100.0)
            break
    done = min(runs_done, n)
    progress = min(1.0, (done + (frac_current if done < n else 0.0)) / n)
    last = lines[-1].strip()[:200] if lines else "starting"
    return progress, f"{done}/{len(models) or '?'} models done; {last}"


def _runs_since(started: float, models: list[str]) -> int:
    """How many single-model runs were written since the job started (finished models)."""
    base = store.paths.runs_dir()
    if not base.is_dir():
        return 0
    n = 0
    for p in base.iterdir():
        mf = p / store.paths.MANIFEST
        if p.name.startswith(".") or not mf.exists():
            continue
        try:
            if mf.stat().st_mtime < started - 1:
                continue
            m = json.loads(mf.read_text())
        except (OSError, ValueError):
            continue
        if m.get("kind", "model") == "model" and (not models or m.get("model") in models):
            n += 1
    return n


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
    running = bool(lock) and lock.get("job_id") == job_id and lock_is_live(lock)
    result: dict[str, Any] = {}
    try:
        result = json.loads((jdir / RESULT_NAME).read_text())
    except (OSError, ValueError):
        pass
    if running:
        state = "running"
    elif result:
        state = str(result.get("state", "failed"))
    else:
        state = "failed"  # the runner vanished without writing a result (killed hard)
        if lock and lock.get("job_id") == job_id:
            store.paths.job_lock_path().unlink(missing_ok=True)  # stale lock recovery
    log = read_log(job_id)
    models = list(spec.get("models", []))
    progress, message = estimate_progress(log, models, _runs_since(spec["started"], models))
    if state == "succeeded":
        progress, message = 1.0, "finished"
    elif state == "cancelled":
        message = "cancelled"
    elif state == "failed" and not result:
        message = "the job process ended without reporting a result (killed?)"
    elif state == "failed":
        message = f"failed with exit code {result.get('returncode')}"
    return JobInfo(job_id=job_id, state=state, pid=(lock or {}).get("pid") if running else None,
                   started=float(spec["started"]), models=models, steps=spec.get("steps", []),
                   log_path=jdir / LOG_NAME, returncode=result.get("returncode"),
                   finished=result.get("finished"), progress=progress, message=message)


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
    while time.time() < deadline and pid_alive(pid, lock.get("start_ticks")):
        time.sleep(0.1)
    if pid_alive(pid, lock.get("start_ticks")):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.2)
        pid_alive(pid)  # reap if it was our child
    release_lock(job_id)
    return job_status(job_id)
