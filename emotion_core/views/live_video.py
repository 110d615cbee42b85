"""Live webcam frames for the Predict page: faces tracked, labels smoothed, FPS counted, drawn.

Streamlit-free: the page hands each decoded video frame (RGB uint8) to `LiveSession.process`
from streamlit-webrtc's worker thread, gets the labelled frame back, and shows
`LiveSession.stats()` beside the video; `freeze_frame()` is what the "freeze" button analyses.

- Detection: `faces.detect_faces` on every `detect_every`-th frame; in between, the boxes of
  the last detection are held (a face moves little in a tenth of a second) and only the
  classification runs, on fresh crops of the new frame at those boxes.
- Tracking: a detection continues the track whose box it overlaps most (IoU >= `MIN_IOU`);
  a track missing from `MAX_MISSED` detections in a row is dropped; new faces start new tracks.
- Smoothing: per track and run, an exponential moving average (EMA) of the class
  probabilities with alpha = 2 / (window + 1): window 5 gives alpha 1/3, so the newest frame
  counts 1/3 and frames older than the last 5 together about 13%. Window 1 turns it off.
- Freeze: the newest frame in which the detector found a face, if that is at most
  `FREEZE_HOLD_S` older than the newest frame; else the newest frame. A frame the detector
  misses (motion blur, or WebRTC sending a smaller, blurrier picture on a busy machine) would
  otherwise freeze as "no face" while the face was on screen the moment before.
- FPS: frames processed in the last `FPS_WINDOW_S` seconds over the time they spanned;
  latency: mean wall time of `process` (detection, crops, every run's forward, drawing) over
  the last `LATENCY_FRAMES` frames.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from emotion_core import store
from emotion_core.data import faces
from emotion_core.data.transforms import Preprocess
from emotion_core.evaluation.inference import probabilities, run_temperature, set_threads
from emotion_core.explain.base import explaining
from emotion_core.views.live import FaceCrops, is_small_face

MIN_IOU = 0.3  # a detection continues a track when their boxes overlap this much
MAX_MISSED = 3  # detections in a row a track may miss before it is dropped
MAX_FACES = 3  # faces labelled per frame (the largest)
FPS_WINDOW_S = 2.0  # FPS is measured over the frames of the last two seconds
LATENCY_FRAMES = 30  # per-frame latency is the mean over this many frames
FREEZE_HOLD_S = 2.0  # freeze goes back at most this far for a frame with a face found
DEFAULT_WINDOW = 5  # smoothing window in frames (EMA alpha = 2 / (window + 1))
DEFAULT_DETECT_EVERY = 2  # detect faces on every 2nd frame, hold the boxes in between
# intra-op threads of the thread that processes frames: on 2 shared cores, 2 threads per forward
# made live frames 5-10x slower than 1 (scripts.bench.live: 1-3 FPS instead of 11-16)
TORCH_THREADS = 1
ICE_SERVERS_ENV = "EMOTION_WEBRTC_ICE_SERVERS"  # JSON list of RTCIceServer dicts (STUN/TURN)
CLASS_COLOURS = {"angry": (230, 60, 50), "happy": (40, 190, 80), "sad": (60, 120, 230)}  # RGB
OTHER_COLOUR = (220, 220, 220)


def fastest_runs(records: Sequence[store.RunRecord]) -> list[str]:
    """Run ids of the model runs (stored ensembles have no model to run live), lowest stored
    CPU latency first, runs without one last: the order the live picker offers them in."""
    def latency(rec: store.RunRecord) -> float:
        value = (rec.manifest.get("headline") or {}).get("latency_ms")
        return float(value) if value is not None else float("inf")
    models = [r for r in records if r.manifest.get("kind", "model") == "model"]
    return [r.run_id for r in sorted(models, key=latency)]


def ice_servers() -> list[dict[str, Any]]:
    """ICE servers for the browser-to-app video connection: none by default (the app and the
    browser on one machine or one LAN reach each other directly); a JSON list in
    $EMOTION_WEBRTC_ICE_SERVERS adds STUN/TURN servers for viewers behind NAT."""
    raw = os.environ.get(ICE_SERVERS_ENV, "").strip()
    if not raw:
        return []
    try:
        servers = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"${ICE_SERVERS_ENV} is not JSON: {exc}") from exc
    if not isinstance(servers, list) or not all(isinstance(s, dict) and "urls" in s for s in servers):
        raise ValueError(f"${ICE_SERVERS_ENV} must be a list of {{\"urls\": ...}} objects")
    return servers


def ema_alpha(window: int) -> float:
    """The EMA weight of the newest frame for a smoothing window of `window` frames."""
    return 2.0 / (max(1, int(window)) + 1.0)


def smoothing_note(window: int) -> str:
    """One sentence for the page: how the labels on the video are smoothed."""
    if window <= 1:
        return "Labels are not smoothed: each frame's own probabilities are shown."
    return (f"Labels are smoothed per face: an exponential moving average of each run's class "
            f"probabilities with alpha = {ema_alpha(window):.2f} (a window of about the last "
            f"{window} processed frames), so they do not flicker from frame to frame.")


def iou(a: faces.FaceBox, b: faces.FaceBox) -> float:
    """Intersection over union of two boxes (0 when they do not touch)."""
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One face followed from frame to frame, with its smoothed probabilities per run."""

    track_id: int
    box: faces.FaceBox
    probs: dict[str, np.ndarray] = field(default_factory=dict)  # run id -> smoothed probs
    missed: int = 0  # detections in a row this face was not found in


