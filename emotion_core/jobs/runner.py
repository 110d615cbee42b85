"""The process a background job runs in: its steps one after another, output into the job log.

Started by emotion_core.jobs.start_steps in a new session, so cancelling kills the whole process
group. Around each step it appends step_started / step_finished events to the job's events file
(the steps inherit $EMOTION_EVENTS and add their own). It writes result.json (unless the job was
cancelled, which jobs.cancel_job records) and always releases the job lock on the way out, even on
SIGTERM. Killed with SIGKILL it can do neither; jobs.status then reads the outcome from the events.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from emotion_core import store
from emotion_core.jobs.lock import release_lock
from emotion_core.store.events import EventLog

JOB_NICENESS = 10  # steps run this much below the app, so pages stay responsive during training


AUTOGROUP = Path("/proc/self/autogroup")


def session_group() -> tuple[str, int] | None:
    """This process's autogroup (its name, its nice value), or None where the kernel does not
    group sessions for scheduling: not Linux, the option off, or a sandboxed kernel that shows
    the file but leaves it empty."""
    try:
        name, word, nice = AUTOGROUP.read_text().split()
        return (name, int(nice)) if word == "nice" else None
    except (OSError, ValueError):
        return None


def lower_priority(niceness: int = JOB_NICENESS) -> bool:
    """Put this process, the steps it starts and its session below the app; True when the
    session's scheduling group was lowered too.

    A job runs in its own session. Under the kernel's autogroup scheduling (on by default in
    most Linux distributions) each session competes with the others as one group, so a plain
    nice value only ranks processes inside the job: a nice 10 job still took as much of the
    cores as the app. Writing the session group's own nice value (/proc/self/autogroup, see
    `man 7 sched`) is what puts the job below the app; lowering a priority needs no privilege.
    """
    os.nice(niceness)  # inherited by every step; the app's own process keeps its priority
    if session_group() is None:
        return False  # no autogroups here: the nice value alone ranks the job below the app
    try:
        AUTOGROUP.write_text(str(niceness))
    except OSError:
        return False
    group = session_group()
    return group is not None and group[1] == niceness


def _run(jdir: Path) -> int:
    spec = json.loads((jdir / store.paths.JOB_SPEC).read_text())
    job_id = spec["job_id"]
    current: list[subprocess.Popen] = []

    def on_term(signum: int, _frame: Any) -> None:
        for p in current:
            if p.poll() is None:
                p.terminate()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    lower_priority()
    rc = 0
    events = EventLog(jdir / store.paths.JOB_EVENTS)
    steps = spec["steps"]
    try:
        with open(jdir / store.paths.JOB_LOG, "ab", buffering=0) as log:
            for index, step in enumerate(steps, 1):
                log.write(f"$ {' '.join(step)}\n".encode())
                events.emit("step_started", index=index, of=len(steps), argv=step)
                proc = subprocess.Popen(step, cwd=str(store.paths.REPO_ROOT), stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                current[:] = [proc]
                rc = proc.wait()
                events.emit("step_finished", index=index, of=len(steps), returncode=rc)
                if rc != 0:
                    log.write(f"step failed with exit code {rc}\n".encode())
                    break
        if not (jdir / store.paths.JOB_RESULT).exists():  # cancel_job writes "cancelled" itself
            store.write_json(jdir / store.paths.JOB_RESULT, {
                "state": "succeeded" if rc == 0 else "failed", "returncode": rc,
                "finished": time.time()})
    finally:
        release_lock(job_id)
    return rc


if __name__ == "__main__":
    if len(sys.argv) == 2 and Path(sys.argv[1]).is_dir():
        sys.exit(_run(Path(sys.argv[1])))
    print("usage: python -m emotion_core.jobs.runner JOB_DIR (started by emotion_core.jobs.start_job)",
          file=sys.stderr)
    sys.exit(2)
