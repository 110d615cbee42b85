"""Preprocessing and the study's augmentations, applied to whole batches from the decode-once cache.

One geometric preprocessing step, `resize_square` (centre crop to a square, then cv2.INTER_AREA
resize), is shared by the cache, prediction and explanations (`model_input`), so every path sees
the same pixels.

Augmentation (the study's four, in this fixed order) then normalisation:
  0. optional loss of detail (off by default, the study had none): with probability `lowres`,
     the picture is shrunk to a share f ~ U(LOWRES_SIDE) of its side (area averaging) and
     brought back to its size (bilinear), as a face a few dozen pixels wide reaches a model;
  1. rotation by an angle ~ U(-rotation_deg, +rotation_deg) about the centre, bilinear, black fill;
     with the optional geometric jitter (off by default, the study had none) the same warp also
     zooms by z ~ U(1 - scale, 1 + scale) and shifts by ~ U(-shift, +shift) of the side on each
     axis: the face's size and place in its crop vary as a detector's boxes do;
  2. brightness: x * b, b ~ U(max(0, 1 - brightness), 1 + brightness), clamped to [0, 1];
  3. contrast: c * x + (1 - c) * mean(gray(x)), c ~ U(max(0, 1 - contrast), 1 + contrast), clamped;
  4. horizontal flip with probability 0.5 (when hflip);
  5. (x - mean) / std;
  6. optional random erasing (off by default, the study had none): with probability `erase`,
     one rectangle of 2-33% of the area, aspect 0.3-3.3, set to 0 after normalisation (the
     mean colour), as torchvision's RandomErasing placed after Normalize.
The reference is torchvision.transforms.v2 applied per sample (scripts/bench/torchvision_pipeline.py:
RandomRotation with zero padding, ColorJitter for brightness then for contrast, RandomHorizontalFlip,
Normalize). The cache path draws the same parameters from the same distributions, one set
per image (`sample_params`), and applies the same formulas to the whole batch with one of two
kernels: the tensor kernel (`augment_normalize_batch`: grid_sample for rotation with the flip
folded into the grid, broadcasting for colour; any device; equals torchvision's functional ops to
1e-5) and the CPU kernel (`augment_normalize_hwc`: cv2.warpAffine on uint8 and one float lookup
table per image for colour + normalisation; equals the tensor kernel up to uint8 rounding, ~0.3
grey levels on average), which is what makes the cache loader >10x faster than the slow path on
2 cores. So the two are equal in distribution, and for equal parameters nearly pixel-equal.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
HALF: tuple[float, float, float] = (0.5, 0.5, 0.5)  # [-1, 1] inputs (TF-ported EfficientNet-Lite, in21k ViT)
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
ERASE_AREA = (0.02, 0.33)  # torchvision RandomErasing's defaults: share of the area erased
ERASE_ASPECT = (0.3, 3.3)  # and the rectangle's height / width, drawn log-uniformly
MAX_SHIFT = 0.5  # a shift of half the side leaves half the picture in view
# --lowres: the share of its side a picture is shrunk to. A 128 px crop of a face grown by a
# quarter of its side on each side then holds a face 16-43 px wide: where Predict's answers
# weaken (scripts.bench.face_size, docs/results.md#how-small-a-face-can-predict-read).
LOWRES_SIDE = (0.1875, 0.5)


def range_problem(name: str, value: float) -> str | None:
    """What is wrong with `value` for AugmentConfig's field `name` ("must be ..., got V"), or
    None; the CLI puts its flag's name in front, the dataclass its own."""
    if value < 0:
        return f"must be >= 0, got {value:g}"
    if name in ("erase", "lowres") and value > 1:
        return f"is a probability (at most 1), got {value:g}"
    if name == "scale" and value >= 1:
        return f"must be below 1 (the smallest zoom, 1 minus it, must stay above 0), got {value:g}"
    if name == "shift" and value > MAX_SHIFT:
        return (f"must be at most {MAX_SHIFT:g} of the side (more can move the face out of the "
                f"picture), got {value:g}")
    return None


