"""An independent numpy forward pass of face-api.js's expression network, and a TF.js weights
manifest written from random tensors, to test `converters.read_faceapi_expression` without the
real 0.33 MiB file. The numpy graph follows face-api.js's TypeScript (FaceFeatureExtractor,
denseBlock4, FaceExpressionNet) in NHWC with TF's own layouts, so it shares no code with the
PyTorch port."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WIDTHS = (32, 64, 128, 256)
MEAN_RGB = np.array([122.782, 117.001, 104.298])


def _shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    c_in = 3
    for i, c in enumerate(WIDTHS):
        for j in range(4):
            name = f"dense{i}/conv{j}"
            if i == j == 0:
                shapes[f"{name}/filters"] = (3, 3, 3, c)
            else:
                cin = c_in if j == 0 else c
                shapes[f"{name}/depthwise_filter"] = (3, 3, cin, 1)
                shapes[f"{name}/pointwise_filter"] = (1, 1, cin, c)
            shapes[f"{name}/bias"] = (c,)
        c_in = c
    shapes["fc/weights"] = (WIDTHS[-1], 7)
    shapes["fc/bias"] = (7,)
    return shapes


def make_faceapi_manifest(folder: Path, seed: int = 0, *, drop: str | None = None,
                          extra_bytes: int = 0, short_bytes: int = 0) -> tuple[Path, dict[str, np.ndarray]]:
    """Write `face_expression_model-weights_manifest.json` + one shard with random tensors:
    filters uint8-quantised as face-api.js ships them, biases float32. Returns (manifest path,
    the dequantised tensors the file holds)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    entries, chunks, values = [], [], {}
    for name, shape in _shapes().items():
        if name == drop:
            continue
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        a = rng.normal(0, 1.5 / np.sqrt(fan_in), size=shape).astype(np.float32)
        if name.endswith("bias"):
            entries.append({"name": name, "shape": list(shape), "dtype": "float32"})
            chunks.append(a.tobytes())
            values[name] = a
        else:  # TF.js uint8 affine quantisation: value = q * scale + min
            lo, hi = float(a.min()), float(a.max())
            scale = (hi - lo) / 255
            q = np.clip(np.round((a - lo) / scale), 0, 255).astype(np.uint8)
            entries.append({"name": name, "shape": list(shape), "dtype": "float32",
                            "quantization": {"dtype": "uint8", "scale": scale, "min": lo}})
            chunks.append(q.tobytes())
            values[name] = q.astype(np.float32) * np.float32(scale) + np.float32(lo)
    data = b"".join(chunks) + b"\0" * extra_bytes
    data = data[:len(data) - short_bytes]
    (folder / "face_expression_model.bin").write_bytes(data)
    manifest = folder / "face_expression_model-weights_manifest.json"
    manifest.write_text(json.dumps([{"paths": ["face_expression_model.bin"], "weights": entries}]))
    return manifest, values


def _same_pad(x: np.ndarray, stride: int) -> np.ndarray:
    """TF 'same' padding of NHWC `x` for a 3x3 kernel: the odd pixel goes after."""
    pads = []
    for side in x.shape[1:3]:
        out = -(-side // stride)
        total = max((out - 1) * stride + 3 - side, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _windows(x: np.ndarray, stride: int) -> np.ndarray:
    """(N, H', W', C, 3, 3) 3x3 windows of the padded input at `stride`."""
    w = np.lib.stride_tricks.sliding_window_view(_same_pad(x, stride), (3, 3), axis=(1, 2))
    return w[:, ::stride, ::stride]


def _conv(x, filters, bias, stride):  # filters (3, 3, in, out)
    return np.einsum("nhwcij,ijco->nhwo", _windows(x, stride), filters) + bias


def _sep(x, dw, pw, bias, stride):  # dw (3, 3, C, 1), pw (1, 1, C, out)
    depth = np.einsum("nhwcij,ijc->nhwc", _windows(x, stride), dw[..., 0])
    return depth @ pw[0, 0] + bias


def np_forward(w: dict[str, np.ndarray], rgb_uint8: np.ndarray) -> np.ndarray:
    """face-api.js's 7 expression logits for NHWC uint8 RGB images (float64)."""
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    x = (rgb_uint8.astype(np.float64) - MEAN_RGB) / 255
    for i in range(len(WIDTHS)):
        p = f"dense{i}"
        if i == 0:
            o1 = relu(_conv(x, w[f"{p}/conv0/filters"], w[f"{p}/conv0/bias"], 2))
        else:
            o1 = relu(_sep(x, w[f"{p}/conv0/depthwise_filter"], w[f"{p}/conv0/pointwise_filter"],
                           w[f"{p}/conv0/bias"], 2))
        def sep1(a, j, p=p):
            return _sep(a, w[f"{p}/conv{j}/depthwise_filter"], w[f"{p}/conv{j}/pointwise_filter"],
                        w[f"{p}/conv{j}/bias"], 1)
        o2 = sep1(o1, 1)
        o3 = sep1(relu(o1 + o2), 2)
        o4 = sep1(relu(o1 + o2 + o3), 3)
        x = relu(o1 + o2 + o3 + o4)
    return x.mean(axis=(1, 2)) @ w["fc/weights"] + w["fc/bias"]