def update_tracks(tracks: list[Track], boxes: Sequence[faces.FaceBox], next_id: int
                  ) -> tuple[list[Track], int]:
    """Match a detection's boxes to the tracks (greedy, highest IoU first); returns the tracks
    that live on (matched, or missed fewer than MAX_MISSED times, then new faces) and the next
    free track id."""
    pairs = sorted(((iou(t.box, b), ti, bi) for ti, t in enumerate(tracks)
                    for bi, b in enumerate(boxes)), reverse=True)
    used_t: set[int] = set()
    used_b: set[int] = set()
    for overlap, ti, bi in pairs:
        if overlap < MIN_IOU:
            break
        if ti in used_t or bi in used_b:
            continue
        used_t.add(ti)
        used_b.add(bi)
        tracks[ti].box, tracks[ti].missed = boxes[bi], 0
    alive = []
    for ti, t in enumerate(tracks):
        if ti not in used_t:
            t.missed += 1
        if t.missed < MAX_MISSED:
            alive.append(t)
    for bi, b in enumerate(boxes):
        if bi not in used_b:
            alive.append(Track(next_id, b))
            next_id += 1
    return alive, next_id


class FpsMeter:
    """Frames per second over a sliding time window, and the mean per-frame latency."""

    def __init__(self, window_s: float = FPS_WINDOW_S, latency_frames: int = LATENCY_FRAMES) -> None:
        self.window_s = window_s
        self.ends: deque[float] = deque()
        self.latencies: deque[float] = deque(maxlen=latency_frames)
        self.frames = 0

    def tick(self, end: float, latency_ms: float) -> None:
        """Record one processed frame that finished at `end` (seconds) after `latency_ms`."""
        self.frames += 1
        self.ends.append(end)
        self.latencies.append(latency_ms)
        while self.ends and self.ends[0] < end - self.window_s:
            self.ends.popleft()

    def fps(self, now: float | None = None) -> float:
        """Frames per second in the window (0 until two frames, or when the stream stalled)."""
        if len(self.ends) < 2 or (now is not None and now - self.ends[-1] > self.window_s):
            return 0.0
        span = self.ends[-1] - self.ends[0]
        return (len(self.ends) - 1) / span if span > 0 else 0.0

    def latency_ms(self) -> float:
        return float(np.mean(self.latencies)) if self.latencies else 0.0


@dataclass(frozen=True)
class LiveModel:
    """One run on the video: its name on the overlay, its model and manifest."""

    run_id: str
    name: str  # short ASCII name drawn on the video (legend beside it gives the full label)
    model: Any
    manifest: dict[str, Any]


def overlay_names(models: Sequence[tuple[str, str]]) -> dict[str, str]:
    """{run id: short name} from (run id, model name) pairs: the model name, numbered when two
    runs share one (`mobilenet_v2`, `mobilenet_v2 #2`); ASCII only (the video font has no more)."""
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for rid, model in models:
        base = model.encode("ascii", "replace").decode()
        seen[base] = seen.get(base, 0) + 1
        out[rid] = base if seen[base] == 1 else f"{base} #{seen[base]}"
    return out


@dataclass(frozen=True)
class LiveStats:
    """What the page shows beside the video."""

    frames: int  # frames processed since the stream started
    fps: float
    latency_ms: float  # mean wall time of one frame
    detect_ms: float  # the last detection's time
    classify_ms: dict[str, float]  # run name -> last forward time (all faces together)
    faces: int  # faces on the last frame
    detect_every: int
    window: int
    error: str = ""  # the last processing error, shown instead of crashing the stream


