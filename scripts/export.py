"""Export a stored run as a deployable ONNX model plus the JSON that describes how to use it.

    python -m scripts.export --run RUN_ID [--format onnx] [--out DIR] [--no-verify]
    python -m scripts.export --bundled [--background]

Writes DIR/model.onnx and DIR/model.json (default DIR: artifacts/exports/<run_id>/, where the
app's predict looks for it). The export is checked against PyTorch with ONNX Runtime before it is
written; ensembles are refused (export their members). `--bundled` exports every bundled model
that has no usable export yet (the app's server starts it, `--background`: below the app's
priority, the first time it finds one missing). See docs/export.md.
"""
from __future__ import annotations

import argparse
import sys

from emotion_core import store
from emotion_core.evaluation import CheckpointMismatchError
from emotion_core.evaluation.export import Export, ExportError, export_run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.export", description=__doc__.split("\n")[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="run id (see python -m scripts.leaderboard)")
    which.add_argument("--bundled", action="store_true",
                       help="every bundled model without a usable export")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    p.add_argument("--out", default=None, help="output folder (default: artifacts/exports/<run>)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the ONNX Runtime vs PyTorch parity check")
    p.add_argument("--background", action="store_true",
                   help="run below the app's priority, as a training job does")
    args = p.parse_args(argv)
    if args.bundled and args.out:
        p.error("--out takes one run: give --run")
    if args.background:
        from emotion_core.jobs.runner import lower_priority
        lower_priority()
    if args.bundled:
        return _export_bundled(verify=not args.no_verify)
    try:
        exp = export_run(args.run, args.out, verify=not args.no_verify)
    except (store.BrokenRunError, CheckpointMismatchError, ExportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _report(args.run, exp)
    return 0


def _export_bundled(verify: bool) -> int:
    from emotion_core.evaluation.onnx_model import usable_export

    failed = 0
    for rec in store.list_runs()[0]:
        if not rec.bundled or not rec.has_weights:
            continue
        if usable_export(rec.run_id, rec.manifest)[0] is not None:
            print(f"run {rec.run_id}: its export is up to date")
            continue
        try:
            _report(rec.run_id, export_run(rec.run_id, verify=verify))
        except (store.BrokenRunError, CheckpointMismatchError, ExportError, ValueError) as exc:
            failed += 1
            print(f"error: {rec.run_id}: {exc}", file=sys.stderr)
    return 2 if failed else 0


def _report(run_id: str, exp: Export) -> None:
    meta = exp.meta
    parity = meta["export"]["parity"] or {}
    check = (f"max probability difference vs PyTorch {parity['max_abs_diff_probabilities']:.1e} "
             f"(tolerance {parity['tolerance']:.0e})" if parity.get("checked")
             else parity.get("note", "parity not checked"))
    print(f"run {run_id} ({meta['run'].get('model')}) -> {exp.onnx_path} "
          f"({meta['bytes'] / 1e6:.1f} MB, opset {meta['export']['opset']})")
    print(f"  input {meta['input']['name']} {meta['input']['shape']} float32, output logits over "
          f"{meta['classes']}")
    print(f"  {check}")
    print(f"  described in {exp.meta_path}")


if __name__ == "__main__":
    sys.exit(main())
