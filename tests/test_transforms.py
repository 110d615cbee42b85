"""Augmentations: the per-sample (torchvision v2) and batched kernels agree, and behave."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from emotion_core.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LOWRES_SIDE,
    AugmentConfig,
    AugmentParams,
    apply_augment,
    augment_batch,
    augment_normalize,
    augment_normalize_hwc,
    denormalize,
    normalize_batch,
    resize_square,
    sample_params,
)
from scripts.bench.torchvision_pipeline import eval_transform, train_transform

STD_LEVEL = 255 * np.asarray(IMAGENET_STD)  # one normalised unit in grey levels, per channel


def smooth_images(n: int, h: int = 24, w: int = 24, seed: int = 0) -> np.ndarray:
    """Random but smooth uint8 NHWC pictures (sharp noise would magnify sub-pixel differences)."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (n * h, w * 3)).astype(np.uint8)
    return cv2.GaussianBlur(raw, (5, 5), 1.5).reshape(n, h, w, 3)


def fixed_params(n: int) -> AugmentParams:
    return AugmentParams(angles_deg=torch.tensor([7.5, -9.0, 0.0, 3.0])[:n],
                         brightness=torch.tensor([0.85, 1.1, 1.0, 1.2])[:n],
                         contrast=torch.tensor([1.15, 0.9, 1.0, 0.8])[:n],
                         flip=torch.tensor([True, False, True, False])[:n])


def jittered_params(n: int) -> AugmentParams:
    p = fixed_params(n)
    p.zoom = torch.tensor([0.9, 1.12, 1.0, 1.05])[:n]
    p.shift = torch.tensor([[0.05, -0.08], [0.0, 0.06], [-0.07, 0.0], [0.02, 0.03]])[:n]
    return p


def test_config_rejects_negative_ranges():
    with pytest.raises(ValueError, match="rotation_deg"):
        AugmentConfig(rotation_deg=-1)
    assert not AugmentConfig(enabled=False).active
    assert not AugmentConfig(rotation_deg=0, brightness=0, contrast=0, hflip=False).active


def test_resize_square_takes_the_centre_and_validates():
    img = np.zeros((10, 30, 3), np.uint8)
    img[:, 10:20] = 200  # the centre square of a wide picture
    out = resize_square(img, 10)
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8 and (out == 200).all()
    assert out.flags.writeable
    tall = np.zeros((40, 20, 3), np.uint8)
    tall[10:30] = 90
    assert (resize_square(tall, 5) == 90).all()
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        resize_square(np.zeros((5, 5), np.uint8), 4)
    with pytest.raises(ValueError, match="positive"):
        resize_square(img, 0)


def torchvision_sample(y: torch.Tensor, p: AugmentParams, i: int) -> torch.Tensor:
    """Image i of a batch augmented by torchvision's functional ops: `rotate` (counter-clockwise)
    for the study's rotation, `affine` (its angle counts clockwise, translate in pixels, scale)
    once there is a zoom or shift, then brightness, contrast and the flip."""
    if p.zoom is not None or p.shift is not None:
        h, w = y.shape[-2:]
        dx, dy = (float(v) for v in p.shifts()[i] * torch.tensor([w, h]))
        y = TF.affine(y, angle=-float(p.angles_deg[i]), translate=[dx, dy],
                      scale=float(p.zooms()[i]), shear=[0.0, 0.0],
                      interpolation=TF.InterpolationMode.BILINEAR)
    elif p.angles_deg[i] != 0:
        y = TF.rotate(y, float(p.angles_deg[i]), interpolation=TF.InterpolationMode.BILINEAR,
                      fill=None)
    y = TF.adjust_contrast(TF.adjust_brightness(y, float(p.brightness[i])), float(p.contrast[i]))
    return TF.horizontal_flip(y) if p.flip[i] else y


@pytest.mark.parametrize("params", ["study", "with zoom and shift"])
def test_tensor_kernel_matches_torchvision_per_sample(params: str):
    """Same parameters -> the batched tensor kernel equals torchvision's functional ops."""
    x = torch.from_numpy(smooth_images(4, 20, 26)).permute(0, 3, 1, 2).float() / 255
    p = fixed_params(4) if params == "study" else jittered_params(4)
    out = apply_augment(x, p)
    for i in range(4):
        torch.testing.assert_close(out[i], torchvision_sample(x[i], p, i),
                                   atol=1e-5 if params == "study" else 1e-4, rtol=0)


