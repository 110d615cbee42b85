"""Cache keys for the app: plain strings that change whenever the files behind an entry change.

Why: the app caches runs, models, tables and maps across reruns and sessions, keyed by strings;
a key that includes a file's modification time and size makes a retrained run or a rebuilt
dataset report a new entry, and one that includes the artifacts root keeps two artifact folders
(the tests switch between them) apart. Which file stands for what is the store's knowledge, so
the pages ask here instead of naming files.
"""
from __future__ import annotations

from pathlib import Path

from emotion_core.store import paths


def root() -> str:
    """The artifacts folder in use, as a string."""
    return str(paths.root())


def file_stamp(path: Path) -> str:
    """`mtime_ns-size` of a file, or "missing"."""
    try:
        st = path.stat()
        return f"{st.st_mtime_ns}-{st.st_size}"
    except OSError:
        return "missing"


def runs_fingerprint() -> str:
    """Changes whenever a run folder (the user's, bundled or a reference set's) appears,
    disappears or has its manifest or metrics rewritten."""
    parts = [root()]
    for base, files in ((paths.runs_dir(), (paths.MANIFEST, paths.METRICS)),
                        (paths.bundled_dir(), (paths.MANIFEST, paths.METRICS)),
                        (paths.reference_dir(), (paths.REFERENCE_MANIFESTS, paths.REFERENCE_METRICS))):
        parts.append(str(base))
        if base.is_dir():
            parts += [p.name + ":" + ":".join(file_stamp(p / f) for f in files)
                      for p in sorted(base.iterdir()) if not p.name.startswith(".")]
    return "|".join(parts)


def weights_stamp(run_id: str) -> str:
    """Changes when the run's weights are rewritten (the model must be rebuilt)."""
    return file_stamp(paths.run_file(run_id, paths.WEIGHTS))


def export_stamp(run_id: str) -> str:
    """Changes when the run's ONNX export is written or replaced (its JSON is written last)."""
    return file_stamp(paths.export_dir(run_id) / paths.ONNX_META)


def tables_stamp(run_id: str) -> str:
    """Changes when the run's per-image predictions (its last-written table) are rewritten."""
    return file_stamp(paths.run_file(run_id, paths.PREDICTIONS))


def dataset_table_stamp(name: str, table: str) -> str:
    """Changes when a prepared dataset's index/split/cleaning table is rewritten."""
    return file_stamp(paths.dataset_table_path(name, table))
