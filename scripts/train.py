"""Train and evaluate models on one dataset, then the ensembles, then print the leaderboard.

    python -m scripts.train --data DIR --models all|NAME,NAME --profile quick|full
        [--epochs N] [--pretrained|--scratch] [--dry-run] [--resume] [--wandb]
        [--ensemble default|greedy|none] [--name DATASET_NAME]

`--data` is an image folder (prepared on first use) or an exported cache folder
(emotion_core.cache.export_cache) so a GPU machine can train without the images.
`--dry-run` runs the real path with tiny models, one batch, one epoch (for CI).
Data parallel: `torchrun --nproc-per-node 2 -m scripts.train ...` (rank 0 writes the runs).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class CacheOnlyDataset:
    """What training needs of a PreparedDataset when only an exported cache travelled."""

    name: str
    root: Path
    classes: list[str]
    split: Any


LEADERBOARD_VIEW = ["model", "weights_source", "epochs_run", "val_accuracy", "val_macro_f1",
                    "test_accuracy", "test_macro_f1", "val_ece", "params", "latency_ms",
                    "train_seconds", "run_id"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.train", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="image folder or exported cache folder")
    p.add_argument("--models", default="all", help="'all' or comma-separated registry names")
    p.add_argument("--profile", default="quick", help="quick (CPU) or full (GPU, 224 px)")
    p.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", dest="pretrained", action="store_true", default=None,
                         help="start from pretrained weights where any resolve (the default)")
    weights.add_argument("--scratch", dest="pretrained", action="store_false",
                         help="random initialisation for every model (the from-scratch baselines)")
    p.add_argument("--time-budget", type=float, default=None, dest="time_budget_s",
                   help="seconds of training per model before stopping at the best epoch so far")
    p.add_argument("--image-size", type=int, default=None, dest="image_size",
                   help="override the profile's input size in pixels")
    p.add_argument("--dry-run", action="store_true", help="tiny models, one batch, one epoch")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs")
    p.add_argument("--wandb", action="store_true", help="log to Weights & Biases")
    p.add_argument("--wandb-mode", default=None, choices=["online", "offline"])
    p.add_argument("--ensemble", default="default", choices=["default", "greedy", "none"])
    p.add_argument("--name", default=None, help="dataset name (default: the folder name)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def resolve_models(spec: str) -> list[str]:
    from emotion_core import models

    names = list(models.REGISTRY) if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in models.REGISTRY]
    if unknown or not names:
        raise ValueError(f"unknown model(s) {', '.join(unknown) or '(none given)'}; choose from "
                         f"{', '.join(models.REGISTRY)} or 'all'")
    return names


def load_data(path: str, name: str | None, config: Any, info: Any, progress: bool) -> tuple[Any, Any]:
    """(PreparedDataset, DecodedCache): rank 0 prepares and caches, then the others reuse it."""
    from emotion_core import cache as cache_mod
    from emotion_core import distributed
    from emotion_core.evaluate import open_image_folder

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"--data {path}: no such folder")
    if (folder / "cache.npz").exists() and (folder / "meta.json").exists():  # export_cache output
        # A compact export (e.g. 112 px to fit a transfer limit) is resized to the profile's size.
        cache = cache_mod.load_exported_cache(folder, size=config.image_size,
                                              progress=progress and info.is_main)
        ds = CacheOnlyDataset(name=name or str(cache.meta.get("name", folder.name)),
                              root=Path(str(cache.meta.get("root", folder))),
                              classes=list(cache.classes), split=cache.split_table())
        return ds, cache
    for rank_turn in (True, False):  # rank 0 first (builds), then the rest (reuse)
        if info.is_main == rank_turn:
            ds = open_image_folder(folder, name, progress=progress and info.is_main)
            cache = cache_mod.build_cache(ds, config.image_size, crop_faces=config.crop_faces,
                                          progress=progress and info.is_main)
        distributed.barrier(info)
    return ds, cache


def format_table(df: Any) -> str:
    """Counts as integers, scores with 4 decimals, missing values as '-'."""
    out = df.copy().astype(object)
    for col in out.columns:
        if col in ("params", "flops", "epochs_run"):
            out[col] = [f"{int(v):,}" if _num(v) else "-" for v in df[col]]
        elif df[col].dtype.kind == "f" or col.endswith(("accuracy", "f1", "ece", "_ms", "seconds")):
            out[col] = [f"{float(v):.4f}" if _num(v) else "-" for v in df[col]]
    return out.to_string(index=False)


def _num(v: Any) -> bool:
    try:
        return v is not None and float(v) == float(v)
    except (TypeError, ValueError):
        return False


def print_leaderboard(dataset: str | None) -> None:
    import pandas as pd

    from emotion_core import artifacts

    df = artifacts.write_leaderboard()
    if dataset is not None:
        df = df[df["dataset"] == dataset]
    if df.empty:
        print("leaderboard: no runs yet")
        return
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"\nleaderboard ({dataset or 'all datasets'}), by validation macro-F1:")
        print(format_table(df[LEADERBOARD_VIEW]))


def run_ensembles(mode: str, run_ids: dict[str, str]) -> None:
    from emotion_core import ensemble

    if mode == "none":
        return
    if mode == "default":
        if not all(m in run_ids for m in ensemble.DEFAULT_PAIR):
            print(f"ensemble: skipped (needs {' and '.join(ensemble.DEFAULT_PAIR)} in this run)")
            return
        members = [run_ids[m] for m in ensemble.DEFAULT_PAIR]
    else:
        if len(run_ids) < 2:
            print("ensemble: skipped (greedy selection needs at least two trained models)")
            return
        members = ensemble.greedy_subset(list(run_ids.values()))
        if len(members) < 2:
            print(f"ensemble: skipped (on val no combination beats {members[0]} alone)")
            return
        print(f"ensemble: greedy selection on val chose {', '.join(members)}")
    rid = ensemble.build_ensemble(members, label=mode)
    print(f"ensemble: wrote {rid}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from emotion_core import distributed, train
    from emotion_core.config import DRY_RUN_CHANGES, get_profile

    info = distributed.init_distributed()
    progress = not args.quiet
    try:
        config = get_profile(args.profile).override(
            epochs=args.epochs, pretrained=args.pretrained, wandb=args.wandb or None,
            wandb_mode=args.wandb_mode, time_budget_s=args.time_budget_s,
            image_size=args.image_size)
        if args.dry_run:
            config = config.override(**DRY_RUN_CHANGES)
        if config.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {config.epochs}")
        names = resolve_models(args.models)
        ds, cache = load_data(args.data, args.name, config, info, progress)
        config = config.override(image_size=cache.size)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        distributed.cleanup(info)
        return 2
    run_ids: dict[str, str] = {}
    failures: dict[str, str] = {}
    for i, name in enumerate(names, 1):
        if info.is_main:
            print(f"[{i}/{len(names)}] {name}: training on {ds.name} ({config.profile} profile, "
                  f"{config.image_size}px, up to {config.epochs} epochs, "
                  f"{'pretrained' if config.pretrained else 'from scratch'})", flush=True)
        t0 = time.perf_counter()
        try:
            run_ids[name] = train.fit(name, ds, config, cache=cache, resume=args.resume,
                                      progress=progress)
        except (RuntimeError, ValueError, OSError) as exc:
            failures[name] = str(exc)
            if info.is_main:
                print(f"[{i}/{len(names)}] {name}: FAILED: {exc}", file=sys.stderr, flush=True)
            if info.enabled:
                raise
            continue
        if info.is_main:
            print(f"[{i}/{len(names)}] {name}: done in {time.perf_counter() - t0:.1f}s "
                  f"-> run {run_ids[name]}", flush=True)
    if info.is_main:
        try:
            run_ids and run_ensembles(args.ensemble, run_ids)
        except ValueError as exc:
            print(f"ensemble: not built ({exc})", file=sys.stderr)
        print_leaderboard(ds.name)
        if failures:
            print(f"{len(failures)} model(s) failed: {', '.join(failures)}", file=sys.stderr)
    distributed.cleanup(info)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