@pytest.mark.parametrize("params", ["study", "with zoom and shift"])
def test_cpu_kernel_matches_tensor_kernel_within_rounding(params: str):
    imgs = smooth_images(4, 24, 24, seed=1)
    p = fixed_params(4) if params == "study" else jittered_params(4)
    cpu = augment_normalize_hwc(imgs, p)
    ref = normalize_batch(apply_augment(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255, p))
    diff = np.abs(cpu - ref.permute(0, 2, 3, 1).numpy()) * STD_LEVEL  # in grey levels
    assert diff.mean() < 0.6 and diff.max() < 6.0
    flat = fixed_params(4)
    flat.angles_deg = torch.zeros(4)  # no resampling: only float rounding is left
    cpu0 = augment_normalize_hwc(imgs, flat)
    ref0 = normalize_batch(apply_augment(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255, flat))
    np.testing.assert_allclose(cpu0, ref0.permute(0, 2, 3, 1).numpy(), atol=1e-5)


def test_shift_moves_the_content_and_zoom_grows_it():
    """A bright square in a black picture: a shift of +25% moves it a quarter of the side right
    and down; a zoom of 1.5 makes it 1.5 times as wide, about the centre."""
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[0, 12:20, 12:20] = 255
    plain = AugmentParams(angles_deg=torch.zeros(1), brightness=torch.ones(1),
                          contrast=torch.ones(1), flip=torch.zeros(1, dtype=torch.bool))

    def bright_cols_rows(p: AugmentParams) -> tuple[np.ndarray, np.ndarray]:
        out = augment_normalize_hwc(img, p, (0, 0, 0), (1, 1, 1))[0, :, :, 0]
        return np.flatnonzero(out.max(0) > 0.5), np.flatnonzero(out.max(1) > 0.5)

    cols, rows = bright_cols_rows(plain)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (12, 19, 12, 19)
    plain.shift = torch.tensor([[0.25, 0.25]])
    cols, rows = bright_cols_rows(plain)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (20, 27, 20, 27)
    plain.shift, plain.zoom = None, torch.tensor([1.5])
    cols, rows = bright_cols_rows(plain)
    assert cols.max() - cols.min() + 1 == 12 and abs((cols.min() + cols.max()) / 2 - 15.5) < 0.6


def test_geometric_jitter_is_drawn_after_the_study_augmentations():
    """Runs without the jitter draw exactly what they drew before it existed; with it the zoom
    and shifts stay in range."""
    base = AugmentConfig(rotation_deg=12, brightness=0.3, contrast=0.1)
    jit = AugmentConfig(rotation_deg=12, brightness=0.3, contrast=0.1, scale=0.1, shift=0.08)
    a = sample_params(4000, base, torch.Generator().manual_seed(0))
    b = sample_params(4000, jit, torch.Generator().manual_seed(0))
    for name in ("angles_deg", "brightness", "contrast", "flip"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=0, rtol=0)
    assert a.zoom is None and a.shift is None and not sample_params(4, AugmentConfig(
        rotation_deg=0), torch.Generator().manual_seed(0)).warps
    assert 0.9 <= b.zoom.min() < 0.91 and 1.09 < b.zoom.max() <= 1.1
    assert b.shift.shape == (4000, 2) and 0.079 < b.shift.abs().max() <= 0.08
    assert AugmentConfig(rotation_deg=0, brightness=0, contrast=0, hflip=False, shift=0.1).active
    with pytest.raises(ValueError, match="scale"):
        AugmentConfig(scale=1.0)
    with pytest.raises(ValueError, match="shift"):
        AugmentConfig(shift=-0.1)
    with pytest.raises(ValueError, match="shift must be at most 0.5"):  # half the side out
        AugmentConfig(shift=0.6)
    assert AugmentConfig(shift=0.5).shift == 0.5


def test_erasing_is_drawn_last_within_torchvision_ranges():
    """Runs without erasing draw what they drew before; with it about `erase` of the pictures
    get one rectangle of 2-33% of the area, aspect 0.3-3.3, inside the picture."""
    base = AugmentConfig(scale=0.1, shift=0.05)
    a = sample_params(4000, base, torch.Generator().manual_seed(0))
    b = sample_params(4000, AugmentConfig(scale=0.1, shift=0.05, erase=0.25),
                      torch.Generator().manual_seed(0))
    for name in ("angles_deg", "brightness", "contrast", "flip", "zoom", "shift"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=0, rtol=0)
    assert a.erase is None and a.erased(10, 10) == []
    top, left, eh, ew = b.erase.double().unbind(1)
    hit = (eh > 0) & (ew > 0)
    assert 0.22 < float(hit.double().mean()) < 0.28
    area, aspect = (eh * ew)[hit], (eh / ew)[hit]
    unclipped = (eh < 1) & (ew < 1)
    assert float(area.max()) <= 0.33 + 1e-9 and float((eh * ew)[hit & unclipped].min()) >= 0.02 - 1e-9
    assert 0.3 - 1e-6 <= float(aspect[unclipped[hit]].min()) and float(aspect.max()) <= 3.3 + 1e-6
    assert float((top + eh).max()) <= 1 + 1e-9 and float((left + ew).max()) <= 1 + 1e-9
    assert float(top.min()) >= 0 and float(left.min()) >= 0
    with pytest.raises(ValueError, match="erase"):
        AugmentConfig(erase=1.5)
    with pytest.raises(ValueError, match="erase"):
        AugmentConfig(erase=-0.1)
    assert AugmentConfig(rotation_deg=0, brightness=0, contrast=0, hflip=False, erase=0.1).active


