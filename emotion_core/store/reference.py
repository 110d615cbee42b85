"""Reference runs: evaluation tables of runs made elsewhere (a lent GPU, a long CPU job), committed
without weights.

A reference set is a folder `reference/<set>/` written by `scripts.gpu.export_reference`:
manifests.json ({note, runs: {run_id: manifest}}), metrics.json ({run_id: metrics}),
history.csv / confusion.csv / predictions.csv (when present; each may be gzipped, `.csv.gz`, as
export_reference writes the per-image answers) with a run_id column. They load as
RunRecords (no weights) so the app can show them beside local runs, labelled with their origin
and the machine they trained on (GPU or CPU, from each manifest's timings).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from emotion_core.store import paths
from emotion_core.store.files import read_csv, read_json
from emotion_core.store.runs import REFERENCE_ORIGIN, RunRecord, trained_on_machine

TABLES = ("history", "confusion", "predictions")


def list_reference_sets() -> list[str]:
    base = paths.reference_dir()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / paths.REFERENCE_MANIFESTS).is_file())


def _table(folder: Path, name: str) -> pd.DataFrame | None:
    for path in (folder / f"{name}.csv", folder / f"{name}.csv.gz"):
        if path.is_file():
            return read_csv(path)
    return None


def _part(table: pd.DataFrame | None, run_id: str) -> pd.DataFrame | None:
    if table is None or "run_id" not in table.columns:
        return None
    return table[table["run_id"] == run_id].drop(columns="run_id").reset_index(drop=True)


def load_reference_runs(name: str) -> list[RunRecord]:
    """The runs of reference set `name`, each with its manifest, metrics and tables."""
    folder = paths.reference_dir() / paths.checked("reference set", name)
    bundle = read_json(folder / paths.REFERENCE_MANIFESTS)
    metrics = read_json(folder / paths.REFERENCE_METRICS) \
        if (folder / paths.REFERENCE_METRICS).is_file() else {}
    tables = {t: _table(folder, t) for t in TABLES}
    entries = {run_id: m for run_id, m in (bundle.get("runs") or {}).items()
               if isinstance(m, dict) and isinstance(m.get("classes"), list)}  # malformed: skipped
    # An ensemble records no device of its own: it takes its set's, when the set has one.
    machines = {trained_on_machine(m) for m in entries.values()} - {None}
    set_machine = machines.pop() if len(machines) == 1 else None
    out = []
    for run_id, manifest in entries.items():
        manifest = dict(manifest, origin=f"{REFERENCE_ORIGIN}{name}", reference_note=bundle.get("note", ""),
                        reference_machine=trained_on_machine(manifest) or set_machine)
        out.append(RunRecord(run_id=run_id, path=Path(folder), manifest=manifest,
                             metrics=metrics.get(run_id, {}),
                             history=_part(tables["history"], run_id),
                             confusion=_part(tables["confusion"], run_id),
                             predictions=_part(tables["predictions"], run_id)))
    return out


def reference_manifest(run_id: str) -> dict | None:
    """The manifest of reference-set run `run_id` (only manifests.json is read), or None."""
    for name in list_reference_sets():
        runs = read_json(paths.reference_dir() / name / paths.REFERENCE_MANIFESTS).get("runs") or {}
        if isinstance(runs.get(run_id), dict):
            return dict(runs[run_id], origin=f"{REFERENCE_ORIGIN}{name}")
    return None


def find_reference_run(run_id: str) -> RunRecord | None:
    """Reference-set run `run_id` with its tables (the first set naming it), or None."""
    for name in list_reference_sets():
        runs = read_json(paths.reference_dir() / name / paths.REFERENCE_MANIFESTS).get("runs") or {}
        if isinstance(runs.get(run_id), dict):
            return next((r for r in load_reference_runs(name) if r.run_id == run_id), None)
    return None


def all_reference_runs() -> list[RunRecord]:
    return [rec for name in list_reference_sets() for rec in load_reference_runs(name)]


def beside(runs: list[RunRecord]) -> list[RunRecord]:
    """The reference sets' runs to list beside `runs`: a set made from runs still in this store
    (on its author's machine) names them again, and the run here, with its weights, is the one
    listed."""
    here = {r.run_id for r in runs}
    return [r for r in all_reference_runs() if r.run_id not in here]
