"""Explain: Grad-CAM family side by side for several runs; ViT attention, rollout, patch grid."""
from __future__ import annotations

import streamlit as st

from emotion_core import explain as ex
from emotion_core import probe
from pages import _common as common

st.title("Explain")
runs, labels = common.runs_or_stop("No trained model runs for this dataset yet.", models_only=True)
rgb, path, caption = common.pick_image("ex", common.current_dataset())
if rgb is None:
    st.stop()

st.subheader("Grad-CAM side by side")
chosen = st.multiselect("Runs", list(labels), default=list(labels)[:3], format_func=labels.get,
                        key="ex_runs")
method = st.selectbox("Method", list(ex.CAM_METHODS), key="ex_method")
cols = st.columns(max(1, len(chosen)))
for col, rid in zip(cols, chosen, strict=False):
    with col:
        try:
            view = common.explained(rid, "cam", rgb, path, method)
        except ex.NotApplicableError as exc:
            st.info(f"{labels[rid]}: {exc}")
            continue
        except Exception as exc:  # one failing run must not hide the others
            st.warning(f"{labels[rid]}: {exc}")
            continue
        st.image(view.overlay, caption=f"{labels[rid]} → {view.predicted}")
        for k, v in view.faithfulness.items():
            st.metric(k, f"{v:.3f}")
        if not view.faithfulness:
            st.caption("faithfulness: not available for this map")

st.subheader("ViT attention")
vits = [r.run_id for r in runs if r.manifest.get("model") in ("vit_scratch", "vit_hf", "dinov2_small")]
if not vits:
    st.info("No ViT run selected (vit_scratch, vit_hf or dinov2_small).")
    st.stop()
vid = st.selectbox("ViT run", vits, format_func=labels.get, key="ex_vit")
try:
    model, manifest = common.load_model(vid)
    att = common.explained(vid, "layout", rgb, path)
except Exception as exc:
    st.warning(f"Attention unavailable: {exc}")
    st.stop()
n_layers, n_heads = att.shape[0], att.shape[1]
c1, c2 = st.columns(2)
layer = c1.slider("Layer", 0, n_layers - 1, n_layers - 1, key="ex_layer")
head = c2.slider("Head (-1 = mean of heads)", -1, n_heads - 1, -1, key="ex_head")
c3, c4 = st.columns(2)
ratio = c3.slider("Rollout discard ratio", 0.0, 0.99, 0.9, key="ex_discard")
fusion = c4.selectbox("Head fusion", list(ex.HEAD_FUSIONS), key="ex_fusion")
a = common.explained(vid, "attention", rgb, path, layer, None if head < 0 else head)
r = common.explained(vid, "rollout", rgb, path, float(ratio), fusion)
grid = probe.patch_grid(model, manifest, rgb)
cols = st.columns(3)
for col, view in zip(cols[:2], (a, r), strict=True):
    with col:
        st.image(view.overlay, caption=view.title)
        for k, v in view.faithfulness.items():
            st.metric(k, f"{v:.3f}")
if grid is not None:
    cols[2].image(grid, caption="patch grid (each cell became one token)")