def test_loss_of_detail_is_drawn_last_for_about_its_share_of_the_pictures():
    base = AugmentConfig(scale=0.1, shift=0.05, erase=0.25)
    a = sample_params(4000, base, torch.Generator().manual_seed(0))
    b = sample_params(4000, AugmentConfig(scale=0.1, shift=0.05, erase=0.25, lowres=0.3),
                      torch.Generator().manual_seed(0))
    for name in ("angles_deg", "brightness", "contrast", "flip", "zoom", "shift", "erase"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=0, rtol=0)
    assert a.lowres is None and a.shrunk(128, 128) == []
    hit = b.lowres < 1
    assert 0.27 < float(hit.double().mean()) < 0.33
    assert LOWRES_SIDE[0] <= float(b.lowres[hit].min()) and float(b.lowres[hit].max()) <= LOWRES_SIDE[1]
    assert len(b.shrunk(128, 128)) == int(hit.sum())
    with pytest.raises(ValueError, match="lowres is a probability"):
        AugmentConfig(lowres=1.5)
    assert AugmentConfig(rotation_deg=0, brightness=0, contrast=0, hflip=False, lowres=0.1).active


def test_both_kernels_shrink_a_picture_and_bring_it_back_alike():
    """The shrunk pictures lose their fine detail and keep their size; the CPU kernel (OpenCV on
    uint8) and the tensor kernel (exact area weights, bilinear) agree up to uint8 rounding; a
    picture not drawn is what the same draw without the step gives."""
    fine = (np.indices((32, 32)).sum(0) % 2 * 200 + 20).astype(np.uint8)
    imgs = np.stack([np.repeat(fine[..., None], 3, axis=2)] * 2 + list(smooth_images(2, 32, 32)))
    p = jittered_params(4)
    plain = augment_normalize_hwc(imgs, p)
    p.lowres = torch.tensor([0.25, 1.0, 0.4, 1.0])
    assert p.shrunk(32, 32) == [(0, 8, 8), (2, 13, 13)]
    cpu = augment_normalize_hwc(imgs, p)
    np.testing.assert_array_equal(cpu[[1, 3]], plain[[1, 3]])
    def detail(x):  # neighbouring pixels' difference inside the picture
        return np.abs(np.diff(x[8:24, 8:24], axis=1)).mean()

    assert detail(cpu[0]) < 0.2 * detail(plain[0])  # the one-pixel checkerboard averaged away
    from emotion_core.data import transforms
    tensor = transforms._augment_normalize(torch.from_numpy(imgs).permute(0, 3, 1, 2).float(), p,
                                           1 / 255, IMAGENET_MEAN, IMAGENET_STD)
    tensor = tensor.permute(0, 2, 3, 1).numpy()
    assert tensor.shape == cpu.shape
    assert np.abs(tensor - cpu).mean() * STD_LEVEL.mean() < 0.8


def test_area_weights_are_opencvs_inter_area():
    rng = np.random.default_rng(0)
    img = rng.random((50, 37)).astype(np.float32)
    from emotion_core.data.transforms import area_matrix
    mine = area_matrix(50, 13) @ torch.from_numpy(img) @ area_matrix(37, 11).T
    np.testing.assert_allclose(mine.numpy(), cv2.resize(img, (11, 13), interpolation=cv2.INTER_AREA),
                               atol=1e-6)


def test_both_kernels_erase_the_same_rectangle_to_the_mean_colour():
    """The erased rectangle reads 0 after normalisation (the mean colour) in the CPU and the
    tensor kernel; every other pixel is what the same draw without erasing gives."""
    imgs = smooth_images(4, 20, 20, seed=3)
    p = jittered_params(4)
    plain_cpu = augment_normalize_hwc(imgs, p)
    p.erase = torch.tensor([[0.1, 0.2, 0.5, 0.25], [0.0, 0.0, 0.0, 0.0],
                            [0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 1.0, 0.1]])
    assert p.erased(20, 20) == [(0, 2, 12, 4, 9), (2, 10, 20, 10, 20), (3, 0, 20, 0, 2)]
    cpu = augment_normalize_hwc(imgs, p)
    mask = np.zeros((4, 20, 20), bool)
    for i, y0, y1, x0, x1 in p.erased(20, 20):
        mask[i, y0:y1, x0:x1] = True
    assert np.all(cpu[mask] == 0) and np.all(plain_cpu[mask] != 0)
    np.testing.assert_array_equal(cpu[~mask], plain_cpu[~mask])
    from emotion_core.data import transforms
    tensor = transforms._augment_normalize(torch.from_numpy(imgs).permute(0, 3, 1, 2).float(), p,
                                           1 / 255, IMAGENET_MEAN, IMAGENET_STD)
    tensor = tensor.permute(0, 2, 3, 1).numpy()
    assert np.all(tensor[mask] == 0)
    assert np.abs(tensor[~mask] - cpu[~mask]).mean() * STD_LEVEL.mean() < 0.6


