"""Background training jobs started from the app: one at a time, outside the Streamlit process.

    status     start a job (or the demo), its state, progress and status line, cancel it
    progress   what a job's JSON-lines events say: fraction done and a one-line status
    lock       the one job slot: a lock file naming the live process group that holds it
    runner     the detached process a job runs in (`python -m emotion_core.jobs.runner JOB_DIR`)
"""
from emotion_core.jobs.lock import JobBusyError
from emotion_core.jobs.progress import JobProgress
from emotion_core.jobs.status import (
    JobInfo,
    cancel_job,
    demo_plan,
    job_progress,
    job_status,
    read_log,
    start_demo,
    start_job,
    status_line,
)

__all__ = ["JobBusyError", "JobInfo", "JobProgress", "cancel_job", "demo_plan", "job_progress",
           "job_status", "read_log", "start_demo", "start_job", "status_line"]
