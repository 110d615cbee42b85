"""Time one augmented training epoch: decode-once cache vs ImageFolder-style PIL loading.

    python -m scripts.bench.data --data DIR --size 112 [--batch-size 64] [--workers 0]

Both paths read exactly the files of the prepared train subset, apply the same augmentations
(rotation, brightness, contrast, horizontal flip, then normalisation; see
emotion_core/data/transforms.py) and yield the same batch shapes, in the same process with the same
torch thread count. The slow path is torchvision's recipe: a map-style dataset that opens each
file with PIL (torchvision's default_loader) and runs the per-sample v2 pipeline, through a
torch DataLoader with --workers worker processes. The fast path is emotion_core.data.cache.CachedLoader
over the memory-mapped cache (always in-process: its batched tensor ops use torch's threads).
Preparing the dataset and building the cache are not timed (printed separately). The last line
is `speedup: X.XX` (fast img/s over slow img/s).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="image-folder dataset root")
    p.add_argument("--name", default=None, help="dataset name (default: folder name)")
    p.add_argument("--size", type=int, default=112, help="square image side in pixels")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0,
                   help="DataLoader worker processes for the slow path (default 0)")
    p.add_argument("--limit", type=int, default=0,
                   help="time only the first N train images (0 = all; for quick checks)")
    p.add_argument("--repeats", type=int, default=1,
                   help="epochs timed per path, interleaved; the fastest of each is reported (default 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads for both paths (0 = torch's default)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _prepared(root: Path, name: str | None):
    """Reuse the saved preparation of this folder if there is one, else prepare it now."""
    from emotion_core import data
    from emotion_core.data import prepare

    name = prepare.check_name(name or root.name)
    try:
        ds = data.load_prepared(name)
        if Path(ds.root).resolve() == root.resolve():
            return ds, False
    except FileNotFoundError:
        pass
    return data.prepare_dataset(root, name, progress=True), True


def _time_epoch(batches) -> tuple[float, int]:
    """Wall time of one full pass, and the images it yielded."""
    count = 0
    t0 = time.perf_counter()
    for x, y in batches():
        count += int(y.shape[0])
        assert x.dtype == torch.float32 and x.shape[1] == 3
    return time.perf_counter() - t0, count


def run(args: argparse.Namespace) -> float:
    from torch.utils.data import DataLoader

    from emotion_core.data.cache import CachedLoader, build_cache
    from emotion_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig
    from scripts.bench.torchvision_pipeline import ImageFileDataset, train_transform

    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.data)
    t0 = time.perf_counter()
    ds, fresh = _prepared(root, args.name)
    print(f"dataset {ds.name}: {len(ds.split)} images after cleaning "
          f"({'prepared now' if fresh else 'reused preparation'}, {time.perf_counter() - t0:.1f}s)")
    t0 = time.perf_counter()
    cache = build_cache(ds, args.size, progress=True)
    print(f"cache {cache.key}: {cache.images.shape} uint8, {cache.images.nbytes / 2**20:.1f} MiB "
          f"(build/reuse {time.perf_counter() - t0:.1f}s, not timed)")

    idx = cache.indices("train")
    if args.limit:
        idx = idx[: args.limit]
    if len(idx) == 0:
        raise ValueError(f"dataset '{ds.name}' has no train images to time")
    paths = [str(Path(ds.root) / r) for r in cache.rels[idx]]
    labels = cache.labels[idx]
    aug = AugmentConfig()
    print(f"timing one augmented epoch of {len(idx)} train images at {args.size}px, batch "
          f"{args.batch_size}, torch threads {torch.get_num_threads()}, slow-path workers "
          f"{args.workers} (cache loader in-process)")

    slow_ds = ImageFileDataset(paths, labels, train_transform(args.size, IMAGENET_MEAN,
                                                              IMAGENET_STD, aug))
    gen = torch.Generator().manual_seed(args.seed)

    def slow_batches():
        return DataLoader(slow_ds, batch_size=args.batch_size, shuffle=True, generator=gen,
                          num_workers=args.workers, persistent_workers=False)

    fast = CachedLoader(cache, idx, args.batch_size, shuffle=True, aug=aug, mean=IMAGENET_MEAN,
                        std=IMAGENET_STD, seed=args.seed)
    fast_s = slow_s = float("inf")
    for _ in range(args.repeats):  # interleaved, so both paths see the same machine load
        t, fast_n = _time_epoch(lambda: fast)
        fast_s = min(fast_s, t)
        t, slow_n = _time_epoch(slow_batches)
        slow_s = min(slow_s, t)
    if fast_n != slow_n:
        raise RuntimeError(f"paths saw different image counts ({fast_n} vs {slow_n})")
    slow_rate, fast_rate = slow_n / slow_s, fast_n / fast_s
    print(f"slow  ImageFolder+PIL+v2 per-sample: {slow_s:7.2f}s  {slow_rate:8.1f} img/s")
    print(f"fast  decode-once cache, batched:    {fast_s:7.2f}s  {fast_rate:8.1f} img/s")
    speedup = fast_rate / slow_rate
    print(f"speedup: {speedup:.2f}")
    return speedup


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    root = Path(args.data)
    problems = []
    if not root.is_dir():
        problems.append(f"--data {root} is not a folder")
    if args.size < 8:
        problems.append(f"--size must be at least 8, got {args.size}")
    if args.batch_size < 1 or args.workers < 0 or args.limit < 0 or args.repeats < 1 \
            or args.threads < 0:
        problems.append("--batch-size and --repeats must be >= 1, --workers, --limit and --threads >= 0")
    if problems:
        print(f"error: {problems[0]}.", file=sys.stderr)
        return 2
    try:
        run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
