"""Feature maps: a CNN run (VGG-16 by default), an image, a slider through the conv layers.

A run trained on face crops reads the picture's largest face, cut its way (views.framing)."""
from __future__ import annotations

import streamlit as st

from emotion_core.views import display, probe, run_choice
from pages import _cache, _entry, _inputs, _maps, _sidebar, _warmup

INPUT_PX = 224  # the model-input picture beside the channel grid, at one size

_entry.require_app("pages/feature_maps.py")
st.title("Feature maps")
runs, labels = _sidebar.runs_or_stop("No trained model runs for this dataset yet.", models_only=True)
ids = list(labels)
rid = st.selectbox("Run", ids, index=ids.index(run_choice.feature_map_default(runs)),
                   format_func=labels.get, key="fm_run")
_warmup.wait_for([rid], "the feature maps")
try:
    model, manifest = _cache.load_model(rid)
except Exception as exc:  # broken or mismatched checkpoint: say so, keep the page alive
    st.error(f"Cannot load this run: {exc}")
    st.stop()
layers = probe.conv_layer_names(model)
if not layers:
    st.info(f"{labels[rid]} has no convolution layers to show (pick a CNN run).")
    st.stop()
# the layer controls come before the picture, so switching the picture source (or waiting for an
# upload) never resets them: the slider and the maps below always name the same layer
layer = st.select_slider("Conv layer (as registered, input side first)", options=layers,
                         value=layers[0], key="fm_layer")
st.caption(f"Layer {layers.index(layer) + 1} of {len(layers)} convolution layers")
top_k = st.slider("Channels shown (top by mean activation)", 4, 32, 16, step=4, key="fm_k")
pic = _inputs.pick_image("fm", _sidebar.current_dataset())
if pic is None:
    st.stop()
pic, framed = _inputs.for_run(rid, pic)
if framed:
    st.caption(f"{labels[rid]}: {framed}")
grid, channels, small = _maps.feature_map_grid(rid, pic, layer, int(top_k))
c1, c2 = st.columns([1, 3])
c1.image(display.square(small, INPUT_PX), width=INPUT_PX, caption=f"input {small.shape[0]} px · {pic.caption}")
c2.image(grid, caption=f"{layer}: channels {', '.join(map(str, channels))}")
