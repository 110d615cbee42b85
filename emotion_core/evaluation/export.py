"""A stored run as a deployable ONNX model, with a JSON that says exactly how to feed and read it.

    export_run(run_id, out_dir=None)     a stored run -> <out_dir>/model.onnx + model.json
    export_model(model, out_dir, ...)    the same straight from a built model (tests, benchmark)
    recipe_input(rgb, meta)              a picture -> the model's input, from the JSON alone

The JSON (`describe`) is enough to deploy without this repository: input name, shape and layout,
the preprocessing recipe (the training cache's: centre crop to a square, cv2 INTER_AREA resize,
RGB, /255, (x - mean) / std), the class names in output order, that the output is logits,
where the weights came from, the dataset and headline metrics per split, the exporter and the
.onnx file's sha256 (a reader refuses an .onnx whose hash differs).

Exporter: `torch.onnx.export(..., dynamo=False)`, the TorchScript tracer. The dynamo exporter
needs onnxscript, which is not a dependency; the tracer handles every registry model, including
the transformers ViTs whose attention runs through `hookable_attention` (plain matmul + the
named `attend` softmax, which trace to MatMul/Softmax). torch warns that the tracer is
deprecated; when it is removed, switch to `dynamo=True` + onnxscript and the parity test says
whether that worked. One operator needs help: the tracer cannot export an adaptive average pool
whose output does not divide its input (torchvision's VGG-16 at 112 px pools 3x3 -> 7x7), so
such pools are exported as the same average written as two constant averaging matrices
(`PoolAsMatmul`, exact; the parity check compares against the original). Ensembles are refused: export each member and average their softmax
probabilities with the ensemble's weights (its manifest lists both).

Every export is checked before it is published: ONNX Runtime and PyTorch must give the same
softmax probabilities, within PARITY_TOLERANCE, on a seeded batch of a different size than
the one traced (so the batch axis really is dynamic).
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from emotion_core import store
from emotion_core.data.transforms import Preprocess
from emotion_core.evaluation.loading import load_model

FORMAT = "emotion-bench/onnx-export"
FORMAT_VERSION = 1
OPSET = 17  # LayerNormalization is one op from 17; every ONNX Runtime since 1.14 runs it
INPUT_NAME, OUTPUT_NAME = "input", "logits"
PARITY_TOLERANCE = 1e-4  # max |p_onnx - p_torch| over softmax probabilities
_TRACE_BATCH, _CHECK_BATCH = 2, 3  # traced with 2 images, checked with 3: the batch axis is dynamic
_METRIC_KEYS = ("n", "accuracy", "macro_f1", "top2_accuracy", "ece", "loss")


class ExportError(ValueError):
    """A run that cannot be exported (an ensemble), or an export that failed its parity check."""


@dataclass(frozen=True)
class Export:
    """What one export wrote."""

    onnx_path: Path
    meta_path: Path
    meta: dict[str, Any]


def export_run(run_id: str, out_dir: str | Path | None = None, *, verify: bool = True) -> Export:
    """Export a stored run (default folder: `store.paths.export_dir(run_id)`)."""
    rec = store.load_run(run_id, tables=False)
    if rec.is_ensemble:
        members = ", ".join(rec.manifest.get("members", [])) or "(none listed)"
        weights = rec.manifest.get("weights")
        how = f"weighted by {weights}" if weights else "with equal weights"
        raise ExportError(
            f"run '{run_id}' is an ensemble; it has no weights of its own to export. Export each "
            f"member ({members}) with `python -m scripts.export --run MEMBER` and average their "
            f"softmax probabilities {how}, as the ensemble does")
    model, manifest = load_model(run_id)
    out = Path(out_dir) if out_dir is not None else store.paths.export_dir(run_id)
    return export_model(model, out, classes=list(manifest["classes"]),
                        preprocess=Preprocess.of(manifest), run=run_section(rec),
                        metrics=metrics_section(rec.metrics), verify=verify)


def export_model(model: nn.Module, out_dir: str | Path, *, classes: list[str],
                 preprocess: Preprocess, run: dict[str, Any] | None = None,
                 metrics: dict[str, Any] | None = None, verify: bool = True,
                 opset: int = OPSET, tolerance: float = PARITY_TOLERANCE) -> Export:
    """Write `model.onnx` (verified) and then `model.json` into `out_dir`, each atomically.

    The JSON is written last and holds the .onnx's sha256, so a reader that meets a half-replaced
    export sees a hash mismatch and falls back, never a wrong model.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path, meta_path = out / store.paths.ONNX_MODEL, out / store.paths.ONNX_META
    was_training = model.training
    model = model.eval()
    size = preprocess.size
    device = next(model.parameters()).device
    dummy = torch.randn(_TRACE_BATCH, 3, size, size,
                        generator=torch.Generator().manual_seed(0)).to(device)
    try:
        with store.atomic_path(onnx_path) as tmp:
            _trace_to_onnx(model, dummy, tmp, opset)
            parity = check_parity(model, tmp, size, tolerance=tolerance) if verify else None
            sha, nbytes = store.files.file_sha256(tmp), tmp.stat().st_size
    finally:
        model.train(was_training)
    meta = describe(classes=classes, preprocess=preprocess, sha256=sha, nbytes=nbytes,
                    opset=opset, parity=parity, run=run, metrics=metrics)
    store.write_json(meta_path, meta)
    return Export(onnx_path, meta_path, meta)