def test_augmentation_off_is_deterministic_and_equals_eval_path():
    imgs = smooth_images(3, 16, 16)
    off = augment_normalize(imgs, AugmentConfig(enabled=False), torch.Generator().manual_seed(1))
    none = augment_normalize(imgs, None)
    torch.testing.assert_close(off, none, atol=0, rtol=0)
    per_sample = torch.stack([eval_transform(16)(im) for im in imgs])
    torch.testing.assert_close(off, per_sample, atol=1e-5, rtol=0)
    assert off.shape == (3, 3, 16, 16) and off.dtype == torch.float32


def test_flip_and_rotation_change_pixels_when_on():
    imgs = smooth_images(32, 16, 16, seed=2)
    plain = augment_normalize(imgs, None)
    flip_only = AugmentConfig(rotation_deg=0, brightness=0, contrast=0, hflip=True)
    out = augment_normalize(imgs, flip_only, torch.Generator().manual_seed(0))
    same = [torch.allclose(out[i], plain[i], atol=1e-6) for i in range(32)]
    mirrored = [torch.allclose(out[i], plain[i].flip(-1), atol=1e-6) for i in range(32)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 4 < sum(mirrored) < 28  # about half, never all or none
    rot_only = AugmentConfig(rotation_deg=15, brightness=0, contrast=0, hflip=False)
    rotated = augment_normalize(imgs, rot_only, torch.Generator().manual_seed(0))
    per_image = (rotated - plain).abs().mean(dim=(1, 2, 3))
    assert (per_image > 1e-3).sum() >= 30


def test_same_seed_same_batch_and_params_within_ranges():
    imgs = smooth_images(8)
    aug = AugmentConfig(rotation_deg=12, brightness=0.3, contrast=0.1)
    a = augment_normalize(imgs, aug, torch.Generator().manual_seed(5))
    b = augment_normalize(imgs, aug, torch.Generator().manual_seed(5))
    c = augment_normalize(imgs, aug, torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a, c)
    p = sample_params(4000, aug, torch.Generator().manual_seed(0))
    assert p.angles_deg.abs().max() <= 12 and p.angles_deg.abs().max() > 11.5
    assert 0.7 <= p.brightness.min() < 0.72 and 1.28 < p.brightness.max() <= 1.3
    assert 0.9 <= p.contrast.min() and p.contrast.max() <= 1.1
    assert 0.45 < p.flip.float().mean() < 0.55


def test_slow_and_batched_paths_draw_the_same_brightness_distribution():
    """Statistical equivalence: on a flat grey picture only brightness changes the mean."""
    grey = np.full((8, 8, 3), 128, np.uint8)
    aug = AugmentConfig(rotation_deg=0, brightness=0.25, contrast=0, hflip=False)
    torch.manual_seed(0)
    slow_tf = train_transform(8, (0, 0, 0), (1, 1, 1), aug)
    slow = np.array([float(slow_tf(grey).mean()) for _ in range(400)])
    fast = augment_normalize(np.repeat(grey[None], 400, 0), aug, torch.Generator().manual_seed(0),
                             (0, 0, 0), (1, 1, 1)).mean(dim=(1, 2, 3)).numpy()
    lo, hi = 0.75 * 128 / 255, 1.25 * 128 / 255
    for values in (slow, fast):
        assert values.min() >= lo - 1e-4 and values.max() <= hi + 1e-4
        assert abs(values.mean() - 128 / 255) < 0.01  # uniform around the original level
        assert values.std() == pytest.approx((hi - lo) / np.sqrt(12), rel=0.15)


def test_augment_batch_contract_and_normalisation_round_trip():
    x = torch.from_numpy(smooth_images(2)).permute(0, 3, 1, 2).contiguous()
    out = augment_batch(x, None)
    torch.testing.assert_close(out, x.float() / 255)
    assert 0 <= float(augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(0)).min())
    norm = normalize_batch(out, IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(denormalize(norm), out, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(x.float(), None)
    with pytest.raises(ValueError, match="std"):
        normalize_batch(out, (0, 0, 0), (1, 0, 1))
