"""Explain: Grad-CAM family side by side for several runs; ViT attention, rollout, patch grid.

The controls come before the picture, so choosing another picture source (or an upload not yet
made) never resets them; every overlay is drawn at one size. A run trained on face crops reads
the sample's or upload's largest face, cut its way (views.framing). A face handed over from
Predict ("why" link) opens here as the picture, with its run chosen.
"""
from __future__ import annotations

import streamlit as st

from emotion_core import explain as ex
from emotion_core.views import display, probe, run_choice, tables
from pages import _cache, _entry, _inputs, _maps, _sidebar, _warmup

OVERLAY_PX = 224  # every map is shown at this size, whatever the model's input size
SCORE_HINT = ("Runs without a stored faithfulness score: run `python -m scripts.explain --run "
              "RUN_ID --faithfulness --data DIR --cam-layers stages` to score them on held-out "
              "images, or tick the box above to score these maps on this picture.")


def show_scores(view: probe.MapView, metrics: dict, method: str) -> bool:
    """This map's score on this picture, then the run's stored mean for the same method/layer;
    False when there was nothing to show."""
    for k, v in view.faithfulness.items():
        st.metric(k, f"{v:.3f}")
    stored = tables.stored_faithfulness(metrics, method, view.layer)
    for label, value, why in stored:
        st.metric(label, f"{value:.3f}", help=why)
    return bool(view.faithfulness or stored)


_entry.require_app("pages/explain.py")
st.title("Explain")
runs, labels, first = _sidebar.photo_runs("No trained model runs for this dataset yet.",
                                          models_only=True)
metrics = {r.run_id: r.metrics for r in runs}
handed, handed_run = _inputs.take_handoff()
vits = run_choice.vit_runs(runs)
if handed_run in labels:  # just arrived from Predict's "why" link: that face, that run
    st.session_state["ex_src"] = _inputs.HANDED
    st.session_state["ex_runs"] = [handed_run]
    if handed_run in vits:
        st.session_state["ex_vit"] = handed_run

chosen = st.multiselect("Runs", list(labels), format_func=labels.get, key="ex_runs",
                        **({} if "ex_runs" in st.session_state
                           else {"default": run_choice.explain_defaults(runs, first)}))
_sidebar.bundled_note(runs, chosen)
c1, c2 = st.columns(2)
method = c1.selectbox("Method", list(ex.CAM_METHODS), key="ex_method")
finer = c2.select_slider("CAM layer", options=list(range(5)), value=0, key="ex_finer",
                         format_func=lambda k: "last (default)" if k == 0 else f"{k} finer",
                         help="Earlier layers have finer feature grids (sharper maps) but less "
                              "class-specific features; each column's caption names the layer.")
dataset = _sidebar.current_dataset()
pic = _inputs.pick_image("ex", dataset, handed, photo_first=run_choice.real_photo_first(
    [r for r in runs if r.run_id in chosen], dataset))
if pic is None:
    st.stop()
score = st.checkbox("Score every map on this picture (deletion/insertion AUC: about 20 extra "
                    "forward passes per map)", value=False, key="ex_score")

st.subheader("Grad-CAM side by side")
_warmup.wait_for([*chosen, *vits[:1]], "the maps")
unscored = False
cols = st.columns(max(1, len(chosen)))
for col, rid in zip(cols, chosen, strict=False):
    with col:
        try:
            seen, framed = _inputs.for_run(rid, pic)
            view = _maps.cam_view(rid, seen, method, score=score, finer=finer)
        except ex.NotApplicableError as exc:
            st.info(f"{labels[rid]}: {exc}")
            continue
        except Exception as exc:  # one failing run must not hide the others
            st.warning(f"{labels[rid]}: {exc}")
            continue
        st.image(display.square(view.overlay, OVERLAY_PX), width=OVERLAY_PX,
                 caption=f"{labels[rid]} → {view.predicted}")
        st.caption(view.title + (f" · {framed}" if framed else ""))
        unscored |= not show_scores(view, metrics[rid], method)
hinted = unscored
if unscored:
    st.caption(SCORE_HINT)

st.subheader("ViT attention")
if not vits:
    st.info("No ViT run selected (vit_scratch, vit_hf or dinov2_small).")
    st.stop()
vid = st.selectbox("ViT run", vits, format_func=labels.get, key="ex_vit")
try:
    model, manifest = _cache.load_model(vid)
    vpic, vframed = _inputs.for_run(vid, pic)
    att = _maps.attention_layout(vid, vpic)
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
if vframed:
    st.caption(f"{labels[vid]}: {vframed}")
a = _maps.attention_view(vid, vpic, layer=layer, head=None if head < 0 else head, score=score)
r = _maps.rollout_view(vid, vpic, discard_ratio=float(ratio), fusion=fusion, score=score)
grid = probe.patch_grid(model, manifest, vpic.rgb)
cols = st.columns(3)
for col, view, kind in zip(cols[:2], (a, r), ("attention", "rollout"), strict=True):
    with col:
        st.image(display.square(view.overlay, OVERLAY_PX), width=OVERLAY_PX, caption=view.title)
        unscored |= not show_scores(view, metrics[vid], kind)
if grid is not None:
    cols[2].image(display.square(grid, OVERLAY_PX), width=OVERLAY_PX,
                  caption="patch grid (each cell became one token)")
if unscored and not hinted:  # the hint once per page
    st.caption(SCORE_HINT)
