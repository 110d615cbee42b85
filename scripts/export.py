"""Export a stored run as a deployable ONNX model plus the JSON that describes how to use it.

    python -m scripts.export --run RUN_ID [--format onnx] [--out DIR] [--no-verify]

Writes DIR/model.onnx and DIR/model.json (default DIR: artifacts/exports/<run_id>/, where the
app's predict looks for it). The export is checked against PyTorch with ONNX Runtime before it is
written; ensembles are refused (export their members). See docs/export.md.
"""
from __future__ import annotations

import argparse
import sys

from emotion_core import store
from emotion_core.evaluation import CheckpointMismatchError
from emotion_core.evaluation.export import ExportError, export_run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.export", description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="run id (see python -m scripts.leaderboard)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    p.add_argument("--out", default=None, help="output folder (default: artifacts/exports/<run>)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the ONNX Runtime vs PyTorch parity check")
    args = p.parse_args(argv)
    try:
        exp = export_run(args.run, args.out, verify=not args.no_verify)
    except (store.BrokenRunError, CheckpointMismatchError, ExportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta = exp.meta
    parity = meta["export"]["parity"] or {}
    check = (f"max probability difference vs PyTorch {parity['max_abs_diff_probabilities']:.1e} "
             f"(tolerance {parity['tolerance']:.0e})" if parity.get("checked")
             else parity.get("note", "parity not checked"))
    print(f"run {args.run} ({meta['run'].get('model')}) -> {exp.onnx_path} "
          f"({meta['bytes'] / 1e6:.1f} MB, opset {meta['export']['opset']})")
    print(f"  input {meta['input']['name']} {meta['input']['shape']} float32, output logits over "
          f"{meta['classes']}")
    print(f"  {check}")
    print(f"  described in {exp.meta_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