def classify(model: Any, manifest: dict[str, Any], crops: Sequence[np.ndarray]) -> np.ndarray:
    """Class probabilities (N x classes) for face crops, in one batch, preprocessed as in
    training; serialised with the explainers of the same shared model (no Grad-CAM hooks
    see these frames), which also puts it in eval mode."""
    import torch

    pre = Preprocess.of(manifest)
    x = torch.cat([pre(c)[0] for c in crops])
    with explaining(model):
        return probabilities(model, x, temperature=run_temperature(manifest)).cpu().numpy() \
            .astype(np.float64)


class LiveSession:
    """The processing state of one viewer's live stream (thread-safe)."""

    def __init__(self, *, detect: Callable[[np.ndarray], list[faces.FaceBox]] | None = None,
                 clock: Callable[[], float] = time.perf_counter, max_faces: int = MAX_FACES,
                 torch_threads: int | None = TORCH_THREADS) -> None:
        self._detect = detect or faces.detect_faces
        self._clock = clock
        self.max_faces = max_faces
        self.torch_threads = torch_threads  # None: leave the calling thread's setting alone
        self._lock = threading.Lock()
        self._models: list[LiveModel] = []
        self.detect_every = DEFAULT_DETECT_EVERY
        self.window = DEFAULT_WINDOW
        self._reset()

    def _reset(self) -> None:
        self._tracks: list[Track] = []
        self._next_id = 1
        self._count = 0
        self._meter = FpsMeter()
        self._last: np.ndarray | None = None
        self._last_time = 0.0
        self._last_face: tuple[np.ndarray, float] | None = None  # newest frame with a face found
        self._detect_ms = 0.0
        self._classify_ms: dict[str, float] = {}
        self._error = ""

    def configure(self, models: Sequence[LiveModel], *, detect_every: int = DEFAULT_DETECT_EVERY,
                  window: int = DEFAULT_WINDOW) -> None:
        """Runs and settings for the next frames; a changed set of runs restarts the smoothing."""
        with self._lock:
            if [m.run_id for m in models] != [m.run_id for m in self._models]:
                for t in self._tracks:
                    t.probs.clear()
            self._models = list(models)
            self.detect_every, self.window = max(1, int(detect_every)), max(1, int(window))

    def restart(self) -> None:
        """Forget tracks and counters (a new stream starts)."""
        with self._lock:
            self._reset()

    def last_frame(self) -> np.ndarray | None:
        """A copy of the newest raw frame, None before the first."""
        with self._lock:
            return None if self._last is None else self._last.copy()

    def freeze_frame(self) -> np.ndarray | None:
        """A copy of the frame "freeze" analyses: the newest raw frame in which the detector
        found a face when it is at most FREEZE_HOLD_S older than the newest frame, else the
        newest frame; None before the first."""
        with self._lock:
            if self._last_face is not None and self._last_time - self._last_face[1] <= FREEZE_HOLD_S:
                return self._last_face[0].copy()
            return None if self._last is None else self._last.copy()

    def streaming(self) -> bool:
        """Whether frames are arriving (two or more processed within the FPS window): the worker
        then shares the cores with whatever else the page computes."""
        with self._lock:
            return self._meter.fps(self._clock()) > 0

    def stats(self) -> LiveStats:
        with self._lock:
            return LiveStats(self._meter.frames, self._meter.fps(self._clock()),
                             self._meter.latency_ms(), self._detect_ms, dict(self._classify_ms),
                             len(self._tracks), self.detect_every, self.window, self._error)

    def process(self, rgb: np.ndarray) -> np.ndarray:
        """Detect (every Nth frame), track, classify, smooth and draw one frame; returns the
        labelled copy. An error is drawn on the frame and kept in stats, never raised."""
        t0 = self._clock()
        if self.torch_threads:
            set_threads(self.torch_threads)
        frame = np.ascontiguousarray(rgb, dtype=np.uint8)
        with self._lock:
            self._last, self._last_time = frame, t0
            try:
                self._step(frame)
                self._error = ""
            except Exception as exc:  # a failing model must not end the viewer's stream
                self._error = f"{type(exc).__name__}: {exc}"
            out = draw_frame(frame, self._tracks, self._models, self._header(), self._error)
            self._meter.tick(self._clock(), (self._clock() - t0) * 1000.0)
            return out

    def _header(self) -> str:
        """`8.6 FPS | 98 ms/frame | detect 1/2 | EMA 5` (short enough for a 320 px video)."""
        return (f"{self._meter.fps(self._clock()):.1f} FPS | {self._meter.latency_ms():.0f} ms/frame"
                f" | detect 1/{self.detect_every} | EMA {self.window}")

    def _step(self, frame: np.ndarray) -> None:
        if self._count % self.detect_every == 0:
            t = self._clock()
            boxes = self._detect(frame)[: self.max_faces]
            self._detect_ms = (self._clock() - t) * 1000.0
            if boxes:
                self._last_face = (frame, self._last_time)
            self._tracks, self._next_id = update_tracks(self._tracks, boxes, self._next_id)
        self._count += 1
        shown = [t for t in self._tracks if t.missed == 0]
        if not shown:
            return
        cuts = [FaceCrops(frame, t.box) for t in shown]
        alpha = ema_alpha(self.window)
        for m in self._models:
            t = self._clock()
            probs = classify(m.model, m.manifest, [c.for_run(m.manifest) for c in cuts])
            self._classify_ms[m.name] = (self._clock() - t) * 1000.0
            for track, p in zip(shown, probs, strict=True):
                prev = track.probs.get(m.run_id)
                track.probs[m.run_id] = p if prev is None else alpha * p + (1 - alpha) * prev


