"""The Grad-CAM family for every registry model, through pytorch-grad-cam in its `with` form.

Per-model knowledge is the registry's (target layer, reshape transform); pytorch-grad-cam is
always used as a context manager so no hook stays on a model the app shares between sessions
(a per-model lock serialises them). Methods: Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM (sharp on
the finer layers of `cam_layers`, Jiang et al. 2021), EigenCAM (thin SVD, oriented sign) and
ScoreCAM. Maps are float [N, H, W] in [0, 1] at the input size.

Plain Grad-CAM is computed here (`grad_cam`), the library's arithmetic step for step, because
importing the library pulls matplotlib, scipy and scikit-learn: about 2.5 s on 2 cores, paid
by the first why-map on Predict while another visitor's first answer waits for the cores.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import cv2
import numpy as np
import torch
from torch import nn

from emotion_core.explain.base import batch_of, explaining, to_heatmap, to_model_device
from emotion_core.explain.cam_layers import resolve_cam_layer
from emotion_core.models import spec_of

CAM_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "eigencam", "scorecam")
SCORECAM_MAX_BATCH = 4  # ScoreCAM runs one forward pass per channel and image: keep batches tiny
SCORECAM_CHUNK = 64  # masked copies per forward pass inside ScoreCAM


def eigen_projection(activations: np.ndarray) -> np.ndarray:
    """EigenCAM's map [N, H, W]: each image's centred activations projected on their first
    principal component, as pytorch-grad-cam's `get_2d_projection`, with its sign fixed.

    Why our own: the library's SVD uses full_matrices=True, which builds an (H*W) x (H*W) matrix
    nobody reads: 10 GB for a 224x224 feature grid (VGG-16's first block at 224 px), enough to
    kill the app's process. The thin SVD has the same first right-singular vector.
    Why the sign: SVD leaves a component's sign arbitrary, and LAPACK builds differ, so the
    library can show the negative of the map, whose positive part (all a CAM keeps) is then the
    background (jacobgil/pytorch-grad-cam#315). Each map is oriented so that its largest-magnitude
    location is positive, as sklearn's svd_flip does.
    """
    batch = np.array(activations, dtype=np.float32)
    batch[np.isnan(batch)] = 0
    out = []
    for act in batch:
        flat = act.reshape(act.shape[0], -1).T
        flat = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(flat, full_matrices=False)
        proj = flat @ vt[0]
        if proj[np.argmax(np.abs(proj))] < 0:
            proj = -proj
        out.append(proj.reshape(act.shape[1:]))
    return np.asarray(out, dtype=np.float32)


@lru_cache(maxsize=1)
def _thin_eigen_cam() -> type:
    from pytorch_grad_cam import EigenCAM

    class ThinEigenCAM(EigenCAM):
        """EigenCAM with `eigen_projection` (bounded memory on fine feature grids)."""

        def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads,
                          eigen_smooth):
            return eigen_projection(activations)

    return ThinEigenCAM


def _scale(cams: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Each map shifted to 0 and divided by its maximum, optionally resized to (width, height):
    pytorch-grad-cam's `scale_cam_image` for 2-D maps."""
    out = []
    for img in cams:
        img = img - np.min(img)
        img = img / (1e-7 + np.max(img))
        out.append(cv2.resize(np.float32(img), size) if size is not None else img)
    return np.float32(out)


def grad_cam(model: nn.Module, inp: torch.Tensor, layers: Sequence[nn.Module],
             reshape: Callable[[torch.Tensor], torch.Tensor] | None,
             targets: Sequence[int] | None) -> np.ndarray:
    """Grad-CAM maps [N, H, W] as pytorch-grad-cam's GradCAM computes them: activations and
    their gradients hooked at `layers` (through `reshape` for token models), channel weights the
    mean gradient, the ReLU of the weighted sum, each layer's map scaled and resized to the
    input, then their mean scaled again. `targets`: one class id per image, None = predicted."""
    acts: list[torch.Tensor] = []
    grads: list[torch.Tensor] = []

    def keep(_module, _inputs, out):
        acts.append((reshape(out) if reshape else out).detach().cpu())
        if isinstance(out, torch.Tensor) and out.requires_grad:  # backward runs in reverse
            out.register_hook(lambda g: grads.insert(0, (reshape(g) if reshape else g)
                                                     .detach().cpu()))

    handles = [layer.register_forward_hook(keep) for layer in layers]
    try:
        out = model(inp)
        ids = list(targets) if targets is not None else \
            out.detach().cpu().numpy().argmax(-1).tolist()
        model.zero_grad()
        sum(o[t] for o, t in zip(out, ids, strict=True)).backward()
    finally:
        for h in handles:
            h.remove()
    size = (inp.shape[-1], inp.shape[-2])
    per_layer = []
    for a, g in zip(acts, grads, strict=True):
        a, g = a.numpy(), g.numpy()
        weights = np.mean(g, axis=(2, 3))
        cam = np.maximum((weights[:, :, None, None] * a).sum(axis=1), 0)
        per_layer.append(_scale(cam, size)[:, None, :])
    return _scale(np.mean(np.maximum(np.concatenate(per_layer, axis=1), 0), axis=1))


def _cam_class(method: str) -> type:
    """The library's class for a method `compute_cams` has already checked."""
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM

    return {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM,
            "layercam": LayerCAM, "eigencam": _thin_eigen_cam(), "scorecam": ScoreCAM}[method]


def compute_cams(model: nn.Module, x: torch.Tensor, *, method: str = "gradcam",
                 target: int | Sequence[int] | None = None, layer: str | None = None) -> np.ndarray:
    """CAM maps [N, H, W] in [0, 1] for a batch; target = class id(s), None = predicted class.

    `layer`: a module name to target (see cam_layers.cam_layer_choices), None = the registry's.

    Parameters are frozen for the pass (gradients are needed only w.r.t. activations, which also
    makes it faster) and restored after; the input gets requires_grad so activations always
    carry gradients, even for a model whose parameters are frozen.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method '{method}'; choose one of {', '.join(CAM_METHODS)}")
    spec = spec_of(model)
    x = to_model_device(model, batch_of(x))
    if method == "scorecam" and x.shape[0] > SCORECAM_MAX_BATCH:
        raise ValueError(f"scorecam runs one forward pass per channel: use at most "
                         f"{SCORECAM_MAX_BATCH} images per call (got {x.shape[0]})")
    layers = resolve_cam_layer(model, layer)
    ids = None
    if target is not None:
        ids = [int(target)] * x.shape[0] if np.isscalar(target) else [int(t) for t in target]
        if len(ids) != x.shape[0] or min(ids) < 0:
            raise ValueError(f"need one non-negative class id per image ({x.shape[0]}), got {ids}")
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    with explaining(model), torch.inference_mode(False), torch.enable_grad():
        try:
            for p in params:
                p.requires_grad_(False)
            inp = x.detach().clone().requires_grad_(True)
            if method == "gradcam":
                try:
                    grayscale = grad_cam(model, inp, layers, spec.reshape_transform, ids)
                except IndexError as exc:
                    raise RuntimeError(f"{method} failed on '{spec.name}' ({exc}: is the target "
                                       f"class in range?)") from exc
            else:
                grayscale = _library_cam(model, inp, method, layers, spec, ids)
        finally:
            for p, f in zip(params, flags, strict=True):
                p.requires_grad_(f)
    size = tuple(x.shape[-2:])
    return np.stack([to_heatmap(g, size) for g in np.asarray(grayscale)])


def _library_cam(model: nn.Module, inp: torch.Tensor, method: str, layers: list[nn.Module],
                 spec, ids: list[int] | None) -> np.ndarray:
    """The other methods, through pytorch-grad-cam as a context manager (its hooks released)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = None if ids is None else [ClassifierOutputTarget(t) for t in ids]
    grayscale = None
    with _cam_class(method)(model=model, target_layers=layers,
                            reshape_transform=spec.reshape_transform) as cam:
        if method == "scorecam":
            cam.batch_size = SCORECAM_CHUNK
        grayscale = cam(input_tensor=inp, targets=targets)
    if grayscale is None:  # the library's __exit__ swallows IndexError
        raise RuntimeError(f"{method} failed on '{spec.name}' "
                           "(index error inside pytorch-grad-cam: is the target class in range?)")
    return grayscale


def compute_cam(model: nn.Module, x: torch.Tensor, *, method: str = "gradcam",
                target: int | None = None, layer: str | None = None) -> np.ndarray:
    """One image's CAM map, HxW float in [0, 1] at the input size."""
    return compute_cams(model, batch_of(x)[:1], method=method, target=target, layer=layer)[0]
