"""Background training jobs started from the app: one at a time, outside the Streamlit process.

    status   start a job (or the demo), its state and progress, cancel it
    lock     the one job slot: a lock file naming the live process that holds it
    runner   the detached process a job runs in (`python -m emotion_core.jobs.runner JOB_DIR`)
"""
from emotion_core.jobs.lock import JobBusyError
from emotion_core.jobs.status import (
    JobInfo,
    cancel_job,
    demo_plan,
    job_status,
    read_log,
    start_demo,
    start_job,
)

__all__ = ["JobBusyError", "JobInfo", "cancel_job", "demo_plan", "job_status", "read_log",
           "start_demo", "start_job"]
