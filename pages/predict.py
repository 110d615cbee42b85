"""Predict: a photo, a webcam snapshot or the live webcam; faces boxed and cropped; every run side
by side with the mean computed now and any stored ensemble; a "why" map beside every answer.

The bars of every face are drawn first; the why-maps (Grad-CAM, or attention rollout for ViTs)
fill their slots afterwards, cached per run and face crop like the Explain page's maps, so the
answers never wait for the maps. "Open in Explain" hands the face and run to the Explain page.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from emotion_core import words
from emotion_core.models import REGISTRY
from emotion_core.views import display, live, samples
from pages import _cache, _charts, _entry, _inputs, _jobs, _live, _maps, _sidebar

SOURCES = ["Upload a photo", "Webcam snapshot", "Live webcam"]
WHY_PX = 150  # side of each why-map
WHY_COLUMNS = 6  # why-maps per row
WHY_FACES = 3  # faces that get why-maps (the largest)
ROLLOUT = {"discard_ratio": 0.9, "fusion": "mean"}  # the ViTs' why-map, as Explain's default


def why_map(rid: str, pic: _inputs.Picture):
    """Grad-CAM of the predicted class, or attention rollout for a ViT (registry family)."""
    model = str(_run_models.get(rid, ""))
    if model in REGISTRY and REGISTRY[model].has_attention:
        return _maps.rollout_view(rid, pic, discard_ratio=ROLLOUT["discard_ratio"],
                                  fusion=ROLLOUT["fusion"], score=False), "attention rollout"
    return _maps.cam_view(rid, pic, "gradcam", score=False, finer=0), "Grad-CAM"


def why_row(i: int, face: live.FacePrediction, pic: _inputs.Picture) -> None:
    """One small map per model run that answered for this face, with a link to Explain."""
    singles = [p for p in face.runs if p.kind == "model" and p.probs is not None]
    if not singles:
        return
    st.markdown("**Why:** where each run looked on this face (the map of its predicted class)")
    short = live.chart_names(face)
    for k, p in enumerate(singles):
        if k % WHY_COLUMNS == 0:
            cols = st.columns(WHY_COLUMNS)  # small maps side by side, a new row every 6
        with cols[k % WHY_COLUMNS]:
            try:
                view, kind = why_map(p.run_id, pic if face.one_framing else _inputs.Picture.of(
                    face.crop_of(p.run_id), None, pic.caption))
            except Exception as exc:  # a map that fails leaves the answers intact
                st.caption(f"{short[p.run_id]}: no map ({exc})")
                continue
            st.image(display.square(view.overlay, WHY_PX), width=WHY_PX,
                     caption=f"{short[p.run_id]} → {view.predicted} · {kind}")
            if st.button("Open in Explain", key=f"pr_why_{i}_{p.run_id}",
                         help=f"The full Explain view of {labels[p.run_id]} on this face"):
                _inputs.hand_to_explain(face.crop_of(p.run_id), f"face {i} from Predict",
                                        p.run_id)
    if any(p.kind == "ensemble" for p in face.runs):
        st.caption("Stored ensembles have no map of their own: their members' maps are above "
                   "when the members are chosen.")


def answers_block(i: int, face: live.FacePrediction) -> None:
    """The crop with every answer beside it (text first: it shows before the chart's script has
    loaded), then the probability bars (short names, one row per answer) and the summary table."""
    st.subheader(f"Face {i}" if face.box is not None else "Whole image")
    if face.small_note:
        st.warning(face.small_note)
    c1, c2 = st.columns([1, 4])
    c1.image(face.crop, width=160, caption="crop fed to the models" if face.one_framing else
             "crop fed to the first run (the others frame this face their own way: margin, "
             "edge and turn as each was trained)")
    short = live.chart_names(face)
    with c2:
        for p in live.answers(face):
            name = live.entry_label(p, labels)
            if p.probs is not None:
                st.markdown(f"**{short[p.run_id]}** → **{p.predicted}** ({p.confidence:.2f}) · "
                            f"{p.latency_ms:.1f} ms · {name}")
            else:
                st.markdown(f"**{short[p.run_id]}** → unavailable: {p.error} · {name}")
        if face.ensemble is not None or any(p.kind == "ensemble" for p in face.runs):
            st.caption(live.ENSEMBLE_CAPTION)
    rows = live.probability_table(face, labels)
    if rows:
        st.plotly_chart(_charts.probability_bars(rows), width="stretch", key=f"pr_chart_{i}")
    st.dataframe(pd.DataFrame(live.summary_table(face, labels)), hide_index=True, width="stretch",
                 placeholder=display.MISSING,
                 column_config={
                     "run": st.column_config.Column("run", width="large"),
                     "prediction": st.column_config.Column("prediction", width="small"),
                     "confidence": st.column_config.NumberColumn("confidence", format="%.3f"),
                     "temperature": st.column_config.NumberColumn(
                         "T", format="%.2f", help="the run's calibration temperature, fitted on "
                         "validation answers (scripts.calibrate): its percentages are softmax(log "
                         "p / T) of the plain answer p, which changes no choice; 1: as trained"),
                     "latency_ms": st.column_config.NumberColumn("ms", format="%.1f"),
                     "engine": st.column_config.Column(
                         "engine", help="onnx: the run's ONNX export through ONNX Runtime (the app "
                         "makes the bundled models'; scripts.export makes one for your runs); "
                         "torch: the PyTorch model"),
                     "error": st.column_config.Column("error", width="small")})


_entry.require_app("pages/predict.py")
st.title("Predict")
runs, labels, first = _sidebar.photo_runs("No runs to predict with yet.")
_run_models = {r.run_id: r.manifest.get("model") for r in runs}
chosen = st.multiselect("Runs", list(labels), default=first, format_func=labels.get,
                        key="pr_runs")
_sidebar.bundled_note(runs, chosen)
source = st.radio("Picture", SOURCES, horizontal=True, key="pr_source")
rgb, name = None, ""
if source == SOURCES[0]:
    up = st.file_uploader("Photo", key="pr_upload")
    if up is not None:
        data, name = up.getvalue(), up.name
    elif st.checkbox("No photo at hand: use the sample photo", key="pr_sample",
                     help="A NASA portrait of astronaut Eileen Collins (public domain), committed "
                          "with the code; an upload takes its place."):
        rgb, name = samples.sample_photo(), samples.SAMPLE_PHOTO_NAME
elif source == SOURCES[1]:
    snap = st.camera_input("Take a snapshot", key="pr_camera")
    if snap is not None:
        data, name = snap.getvalue(), "webcam snapshot"
else:
    rgb = _live.live_section(runs, labels)
    name = "frozen webcam frame"
    if rgb is not None:
        st.subheader("Frozen frame")
if rgb is None and name and source != SOURCES[2]:  # an upload or a snapshot: bytes to decode
    try:
        rgb = live.decode_picture(data)
    except live.UploadError as exc:
        st.error(str(exc))
        st.stop()
if rgb is None:
    if source != SOURCES[2]:
        st.caption("Upload a photo (processed in memory, never stored) or take a webcam snapshot.")
    st.stop()

whole = st.checkbox("Use the whole image when no face is found", key="pr_whole")
busy = _jobs.training_now()  # one job-status read for the thread choice and the caption
# the live worker streaming beside a frozen frame holds a core too: one thread was 2-5x faster
_jobs.share_cores(busy or (source == SOURCES[2] and _live.streaming()))
result = live.predict_faces(rgb, chosen, loader=_cache.load_predictor, whole_image=whole)
shown = display.fit_image(result.image)
scaled = "" if shown.shape == result.image.shape else \
    f" · {rgb.shape[1]}x{rgb.shape[0]} px, shown scaled to fit"
st.image(shown, width=shown.shape[1])  # its own width: a caption must not stretch a thin strip
st.caption(f"{name}: {words.counted(result.faces_found, 'face')} found · "
           f"detection {result.detect_ms:.0f} ms · total {result.total_ms:.0f} ms{scaled}"
           f"{_jobs.busy_note(busy)}")
if result.note:
    (st.warning if not result.predictions else st.info)(result.note)
if not result.predictions:
    st.stop()
slots = []
for i, face in enumerate(result.predictions, start=1):
    answers_block(i, face)
    slots.append((i, face, st.container()))
for i, face, slot in slots[:WHY_FACES]:  # the maps come after every face's bars are on screen
    with slot:
        why_row(i, face, _inputs.Picture.of(face.crop, None, f"face {i} of {name}"))
if len(slots) > WHY_FACES:
    st.caption(f"Why-maps are drawn for the {WHY_FACES} largest faces.")
