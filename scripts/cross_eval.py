"""The generalisation matrix: runs trained on one dataset, tested on every dataset's test split.

    python -m scripts.cross_eval --data DIR [--data DIR ...] [--runs all|ID,ID] [--subset test]

Each dataset is prepared once (its own cleaning and persisted split; a set without a test split
gets one carved from train), each run (ensembles and reference models included) is scored on
every set's `--subset`, and the accuracies are printed as a table (rows: runs, columns: sets) and
stored in each run's metrics.json under "cross_dataset", where the app's Compare page shows them.
"""
from __future__ import annotations

import argparse
import sys

from emotion_core import store
from emotion_core.evaluation import CheckpointMismatchError
from emotion_core.evaluation.cross_dataset import matrix
from emotion_core.views.labels import run_labels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.cross_eval", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, action="append", help="image folder; repeat per set")
    p.add_argument("--runs", default="all", help="'all' or comma-separated run ids")
    p.add_argument("--subset", default="test", choices=["test", "val", "all"])
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    runs, _ = store.list_runs()
    ids = [r.run_id for r in runs] if args.runs == "all" else \
        [r.strip() for r in args.runs.split(",") if r.strip()]
    if not ids:
        print("error: no runs to evaluate; train some first", file=sys.stderr)
        return 2
    try:
        table = matrix(ids, args.data, subset=args.subset, progress=not args.quiet)
    except (store.BrokenRunError, CheckpointMismatchError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    labels = run_labels([store.load_run(r, tables=False) for r in ids])
    table.insert(0, "run", table["run_id"].map(labels))
    print(f"accuracy on each dataset's {args.subset} split (rows: runs; trained on the dataset "
          f"in the run's label):")
    print(table.drop(columns="run_id").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
