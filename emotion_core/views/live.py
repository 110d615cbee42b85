"""Live prediction for the app: decode an upload, find faces, and run every chosen run side by side.

Everything stays in memory: an upload is decoded from its bytes and never written anywhere (least
of all into artifacts/). Models come from a caller-supplied loader so the app can pass its cached
one (`st.cache_resource`) while tests and scripts use `evaluation.load_model` directly. A loader
may return an ONNX export instead (`evaluation.onnx_model.load_predictor`): each answer says
which engine gave it.

Latency is wall time per run for one face crop: preprocessing (resize, normalise) plus the forward
pass, measured with `time.perf_counter`. Detection time is reported separately.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from emotion_core import store
from emotion_core.data import faces, images
from emotion_core.data.transforms import Preprocess
from emotion_core.evaluation.ensemble import average_probs
from emotion_core.evaluation.inference import probabilities, run_flips, run_temperature
from emotion_core.evaluation.loading import load_model
from emotion_core.explain.base import explaining
from emotion_core.views.labels import SEP

LIVE_MEAN_ID = "ensemble"  # run id of the mean computed now (no stored run has this id)
UPLOAD_MAX_PIXELS = 120_000_000  # phone photos reach 50-108 MP; beyond this: refused as a bomb
UPLOAD_MAX_SIDE = 4096  # uploads are shrunk to this (JPEGs decoded at reduced scale): memory bound
MAX_FACES = 6  # beyond this many faces only the largest are classified (said in the result)
# Narrower faces lose accuracy: the bundled models' mean, on test photos given the detail of a
# face this wide, 0.858 as they are, 0.841 at 32 px, 0.818 at 24, 0.738 at 16
# (scripts.bench.face_size; docs/results.md#how-small-a-face-can-predict-read).
SMALL_FACE_PX = 32


def is_small_face(box: faces.FaceBox | None) -> bool:
    """Whether a found face is narrower than SMALL_FACE_PX (the whole image never is)."""
    return box is not None and box.w < SMALL_FACE_PX


Loader = Callable[[str], tuple[Any, dict[str, Any]]]


class UploadError(ValueError):
    """An upload that cannot be used, with a message fit to show a user as is."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class RunPrediction:
    """One run's answer for one face."""

    run_id: str
    model: str
    weights_source: str
    classes: list[str]
    probs: np.ndarray | None  # None when the run failed to load or predict
    latency_ms: float = 0.0
    error: str | None = None
    engine: str = "torch"  # "onnx" when the loader gave an exported model (onnx_model.load_predictor)
    temperature: float | None = None  # the run's calibration (scripts.calibrate); None for a mean
    kind: str = "model"  # "model", "ensemble" (a stored ensemble run) or "mean" (computed now)
    note: str = ""  # a stored ensemble: its members and weights, in words

    @property
    def predicted(self) -> str | None:
        return None if self.probs is None else self.classes[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float | None:
        return None if self.probs is None else float(np.max(self.probs))


@dataclass
class FacePrediction:
    """One face (or the whole image) with every run's prediction and the ensemble's."""

    box: faces.FaceBox | None  # None: the whole image was used
    crop: np.ndarray  # the first run's input (the face shown on the page)
    runs: list[RunPrediction] = field(default_factory=list)
    ensemble: RunPrediction | None = None
    run_crops: dict[str, np.ndarray] = field(default_factory=dict)  # what each run read

    def crop_of(self, run_id: str) -> np.ndarray:
        """The picture run `run_id` classified (its own framing of the face)."""
        return self.run_crops.get(run_id, self.crop)

    @property
    def one_framing(self) -> bool:
        """Whether every run read the crop shown."""
        return all(c is self.crop for c in self.run_crops.values())

    @property
    def small_note(self) -> str:
        """A warning for a face narrower than SMALL_FACE_PX (empty for any other, and for the
        whole image)."""
        if not is_small_face(self.box):
            return ""
        return (f"This face is {self.box.w} px wide: below {SMALL_FACE_PX} px too much detail "
                "is lost and answers are less reliable (a closer photo, or one of more pixels, helps).")


@dataclass
class LiveResult:
    """The full answer for one picture."""

    image: np.ndarray  # the decoded picture with face boxes drawn
    faces_found: int
    predictions: list[FacePrediction]
    detect_ms: float
    total_ms: float
    note: str = ""  # e.g. "no face found" or "8 faces found; the 6 largest were classified"
    detector: str = ""  # which face detector searched the picture ("mtcnn" or "haar")
    skipped: int = 0  # faces found but not classified (beyond max_faces)
    face_crop: bool = False  # no face found, but the picture may itself be a tight face crop


_MESSAGES = {
    "not_an_image": "This file is not an image. Use a photo (JPEG, PNG, WebP, BMP or TIFF).",
    "unreadable": "This image is damaged or truncated and cannot be decoded. Re-save or re-export "
                  "it and try again.",
    "too_small": "This image is too small to hold a recognisable face.",
    "bad_shape": "This image is too thin to hold a recognisable face (more elongated than "
                 "{aspect}:1).",
    "too_large": "This image is too large to decode safely (it may be a decompression bomb). "
                 "Resize it below {mp} megapixels and try again.",
}


def upload_error_message(exc: images.ImageDecodeError) -> str:
    """A user-facing sentence for a decode failure (the technical detail follows in brackets)."""
    base = _MESSAGES.get(exc.kind, "This image cannot be used.")
    return base.format(mp=UPLOAD_MAX_PIXELS // 1_000_000, aspect=f"{faces.MAX_ASPECT:g}") \
        + f" ({exc})"


def decode_picture(source: bytes | Path, *, max_pixels: int = UPLOAD_MAX_PIXELS) -> np.ndarray:
    """An upload's bytes or a file's path -> upright RGB uint8 (CMYK, 16-bit, alpha handled by
    images.load_rgb). A path is read by the decoder, so its messages name the file."""
    if isinstance(source, Path):
        if source.stat().st_size == 0:
            raise UploadError("not_an_image", f"'{source}' is empty (0 bytes). Use a photo file.")
    elif not source:
        raise UploadError("not_an_image", "The upload is empty (0 bytes). Choose a photo file.")
    else:
        source = bytes(source)
    try:
        rgb = images.load_rgb(source, min_side=16, max_pixels=max_pixels,
                              max_side=UPLOAD_MAX_SIDE)
    except images.ImageDecodeError as exc:
        raise UploadError(exc.kind, upload_error_message(exc)) from exc
    h, w = rgb.shape[:2]
    if max(h, w) > faces.MAX_ASPECT * min(h, w):  # no face fits, and a page cannot show it
        raise UploadError("bad_shape", _MESSAGES["bad_shape"].format(
            aspect=f"{faces.MAX_ASPECT:g}") + f" (it is {w}x{h} pixels)")
    return rgb


def draw_boxes(rgb: np.ndarray, boxes: Sequence[faces.FaceBox]) -> np.ndarray:
    """A copy of the picture with numbered face boxes (numbers match the result order)."""
    out = np.ascontiguousarray(rgb).copy()
    thick = max(2, round(max(out.shape[:2]) / 250))
    for i, b in enumerate(boxes, start=1):
        cv2.rectangle(out, (b.x, b.y), (b.x + b.w, b.y + b.h), (0, 220, 0), thick)
        cv2.putText(out, str(i), (b.x + thick, max(b.y - 2 * thick, 12 * thick)),
                    cv2.FONT_HERSHEY_SIMPLEX, thick / 2.5, (0, 220, 0), thick)
    return out


class FaceCrops:
    """One face of a picture, cut the way each run was trained to see faces (`faces.crop_spec`:
    margin and edge fit), each framing cut once. Runs on whole pictures get faces.DEFAULT_CROP."""

    def __init__(self, rgb: np.ndarray, box: faces.FaceBox) -> None:
        self.rgb, self.box = rgb, box
        self._cut: dict[faces.CropSpec, np.ndarray] = {}

    def cut(self, spec: faces.CropSpec | None) -> np.ndarray:
        spec = spec or faces.DEFAULT_CROP
        if spec not in self._cut:
            self._cut[spec] = spec.cut(self.rgb, self.box)
        return self._cut[spec]

    def for_run(self, manifest: Mapping[str, Any]) -> np.ndarray:
        return self.cut(faces.crop_spec(manifest))

Crop = np.ndarray | FaceCrops  # a fixed picture for every run, or a face cut per run


def _crop_for(crop: Crop, manifest: Mapping[str, Any]) -> np.ndarray:
    return crop.for_run(manifest) if isinstance(crop, FaceCrops) else crop


def _predict_one(loader: Loader, run_id: str, crop: Crop,
                 used: dict[str, np.ndarray] | None = None) -> RunPrediction:
    try:
        model, manifest = loader(run_id)
    except Exception as exc:  # a broken or mismatched run must not break the others
        return RunPrediction(run_id, run_id, "?", [], None, error=f"cannot load: {exc}")
    t0 = time.perf_counter()
    try:
        picture = _crop_for(crop, manifest)
        if used is not None:
            used[run_id] = picture
        probs = _forward(model, manifest, picture)
    except Exception as exc:
        return RunPrediction(run_id, manifest.get("model", run_id),
                             manifest.get("weights_source", "?"), list(manifest["classes"]), None,
                             error=f"prediction failed: {exc}")
    ms = (time.perf_counter() - t0) * 1000.0
    return RunPrediction(run_id, manifest["model"], manifest.get("weights_source", "?"),
                         list(manifest["classes"]), np.asarray(probs, dtype=np.float64), ms,
                         engine=getattr(model, "engine", "torch"),
                         temperature=run_temperature(manifest))


def _forward(model: Any, manifest: dict[str, Any], crop: np.ndarray) -> np.ndarray:
    """Softmax probabilities for one crop, preprocessed with the training cache's recipe; a
    shared torch model is held like an explainer holds it (another session's Grad-CAM hooks
    must not see this forward, nor the warm-up's first call see theirs)."""
    x, _ = Preprocess.of(manifest)(crop)
    with explaining(model):
        probs = probabilities(model, x, tta_flip=run_flips(manifest),
                              temperature=run_temperature(manifest))
    return probs[0].cpu().numpy().astype(np.float64)


def _ensemble_of(preds: Sequence[RunPrediction], weights: Sequence[float] | None = None, *,
                 run_id: str = LIVE_MEAN_ID, model: str = "", kind: str = "mean",
                 note: str = "") -> RunPrediction | None:
    """Mean (or weighted mean) of the members' probabilities when they share a class list."""
    ok = [p for p in preds if p.probs is not None]
    if len(ok) < 2 or any(p.classes != ok[0].classes for p in ok):
        return None
    probs = average_probs([p.probs for p in ok], weights)
    engines = sorted({p.engine for p in ok})
    return RunPrediction(run_id, model or f"mean of the {len(ok)} runs above (computed now)",
                         " + ".join(p.weights_source for p in ok), ok[0].classes, probs,
                         sum(p.latency_ms for p in ok), engine="+".join(engines), kind=kind,
                         note=note)


def stored_ensemble_note(manifest: Mapping[str, Any]) -> str:
    """A stored ensemble's members and weights in words (for its name on Predict)."""
    members = [str(m) for m in manifest.get("member_models") or manifest.get("members") or []]
    weights = manifest.get("weights")
    if weights and len(weights) == len(members):
        parts = [f"{m} {float(w):.2f}" for m, w in zip(members, weights, strict=True)]
        how = "weights fixed when it was built"
    else:
        parts, how = members, "equal weights"
    chosen = {"greedy": "members chosen on validation (greedy forward selection), ",
              "default": "the study's pair, "}.get(str(manifest.get("method")), "")
    return f"{' + '.join(parts)}; {chosen}{how}"


def _stored_ensemble(run_id: str, cache: dict[str, RunPrediction], loader: Loader,
                     crop: Crop, used: dict[str, np.ndarray] | None = None) -> RunPrediction:
    """A stored ensemble run answers with its members' models, weighted as it was built."""
    try:
        m = store.load_run(run_id, tables=False).manifest
    except store.BrokenRunError as exc:
        return RunPrediction(run_id, run_id, "?", [], None, error=str(exc))
    members = list(m.get("members", []))
    for mid in members:
        if mid not in cache:
            cache[mid] = _predict_one(loader, mid, crop, used)
    parts = [cache[mid] for mid in members]
    bad = [p for p in parts if p.probs is None]
    weights = m.get("weights") if not bad else None
    note = stored_ensemble_note(m)
    ens = _ensemble_of(parts, weights, run_id=run_id, model=m.get("model", run_id),
                       kind="ensemble", note=note) if not bad else None
    if ens is None:
        reason = bad[0].error if bad else "its members disagree on the classes"
        return RunPrediction(run_id, m.get("model", run_id), m.get("weights_source", "?"),
                             list(m.get("classes", [])), None, error=f"ensemble unavailable: {reason}",
                             kind="ensemble", note=note)
    return ens


PRIME_PICTURE = (480, 640)  # a webcam frame's size: the detector's pyramid shapes of a photo


def prime(run_ids: Sequence[str] = (), *, loader: Loader | None = None) -> None:
    """Run the face detector and each of `run_ids` once on a blank picture, so that a user's
    first photo does not pay the one-time costs of the first call (oneDNN sets up its kernels
    per shape): measured on a server's first upload, 0.54 s for MobileNetV2's first two
    forwards and 0.30 s for MTCNN's first search, where later calls take 0.03-0.05 s."""
    blank = np.full((*PRIME_PICTURE, 3), 128, np.uint8)
    faces.find_faces(blank)
    for rid in run_ids:
        _predict_one(loader or load_model, rid, blank)


def predict_crop(crop: Crop, run_ids: Sequence[str], *, loader: Loader | None = None,
                 ensemble_kinds: dict[str, str] | None = None,
                 box: faces.FaceBox | None = None) -> FacePrediction:
    """Every run's prediction for one crop, plus the mean of the single-model runs.

    `crop` is one picture every run reads, or a FaceCrops that each run cuts its own way; the
    face shown (and handed to Explain) is then the first run's framing.
    """
    loader = loader or load_model
    kinds = ensemble_kinds or {}
    cache: dict[str, RunPrediction] = {}
    used: dict[str, np.ndarray] = {}
    out: list[RunPrediction] = []
    for rid in run_ids:
        if kinds.get(rid) == "ensemble":
            out.append(_stored_ensemble(rid, cache, loader, crop, used))
        else:
            if rid not in cache:
                cache[rid] = _predict_one(loader, rid, crop, used)
            out.append(cache[rid])
    singles = [p for rid, p in zip(run_ids, out, strict=True) if kinds.get(rid) != "ensemble"]
    # the first run's picture; the default framing when no run read one (all failed to load)
    shown = next(iter(used.values()), None)
    if shown is None:
        shown = crop.cut(None) if isinstance(crop, FaceCrops) else crop
    return FacePrediction(box=box, crop=shown, runs=out, ensemble=_ensemble_of(singles),
                          run_crops=used)


def predict_faces(rgb: np.ndarray, run_ids: Sequence[str], *, loader: Loader | None = None,
                  whole_image: bool = False, max_faces: int | None = MAX_FACES) -> LiveResult:
    """Detect faces, crop each, and let every run (and the ensemble) classify every crop.

    Only the `max_faces` largest faces are classified (None: every face found; the page's
    default keeps its result readable and its answer quick). With no face found the result
    holds no predictions unless `whole_image` is set, in which case the whole picture is
    classified as one "face". Stored ensemble runs among `run_ids` are
    answered from their members' models.
    """
    t0 = time.perf_counter()
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    found = faces.find_faces(rgb)
    boxes = found.boxes
    detect_ms = (time.perf_counter() - t0) * 1000.0
    kinds = _run_kinds(run_ids)
    targets: list[tuple[faces.FaceBox | None, Crop]] = []
    if max_faces is None:
        max_faces = len(boxes)
    skipped = max(0, len(boxes) - max_faces)
    if boxes:
        note = (f"{len(boxes)} faces found; the {max_faces} largest were classified, the other "
                f"{skipped} skipped (at most {max_faces} per picture)." if skipped else "")
        targets = [(b, FaceCrops(rgb, b)) for b in boxes[:max_faces]]
    elif whole_image:
        note = "No face found: the whole image was classified."
        targets = [(None, rgb)]
    elif found.face_crop:
        note = ("No face found, but the picture is small and roughly square: it may be a face "
                "filling the frame, which the detector can miss. Use the whole image to classify it.")
    else:
        note = found.note or "No face found in this image."
    if found.detector and (not boxes or skipped):
        note += f" Faces smaller than {found.min_face} px are not searched for."
    if found.detector == "haar":
        note += " Faces found with OpenCV's Haar cascade (facenet-pytorch is not installed)."
    preds = [predict_crop(crop, run_ids, loader=loader, ensemble_kinds=kinds, box=box)
             for box, crop in targets]
    return LiveResult(image=draw_boxes(rgb, boxes[:max_faces]), faces_found=len(boxes),
                      predictions=preds, detect_ms=detect_ms,
                      total_ms=(time.perf_counter() - t0) * 1000.0, note=note.strip(),
                      detector=found.detector, skipped=skipped, face_crop=found.face_crop)


def _run_kinds(run_ids: Sequence[str]) -> dict[str, str]:
    kinds = {}
    for rid in run_ids:
        try:
            kinds[rid] = store.load_run(rid, tables=False).manifest.get("kind", "model")
        except store.BrokenRunError:
            kinds[rid] = "broken"
    return kinds


def entry_label(p: RunPrediction, labels: Mapping[str, str] | None = None) -> str:
    """How a page names one answer: the run's label from `labels` (distinct per run, see
    labels.run_labels), a stored ensemble as such with its members and weights, and the mean
    computed now as "mean of the N runs above (computed now)"."""
    if p.kind == "mean":
        return p.model
    name = labels[p.run_id] if labels and p.run_id in labels else f"{p.model}{SEP}{p.weights_source}"
    if p.kind == "ensemble":
        return f"stored ensemble run {name} ({p.note})" if p.note else f"stored ensemble run {name}"
    return name


def chart_names(pred: FacePrediction) -> dict[str, str]:
    """{run id: short name} for a probability chart's axis: the model name (numbered when two
    runs share one), "stored ensemble" and "mean (now)"; the full names go in a list beside it."""
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for p in answers(pred):
        base = {"mean": "mean (now)", "ensemble": "stored ensemble"}.get(p.kind, p.model)
        seen[base] = seen.get(base, 0) + 1
        out[p.run_id] = base if seen[base] == 1 else f"{base} #{seen[base]}"
    return out


ENSEMBLE_CAPTION = (
    "How the two kinds of ensemble differ: the **mean of the runs above (computed now)** "
    "averages, with equal weights, the answers of the single-model runs chosen on this page for "
    "this face; it changes with your choice and has no stored scores. A **stored ensemble run** "
    "was built after training from fixed members and weights (chosen on validation) and has its "
    "own scores on Home and Compare; here it answers with its members' models.")


def answers(pred: FacePrediction) -> list[RunPrediction]:
    """Every run's answer for one face, then the mean of the single-model runs when there is one."""
    return list(pred.runs) + ([pred.ensemble] if pred.ensemble is not None else [])


def probability_table(pred: FacePrediction, labels: Mapping[str, str] | None = None
                      ) -> list[dict[str, Any]]:
    """Long-format rows (run, name, class, probability) for a side-by-side bar chart: `run` is
    the full name (`entry_label`), `name` the short one for the axis (`chart_names`)."""
    rows = []
    short = chart_names(pred)
    for p in answers(pred):
        if p.probs is None:
            continue
        label = entry_label(p, labels)
        for c, v in zip(p.classes, p.probs, strict=True):
            rows.append({"run": label, "name": short[p.run_id], "run_id": p.run_id, "class": c,
                         "probability": float(v), "latency_ms": p.latency_ms})
    return rows


def summary_table(pred: FacePrediction, labels: Mapping[str, str] | None = None
                  ) -> list[dict[str, Any]]:
    """One row per answer: run label, prediction, confidence, the run's calibration temperature,
    latency, engine, error (if any)."""
    return [{"run": entry_label(p, labels), "prediction": p.predicted, "confidence": p.confidence,
             "temperature": p.temperature, "latency_ms": p.latency_ms, "engine": p.engine,
             "error": p.error or ""}
            for p in answers(pred)]
