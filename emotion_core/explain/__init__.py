"""Explanations: what a model looks at, and whether to trust the map.

    render          explain_image: any method on one image, rendered; methods_for(spec)
    cam             the Grad-CAM family (pytorch-grad-cam, `with` form), EigenCAM's thin SVD
    cam_layers      the default CAM layer and one finer layer per feature-grid resolution
    attention       ViT CLS attention per layer/head, rollout, the patch grid
    feature_maps    a conv layer's strongest channels, tiled
    faithfulness    mask energy share, pointing game, grid ceilings, deletion/insertion
    evaluate_maps   faithfulness of a stored run's maps on held-out images (into metrics.json)
    base            per-model lock, input checks, heat-map scaling and overlays
"""
from emotion_core.explain.base import (
    HEAD_FUSIONS,
    NotApplicableError,
    overlay,
    resolve_device,
    to_heatmap,
)
from emotion_core.explain.cam import CAM_METHODS, compute_cam, compute_cams
from emotion_core.explain.cam_layers import CamLayer, cam_layer_choices
from emotion_core.explain.render import (
           ALL_METHODS,
           ATTENTION_METHODS,
           Explanation,
           explain_image,
           methods_for,
)

__all__ = ["HEAD_FUSIONS", "NotApplicableError", "overlay", "resolve_device", "to_heatmap", "CAM_METHODS",
           "compute_cam", "compute_cams", "CamLayer", "cam_layer_choices", "ALL_METHODS",
           "ATTENTION_METHODS", "Explanation", "explain_image", "methods_for"]
