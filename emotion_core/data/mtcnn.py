"""MTCNN face detector with the P/R/O-Net weights that ship inside the facenet-pytorch wheel.

Why: it finds a face in 573 of webfaces3's 580 photos (Haar: 513), faces down to 14 px in group
photos, at about Haar's cost per photo (docs/data.md, Faces). The wheel (MIT, 1.8 MiB) holds
data/{pnet,rnet,onet}.pt as plain state dicts, read with torch.load(weights_only=True); the
package is located with importlib.util.find_spec and never imported (its metadata pins torch<2.3
and numpy<2, so requirements-weights.txt installs it with --no-deps). Networks and cascade follow
facenet-pytorch 2.6 (largest box vs its own: median IoU 0.97 on webfaces3; resizing here is
OpenCV's INTER_AREA). `detect` works on an image `faces` has already bounded and converted.
"""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DISTRIBUTION, MODULE, VERSION = "facenet-pytorch", "facenet_pytorch", "2.6.0"
PIP_HINT = f"pip install --no-deps {DISTRIBUTION}=={VERSION}"
WEIGHT_FILES = {"pnet": "data/pnet.pt", "rnet": "data/rnet.pt", "onet": "data/onet.pt"}
MIN_SCORE = 0.9  # final O-Net probability kept (facenet-pytorch: 0.7; 0.9 halves false hits)
THRESHOLDS = (0.6, 0.7, 0.7)  # P-, R-, O-Net face probability thresholds (facenet-pytorch's)
FACTOR = 0.709  # image pyramid step
BATCH = 256  # R-/O-Net crops per forward pass (bounded memory with many candidates)

_find_spec = importlib.util.find_spec  # the locator (tests replace it to simulate a missing wheel)


def weights_dir() -> Path:
    """The installed facenet_pytorch folder (found without importing it), or a clear error."""
    spec = _find_spec(MODULE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(locations[0]) if locations else None
    missing = [p for p in WEIGHT_FILES.values() if folder is None or not (folder / p).is_file()]
    if missing:
        raise ModuleNotFoundError(
            f"MTCNN needs the weights shipped in the {DISTRIBUTION} wheel ({', '.join(missing)} "
            f"not found); install it with: {PIP_HINT}")
    return folder


# (name as in facenet-pytorch, in, out, kernel or 0: Linear); pool kernels after conv1..conv3
_SPECS = {
    "pnet": ([("conv1", 3, 10, 3), ("conv2", 10, 16, 3), ("conv3", 16, 32, 3),
              ("conv4_1", 32, 2, 1), ("conv4_2", 32, 4, 1)], (2, 0, 0)),
    "rnet": ([("conv1", 3, 28, 3), ("conv2", 28, 48, 3), ("conv3", 48, 64, 2),
              ("dense4", 576, 128, 0), ("dense5_1", 128, 2, 0), ("dense5_2", 128, 4, 0)],
             (3, 3, 0)),
    "onet": ([("conv1", 3, 32, 3), ("conv2", 32, 64, 3), ("conv3", 64, 64, 3),
              ("conv4", 64, 128, 2), ("dense5", 1152, 256, 0), ("dense6_1", 256, 2, 0),
              ("dense6_2", 256, 4, 0), ("dense6_3", 256, 10, 0)], (3, 3, 2)),
}


class _Net(nn.Module):
    """P-, R- or O-Net: returns (box regression, face probability); O-Net's third head, five
    landmarks, is read by `landmarks`."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        layers, self.pools = _SPECS[kind]
        self.trunk = [n for n, *_ in layers if "_" not in n]
        self.heads = [n for n, *_ in layers if "_" in n][:2]  # probability, regression
        for name, cin, cout, k in layers:
            setattr(self, name, nn.Conv2d(cin, cout, k) if k else nn.Linear(cin, cout))
            if "_" not in name:
                setattr(self, "prelu" + name[-1], nn.PReLU(cout))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The shared trunk's output, which every head reads."""
        for i, name in enumerate(self.trunk):
            if name.startswith("dense") and x.dim() == 4:
                x = x.permute(0, 3, 2, 1).reshape(len(x), -1)  # facenet-pytorch's flatten order
            x = getattr(self, "prelu" + name[-1])(getattr(self, name)(x))
            if i < 3 and self.pools[i]:
                x = F.max_pool2d(x, self.pools[i], 2, ceil_mode=True)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features(x)
        prob, reg = (getattr(self, n)(x) for n in self.heads)
        return reg, F.softmax(prob, dim=1)


_lock = threading.Lock()
_nets: dict[str, nn.Module] = {}


def networks() -> dict[str, nn.Module]:
    """The three networks, loaded once (thread-safe); ModuleNotFoundError without the wheel."""
    with _lock:
        if not _nets:
            folder, loaded = weights_dir(), {}
            for kind, rel in WEIGHT_FILES.items():
                net = _Net(kind)
                net.load_state_dict(torch.load(folder / rel, map_location="cpu", weights_only=True))
                loaded[kind] = net.eval().requires_grad_(False)
            _nets.update(loaded)
        return _nets


def _nms(b: np.ndarray, thr: float, mode: str = "union") -> np.ndarray:
    """Greedy NMS; "union" is IoU as torchvision computes it, "min" adds 1 as MTCNN's own does."""
    x0, y0, x1, y1, s, one = *b[:, :5].T, float(mode == "min")
    area, order, keep = (x1 - x0 + one) * (y1 - y0 + one), np.argsort(-s, kind="stable"), []
    while order.size:
        i, rest = order[0], order[1:]
        inter = (np.maximum(0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + one) *
                 np.maximum(0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + one))
        keep.append(i)
        order = rest[inter / (np.minimum(area[i], area[rest]) if mode == "min" else
                              area[i] + area[rest] - inter) <= thr]
    return np.asarray(keep, dtype=int)


def _square(b: np.ndarray) -> np.ndarray:
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])[:, None]
    xy0 = (b[:, :2] + b[:, 2:4]) / 2 - side / 2
    return np.c_[xy0, xy0 + side, b[:, 4:]]


