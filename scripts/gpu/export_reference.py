"""Collect the evaluation tables of every stored run into one small folder (no weights).

    python -m scripts.gpu.export_reference --out DIR [--dataset NAME] [--note TEXT]

Writes DIR/leaderboard.csv, DIR/metrics.json ({run_id: metrics}), DIR/manifests.json,
DIR/history.csv and DIR/confusion.csv (both with a run_id column) and DIR/predictions.csv.gz (each
run's per-image answers, gzipped, with a run_id column). This is how the full-profile
GPU results travel back and land, committed, under artifacts/reference/<dataset>/.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from emotion_core import store


def export_reference(out: Path, dataset: str | None = None, note: str | None = None) -> list[str]:
    """Write the combined tables for every complete run (of `dataset`, if given); return run ids."""
    everything, broken = store.list_runs()
    runs = [r for r in everything if not r.bundled
            and (dataset is None or r.manifest.get("dataset") == dataset)]
    if not runs:
        raise ValueError(f"no complete runs{' for dataset ' + dataset if dataset else ''} under "
                         f"{store.paths.runs_dir()}")
    metrics, manifests, histories, confusions, predictions = {}, {}, [], [], []
    for rec in runs:
        full = store.load_run(rec.run_id)
        metrics[rec.run_id] = full.metrics
        manifests[rec.run_id] = full.manifest
        for frames, table in ((histories, full.history), (confusions, full.confusion),
                              (predictions, full.predictions)):
            if table is not None and len(table):
                frames.append(table.assign(run_id=rec.run_id))
    board = store.write_leaderboard(everything)
    board = board[board["run_id"].isin(metrics)]
    out.mkdir(parents=True, exist_ok=True)
    store.write_csv(out / "leaderboard.csv", board)
    store.write_json(out / store.paths.REFERENCE_METRICS, metrics)
    store.write_json(out / store.paths.REFERENCE_MANIFESTS,
                     {"note": note, "broken": broken, "runs": manifests})
    if histories:
        store.write_csv(out / "history.csv", pd.concat(histories, ignore_index=True))
    if confusions:
        store.write_csv(out / "confusion.csv", pd.concat(confusions, ignore_index=True))
    if predictions:
        # gzipped: one answer per image, run and subset (2,668 val + 1,406 test images a run of
        # affectnet3+webfaces3) came to 7.8 MiB of text for 12 runs, 1.6 MiB gzipped
        store.write_csv(out / "predictions.csv.gz", pd.concat(predictions, ignore_index=True))
    return list(metrics)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.gpu.export_reference", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--dataset", default=None, help="only runs on this dataset")
    p.add_argument("--note", default=None, help="free text stored in manifests.json (e.g. the GPU)")
    args = p.parse_args(argv)
    try:
        ids = export_reference(args.out, args.dataset, args.note)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {len(ids)} runs to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
