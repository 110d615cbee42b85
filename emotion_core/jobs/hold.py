"""A running job steps aside while a person waits for an answer.

Why: a job's niceness (runner.lower_priority) ranks it below the app, but on 2 cores its
processes still slow the app's answer by a fifth to a third (cache and memory traffic, and the
scheduler's wake-up delay), and a new user's first photo on Predict arrives while `make run`'s
demo job trains. So a page that answers a person holds the job for the few hundred
milliseconds it needs: the runner stops the current step (SIGSTOP) and continues it
(SIGCONT) when no hold is left. What the job trains does not change, only when.

Holds are files under the job's folder, `holds/<holder>`, each holding a unix time until which
it holds: one per answer in progress, so two sessions answering at once do not release each
other. A hold ends by itself at that time, so an app that crashes mid-answer cannot leave the
job stopped. The runner never keeps a step stopped longer than MAX_STOP_S at a time and then
lets it run at least MIN_RUN_S, so a stream of answers slows a job but cannot starve it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emotion_core import store
from emotion_core.jobs.lock import lock_is_live, process_tree, read_lock

HOLDS = "holds"  # folder of hold files inside a job's folder
MAX_HOLD_S = 3.0  # the longest one hold lasts (it ends then even if never released)
RELEASE_GRACE_S = 0.3  # a released hold lasts this long more: the browser draws the answer
MAX_STOP_S = 3.0  # the runner continues a step held this long...
MIN_RUN_S = 1.0  # ...and lets it run at least this long before the next stop
POLL_S = 0.05  # how often the runner looks at the holds
ENV_HOLD = "EMOTION_JOB_HOLD"  # "0": the app never holds a job (its throughput comes first)


def _running_job_dir() -> Path | None:
    lock = read_lock()
    if not lock or not lock_is_live(lock):
        return None
    return store.paths.job_dir(str(lock["job_id"]))


def _write(path: Path, until: float) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{until:.3f}")
    os.replace(tmp, path)  # the runner never reads half a number


@contextmanager
def answering(seconds: float = MAX_HOLD_S) -> Iterator[bool]:
    """Hold the running job (if any) while the body computes an answer; yields whether a job
    was held. The hold lasts at most `seconds` (capped at MAX_HOLD_S), and RELEASE_GRACE_S
    after the body ends."""
    jdir = _running_job_dir() if os.environ.get(ENV_HOLD, "1") != "0" else None
    path = None
    if jdir is not None:
        try:
            (jdir / HOLDS).mkdir(exist_ok=True)
            path = jdir / HOLDS / uuid.uuid4().hex
            _write(path, time.time() + min(seconds, MAX_HOLD_S))
        except OSError:
            path = None  # the job's folder went away: nothing to hold
    try:
        yield path is not None
    finally:
        if path is not None:
            try:
                _write(path, time.time() + RELEASE_GRACE_S)
            except OSError:
                pass


def held_until(jdir: Path, now: float | None = None) -> float:
    """The latest time any hold of the job in `jdir` lasts to (0 when none); deletes holds
    that ended more than a minute ago."""
    now = time.time() if now is None else now
    latest = 0.0
    try:
        paths = list((jdir / HOLDS).iterdir())
    except OSError:
        return 0.0
    for path in paths:
        if path.name.endswith(".tmp"):
            continue
        try:
            until = float(path.read_text())
        except (OSError, ValueError):
            continue
        if until < now - 60:
            path.unlink(missing_ok=True)
        latest = max(latest, until)
    return latest


class StepHolder:
    """The runner's side: stops and continues a step, with every process it started (the
    demo's data generation works in a process pool), as the holds say."""

    def __init__(self, jdir: Path, proc: subprocess.Popen) -> None:
        self.jdir, self.proc = jdir, proc
        self.stopped_at: float | None = None
        self.run_until = 0.0  # no stop before this monotonic time (after a long stop)
        self.stopped: list[int] = []  # the processes stopped last

    def poll(self) -> None:
        now = time.monotonic()
        want = held_until(self.jdir) > time.time() and now >= self.run_until
        if self.stopped_at is not None and now - self.stopped_at >= MAX_STOP_S:
            want = False
            self.run_until = now + MIN_RUN_S
        if want and self.stopped_at is None:
            self.stopped = self._step_processes()
            self._signal(self.stopped, signal.SIGSTOP)
            self.stopped_at = now
        elif not want and self.stopped_at is not None:
            self.resume()

    def resume(self) -> None:
        if self.stopped_at is not None:
            self._signal(self.stopped, signal.SIGCONT)
            self.stopped_at = None

    def _step_processes(self) -> list[int]:
        """The step and its descendants (the step alone where /proc is missing)."""
        return process_tree(self.proc.pid) if self.proc.poll() is None else []

    def _signal(self, pids: list[int], sig: int) -> None:
        for pid in pids:
            if pid == self.proc.pid:
                if self.proc.poll() is not None:
                    continue  # ended and reaped: its pid may belong to someone else now
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def wait(self) -> int:
        """Wait for the step to end, obeying holds meanwhile; its exit code."""
        try:
            while (rc := self.proc.poll()) is None:
                time.sleep(POLL_S)  # not wait(timeout): that polls every 0.5-50 ms, 8% of a core
                self.poll()
            return rc
        finally:
            self.resume()
