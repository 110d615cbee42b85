"""A run's ONNX export as a model for inference: called on a normalised batch, it returns logits.

    usable_export(run_id)    (meta, "") when the run has an export that matches it, else (None, why)
    OnnxModel                an ONNX Runtime session behind the interface `inference` uses
    load_export(run_id)      (OnnxModel, manifest) when the export is usable, else None
    load_predictor(run_id)   load_export(run_id), or else load_model(run_id)

Optional by construction: without onnxruntime, without an export, or with an export that no
longer matches the run (retrained, replaced, corrupted, half-written), `load_predictor` is
`load_model`. An export is usable when its .onnx has the sha256 its JSON records and the JSON
was written for this run's weights (same weights sha256), classes and preprocessing.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotion_core import store
from emotion_core.evaluation.export import FORMAT, FORMAT_VERSION
from emotion_core.evaluation.loading import load_model


class OnnxModel:
    """An exported model that `inference.probabilities` / `predict_images` take like a module.

    `threads`: ONNX Runtime intra-op threads (None: its default, one per core); inter-op is 1.
    """

    engine = "onnx"
    device = torch.device("cpu")  # inputs are moved here before the call

    def __init__(self, onnx_path: str | Path, meta: dict[str, Any], *,
                 threads: int | None = None) -> None:
        self.path = Path(onnx_path)
        self.meta = meta
        self.classes: list[str] = list(meta["classes"])
        self.num_classes = len(self.classes)
        self.input_name: str = meta["input"]["name"]
        self.session = make_session(self.path, threads=threads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: arr})[0])

    def eval(self) -> OnnxModel:  # no training mode to leave: callers' model.eval() just works
        return self

    def __repr__(self) -> str:
        return f"OnnxModel({self.path}, run={self.meta.get('run', {}).get('run_id')!r})"


def make_session(path: str | Path, *, threads: int | None = None) -> Any:
    """A CPU InferenceSession; `threads` pins intra-op threads (inter-op is always 1)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.inter_op_num_threads = 1
    if threads:
        opts.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return store.files.file_sha256(Path(path))


def usable_export(run_id: str, manifest: dict[str, Any] | None = None
                  ) -> tuple[dict[str, Any] | None, str]:
    """(the export's JSON, "") when predict may use the run's ONNX export, else (None, why not)."""
    folder = store.paths.export_dir(run_id)
    meta_path, onnx_path = folder / store.paths.ONNX_META, folder / store.paths.ONNX_MODEL
    if not meta_path.is_file() or not onnx_path.is_file():
        return None, f"no export under {folder}"
    if manifest is None:
        try:
            manifest = store.load_run(run_id, tables=False).manifest
        except store.BrokenRunError as exc:
            return None, str(exc)
    try:
        meta = store.read_json(meta_path)
    except (OSError, ValueError) as exc:
        return None, f"{meta_path.name} unreadable ({exc})"
    if not isinstance(meta, dict) or meta.get("format") != FORMAT \
            or int(meta.get("format_version", 0)) > FORMAT_VERSION:
        return None, f"{meta_path.name} is not an export this version reads"
    stat = onnx_path.stat()
    if meta.get("sha256") != _sha256(str(onnx_path), stat.st_size, stat.st_mtime_ns):
        return None, f"{onnx_path.name} does not match the sha256 in {meta_path.name}"
    run = meta.get("run") or {}
    pre = meta.get("preprocessing") or {}
    if run.get("run_id") != run_id or run.get("weights_sha256") != manifest.get("weights_sha256"):
        return None, "the export was made from other weights (the run was retrained or replaced)"
    if meta.get("classes") != list(manifest["classes"]) \
            or pre.get("image_size") != manifest.get("image_size") \
            or pre.get("mean") != list(manifest.get("mean", [])) \
            or pre.get("std") != list(manifest.get("std", [])):
        return None, "the export's classes or preprocessing differ from the run's"
    if not onnxruntime_available():
        return None, "onnxruntime is not installed"
    return meta, ""


def load_export(run_id: str, *, threads: int | None = None
                ) -> tuple[OnnxModel, dict[str, Any]] | None:
    """(OnnxModel, manifest) when `usable_export` allows, else None (also for a run that is not
    in the store, such as an external reference's: `load_model` rebuilds those)."""
    if not (store.paths.export_dir(run_id) / store.paths.ONNX_META).is_file():
        return None  # most runs: nothing more to read
    try:
        manifest = store.load_run(run_id, tables=False).manifest
    except store.BrokenRunError:
        return None
    if manifest.get("kind") == "ensemble":
        return None
    meta, _ = usable_export(run_id, manifest)
    if meta is None:
        return None
    path = store.paths.export_dir(run_id) / store.paths.ONNX_MODEL
    return OnnxModel(path, meta, threads=threads), manifest


def load_predictor(run_id: str, *, prefer_onnx: bool = True, threads: int | None = None
                   ) -> tuple[Any, dict[str, Any]]:
    """(model, manifest) for prediction: the ONNX export when `usable_export` allows, else the
    PyTorch model from `load_model` (the default behaviour, unchanged where no export exists).

    The ONNX model answers `inference.probabilities` and `predict_images` only: explanations
    need hooks and gradients, so they keep using `load_model`.
    """
    exported = load_export(run_id, threads=threads) if prefer_onnx else None
    return exported if exported is not None else load_model(run_id)