# ---------------------------------------------------------------------------------------------
# Drawing (OpenCV's Hershey font: ASCII only)


def class_colour(name: str | None) -> tuple[int, int, int]:
    return CLASS_COLOURS.get(str(name), OTHER_COLOUR)


def track_lines(track: Track, models: Sequence[LiveModel]) -> list[tuple[str, tuple[int, int, int]]]:
    """One (text, colour) per run for a face: `name: happy 0.87` in the class's colour."""
    lines = []
    for m in models:
        p = track.probs.get(m.run_id)
        if p is None:
            lines.append((f"{m.name}: ...", OTHER_COLOUR))
            continue
        classes = list(m.manifest["classes"])
        k = int(np.argmax(p))
        lines.append((f"{m.name}: {classes[k]} {float(p[k]):.2f}", class_colour(classes[k])))
    return lines


def face_title(track: Track) -> str:
    """The first line of a face's label; a face narrower than SMALL_FACE_PX says its answers
    are less reliable (docs/results.md#how-small-a-face-can-predict-read)."""
    return f"face {track.track_id}" + (" (small: less reliable)" if is_small_face(track.box) else "")


def _text_block(img: np.ndarray, lines: Sequence[tuple[str, tuple[int, int, int]]], x: int, y: int,
                scale: float, thick: int, *, above: bool) -> None:
    """Lines of text on a dark band whose top-left (or bottom-left, `above`) corner is (x, y)."""
    if not lines:
        return
    font = cv2.FONT_HERSHEY_SIMPLEX
    sizes = [cv2.getTextSize(t, font, scale, thick)[0] for t, _ in lines]
    line_h = max(h for _, h in sizes) + 8 * thick
    width = max(w for w, _ in sizes) + 8 * thick
    height = line_h * len(lines) + 4 * thick
    H, W = img.shape[:2]
    top = y - height if above else y
    top = int(min(max(top, 0), max(0, H - height)))
    left = int(min(max(x, 0), max(0, W - width)))
    band = img[top:top + height, left:left + width]
    band[:] = (band * 0.35).astype(np.uint8)  # darken, keep the picture visible behind
    for i, (text, colour) in enumerate(lines):
        base = top + 2 * thick + line_h * (i + 1) - 5 * thick
        cv2.putText(img, text, (left + 4 * thick, base), font, scale, colour, thick, cv2.LINE_AA)


def draw_frame(rgb: np.ndarray, tracks: Sequence[Track], models: Sequence[LiveModel],
               header: str, error: str = "") -> np.ndarray:
    """A copy of the frame with each tracked face boxed (colour: the first run's class) and
    labelled with every run's smoothed answer, and the FPS/latency header at the top."""
    out = rgb.copy()
    scale = max(0.4, min(out.shape[:2]) / 800.0)
    thick = max(1, round(scale * 2))
    for t in tracks:
        if t.missed:
            continue
        lines = track_lines(t, models)
        colour = lines[0][1] if lines else OTHER_COLOUR
        b = t.box
        cv2.rectangle(out, (b.x, b.y), (b.x + b.w, b.y + b.h), colour, 2 * thick)
        labelled = [(face_title(t), (255, 255, 255)), *lines]
        room_above = b.y > (len(labelled) * 30 * scale + 10)
        _text_block(out, labelled, b.x, b.y if room_above else b.y + b.h, scale, thick,
                    above=room_above)
    head = [(header, (255, 255, 255))]
    if not models:
        head.append(("no run chosen: faces are boxed only", (255, 210, 0)))
    if error:
        head.append((f"error: {error}"[:90], (255, 90, 90)))
    _text_block(out, head, 0, 0, scale * 0.9, thick, above=False)
    return out
