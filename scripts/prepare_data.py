"""Index, clean and split an image-folder dataset into artifacts/datasets/<name>/.

    python -m scripts.prepare_data --data DIR [--name NAME] [--detect-faces] [--drop-no-face]
                                   [--val-fraction F] [--test-fraction F] [--seed S] [--min-side PX]
                                   [--subject-pattern REGEX] [--no-eda]

Then writes the EDA tables and pictures (sample grids, mean face per class, batch-wise mean
faces) under artifacts/datasets/<name>/eda/ for the app's Data page, from the decode-once cache
at 112 px (the quick profile's size, so training reuses it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emotion_core import store
from emotion_core.data import prepare_dataset
from emotion_core.data.eda import save_eda
from scripts import flags

# Numbers the split and cleaning cannot use, refused in the flag's words
NUMBER_RULES: tuple[flags.Rule, ...] = (
    ("val_fraction", "--val-fraction", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("test_fraction", "--test-fraction", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("min_side", "--min-side", lambda v: v >= 1, "at least 1 (pixels)"),
    ("seed", "--seed", lambda v: v >= 0, ">= 0"),
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.prepare_data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path,
                   help="dataset folder: <root>/<class>/* or <root>/<split>/<class>/*")
    p.add_argument("--name", default=None, help="report name (default: the folder's name)")
    p.add_argument("--detect-faces", action="store_true",
                   help="find the largest face per image (MTCNN, else OpenCV Haar) and flag images "
                        "without one")
    p.add_argument("--drop-no-face", action="store_true",
                   help="with --detect-faces, drop train/val images without a face")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of train carved out for validation when the dataset has no val split")
    p.add_argument("--test-fraction", type=float, default=0.15,
                   help="share of train carved out for testing when the dataset has no test split")
    p.add_argument("--seed", type=int, default=0, help="seed of the stratified val/test carve")
    p.add_argument("--subject-pattern", default=None, metavar="REGEX",
                   help="read the person each photo shows from its file name (the group named "
                        "'subject', else the first group), so a carved val/test split takes whole "
                        "people: e.g. '^(S\\d{3})_' for CK+, '^[AB]([FM]\\d{2})' for KDEF")
    p.add_argument("--min-side", type=int, default=32, help="images smaller than this are dropped")
    p.add_argument("--no-eda", action="store_true",
                   help="skip the EDA tables and pictures (sample grids, mean faces)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def summarise(report: dict) -> str:
    lines = [f"dataset {report['name']}: classes {', '.join(report['classes'])}"]
    for split, counts in report["counts"].items():
        lines.append(f"  source {split:5s}: " + ", ".join(f"{c} {n}" for c, n in counts.items())
                     + " (readable images)")
    for subset, counts in report["subset_counts"].items():
        lines.append(f"  subset {subset:5s}: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    found = {k: v for k, v in report["issues"].items() if v}
    lines.append("  issues: " + (", ".join(f"{k} {v}" for k, v in found.items()) or "none")
                 + f"; {report['dropped']} files dropped")
    lines.append(f"  test split: {report['test_source']}, validation split: {report['val_source']}")
    if report.get("subjects"):
        sub = report["subjects"]
        lines.append(f"  subjects: {sub['subjects']} in {sub['files']} file names "
                     f"({report['subject_pattern']}); carved splits take whole subjects")
    lines.append("  class weights: " + ", ".join(f"{c} {w:.3f}"
                                                 for c, w in report["class_weights"].items()))
    lines += [f"  WARNING: {w}" for w in report.get("warnings", [])]
    lines.append(f"  written to {store.paths.dataset_dir(report['name'])} "
                 f"in {report['timings']['total_s']:.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.drop_no_face and not args.detect_faces:
        print("error: --drop-no-face needs --detect-faces", file=sys.stderr)
        return 2
    problem = flags.range_error(args, NUMBER_RULES)  # before the folder is read
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        ds = prepare_dataset(args.data, args.name, detect_faces=args.detect_faces,
                             val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                             seed=args.seed,
                             min_side=args.min_side, progress=not args.quiet,
                             drop_no_face=args.drop_no_face,
                             subject_pattern=args.subject_pattern)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summarise(ds.report))
    if not args.no_eda:
        try:
            written = save_eda(ds)
        except (OSError, ValueError) as exc:  # the report stands; only the pictures are missing
            print(f"warning: EDA pictures not written: {exc}", file=sys.stderr)
        else:
            print(f"  EDA: {len(written)} tables and pictures in {store.paths.eda_dir(ds.name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
