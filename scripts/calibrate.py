"""Fit a run's temperature on validation answers, so that its percentages mean what they say.

    python -m scripts.calibrate --run RUN [--fit-on VALIDATED_RUN] [--dry-run]
    python -m scripts.calibrate --run RUN --clear

T is fitted on the stored validation answers of `--fit-on` (default: the run itself) by least
negative log-likelihood, then written into RUN's manifest as `calibration`; from then on every
answer RUN gives (Predict, the webcam, `scripts.predict`, `scripts.evaluate`) is
softmax(log p / T) of the plain one: the percentages change, the chosen class never does
(`emotion_core.evaluation.calibration`). A refit trained on its validation images, so it takes
the T of the run that validated its recipe (`--fit-on`, the same model and classes). The report
also shows RUN's stored test answers before and after, per set: read afterwards, they choose
nothing. A bundled model is a release, so calibrating one rewrites its manifest and model card
(never its weights): commit the change like a new bundle.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from emotion_core import store
from emotion_core.evaluation import calibration
from emotion_core.evaluation import metrics as ev
from emotion_core.store import bundle
from emotion_core.views import tables
from emotion_core.views.model_card import DATA_TERMS, model_card


def _answers(rec: store.RunRecord, subset: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{set: (probabilities, label indices)} of a run's stored answers on `subset`, one entry
    per set for a run on several ("all sets" first), else one."""
    df = rec.predictions
    if df is None or df.empty:
        return {}
    df = df[df["subset"] == subset]
    classes = list(rec.manifest["classes"])
    index = {c: i for i, c in enumerate(classes)}
    parts = {"all sets": df}
    if "source" in df.columns and df["source"].nunique() > 1:
        parts.update({str(s): g for s, g in df.groupby("source", sort=True)})
    return {name: (ev.probs_from_predictions(g, classes), g["label"].map(index).to_numpy())
            for name, g in parts.items() if len(g)}


def _check_pair(target: store.RunRecord, source: store.RunRecord) -> None:
    for rec in (target, source):
        if rec.manifest.get("kind", "model") != "model":
            raise ValueError(f"run '{rec.run_id}' is a {rec.manifest.get('kind')}: calibrate "
                             f"trained models (an ensemble averages its members' answers)")
    for key in ("model", "classes", "dataset"):
        if target.manifest.get(key) != source.manifest.get(key):
            raise ValueError(f"--fit-on '{source.run_id}' has {key} {source.manifest.get(key)!r}, "
                             f"'{target.run_id}' {target.manifest.get(key)!r}: a temperature "
                             f"belongs to one recipe's answers")


def calibrate(run_id: str, fit_on: str | None = None) -> dict:
    """The calibration record for `run_id` (fitted on `fit_on`'s validation answers)."""
    target = store.load_run(run_id)
    source = target if not fit_on or fit_on == run_id else store.load_run(fit_on)
    _check_pair(target, source)
    val = _answers(source, "val").get("all sets")
    if val is None:
        hint = (" (a refit trains on its validation images): pass --fit-on, the run that "
                "validated its recipe" if store.runs.is_refit(source.manifest) else "")
        raise ValueError(f"run '{source.run_id}' has no stored validation answers{hint}")
    record = calibration.calibration_record(*val, fitted_on=source.run_id)
    t = record["temperature"]
    record["test"] = {name: {"before": calibration.summary(p, y),
                             "after": calibration.summary(calibration.scale(p, t), y)}
                      for name, (p, y) in _answers(target, "test").items()}
    return record


def _write(run_id: str, record: dict | None) -> None:
    if store.paths.is_bundled(run_id):
        card = bundle.model_card(run_id)
        note = card.split(DATA_TERMS, 1)[1].strip() if DATA_TERMS in card else ""
        bundle.update_bundled(run_id, {"calibration": record})
        bundle.update_bundled(run_id, {}, card=model_card(run_id, note=note))
    elif record is None:
        store.runs.update_run_manifest(run_id, {}, remove=["calibration"])
    else:
        store.runs.update_run_manifest(run_id, {"calibration": record})


def _report(record: dict) -> str:
    rows = [{"answers": f"{record['subset']} of {record['fitted_on']}", "set": "all sets",
             **{f"{k} before": record["before"][k] for k in ("mean_top_probability", "ece", "nll")},
             **{f"{k} after": record["after"][k] for k in ("mean_top_probability", "ece", "nll")},
             "accuracy": record["before"]["accuracy"], "images": record["before"]["images"]}]
    for name, part in record["test"].items():
        rows.append({"answers": "test (chose nothing)", "set": name,
                     **{f"{k} before": part["before"][k] for k in ("mean_top_probability", "ece", "nll")},
                     **{f"{k} after": part["after"][k] for k in ("mean_top_probability", "ece", "nll")},
                     "accuracy": part["before"]["accuracy"], "images": part["before"]["images"]})
    return tables.format_table(pd.DataFrame(rows).round(4))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.calibrate",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="the run (or bundled model) whose answers to scale")
    ap.add_argument("--fit-on", default=None,
                    help="the run whose validation answers fit T (default: --run itself; for a "
                         "refit, the run that validated its recipe)")
    ap.add_argument("--dry-run", action="store_true", help="report T, write nothing")
    ap.add_argument("--clear", action="store_true", help="remove the run's temperature")
    args = ap.parse_args(argv)
    try:
        if args.clear:
            store.load_run(args.run, tables=False)
            _write(args.run, None)
            print(f"{args.run}: answers no longer scaled")
            return 0
        record = calibrate(args.run, args.fit_on)
        if not args.dry_run:
            _write(args.run, record)
    except (ValueError, store.BrokenRunError, store.ReadOnlyRunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = "would scale" if args.dry_run else "scales"
    print(f"{args.run} {verb} its answers by T = {record['temperature']:g}")
    print(_report(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
