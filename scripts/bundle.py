"""Make a stored run a bundled release model: fp16 weights, its tables and a model card.

    python -m scripts.bundle --run RUN_ID --as realfaces-mobilenet_v2 [--note TEXT]

Writes `artifacts/bundled/<name>/` (or `$EMOTION_BUNDLED/<name>/`), which the app lists beside
the user's runs and Predict uses by default on the synthetic demo. Run `scripts.cross_eval`
first so the card lists the run's scores on every set. Refuses ensembles (bundle the members)
and an existing bundled name unless `--replace`.
"""
from __future__ import annotations

import argparse
import shutil
import sys

from emotion_core import store
from emotion_core.store import bundle
from emotion_core.views.model_card import model_card


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bundle",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="the stored run to release")
    ap.add_argument("--as", dest="name", required=True, help="the bundled run's id")
    ap.add_argument("--note", default="", help="a paragraph appended to the model card")
    ap.add_argument("--replace", action="store_true", help="replace a bundled run of that name")
    args = ap.parse_args(argv)
    try:
        name = store.paths.checked("run id", args.name)
        target = store.paths.bundled_dir() / name
        if target.exists() and not args.replace:
            raise ValueError(f"{target} exists: pass --replace to overwrite it")
        store.load_run(args.run, tables=False)  # a broken or missing run fails before any change
        if target.exists():
            shutil.rmtree(target)
        path = bundle.bundle_run(args.run, "", bundle_id=name)
        # the card reads the bundled copy: its fp16 weights' size and hash, its own id
        (path / store.paths.MODEL_CARD).write_text(model_card(name, note=args.note))
    except (ValueError, store.BrokenRunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = (path / store.paths.WEIGHTS).stat().st_size / 2**20
    print(f"bundled {args.run} as {path} ({size:.1f} MiB of fp16 weights, card "
          f"{store.paths.MODEL_CARD})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
