"""The one job slot: a lock file that names the live process (group) holding it.

`lock.json` {pid, start_ticks, job_id, models, pgid} is created atomically (O_EXCL). The starting
process takes it with its own pid, then hands it to the job runner, which leads its own session,
so `pgid` == the runner's pid. The lock is live while any process of that group is: killing the
runner alone (kill -9) leaves its training child running on as an orphan in the same group, and a
second job must not start beside it in the same work folder. Linux does not reuse a pid while a
process group of that number exists, so group members found in /proc are really this job's.

A lock is stale when its process (and group) is gone, is a zombie, or the pid was reused by a
different process (the process start time in /proc differs); a stale lock is removed and a new
job may start.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from emotion_core import store


class JobBusyError(RuntimeError):
    """A second job was asked for while one is still running."""


def process_start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (Linux /proc), None where unavailable."""
    rest = _stat_fields(pid)
    try:
        return int(rest[19]) if rest else None  # field 22 overall
    except (IndexError, ValueError):
        return None


def _stat_fields(pid: int | str) -> list[str] | None:
    """/proc/<pid>/stat fields after the command name: [state, ppid, pgrp, session, ...]."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    return stat[stat.rfind(")") + 2:].split()


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid` (Linux /proc; [] elsewhere)."""
    members = []
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return members
    for entry in entries:
        rest = _stat_fields(entry)
        if rest and len(rest) > 2 and rest[2] == str(pgid) and not rest[0].startswith("Z"):
            members.append(int(entry))
    return sorted(members)


def group_alive(pgid: int, leader_ticks: int | None) -> bool:
    """True while the group led by `pgid` (the job runner) has a live process. The leader itself
    counts when it is the same process (start time); a different process with the leader's pid
    means the old group is gone (its number could not be reused otherwise)."""
    if pid_alive(pgid):
        now = process_start_ticks(pgid)
        if leader_ticks is not None and now is not None and now != leader_ticks:
            return False
        return True
    return bool(group_members(pgid))


def _is_zombie(pid: int) -> bool:
    rest = _stat_fields(pid)
    return bool(rest) and rest[0].startswith("Z")


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """True when `pid` is a live (non-zombie) process, and the same one when start_ticks is given."""
    if pid <= 0:
        return False
    try:  # reap our own finished child so it does not linger as a zombie
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if _is_zombie(pid):
        return False
    if start_ticks is not None:
        now = process_start_ticks(pid)
        if now is not None and now != start_ticks:
            return False  # the pid was reused by another process
    return True


# ---------------------------------------------------------------------------------------------
# Lock


def read_lock() -> dict[str, Any] | None:
    try:
        return json.loads(store.paths.job_lock_path().read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: treated as stale below unless it is brand new


def lock_is_live(lock: dict[str, Any]) -> bool:
    """The lock's job still runs: its process, or (for a runner's lock) any of its group."""
    if not lock:  # unreadable or half-written: live only for a moment (a writer may be mid-way)
        try:
            return time.time() - store.paths.job_lock_path().stat().st_mtime < 2.0
        except OSError:
            return False
    if lock.get("pgid"):
        return group_alive(int(lock["pgid"]), lock.get("start_ticks"))
    return pid_alive(int(lock.get("pid", -1)), lock.get("start_ticks"))


def write_lock_exclusive(payload: dict[str, Any]) -> bool:
    """Create the lock atomically; False if it already exists."""
    path = store.paths.job_lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f)
    return True


def replace_lock(payload: dict[str, Any]) -> None:
    store.write_json(store.paths.job_lock_path(), payload)


def release_lock(job_id: str) -> None:
    lock = read_lock()
    if lock is not None and lock.get("job_id") == job_id:
        store.paths.job_lock_path().unlink(missing_ok=True)


def acquire_lock(job_id: str, models: list[str]) -> None:
    """Take the one job slot or raise JobBusyError naming the job that holds it."""
    me = {"pid": os.getpid(), "start_ticks": process_start_ticks(os.getpid()), "job_id": job_id,
          "models": list(models)}
    for _ in range(3):
        if write_lock_exclusive(me):
            return
        lock = read_lock()
        if lock is None:
            continue  # released between our two calls: try again
        if lock_is_live(lock):
            other = lock.get("job_id", "?")
            models = ", ".join(lock.get("models", [])) or "models"
            raise JobBusyError(f"A training job is already running (job {other}, pid "
                               f"{lock.get('pid')}, training {models}); wait for it to finish "
                               f"or cancel it before starting another.")
        store.paths.job_lock_path().unlink(missing_ok=True)  # stale: its process is gone
    raise JobBusyError("Could not take the job lock (another job is starting); try again.")