@dataclass
class AugmentConfig:
    """The study's augmentations; `enabled=False` turns them all off (evaluation)."""

    rotation_deg: float = 10.0  # max absolute in-plane rotation, degrees
    brightness: float = 0.2  # multiplicative brightness jitter half-range
    contrast: float = 0.2  # contrast jitter half-range
    hflip: bool = True  # mirror left-right with probability 0.5
    scale: float = 0.0  # zoom half-range: content scaled by U(1 - scale, 1 + scale) (0 = off)
    shift: float = 0.0  # shift half-range per axis, as a fraction of the side (0 = off)
    erase: float = 0.0  # probability of erasing one random rectangle per image (0 = off)
    lowres: float = 0.0  # probability of shrinking a picture and bringing it back (0 = off)
    enabled: bool = True

    def __post_init__(self) -> None:
        for name in ("rotation_deg", "brightness", "contrast", "scale", "shift", "erase", "lowres"):
            problem = range_problem(name, getattr(self, name))
            if problem:
                raise ValueError(f"AugmentConfig.{name} {problem}")

    @property
    def active(self) -> bool:
        return self.enabled and (self.rotation_deg > 0 or self.brightness > 0
                                 or self.contrast > 0 or self.hflip or self.scale > 0
                                 or self.shift > 0 or self.erase > 0 or self.lowres > 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Shared geometric preprocessing


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop an HxWx3 uint8 image to a square and resize it to size x size (INTER_AREA).

    Centre crop (not padding) keeps the face at full resolution and matches the usual
    ImageNet-style evaluation crop; pictures in these sets are mostly centred faces.
    INTER_AREA averages source pixels when shrinking, so no aliasing.
    """
    if size < 1:
        raise ValueError(f"image size must be a positive number of pixels, got {size}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = rgb[top:top + side, left:left + side]
    if side == size:
        return square.copy()  # always a fresh, writable array (PIL arrays are read-only)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(square), (size, size), interpolation=interp)


# ---------------------------------------------------------------------------------------------
# Batched path (decode-once cache)


@dataclass
class AugmentParams:
    """One draw of augmentation parameters for a batch (one value per image)."""

    angles_deg: torch.Tensor  # (N,)
    brightness: torch.Tensor  # (N,)
    contrast: torch.Tensor  # (N,)
    flip: torch.Tensor  # (N,) bool
    zoom: torch.Tensor | None = None  # (N,) content scale factor; None: 1
    shift: torch.Tensor | None = None  # (N, 2) x, y shift as a fraction of the side; None: 0
    erase: torch.Tensor | None = None  # (N, 4) top, left, height, width as fractions of the side;
    # a zero height or width (or None) erases nothing
    lowres: torch.Tensor | None = None  # (N,) share of the side a picture is shrunk to; 1 (or
    # None): left as it is

    @property
    def warps(self) -> bool:
        """Whether any image needs the affine warp (rotation, zoom or shift) beyond a flip."""
        return (bool((self.angles_deg != 0).any())
                or (self.zoom is not None and bool((self.zoom != 1).any()))
                or (self.shift is not None and bool((self.shift != 0).any())))

    def zooms(self) -> torch.Tensor:
        return torch.ones_like(self.angles_deg) if self.zoom is None else self.zoom

    def shifts(self) -> torch.Tensor:
        return torch.zeros(len(self.angles_deg), 2) if self.shift is None else self.shift

    def shrunk(self, h: int, w: int) -> list[tuple[int, int, int]]:
        """(image, height, width) a picture of h x w is shrunk to before it is brought back."""
        if self.lowres is None:
            return []
        return [(i, max(1, round(h * f)), max(1, round(w * f)))
                for i, f in enumerate(self.lowres.double().tolist()) if f < 1]

    def erased(self, h: int, w: int) -> list[tuple[int, int, int, int, int]]:
        """(image, y0, y1, x0, x1) pixel rectangles to set to 0 after normalisation."""
        if self.erase is None:
            return []
        rows = []
        for i, (top, left, eh, ew) in enumerate(self.erase.double().tolist()):
            y0, x0 = round(top * h), round(left * w)
            y1, x1 = min(h, y0 + round(eh * h)), min(w, x0 + round(ew * w))
            if y1 > y0 and x1 > x0:
                rows.append((i, y0, y1, x0, x1))
        return rows


def sample_params(n: int, aug: AugmentConfig, generator: torch.Generator | None = None
                  ) -> AugmentParams:
    """Draw per-image parameters from the same ranges torchvision's transforms use."""
    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    r, b, c = aug.rotation_deg, aug.brightness, aug.contrast
    p = AugmentParams(
        angles_deg=uniform(-r, r) if r > 0 else torch.zeros(n),
        brightness=uniform(max(0.0, 1 - b), 1 + b) if b > 0 else torch.ones(n),
        contrast=uniform(max(0.0, 1 - c), 1 + c) if c > 0 else torch.ones(n),
        flip=(torch.rand(n, generator=generator) < 0.5) if aug.hflip
        else torch.zeros(n, dtype=torch.bool),
    )
    # Drawn after the study's four, so runs without the jitter draw what they always drew.
    if aug.scale > 0:
        p.zoom = uniform(1 - aug.scale, 1 + aug.scale)
    if aug.shift > 0:
        p.shift = torch.stack([uniform(-aug.shift, aug.shift), uniform(-aug.shift, aug.shift)], 1)
    if aug.erase > 0:  # torchvision's RandomErasing ranges, the rectangle clipped to the picture
        hit = torch.rand(n, generator=generator) < aug.erase
        area = uniform(*ERASE_AREA)
        aspect = torch.exp(uniform(math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1])))
        eh = torch.sqrt(area * aspect).clamp(max=1.0) * hit
        ew = torch.sqrt(area / aspect).clamp(max=1.0) * hit
        p.erase = torch.stack([uniform(0, 1) * (1 - eh), uniform(0, 1) * (1 - ew), eh, ew], 1)
    if aug.lowres > 0:  # drawn after erasing, so runs without it draw what they always drew
        hit = torch.rand(n, generator=generator) < aug.lowres
        p.lowres = torch.where(hit, uniform(*LOWRES_SIDE), torch.ones(n))
    return p


