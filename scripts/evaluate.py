"""Evaluate a stored run on any image-folder dataset with the same classes (cross-dataset).

    python -m scripts.evaluate --run RUN_ID --data DIR [--subset all|train|val|test] [--name NAME]

Prints per-subset numbers, stores them in the run's metrics.json under "cross_dataset", and
ends with the line `accuracy: 0.XXXX macro_f1: 0.XXXX`.
"""
from __future__ import annotations

import argparse
import sys

from emotion_core import store
from emotion_core.evaluation import CheckpointMismatchError
from emotion_core.evaluation.cross_dataset import evaluate_on_folder, record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="run id (see python -m scripts.leaderboard)")
    p.add_argument("--data", required=True, help="image folder <split>/<class>/* or <class>/*")
    p.add_argument("--subset", default="all", choices=["all", "train", "val", "test"])
    p.add_argument("--name", default=None, help="dataset name (default: the folder name)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)

    try:
        res = evaluate_on_folder(args.run, args.data, name=args.name, subset=args.subset,
                                 progress=not args.quiet)
    except (store.BrokenRunError, CheckpointMismatchError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = res["metrics"]
    print(f"run {args.run} on {res['dataset']} ({res['subset']}, {m['n']} images)")
    for subset, sm in res["by_subset"].items():
        print(f"  {subset:<5} n={sm['n']:<5} accuracy {sm['accuracy']:.4f} macro-F1 "
              f"{sm['macro_f1']:.4f} top-2 {sm['top2_accuracy']:.4f} ECE {sm['ece']:.4f}")
    for c, pc in m["per_class"].items():
        print(f"  {c:<10} precision {pc['precision']:.3f} recall {pc['recall']:.3f} f1 {pc['f1']:.3f}")
    record(args.run, res)
    print(f"accuracy: {m['accuracy']:.4f} macro_f1: {m['macro_f1']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
