"""Turn a run into a bundled release model: fp16 weights, the same tables, a model card.

Bundled runs live in `paths.bundled_dir()` (committed with the code, read-only at run time), so
a fresh checkout predicts with real-face models before anything is trained. Only this release
step writes there; `runs.save_run` and friends refuse bundled ids.
"""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from emotion_core.store import paths
from emotion_core.store.files import (
    atomic_path,
    file_sha256,
    make_temp_dir,
    mode_for_file,
    publish_dir,
    read_json,
    write_json,
)
from emotion_core.store.runs import BrokenRunError, load_run


def bundle_run(run_id: str, card: str, *, bundle_id: str | None = None) -> Path:
    """Copy run `run_id` into the bundled store as `bundle_id` (default: the same id) with its
    weights in float16 and `card` as MODEL_CARD.md; returns the bundled folder."""
    from safetensors.torch import load_file, save_file  # imports torch: only for a release

    rec = load_run(run_id, tables=False)
    if rec.is_ensemble:
        raise BrokenRunError(f"run '{run_id}' is an ensemble: bundle its members instead")
    bundle_id = paths.checked("run id", bundle_id or run_id)
    final = paths.bundled_dir() / bundle_id
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(final)
    try:
        for name in paths.RUN_FILES:
            if name not in (paths.WEIGHTS, paths.MANIFEST):
                shutil.copyfile(rec.path / name, tmp / name)
        tensors = load_file(str(rec.weights_path))
        half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
        meta = {"model": str(rec.manifest["model"]), "classes": ",".join(rec.manifest["classes"])}
        save_file(half, str(tmp / paths.WEIGHTS), metadata=meta)
        os.chmod(tmp / paths.WEIGHTS, mode_for_file())
        manifest = dict(rec.manifest, run_id=bundle_id, bundled_from=run_id,
                        weights_dtype="float16",
                        bundled_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        weights_sha256=file_sha256(tmp / paths.WEIGHTS),
                        weights_bytes=(tmp / paths.WEIGHTS).stat().st_size)
        write_json(tmp / paths.MANIFEST, manifest)
        (tmp / paths.MODEL_CARD).write_text(card)
        publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def update_bundled(bundle_id: str, changes: dict, card: str | None = None) -> None:
    """A release step on a bundled model that leaves its weights alone: replace top-level keys
    of its manifest (None removes one) and, with `card`, its MODEL_CARD.md."""
    folder = paths.bundled_dir() / paths.checked("run id", bundle_id)
    if not (folder / paths.MANIFEST).is_file():
        raise BrokenRunError(f"no bundled model '{bundle_id}' under {paths.bundled_dir()}")
    manifest = read_json(folder / paths.MANIFEST)
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    write_json(folder / paths.MANIFEST, manifest)
    if card is not None:
        with atomic_path(folder / paths.MODEL_CARD) as tmp:
            tmp.write_text(card)


def model_card(run_id: str) -> str:
    """The MODEL_CARD.md of a bundled run ('' when it has none)."""
    path = paths.run_dir(run_id) / paths.MODEL_CARD
    return path.read_text() if path.is_file() else ""
