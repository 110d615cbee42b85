"""Read the emotion of every face in photos, from the command line: what the Predict page does.

    python -m scripts.predict PHOTO_OR_FOLDER [...] [--run RUN_ID ...] [--peers] [--whole-image]
                              [--max-faces N] [--csv FILE] [--list]

Finds the faces (MTCNN; every face, where Predict classifies the six largest of a picture, unless
`--max-faces` sets a limit), cuts each the way each run was trained, and prints every run's answer
and, with two runs or more, the mean of their probabilities (Predict's "mean computed now").
Like Predict, a run with a usable ONNX export (the app's first start makes the bundled models') answers through
ONNX Runtime, any other through PyTorch (docs/export.md).
By default the bundled real-face models answer; `--run` picks stored runs instead (repeat it;
`--list` shows the ids), `--peers` adds the external reference models whose weights are here.
Folders are searched recursively for images. `--csv` also writes one row per face and run
(a row per picture where no face was found). Exit status: 0, or 1 when some picture could not
be read (the others are still answered), 2 for a usage mistake.
"""
from __future__ import annotations

import argparse
import csv
import functools
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from emotion_core import store, words
from emotion_core.data.layout import is_image_file
from emotion_core.evaluation.onnx_model import load_predictor
from emotion_core.store import reference
from emotion_core.views import labels as run_names
from emotion_core.views import live, run_choice

CSV_FIELDS = ["path", "face", "x", "y", "w", "h", "run_id", "run", "prediction", "confidence",
              "temperature", "engine", "note"]  # temperature: the run's calibration (1: none);
# engine: onnx (the run's export) or torch, as on Predict


def offered_runs() -> tuple[list[store.RunRecord], list[store.RunRecord], list[store.RunRecord]]:
    """(runs that can answer a photo: the user's and the bundled runs with weights, stored
    ensembles, then the external references whose weights are here; the default: bundled;
    what `--peers` adds: the newest run of each external model, scored here or in a set)."""
    runs, _ = store.list_runs()
    own = [r for r in runs if not r.tables_only and (r.has_weights or r.manifest.get("kind") == "ensemble")]
    here = {r.run_id for r in own}
    try:
        peers = [r for r in run_choice.peer_runs(reference.all_reference_runs())
                 if r.run_id not in here]  # its author's store has them
    except (OSError, ValueError):  # a damaged reference set: no peers, the rest still works
        peers = []
    offered = [*own, *peers]
    default = [r for r in own if r.bundled and r.has_weights]
    return offered, default, run_choice.newest_per_model([r for r in offered if r.is_reference])


def image_paths(inputs: Sequence[str]) -> list[Path]:
    """The pictures named, and those inside the folders named (recursively, sorted)."""
    out: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {raw}")
    return out


def _rows(path: Path, result: live.LiveResult, labels: dict[str, str]) -> Iterable[dict[str, Any]]:
    if not result.predictions:
        yield {"path": str(path), "note": result.note}
    for k, pred in enumerate(result.predictions, start=1):
        box = pred.box
        where = {"x": box.x, "y": box.y, "w": box.w, "h": box.h} if box else {}
        for p in live.answers(pred):
            row = {"path": str(path), "face": k, **where, "run_id": p.run_id,
                   "run": live.entry_label(p, labels), "prediction": p.predicted or "",
                   "confidence": "" if p.confidence is None else round(p.confidence, 4),
                   "temperature": "" if p.temperature is None else p.temperature,
                   "engine": p.engine if p.probs is not None else "",
                   "note": " ".join(filter(None, [p.error, result.note if k == 1 else "",
                                                  pred.small_note]))}
            if p.probs is not None:
                row.update({f"p_{c}": round(float(v), 4) for c, v in zip(p.classes, p.probs, strict=True)})
            yield row


