"""Cached explanation maps: one small cached function per kind of map a page shows.

Each is keyed by plain strings and numbers only: the artifacts root, the run id, the stamp of
the run's weights (a retrained run gets fresh maps), the picture's content key, and the map's own
parameters. The picture itself travels in the `_pic` argument, which Streamlit does not hash.
Computing a map runs the model, so a rerun that changes an unrelated widget costs nothing.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from emotion_core.views import probe
from pages import _cache
from pages._inputs import Picture

MAP_CACHE_ENTRIES = 64  # maps kept per kind (small images at model input size)


@st.cache_data(show_spinner="Computing the map...", max_entries=MAP_CACHE_ENTRIES)
def _cam(root: str, run_id: str, stamp: str, image: str, method: str, score: bool, finer: int,
         _pic: Picture) -> probe.MapView:
    model, manifest = _cache.load_model(run_id)
    return probe.cam_view(model, manifest, _pic.rgb, method, image_path=_pic.path, cut=_pic.cut,
                          score=score, finer=finer)


def cam_view(run_id: str, pic: Picture, method: str, *, score: bool, finer: int) -> probe.MapView:
    """A CAM-family map of the predicted class (`finer` layers below the default CAM layer)."""
    return _cam(*_cache.model_key(run_id), pic.key, method, score, finer, pic)


@st.cache_data(show_spinner="Computing attention...", max_entries=MAP_CACHE_ENTRIES)
def _layout(root: str, run_id: str, stamp: str, image: str, _pic: Picture) -> np.ndarray:
    model, manifest = _cache.load_model(run_id)
    return probe.attention_layout(model, manifest, _pic.rgb)


def attention_layout(run_id: str, pic: Picture) -> np.ndarray:
    """A ViT's [layers, heads, T, T] attention for the picture (sizes the layer/head sliders)."""
    return _layout(*_cache.model_key(run_id), pic.key, pic)


@st.cache_data(show_spinner="Computing the map...", max_entries=MAP_CACHE_ENTRIES)
def _attention(root: str, run_id: str, stamp: str, image: str, layer: int, head: int | None,
               score: bool, _pic: Picture) -> probe.MapView:
    model, manifest = _cache.load_model(run_id)
    att = _layout(root, run_id, stamp, image, _pic)
    return probe.attention_view(model, manifest, _pic.rgb, att, layer=layer, head=head,
                                image_path=_pic.path, cut=_pic.cut, score=score)


def attention_view(run_id: str, pic: Picture, *, layer: int, head: int | None,
                   score: bool) -> probe.MapView:
    """CLS-to-patch attention of one layer and head (None: the mean of the heads)."""
    return _attention(*_cache.model_key(run_id), pic.key, layer, head, score, pic)


@st.cache_data(show_spinner="Computing the rollout...", max_entries=MAP_CACHE_ENTRIES)
def _rollout(root: str, run_id: str, stamp: str, image: str, discard_ratio: float, fusion: str,
             score: bool, _pic: Picture) -> probe.MapView:
    model, manifest = _cache.load_model(run_id)
    att = _layout(root, run_id, stamp, image, _pic)
    return probe.rollout_view(model, manifest, _pic.rgb, att, discard_ratio=discard_ratio,
                              head_fusion=fusion, image_path=_pic.path, cut=_pic.cut,
                              score=score)


def rollout_view(run_id: str, pic: Picture, *, discard_ratio: float, fusion: str,
                 score: bool) -> probe.MapView:
    """Attention rollout through every layer."""
    return _rollout(*_cache.model_key(run_id), pic.key, discard_ratio, fusion, score, pic)


@st.cache_data(show_spinner="Computing feature maps...", max_entries=MAP_CACHE_ENTRIES)
def _feature_maps(root: str, run_id: str, stamp: str, image: str, layer: str, top_k: int,
                  _pic: Picture) -> tuple[np.ndarray, list[int], np.ndarray]:
    model, manifest = _cache.load_model(run_id)
    return probe.feature_map_grid(model, manifest, _pic.rgb, layer, top_k)


def feature_map_grid(run_id: str, pic: Picture, layer: str, top_k: int
                     ) -> tuple[np.ndarray, list[int], np.ndarray]:
    """(channel grid, channel ids, the resized input) of one conv layer, strongest channels first."""
    return _feature_maps(*_cache.model_key(run_id), pic.key, layer, top_k, pic)
