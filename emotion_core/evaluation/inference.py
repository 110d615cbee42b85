"""Running a model on pictures: the one place that turns inputs into class probabilities.

Every registry model's forward returns a logits tensor, so nothing here unwraps outputs; an ONNX
export loaded by `onnx_model.load_predictor` is called the same way. Callers are the training
loop's evaluation, cross-dataset evaluation, the app's live prediction and the explanations
(which need the predicted class).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from emotion_core.data.transforms import Preprocess
from emotion_core.evaluation import calibration

_DEFAULT_THREADS = torch.get_num_threads()  # torch's choice at import (the cores it may use)


def set_threads(n: int) -> int:
    """Give the calling thread `n` torch intra-op threads; returns `n`. Under OpenMP the setting
    is per thread (the app's other threads keep theirs; threads started later inherit it)."""
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def share_cores(busy: bool) -> int:
    """The calling thread's torch threads for interactive inference: one while another job
    (training, or the live webcam's frame worker) holds the cores, else torch's default;
    returns the number set.

    Why: with a training job on both of the 2 cores, face detection plus a MobileNetV2 answer
    took 94 ms median with one thread and 153 ms with two (which wait on each other's busy
    core); idle, 77 ms vs 69 ms (20 interleaved pairs, webfaces3 photo). Beside the live
    webcam's worker, a frozen frame took 134-138 ms median with one thread and 308-673 ms with
    two (`scripts.bench.live --beside 15`, docs/app.md). Each app script run sets it before it
    predicts."""
    return set_threads(1 if busy else _DEFAULT_THREADS)


def device_of(model: nn.Module) -> torch.device:
    """Where a model's inputs go: its parameters' device, or the `device` attribute of a model
    that is not a module (an `onnx_model.OnnxModel`: any callable returning logits qualifies)."""
    if isinstance(model, nn.Module):
        return next(model.parameters()).device
    return torch.device(getattr(model, "device", "cpu"))


def probabilities(model: nn.Module, x: torch.Tensor, *, amp: bool = False,
                  tta_flip: bool = False, temperature: float = 1.0) -> torch.Tensor:
    """Softmax class probabilities (float32, on the model's device) for a normalised batch;
    with `tta_flip`, the mean of the picture's and its mirror image's (a run's `tta_flip`);
    then scaled by the run's calibration `temperature` (`calibration.scale`; 1: unchanged)."""
    return calibration.scale(_probabilities(model, x, amp=amp, tta_flip=tta_flip), temperature)


def _probabilities(model: nn.Module, x: torch.Tensor, *, amp: bool, tta_flip: bool) -> torch.Tensor:
    device = device_of(model)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                 enabled=amp and device.type == "cuda"):
        x = x.to(device, non_blocking=True)
        if tta_flip and x.shape[0] == 1:
            # One picture (Predict, Explain): it and its mirror as one batch of 2, which cost
            # the bundled MobileNetV2 0.72x and the mini-Xception 0.79x of two passes at batch 1
            # (one CPU thread, interleaved). Bigger batches keep two passes: no extra memory.
            pair = torch.softmax(model(torch.cat([x, x.flip(-1)])).float(), dim=1)
            return pair.mean(dim=0, keepdim=True)
        probs = torch.softmax(model(x).float(), dim=1)
        if tta_flip:
            probs = (probs + torch.softmax(model(x.flip(-1)).float(), dim=1)) / 2
    return probs


def run_flips(manifest: dict) -> bool:
    """Whether a run predicts with flip test-time augmentation (recorded at training)."""
    return bool(manifest.get("tta_flip") or (manifest.get("config") or {}).get("tta_flip"))


def run_temperature(manifest: dict) -> float:
    """The temperature a run's answers are scaled by (`scripts.calibrate`; 1 when none)."""
    t = (manifest.get("calibration") or {}).get("temperature", 1.0)
    calibration.check(t)
    return float(t)


def collect_probs(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                  amp: bool = False, channels_last: bool = False, max_batches: int = 0,
                  tta_flip: bool = False, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels over an iterable of (images, labels) batches, in eval mode."""
    model.eval()
    all_p, all_y = [], []
    for i, (x, y) in enumerate(batches):
        if max_batches and i >= max_batches:
            break
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        all_p.append(probabilities(model, x, amp=amp, tta_flip=tta_flip,
                                   temperature=temperature).cpu().numpy())
        all_y.append(y.numpy())
    if not all_p:
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
    return np.concatenate(all_p), np.concatenate(all_y).astype(np.int64)


def predict_images(model: nn.Module, images_rgb: Sequence[np.ndarray], preprocess: Preprocess,
                   batch_size: int = 32, *, tta_flip: bool = False,
                   temperature: float = 1.0) -> np.ndarray:
    """Class probabilities (float64, N x classes) for RGB uint8 pictures, preprocessed exactly
    like the training cache."""
    model.eval()
    out = []
    for i in range(0, len(images_rgb), batch_size):
        xb = torch.cat([preprocess(im)[0] for im in images_rgb[i:i + batch_size]])
        out.append(probabilities(model, xb, tta_flip=tta_flip, temperature=temperature)
                   .cpu().numpy().astype(np.float64))
    n_classes = int(getattr(model, "num_classes", 0) or 0)
    return np.concatenate(out) if out else np.zeros((0, n_classes))
