"""Predict: upload or webcam snapshot; faces boxed and cropped; every run side by side + ensemble."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from emotion_core.views import live
from pages import _cache, _sidebar

st.title("Predict")
runs, labels = _sidebar.runs_or_stop("No runs to predict with yet.")
chosen = st.multiselect("Runs", list(labels), default=list(labels), format_func=labels.get,
                        key="pr_runs")
tab_up, tab_cam = st.tabs(["Upload", "Webcam snapshot"])
with tab_up:
    up = st.file_uploader("Photo", key="pr_upload")
with tab_cam:
    snap = st.camera_input("Take a snapshot", key="pr_camera")
source = up if up is not None else snap
if source is None:
    st.caption("Upload a photo (processed in memory, never stored) or take a webcam snapshot.")
    st.stop()
try:
    rgb = live.decode_upload(source.getvalue())
except live.UploadError as exc:
    st.error(str(exc))
    st.stop()
whole = st.checkbox("Use the whole image when no face is found", key="pr_whole")
result = live.predict_faces(rgb, chosen, loader=_cache.load_model, whole_image=whole)
st.image(result.image, caption=f"{result.faces_found} face(s) found · detection "
                               f"{result.detect_ms:.0f} ms · total {result.total_ms:.0f} ms",
         width=480)
if result.note:
    (st.warning if not result.predictions else st.info)(result.note)
if not result.predictions:
    st.stop()
for i, face in enumerate(result.predictions, start=1):
    st.subheader(f"Face {i}" if face.box is not None else "Whole image")
    c1, c2 = st.columns([1, 3])
    c1.image(face.crop, caption="crop fed to the models", width=160)
    rows = live.probability_table(face, labels)
    if rows:
        fig = px.bar(pd.DataFrame(rows), x="probability", y="run", color="class",
                     orientation="h", range_x=[0, 1])
        c2.plotly_chart(fig, width="stretch", key=f"pr_chart_{i}")
    for p in live.answers(face):
        name = live.entry_label(p, labels)
        if p.probs is not None:
            st.markdown(f"**{name}** → **{p.predicted}** ({p.confidence:.2f}) · "
                        f"{p.latency_ms:.1f} ms")
        else:
            st.markdown(f"**{name}** → unavailable: {p.error}")
    st.dataframe(pd.DataFrame(live.summary_table(face, labels)), hide_index=True, width="stretch",
                 column_config={"confidence": st.column_config.NumberColumn(format="%.2f"),
                                "latency_ms": st.column_config.NumberColumn(format="%.1f")})
