"""A TF.js graph model shaped like Human's `faceres` (HSE-FaceRes's folded MobileNet v1), written
from random tensors, and a literal numpy interpreter of such graphs, to test
`converters.read_faceres` without the real 7 MiB file. The interpreter walks the graph's nodes in
NHWC with TF's own layouts and ops, so it shares no code with the PyTorch port."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
          (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def _conv_attr(stride: int) -> dict:
    return {"strides": {"list": {"i": ["1", str(stride), str(stride), "1"]}},
            "padding": {"s": base64.b64encode(b"SAME").decode()}}


def _relu6(nodes: list[dict], name: str, x: str) -> str:
    nodes += [{"name": f"{name}/Relu", "op": "Relu", "input": [x]},
              {"name": f"{name}/clip_by_value/Minimum", "op": "Minimum",
               "input": [f"{name}/Relu", f"{name}/Cast"]},
              {"name": f"{name}/clip_by_value", "op": "Maximum",
               "input": [f"{name}/clip_by_value/Minimum", f"{name}/Const_1"]}]
    return f"{name}/clip_by_value"


def make_faceres_graph(folder: Path, seed: int = 0, *, drop: str | None = None
                       ) -> tuple[Path, dict[str, np.ndarray]]:
    """Write `faceres.json` + `faceres.bin` (float16 tensors, as Human ships them) with random
    weights. Returns (model.json path, the tensors as float32 after the float16 round trip)."""
    rng = np.random.default_rng(seed)
    t: dict[str, np.ndarray] = {}
    nodes: list[dict] = [{"name": "input_1", "op": "Placeholder"}]

    def const(name: str, value: np.ndarray) -> str:
        t[name] = value.astype(np.float16).astype(np.float32)
        return name

    def scalar_consts(name: str) -> None:
        const(f"{name}/Cast", np.array(6.0))
        const(f"{name}/Const_1", np.array(0.0))

    # scales that keep ReLU6 between its bends for 0-255 pixels, so every input shows in the output
    const("conv1/convolution/merged_input", rng.normal(0, 1 / (np.sqrt(27) * 40), (3, 3, 3, 32)))
    const("conv1_bn/batchnorm_1/sub", rng.normal(0, 0.1, 32))
    nodes += [{"name": "conv1_bn/batchnorm_1/mul_1", "op": "Conv2D",
               "input": ["input_1", "conv1/convolution/merged_input"], "attr": _conv_attr(2)},
              {"name": "conv1_bn/batchnorm_1/add_1", "op": "Add",
               "input": ["conv1_bn/batchnorm_1/mul_1", "conv1_bn/batchnorm_1/sub"]}]
    scalar_consts("conv1_relu")
    x = _relu6(nodes, "conv1_relu", "conv1_bn/batchnorm_1/add_1")
    c = 32
    for i, (c_out, stride) in enumerate(BLOCKS, start=1):
        d, p = f"conv_dw_{i}", f"conv_pw_{i}"
        const(f"{d}/depthwise_kernel", rng.normal(0, np.sqrt(2 / 9), (3, 3, c, 1)))
        const(f"{d}_bn/batchnorm_1/mul", rng.uniform(0.5, 1.5, c))
        const(f"{d}_bn/batchnorm_1/sub", rng.normal(0, 0.1, c))
        nodes += [{"name": f"{d}/depthwise", "op": "DepthwiseConv2dNative",
                   "input": [x, f"{d}/depthwise_kernel"], "attr": _conv_attr(stride)},
                  {"name": f"{d}_bn/batchnorm_1/mul_1", "op": "Mul",
                   "input": [f"{d}/depthwise", f"{d}_bn/batchnorm_1/mul"]},
                  {"name": f"{d}_bn/batchnorm_1/add_1", "op": "Add",
                   "input": [f"{d}_bn/batchnorm_1/mul_1", f"{d}_bn/batchnorm_1/sub"]}]
        scalar_consts(f"{d}_relu")
        x = _relu6(nodes, f"{d}_relu", f"{d}_bn/batchnorm_1/add_1")
        const(f"{p}/convolution/merged_input", rng.normal(0, np.sqrt(2 / c), (1, 1, c, c_out)))
        const(f"{p}_bn/batchnorm_1/sub", rng.normal(0, 0.1, c_out))
        nodes += [{"name": f"{p}_bn/batchnorm_1/mul_1", "op": "Conv2D",
                   "input": [x, f"{p}/convolution/merged_input"], "attr": _conv_attr(1)},
                  {"name": f"{p}_bn/batchnorm_1/add_1", "op": "Add",
                   "input": [f"{p}_bn/batchnorm_1/mul_1", f"{p}_bn/batchnorm_1/sub"]}]
        scalar_consts(f"{p}_relu")
        x = _relu6(nodes, f"{p}_relu", f"{p}_bn/batchnorm_1/add_1")
        c = c_out
    nodes.append({"name": "global_pooling/Mean", "op": "Mean", "input": [x, "reduction"]})
    t["reduction"] = np.array([1, 2], np.float32)  # int32 in the real file; read as float here
    if drop:
        del t[drop]
    names = sorted(t)
    data = b"".join(t[n].astype(np.float16).tobytes() for n in names)
    weights = [{"name": n, "shape": list(t[n].shape), "dtype": "float32",
                "quantization": {"dtype": "float16", "original_dtype": "float32"}} for n in names]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "faceres.bin").write_bytes(data)
    model = {"format": "graph-model", "modelTopology": {"node": nodes},
             "weightsManifest": [{"paths": ["faceres.bin"], "weights": weights}]}
    path = folder / "faceres.json"
    path.write_text(json.dumps(model))
    return path, t


def _pad_same(x: np.ndarray, k: int, s: int) -> np.ndarray:
    pads = []
    for size in x.shape[1:3]:
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _conv(x: np.ndarray, kernel: np.ndarray, stride: int, depthwise: bool) -> np.ndarray:
    kh, kw = kernel.shape[:2]
    xp = _pad_same(x, kh, stride)
    h, w = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    out = 0.0
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i:i + stride * (h - 1) + 1:stride, j:j + stride * (w - 1) + 1:stride, :]
            out = out + (patch * kernel[i, j, :, 0] if depthwise
                         else np.einsum("nhwc,co->nhwo", patch, kernel[i, j]))
    return out


def _op(op: str, a: list[np.ndarray], stride: int) -> np.ndarray:
    if op in ("Conv2D", "DepthwiseConv2dNative"):
        return _conv(a[0], a[1], stride, depthwise=op != "Conv2D")
    if op == "Add":
        return a[0] + a[1]
    if op == "Mul":
        return a[0] * a[1]
    if op == "Relu":
        return np.maximum(a[0], 0)
    if op == "Minimum":
        return np.minimum(a[0], a[1])
    if op == "Maximum":
        return np.maximum(a[0], a[1])
    if op == "Mean":
        return a[0].mean(axis=tuple(int(i) for i in a[1]))
    raise NotImplementedError(op)


def run_graph(model_json: Path, tensors: dict[str, np.ndarray], x_nhwc: np.ndarray,
              output: str) -> np.ndarray:
    """Evaluate the graph's nodes in order (they are topologically sorted) on `x_nhwc`."""
    graph = json.loads(Path(model_json).read_text())["modelTopology"]["node"]
    v: dict[str, np.ndarray] = {**tensors, "input_1": x_nhwc.astype(np.float64)}
    for n in graph:
        if n["op"] == "Placeholder":
            continue
        stride = int(n.get("attr", {}).get("strides", {}).get("list", {}).get("i", ["1", "1"])[1])
        v[n["name"]] = _op(n["op"], [v[i] for i in n.get("input", [])], stride)
    return v[output]
