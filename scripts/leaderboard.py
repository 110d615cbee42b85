"""Print the leaderboard: one row per stored run (models and ensembles), best val macro-F1 first.

    python -m scripts.leaderboard [--dataset NAME] [--csv]
    python -m scripts.leaderboard --intervals [--dataset NAME]
    python -m scripts.leaderboard --versus RUN_A RUN_B
    python -m scripts.leaderboard --agreement --dataset NAME [--subset test] [--show 20]
    python -m scripts.leaderboard --mean RUN RUN [RUN ...]

Rebuilds artifacts/leaderboard.csv from the run manifests; broken runs are listed, not hidden,
and so are runs whose model gives one class to every validation image (a collapsed training).
`--intervals` prints each run's validation and test accuracy with its image count and 95%
Wilson interval (per set for a run on several); `--versus` pairs two runs on the images both
were scored on (both right, only A, only B, both wrong, exact McNemar p-value). `--agreement`
lets every run on a dataset (yours, the bundled ones, the reference sets'; ensembles left out)
vote on the split's images all of them answered: per set, the best run's accuracy, the share
right by most runs and by any, the images missed by every run; then the most missed images.
`--mean` scores the equal-weight mean of runs' stored answers (what Predict shows under its
models' answers) on val and test, per set, without storing an ensemble run; a run may be yours,
a bundled one or a reference set's (e.g. GPU runs whose weights never came back).
"""
from __future__ import annotations

import argparse
import sys

from emotion_core import store
from emotion_core.evaluation import ensemble
from emotion_core.store import reference
from emotion_core.views import tables

VIEW = ["dataset", "model", "kind", "weights_source", "profile", "epochs_run", "val_accuracy",
        "val_macro_f1", "test_accuracy", "test_macro_f1", "val_ece", "params", "latency_ms",
        "train_seconds", "run_id"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.leaderboard", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default=None, help="only runs on this dataset")
    p.add_argument("--csv", action="store_true", help="print every column as CSV")
    p.add_argument("--intervals", action="store_true",
                   help="accuracy with its 95%% Wilson interval per run, subset and set")
    p.add_argument("--versus", nargs=2, metavar=("RUN_A", "RUN_B"),
                   help="two runs on their shared images: exact McNemar test per subset and set")
    p.add_argument("--agreement", action="store_true",
                   help="every run on --dataset voting on the images of --subset (ensembles "
                        "left out): what all of them miss, what most get right")
    p.add_argument("--subset", default="test", choices=["test", "val"],
                   help="the split --agreement reads (default: test)")
    p.add_argument("--show", type=int, default=20, metavar="N",
                   help="how many of the most missed images --agreement lists (default: 20)")
    p.add_argument("--mean", nargs="+", metavar="RUN",
                   help="score the equal-weight mean of these runs (yours, bundled or a reference "
                        "set's) on val and test, per set")
    args = p.parse_args(argv)
    if args.mean:
        return _mean(args.mean)
    if args.versus:
        return _versus(*args.versus)
    if args.agreement:
        return _agreement(args.dataset, args.subset, args.show)

    runs, broken = store.list_runs()
    df = store.write_leaderboard(runs)
    if args.dataset is not None:
        if args.dataset not in set(df["dataset"]):
            known = ", ".join(sorted(set(df["dataset"].dropna()))) or "none"
            print(f"error: no runs on dataset '{args.dataset}' (datasets with runs: {known})",
                  file=sys.stderr)
            return 2
        df = df[df["dataset"] == args.dataset]
    by_id = {r.run_id: r for r in runs}  # the leaderboard's runs, loaded once
    shown = [by_id[r] for r in df["run_id"]]  # in its order; manifests and metrics suffice
    if df.empty:
        print(f"no runs yet under {store.paths.runs_dir()}; train with `python -m scripts.train`")
    elif args.intervals:
        print(tables.format_table(tables.accuracy_intervals(shown)))
    elif args.csv:
        print(df.to_csv(index=False), end="")
    else:
        print(tables.format_table(df[VIEW]))
    if not df.empty and not args.csv:
        found = tables.constant_answers(shown, {r.run_id: r.run_id for r in shown})
        if found:
            print("\nnote: " + tables.constant_answers_text(found).replace("**", ""))
    for rid, why in broken.items():
        print(f"broken run {rid}: {why}", file=sys.stderr)
    return 0


def _versus(run_a: str, run_b: str) -> int:
    try:
        a, b = store.load_run(run_a), store.load_run(run_b)
        pair = tables.paired_table(a, b)
    except (store.BrokenRunError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if pair.empty:
        print(f"error: runs '{run_a}' and '{run_b}' share no scored image", file=sys.stderr)
        return 2
    print(f"A = {run_a}\nB = {run_b}")
    print(tables.format_table(pair))
    return 0


def _mean(run_ids: list[str]) -> int:
    if len(run_ids) < 2:
        print("error: --mean needs at least two runs", file=sys.stderr)
        return 2
    try:
        scores = ensemble.mean_scores(run_ids)
    except (store.BrokenRunError, ensemble.EnsembleError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("equal-weight mean of " + ", ".join(run_ids))
    print(tables.format_table(scores.round({"accuracy": 4, "macro_f1": 4})))
    return 0


def _agreement(dataset: str | None, subset: str, show: int) -> int:
    if dataset is None:
        print("error: --agreement needs --dataset NAME", file=sys.stderr)
        return 2
    good, _ = store.list_runs()
    records = [store.load_run(r.run_id) for r in good if r.manifest.get("dataset") == dataset]
    records += [r for r in reference.beside(good) if r.manifest.get("dataset") == dataset]
    voters = [r for r in records if r.manifest.get("kind", "model") != "ensemble"]
    try:
        summary, hard = tables.agreement_tables(voters, subset)
    except ValueError as exc:
        print(f"error: dataset '{dataset}', {subset} split: {exc}", file=sys.stderr)
        return 2
    print(f"{len(tables.agreement_candidates(voters, subset))} runs on dataset '{dataset}', "
          f"{subset} split (the images all of them answered):")
    print(tables.format_table(summary))
    print(f"\nthe {show} most missed:")
    print(tables.format_table(hard.drop(columns=["subset", "item"]).head(show)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