class PoolAsMatmul(nn.Module):
    """nn.AdaptiveAvgPool2d for export: a plain pool where the output divides the input (ONNX
    AveragePool), else out = P_h @ x @ P_w^T with torch's bins (start floor(i*n/m), end
    ceil((i+1)*n/m)), which ONNX runs as MatMul. The input size is fixed at export."""

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        size = self.output_size if isinstance(self.output_size, tuple | list) else (self.output_size,) * 2
        oh, ow = (h if size[0] is None else int(size[0])), (w if size[1] is None else int(size[1]))
        if h % oh == 0 and w % ow == 0:
            return nn.functional.adaptive_avg_pool2d(x, (oh, ow))
        ph, pw = _pool_matrix(oh, h).to(x), _pool_matrix(ow, w).to(x)
        return ph @ x @ pw.T


def _pool_matrix(out: int, n: int) -> torch.Tensor:
    m = torch.zeros(out, n)
    for i in range(out):
        start, end = (i * n) // out, -(-((i + 1) * n) // out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def exportable(model: nn.Module) -> nn.Module:
    """`model`, or a copy whose adaptive average pools (other than global ones) are PoolAsMatmul."""
    def is_global(pool: nn.AdaptiveAvgPool2d) -> bool:
        return pool.output_size in (1, (1, 1), [1, 1])

    if not any(isinstance(m, nn.AdaptiveAvgPool2d) and not is_global(m) for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.AdaptiveAvgPool2d) and not is_global(child):
                setattr(parent, name, PoolAsMatmul(child.output_size))
    return model


def _trace_to_onnx(model: nn.Module, dummy: torch.Tensor, path: Path, opset: int) -> None:
    model = exportable(model)
    with warnings.catch_warnings():
        # The tracer's own deprecation notice, and its note that shape checks in the forward
        # (patch divisibility, position-grid size) are frozen: the spatial size is fixed by design.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*TorchScript-based ONNX export.*")
        try:
            torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              do_constant_folding=True)
        except Exception as exc:  # the tracer's errors carry the whole graph: keep the first line
            first = str(exc).split("Torch IR graph")[0].strip().splitlines()[0][:400]
            raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {first}") from exc