def _regress(b: np.ndarray, reg: np.ndarray, plus_one: float = 1.0) -> np.ndarray:
    wh = np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]] * 2, 1) + plus_one
    return np.concatenate([b[:, :4] + reg * wh, b[:, 4:5]], axis=1)


def _run(net: nn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = (torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2) - 127.5) * 0.0078125
    outs = [net(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]
    return torch.cat([o[0] for o in outs]).numpy(), torch.cat([o[1] for o in outs])[:, 1].numpy()


@torch.inference_mode()
def detect(rgb: np.ndarray, min_face: float, min_score: float = MIN_SCORE) -> np.ndarray:
    """Boxes (x0, y0, x1, y1, score) of the faces of at least `min_face` (>= 12) pixels in an
    HxWx3 uint8 RGB image, in its pixel coordinates."""
    nets, (h, w), found = networks(), rgb.shape[:2], []
    img, thr = rgb.astype(np.float32), THRESHOLDS
    sc = 12.0 / max(12.0, min_face)
    while min(h, w) * sc >= 12:
        im = cv2.resize(img, (int(w * sc + 1), int(h * sc + 1)), interpolation=cv2.INTER_AREA)
        reg, prob = (a[0] for a in _run(nets["pnet"], im[None]))
        yy, xx = np.nonzero(prob >= thr[0])
        if len(yy):
            q = np.floor(np.stack([2 * xx + 1, 2 * yy + 1, 2 * xx + 12, 2 * yy + 12], 1) / sc)
            b = np.c_[q, prob[yy, xx], reg[:, yy, xx].T]
            found.append(b[_nms(b, 0.5)])
        sc *= FACTOR
    b = np.concatenate(found) if found else np.zeros((0, 9))
    b = b[_nms(b, 0.7)]
    b = _square(_regress(b[:, :5], b[:, 5:9], plus_one=0.0))
    for kind, size, t in (("rnet", 24, thr[1]), ("onet", 48, thr[2])):
        ij = np.trunc(b[:, :4]).astype(int)  # facenet-pytorch's crop: clipped (1-based), stretched
        ij = np.c_[np.maximum(ij[:, :2], 1) - 1, np.minimum(ij[:, 2], w), np.minimum(ij[:, 3], h)]
        ok = (ij[:, 2] > ij[:, 0]) & (ij[:, 3] > ij[:, 1])
        b, ij = b[ok], ij[ok]
        if not len(b):
            return np.zeros((0, 5))
        crops = [cv2.resize(img[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA)
                 for x0, y0, x1, y1 in ij]
        reg, prob = _run(nets[kind], np.stack(crops))
        b, reg = np.c_[b[prob > t, :4], prob[prob > t]], reg[prob > t]
        if kind == "rnet":  # R-Net: NMS, then regression; O-Net: regression, then NMS "min"
            keep = _nms(b, 0.7)
            b = _square(_regress(b[keep], reg[keep]))
        else:
            b = _regress(b, reg)
            b = b[_nms(b, 0.7, "min")]
    return b[b[:, 4] >= min_score]


@torch.inference_mode()
def landmarks(square: np.ndarray) -> np.ndarray:
    """O-Net's five points on a square HxHx3 uint8 RGB face crop (the detector's box), as 5 x 2
    pixel coordinates of the square: the eye on the picture's left, the other eye, the nose
    tip, the mouth's left and right corners. O-Net reads it at 48 px, as in the cascade's last
    stage."""
    im = cv2.resize(square.astype(np.float32), (48, 48), interpolation=cv2.INTER_AREA)
    t = (torch.from_numpy(im)[None].permute(0, 3, 1, 2) - 127.5) * 0.0078125
    onet = networks()["onet"]
    p = onet.dense6_3(onet.features(t))[0].numpy().astype(np.float64)
    return np.stack([p[:5], p[5:]], 1) * len(square)
