"""Predict's live webcam: wires streamlit-webrtc to emotion_core.views.live_video (UI only).

The browser sends camera frames over WebRTC; streamlit-webrtc decodes each one in a worker
thread and calls the frame callback, which hands it to this viewer's `LiveSession` (kept in
session state) and sends the labelled frame back. Beside the video: which run is which, the
smoothing in words, and a fragment that redraws the FPS and latency every second. "Freeze"
copies the newest raw frame into session state for the still-image analysis below.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from emotion_core import store, words
from emotion_core.views import live_video
from pages import _cache, _jobs

SESSION_KEY = "live_session"  # this viewer's LiveSession
FROZEN_KEY = "pr_frozen"  # the frozen frame (RGB) the still analysis works on
MAX_LIVE_RUNS = 3  # runs labelled on the video at once
STATS_REFRESH_S = 1.0
DETECT_CHOICES = [1, 2, 3, 4, 6]
VIDEO = {"width": {"ideal": 640}, "height": {"ideal": 480}, "frameRate": {"ideal": 30}}


def _session() -> live_video.LiveSession:
    if SESSION_KEY not in st.session_state:
        st.session_state[SESSION_KEY] = live_video.LiveSession()
    return st.session_state[SESSION_KEY]


def streaming() -> bool:
    """Whether this viewer's live stream is delivering frames now (its worker uses a core)."""
    return SESSION_KEY in st.session_state and _session().streaming()


def _callback(session: live_video.LiveSession) -> Callable[[Any], Any]:
    """The frame callback: runs in streamlit-webrtc's worker thread, never touches st.*."""
    import av

    def process(frame: av.VideoFrame) -> av.VideoFrame:
        out = session.process(frame.to_ndarray(format="rgb24"))
        return av.VideoFrame.from_ndarray(out, format="rgb24")
    return process


def live_section(runs: list[store.RunRecord], labels: dict[str, str]) -> np.ndarray | None:
    """The live webcam with its controls; returns the frozen frame, if any."""
    try:
        from streamlit_webrtc import WebRtcMode, webrtc_streamer
    except ImportError:
        st.info("The live webcam needs the streamlit-webrtc package "
                "(`pip install -r requirements.txt`).")
        return None
    ids = live_video.fastest_runs(runs)
    if not ids:
        st.info("No trained model run to label the video with (stored ensembles are not run live).")
        return None
    chosen = st.multiselect(f"Runs on the video (at most {MAX_LIVE_RUNS}, fastest first)", ids,
                            default=ids[:1], max_selections=MAX_LIVE_RUNS, format_func=labels.get,
                            key="live_runs")
    c1, c2 = st.columns(2)
    every = c1.select_slider(
        "Find faces every", DETECT_CHOICES, value=live_video.DEFAULT_DETECT_EVERY, key="live_every",
        format_func=lambda n: "frame" if n == 1 else f"{n} frames",
        help="Face detection costs more than classifying a small crop: between detections the "
             "boxes are held and only the classification runs on each new frame.")
    window = c2.slider("Smoothing window (frames)", 1, 15, live_video.DEFAULT_WINDOW,
                       key="live_window", help="1 = no smoothing")
    session = _session()
    names = live_video.overlay_names([(rid, str(_manifest(runs, rid).get("model", rid)))
                                      for rid in chosen])
    models = []
    for rid in chosen:
        try:
            model, manifest = _cache.load_predictor(rid)
        except Exception as exc:  # a broken run is named, the others still run
            st.warning(f"{labels[rid]} cannot be loaded: {exc}")
            continue
        models.append(live_video.LiveModel(rid, names[rid], model, manifest))
    session.configure(models, detect_every=every, window=window)

    video, side = st.columns([3, 2])
    with video:
        ctx = webrtc_streamer(
            key="live", mode=WebRtcMode.SENDRECV, video_frame_callback=_callback(session),
            rtc_configuration={"iceServers": live_video.ice_servers()},
            media_stream_constraints={"video": VIDEO, "audio": False}, async_processing=True)
    with side:
        for m in models:
            st.markdown(f"**{m.name}** on the video: {labels[m.run_id]}")
        st.caption(live_video.smoothing_note(window) + " Frames are processed on the server; "
                   "nothing is stored.")
        playing = bool(ctx.state.playing)
        if playing:
            _stats(session)
        else:
            st.caption("Press START under the video and allow the camera.")
        if st.button("Freeze: analyse this frame below", key="live_freeze",
                     help="All chosen runs side by side, with the why-maps, on the newest frame "
                          f"in which a face was found (up to {live_video.FREEZE_HOLD_S:g} s back)"):
            frame = session.freeze_frame()
            if frame is None:
                st.warning("No frame yet: press START first.")
            else:
                st.session_state[FROZEN_KEY] = frame
    frozen = st.session_state.get(FROZEN_KEY)
    if frozen is not None and st.button("Clear the frozen frame", key="live_unfreeze"):
        st.session_state.pop(FROZEN_KEY, None)
        frozen = None
    return frozen


def _manifest(runs: list[store.RunRecord], rid: str) -> dict[str, Any]:
    return next((r.manifest for r in runs if r.run_id == rid), {})


@st.fragment(run_every=STATS_REFRESH_S)
def _stats(session: live_video.LiveSession) -> None:
    s = session.stats()
    c1, c2 = st.columns(2)
    c1.metric("Frames per second", f"{s.fps:.1f}", help="labelled frames sent back per second, "
              f"over the last {live_video.FPS_WINDOW_S:.0f} s")
    c2.metric("Latency per frame", f"{s.latency_ms:.0f} ms",
              help=f"mean over the last {live_video.LATENCY_FRAMES} frames: detection (when due), "
                   "crops, every run's forward pass, smoothing and drawing")
    runs_ms = ", ".join(f"{k} {v:.0f} ms" for k, v in s.classify_ms.items())
    every = "every frame" if s.detect_every == 1 else f"every {s.detect_every} frames"
    st.caption(f"{s.frames} frames processed · {words.counted(s.faces, 'face')} · "
               f"detection {s.detect_ms:.0f} ms, {every}" + (f" · {runs_ms}" if runs_ms else "")
               + _jobs.busy_note())
    if s.error:
        st.warning(f"Last frame failed: {s.error}")