def check_parity(model: nn.Module, onnx_path: Path, image_size: int, *,
                 tolerance: float = PARITY_TOLERANCE) -> dict[str, Any]:
    """Max |softmax difference| between ONNX Runtime and PyTorch on a seeded batch; raises
    ExportError beyond `tolerance`. Skipped (with a note) where onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"checked": False, "note": "onnxruntime not installed; parity not checked"}
    x = torch.randn(_CHECK_BATCH, 3, image_size, image_size,
                    generator=torch.Generator().manual_seed(1))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {INPUT_NAME: x.numpy()})[0]
    with torch.inference_mode():
        ref = torch.softmax(model(x.to(next(model.parameters()).device)).float(), dim=1).cpu().numpy()
    got = _softmax(logits)
    diff = float(np.abs(got - ref).max())
    if not diff <= tolerance:  # NaN fails too
        raise ExportError(f"ONNX Runtime and PyTorch disagree: max probability difference "
                          f"{diff:.2e} > {tolerance:.0e}; the export was not written")
    return {"checked": True, "max_abs_diff_probabilities": diff, "tolerance": tolerance,
            "inputs": f"{_CHECK_BATCH} seeded N(0,1) images (traced with {_TRACE_BATCH})",
            "onnxruntime": ort.__version__}


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def describe(*, classes: list[str], preprocess: Preprocess, sha256: str, nbytes: int,
             opset: int = OPSET, parity: dict[str, Any] | None = None,
             run: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """The JSON beside an .onnx: everything needed to use it (see docs/export.md)."""
    import onnx

    s = preprocess.size
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "file": store.paths.ONNX_MODEL, "sha256": sha256, "bytes": nbytes,
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, s, s], "dtype": "float32",
                  "layout": "NCHW", "channels": "RGB"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", len(classes)], "dtype": "float32",
                   "kind": "logits",
                   "probabilities": "softmax over axis 1 (exp(z - max z) / sum exp(z - max z))"},
        "classes": list(classes),
        "preprocessing": {
            "image_size": s, "mean": list(preprocess.mean), "std": list(preprocess.std),
            "steps": [
                {"op": "decode", "to": "RGB uint8 HxWx3 (no alpha; upright per EXIF)"},
                {"op": "centre_crop_square",
                 "detail": "side = min(h, w); top = (h - side) // 2; left = (w - side) // 2"},
                {"op": "resize", "library": "opencv cv2.resize", "size": [s, s],
                 "interpolation": "INTER_AREA",
                 "detail": "INTER_AREA when side > size, INTER_LINEAR when side < size, "
                           "none when side == size"},
                {"op": "scale", "detail": "float32 x = pixel / 255"},
                {"op": "normalize", "detail": "x = (x - mean[c]) / std[c] per RGB channel"},
                {"op": "layout", "detail": "HWC -> CHW, then a batch axis: 1x3xSxS"},
            ],
            "reference": "emotion_core.data.transforms.model_input",
        },
        "run": run or {},
        "metrics": metrics or {},
        "export": {"exporter": "torch.onnx.export (TorchScript tracer, dynamo=False)",
                   "opset": opset, "torch": torch.__version__, "onnx": onnx.__version__,
                   "dynamic_axes": {INPUT_NAME: {"0": "batch"}, OUTPUT_NAME: {"0": "batch"}},
                   "parity": parity, "created": datetime.now().isoformat(timespec="seconds")},
    }


def run_section(rec: store.RunRecord) -> dict[str, Any]:
    """Which run, model and weights this is (the loader checks `weights_sha256` against the run)."""
    m = rec.manifest
    keys = ("model", "weights_source", "weights_sha256", "dataset", "split_hash", "profile",
            "image_size", "created", "git_commit")
    return {"run_id": rec.run_id, **{k: m.get(k) for k in keys}}


def metrics_section(metrics: dict[str, Any]) -> dict[str, Any]:
    """Headline metrics per split ('val', 'test'), NaN as null (strict JSON)."""
    out = {}
    for split in ("val", "test"):
        part = metrics.get(split)
        if isinstance(part, dict):
            out[split] = {k: _finite(part.get(k)) for k in _METRIC_KEYS if k in part}
    return out


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def recipe_input(rgb: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """A picture -> the model's 1x3xSxS float32 input, following the JSON alone (numpy + cv2).

    What a deployment without this repository does; the tests hold it equal to `Preprocess`.
    """
    pre = meta["preprocessing"]
    size = int(pre["image_size"])
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(rgb[top:top + side, left:left + side])
    if side != size:
        interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        square = cv2.resize(square, (size, size), interpolation=interp)
    x = square.astype(np.float32) / 255.0
    x = (x - np.asarray(pre["mean"], np.float32)) / np.asarray(pre["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