def area_matrix(n_in: int, n_out: int, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> torch.Tensor:
    """(n_out, n_in) weights of shrinking n_in pixels to n_out by area averaging, as OpenCV's
    INTER_AREA: each output pixel averages the input pixels under its footprint, the ones at its
    edges by the share of them it covers."""
    step = n_in / n_out
    edges = torch.arange(n_out + 1, dtype=torch.float64) * step
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = torch.arange(n_in, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(hi, pix + 1) - torch.maximum(lo, pix)).clamp(min=0)
    return (overlap / step).to(dtype=dtype, device=device)


def _lose_detail(x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    """The tensor kernel's step 0: each picture `p.lowres` picks, shrunk (area averaging) and
    brought back (bilinear, half-pixel centres, as cv2.INTER_LINEAR)."""
    _, _, h, w = x.shape
    shrunk = p.shrunk(h, w)
    if not shrunk:
        return x
    x = x.clone()
    for i, sh, sw in shrunk:
        a_h = area_matrix(h, sh, x.dtype, x.device)
        a_w = area_matrix(w, sw, x.dtype, x.device)
        small = torch.einsum("yh,chw,xw->cyx", a_h, x[i], a_w)
        x[i] = F.interpolate(small[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    return x


def _rotation_grid(p: AugmentParams, shape: tuple[int, ...], device: torch.device,
                   dtype: torch.dtype) -> torch.Tensor:
    """Sampling grid (for grid_sample, zero padding) of rotate-zoom-shift, then flip.

    Counter-clockwise rotation about the centre like torchvision's `rotate`; a horizontal flip
    after it is the same grid with the output x coordinate negated, so it costs nothing. As
    torchvision's `affine`: a zoom z grows the content z times about the centre, and a shift
    (dx, dy) of the side then moves it by dx * w, dy * h pixels (before the flip).
    """
    n, _, h, w = shape
    a = torch.deg2rad(p.angles_deg.to(device=device, dtype=dtype)).view(n, 1, 1)
    z = p.zooms().to(device=device, dtype=dtype).view(n, 1, 1)
    cos, sin = torch.cos(a) / z, torch.sin(a) / z
    sx = 1.0 - 2.0 * p.flip.to(device=device, dtype=dtype).view(n, 1, 1)  # -1 mirrors the output
    shift = p.shifts().to(device=device, dtype=dtype) * 2  # fraction of the side -> [-1, 1] units
    # Pixel centres in normalised coordinates (align_corners=False), as F.affine_grid makes them;
    # built by broadcasting because F.affine_grid's batched matmul is slow on a busy CPU.
    u = ((torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1).view(1, 1, w) * sx
    v = ((torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1).view(1, h, 1)
    u = u - shift[:, 0].view(n, 1, 1)
    v = v - shift[:, 1].view(n, 1, 1)
    gx = cos * u - sin * (h / w) * v
    gy = sin * (w / h) * u + cos * v
    return torch.stack([gx, gy], dim=-1)


def _augment_normalize(x: torch.Tensor, p: AugmentParams | None, unit: float,
                       mean, std) -> torch.Tensor:
    """Core of the batched path: pixel value = x * unit (unit 1/255 for raw uint8 values).

    Fused to few passes over memory (2 CPU cores): the 1/255 scale rides on the brightness
    gain, the flip on the rotation grid, and normalisation on the last in-place ops.
    """
    n, dev, dt = x.shape[0], x.device, x.dtype
    if min(float(v) for v in std) <= 0:  # checked on the host: no device sync per batch
        raise ValueError(f"normalisation std must be positive, got {tuple(std)}")
    m = torch.as_tensor(mean, dtype=dt, device=dev).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=dt, device=dev).view(1, -1, 1, 1)
    if p is None:
        return x.mul(unit / s).sub_(m / s)
    gain = p.brightness.to(dev, dt).view(n, 1, 1, 1) * unit
    x = _lose_detail(x, p)
    if p.warps:
        grid = _rotation_grid(p, tuple(x.shape), dev, dt)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = x.mul_(gain)
    else:
        x = x.mul(gain)
        if bool(p.flip.any()):  # parameters live on the host
            x = torch.where(p.flip.to(dev).view(n, 1, 1, 1), x.flip(-1), x)
    x = x.clamp_(0.0, 1.0)
    con = p.contrast.to(dev, dt).view(n, 1, 1, 1)
    gray = torch.as_tensor(_GRAY_WEIGHTS, dtype=dt, device=dev)
    gray_mean = (x.mean(dim=(2, 3)) @ gray).view(n, 1, 1, 1)
    x = x.mul_(con).add_((1 - con) * gray_mean).clamp_(0.0, 1.0)
    x = x.sub_(m).div_(s)
    for i, y0, y1, x0, x1 in p.erased(x.shape[2], x.shape[3]):
        x[i, :, y0:y1, x0:x1] = 0
    return x


def apply_augment(x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    """Apply drawn parameters to a float NCHW batch in [0, 1] (rotation with any zoom and shift,
    brightness, contrast, flip; an erased rectangle is black here, the mean colour once the
    training path normalises)."""
    return _augment_normalize(x.clone(), p, 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def _check_uint8_batch(x: torch.Tensor) -> None:
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a uint8 Nx3xHxW batch, got {x.dtype} {tuple(x.shape)}")


def augment_normalize_batch(x_uint8: torch.Tensor, aug: AugmentConfig | None,
                            generator: torch.Generator | None = None, mean=IMAGENET_MEAN,
                            std=IMAGENET_STD) -> torch.Tensor:
    """`normalize_batch(augment_batch(x))` in one fused pass (tensor kernel, on x's device)."""
    _check_uint8_batch(x_uint8)
    p = sample_params(x_uint8.shape[0], aug, generator) if aug is not None and aug.active else None
    return _augment_normalize(x_uint8.float(), p, 1.0 / 255.0, mean, std)


def augment_batch(x_uint8: torch.Tensor, aug: AugmentConfig | None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 NCHW batch -> float batch in [0, 1], augmented with one parameter draw per image.

    `generator` is a CPU generator (parameters are drawn on the CPU and moved to the batch's
    device, so a GPU batch augments on the GPU with a reproducible draw).
    """
    return augment_normalize_batch(x_uint8, aug, generator, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def normalize_batch(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """(x - mean) / std per channel, for a float NCHW batch in [0, 1]."""
    return _augment_normalize(x, None, 1.0, mean, std)


def model_input(rgb: np.ndarray, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD
                ) -> tuple[torch.Tensor, np.ndarray]:
    """A model's view of one RGB uint8 image, exactly as the training cache prepared it:
    (normalised 1x3xSxS float tensor, the resized uint8 picture)."""
    view = resize_square(np.ascontiguousarray(rgb, dtype=np.uint8), int(size))
    x = torch.from_numpy(view).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
    return normalize_batch(x, mean, std).contiguous(), view


@dataclass(frozen=True)
class Preprocess:
    """How a run's model sees a picture: its input side and normalisation (from its manifest)."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def of(cls, manifest: dict[str, Any]) -> Preprocess:
        return cls(int(manifest["image_size"]), tuple(manifest["mean"]), tuple(manifest["std"]))

    def __call__(self, rgb: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """(normalised 1x3xSxS tensor, the resized uint8 picture), as `model_input`."""
        return model_input(rgb, self.size, self.mean, self.std)


def _cv2_rotation_matrix(angle_deg: float, flip: bool, h: int, w: int, zoom: float = 1.0,
                        shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Inverse map (output pixel -> input pixel) of rotate-zoom-shift-then-flip, as
    `_rotation_grid`."""
    a = np.deg2rad(angle_deg)
    cos, sin, sx = np.cos(a) / zoom, np.sin(a) / zoom, (-1.0 if flip else 1.0)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0  # pixel-centre convention of align_corners=False
    tx, ty = shift[0] * w, shift[1] * h  # moves the content in the (unflipped) output
    return np.array([[cos * sx, -sin, cx - cos * sx * cx + sin * cy - cos * tx + sin * ty],
                     [sin * sx, cos, cy - sin * sx * cx - cos * cy - sin * tx - cos * ty]],
                    dtype=np.float64)


def augment_normalize_hwc(images: np.ndarray, p: AugmentParams | None, mean=IMAGENET_MEAN,
                          std=IMAGENET_STD) -> np.ndarray:
    """CPU kernel of the cache path: uint8 NHWC -> normalised float32 NHWC, one pass per image.

    Same parameters and formulas as `_augment_normalize`, arranged for 2 CPU cores: the
    rotation (with the flip folded into its matrix) is cv2.warpAffine on uint8 (bilinear, black
    fill), and brightness, contrast and normalisation are exact float formulas of the pixel
    value, so they become one 256-entry float lookup table per image and channel (cv2.LUT); the
    contrast mean comes from the rotated image's histogram. The only difference from the float
    kernel is that the rotated image is rounded to uint8 once (OpenCV interpolates with 1/32-px
    fixed-point weights): about half a grey level on average; a picture that loses detail first
    (`lowres`) is rounded twice more, shrunk and brought back.
    """
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"expected uint8 NxHxWx3 images, got {images.dtype} {images.shape}")
    n, h, w, _ = images.shape
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(std, dtype=np.float64)
    levels = np.arange(256, dtype=np.float64) / 255.0
    out = np.empty((n, h, w, 3), dtype=np.float32)
    if p is None:
        lut = ((levels[:, None] - m) / s).astype(np.float32).reshape(1, 256, 3)
        cv2.LUT(images.reshape(n * h, w, 3), lut, dst=out.reshape(n * h, w, 3))
        return out
    angles, flips = p.angles_deg.double().numpy(), p.flip.numpy()
    zooms, shifts = p.zooms().double().numpy(), p.shifts().double().numpy()
    rotated: list[np.ndarray] = [images[i] for i in range(n)]
    hists = np.empty((n, 3, 256))

    shrunk = {i: (sh, sw) for i, sh, sw in p.shrunk(h, w)}

    def geometry(i: int) -> None:
        img = images[i]
        if i in shrunk:
            sh, sw = shrunk[i]
            small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
            img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if angles[i] != 0 or zooms[i] != 1 or shifts[i].any():
            matrix = _cv2_rotation_matrix(angles[i], flips[i], h, w, zooms[i], tuple(shifts[i]))
            img = cv2.warpAffine(img, matrix, (w, h),
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        elif flips[i]:
            img = cv2.flip(img, 1)
        rotated[i] = np.ascontiguousarray(img)
        for c in range(3):
            hists[i, c] = cv2.calcHist([img], [c], None, [256], [0, 256])[:, 0]

    _for_each(geometry, n)
    # Per image: value of each grey level after brightness (clamped), the grey mean of that
    # image (torchvision's contrast reference), then contrast and normalisation: (n, 256, 3).
    bright = p.brightness.double().numpy()[:, None]
    con = p.contrast.double().numpy()[:, None]
    after_b = np.minimum(levels[None, :] * bright, 1.0)
    gray_mean = np.einsum("c,ncl,nl->n", np.asarray(_GRAY_WEIGHTS), hists, after_b)[:, None] / (h * w)
    after_c = np.clip(con * after_b + (1 - con) * gray_mean, 0.0, 1.0)
    luts = ((after_c[:, :, None] - m) / s).astype(np.float32)
    _for_each(lambda i: cv2.LUT(rotated[i], luts[i].reshape(1, 256, 3), dst=out[i]), n)
    for i, y0, y1, x0, x1 in p.erased(h, w):
        out[i, y0:y1, x0:x1] = 0
    return out


_POOL: ThreadPoolExecutor | None = None


def _for_each(fn: Callable[[int], Any], n: int) -> None:
    """fn(i) for i < n, split over torch's intra-op thread count (OpenCV releases the GIL)."""
    global _POOL
    k = min(torch.get_num_threads(), n)
    if k <= 1:
        for i in range(n):
            fn(i)
        return
    if _POOL is None or _POOL._max_workers < k:
        _POOL = ThreadPoolExecutor(max(k, 2), thread_name_prefix="augment")
    chunks = np.array_split(np.arange(n), k)
    for f in [_POOL.submit(lambda idx: [fn(int(i)) for i in idx], c) for c in chunks]:
        f.result()


def augment_normalize(images: np.ndarray, aug: AugmentConfig | None,
                      generator: torch.Generator | None = None, mean=IMAGENET_MEAN,
                      std=IMAGENET_STD, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 NHWC images -> augmented, normalised float NCHW tensor (the cache loader's step).

    One parameter draw per image from `generator` (CPU), then the CPU kernel
    (`augment_normalize_hwc`) or, for another device, the tensor kernel on that device; both
    kernels give the same result up to uint8 rounding. The CPU result is an NCHW view of NHWC
    memory (torch.channels_last), which convolutions take without a copy.
    """
    p = sample_params(len(images), aug, generator) if aug is not None and aug.active else None
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cpu":
        return torch.from_numpy(augment_normalize_hwc(images, p, mean, std)).permute(0, 3, 1, 2)
    x = torch.from_numpy(np.ascontiguousarray(images)).to(dev, non_blocking=True)
    return _augment_normalize(x.permute(0, 3, 1, 2).float(), p, 1.0 / 255.0, mean, std)


def denormalize(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Inverse of `normalize_batch` (for showing what the model saw)."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return x * s + m
