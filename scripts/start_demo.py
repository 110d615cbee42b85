"""Start the quick demo job in the background and return at once (what `make run` calls).

    python -m scripts.start_demo

Trains every registry model with the quick profile on the synthetic faces at
artifacts/data/synthetic (generated and prepared first if missing), as a background job the app
shows live. If a job is already running, or runs of the user's already exist (the bundled
real-face models do not count), it says so and exits 0 so that `make run` goes on to open the app.
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.start_demo",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--force", action="store_true", help="start even if runs already exist")
    args = p.parse_args(argv)
    from emotion_core import jobs, store, words

    current = jobs.job_status()
    if current is not None and current.running:
        print(f"A training job is already running ({current.job_id}); the app shows its progress.")
        return 0
    runs = [r for r in store.list_runs()[0] if r.own]  # the bundled models are no demo run
    if runs and not args.force:
        exist = words.verb(len(runs), "exists", "exist")
        print(f"{words.counted(len(runs), 'run')} already {exist} under "
              f"{store.paths.runs_dir()}; not starting the demo job (use --force to train again, "
              f"or the app's Train controls).")
        return 0
    try:
        info = jobs.start_demo()
    except jobs.JobBusyError as exc:
        print(str(exc))
        return 0
    print(f"Started the quick demo job {info.job_id} (pid {info.pid}); log: {info.log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