def _print(path: Path, result: live.LiveResult, labels: dict[str, str]) -> None:
    faces = len(result.predictions)
    how = f" ({result.detector}, {result.detect_ms:.0f} ms)" if result.detector else ""
    print(f"{path}: {words.counted(result.faces_found, 'face')} found{how}")
    if result.note:
        print(f"  {result.note}")
    for k, pred in enumerate(result.predictions, start=1):
        box = pred.box
        where = f"at x={box.x} y={box.y}, {box.w}x{box.h} px" if box else "the whole image"
        print(f"  face {k} of {faces} {where}")
        if pred.small_note:
            print(f"  {pred.small_note}")
        for p in live.answers(pred):
            name = live.entry_label(p, labels)
            if p.probs is None:
                print(f"    {'failed':<8}       {name}: {p.error}")
            else:
                print(f"    {p.predicted:<8} {p.confidence:.2f}  {name}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.predict",
                                description=__doc__.split("\n")[0])
    p.add_argument("inputs", nargs="*", metavar="PHOTO_OR_FOLDER", help="pictures or folders")
    p.add_argument("--run", action="append", default=None, metavar="RUN_ID",
                   help="a stored run to answer (repeat for several; default: the bundled models)")
    p.add_argument("--peers", action="store_true",
                   help="also the external reference models whose weights are on this machine")
    p.add_argument("--whole-image", action="store_true",
                   help="classify the whole picture when no face is found in it")
    p.add_argument("--max-faces", type=int, default=None, metavar="N",
                   help="classify only the N largest faces of each picture (default: every face "
                        f"found; the Predict page classifies at most {live.MAX_FACES})")
    p.add_argument("--csv", default=None, metavar="FILE", help="also write the answers here")
    p.add_argument("--list", action="store_true", help="list the runs that can answer, then stop")
    args = p.parse_args(argv)

    offered, default, peers = offered_runs()
    labels = run_names.run_labels(offered)
    if args.list:
        for r in offered:
            tag = "default" if r in default else "--peers" if r in peers else ""
            print(f"{r.run_id}\t{labels[r.run_id]}\t{tag}".rstrip())
        return 0
    if not args.inputs:
        p.error("name at least one picture or folder (or use --list)")
    if args.max_faces is not None and args.max_faces < 1:
        p.error(f"--max-faces must be 1 or more, e.g. 6; got {args.max_faces} "
                "(leave it out to classify every face)")
    by_id = {r.run_id: r for r in offered}
    unknown = [rid for rid in args.run or [] if rid not in by_id]
    if unknown:
        p.error(f"cannot answer with {words.noun(len(unknown), 'run')} {', '.join(unknown)}: "
                f"{words.verb(len(unknown), 'not a run', 'not runs')} with weights here (see --list)")
    chosen = list(args.run) if args.run else [r.run_id for r in default]
    if args.peers:
        chosen += [r.run_id for r in peers if r.run_id not in chosen]
    if not chosen:
        p.error("no runs to answer with: no bundled model here; train one or pass --run")
    try:
        paths = image_paths(args.inputs)
    except FileNotFoundError as exc:
        p.error(str(exc))
    if not paths:
        p.error("no pictures found in " + ", ".join(args.inputs))
    if args.csv:  # before the pictures are read, so a typo does not cost the whole folder's work
        target = Path(args.csv)
        if target.is_dir():
            p.error(f"--csv {args.csv} is a folder; name a file in it, e.g. {target / 'answers.csv'}")
        if not target.parent.is_dir():
            p.error(f"--csv {args.csv}: there is no folder {target.parent}")

    rows: list[dict[str, Any]] = []
    failed = 0
    # each run built once, not once per picture; through its ONNX export where it has one
    loader = functools.cache(load_predictor)
    for path in paths:
        try:
            rgb = live.decode_picture(path)
        except (live.UploadError, OSError) as exc:
            failed += 1
            print(f"{path}: skipped: {exc}", file=sys.stderr)
            rows.append({"path": str(path), "note": f"skipped: {exc}"})
            continue
        result = live.predict_faces(rgb, chosen, loader=loader, whole_image=args.whole_image,
                                    max_faces=args.max_faces)
        _print(path, result, labels)
        rows += _rows(path, result, labels)
    if args.csv:
        classes = sorted({k for row in rows for k in row if k.startswith("p_")})
        try:
            with open(args.csv, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=[*CSV_FIELDS, *classes])
                writer.writeheader()
                writer.writerows(rows)
        except OSError as exc:  # the answers above were printed; say why the file is missing
            print(f"error: cannot write {args.csv}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"wrote {words.counted(len(rows), 'row')} to {args.csv}")
    if failed:
        print(f"{failed} of {words.counted(len(paths), 'picture')} could not be read",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
