"""Print the leaderboard: one row per stored run (models and ensembles), best val macro-F1 first.

    python -m scripts.leaderboard [--dataset NAME] [--csv]

Rebuilds artifacts/leaderboard.csv from the run manifests; broken runs are listed, not hidden.
"""
from __future__ import annotations

import argparse
import sys

from emotion_core import store
from emotion_core.views.tables import format_table

VIEW = ["dataset", "model", "kind", "weights_source", "profile", "epochs_run", "val_accuracy",
        "val_macro_f1", "test_accuracy", "test_macro_f1", "val_ece", "params", "latency_ms",
        "train_seconds", "run_id"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.leaderboard", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default=None, help="only runs on this dataset")
    p.add_argument("--csv", action="store_true", help="print every column as CSV")
    args = p.parse_args(argv)

    df = store.write_leaderboard()
    _, broken = store.list_runs()
    if args.dataset is not None:
        if args.dataset not in set(df["dataset"]):
            known = ", ".join(sorted(set(df["dataset"].dropna()))) or "none"
            print(f"error: no runs on dataset '{args.dataset}' (datasets with runs: {known})",
                  file=sys.stderr)
            return 2
        df = df[df["dataset"] == args.dataset]
    if df.empty:
        print(f"no runs yet under {store.paths.runs_dir()}; train with `python -m scripts.train`")
    elif args.csv:
        print(df.to_csv(index=False), end="")
    else:
        print(format_table(df[VIEW]))
    for rid, why in broken.items():
        print(f"broken run {rid}: {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
