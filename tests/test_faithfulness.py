"""Faithfulness scores: mask energy share, deletion/insertion, and scoring a model on images."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from emotion_core import explain
from emotion_core.data import synthetic
from emotion_core.data.layout import mask_path
from emotion_core.data.transforms import model_input
from emotion_core.explain import evaluate_maps as em
from emotion_core.explain import faithfulness as fa
from tests.conftest import shared_data_or_skip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mask(size: int = 32) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    m[4:12, 6:26] = 255  # "brows"
    m[22:28, 10:22] = 255  # "mouth"
    return m


def test_mask_energy_share_is_one_for_the_mask_itself():
    m = _mask()
    assert fa.mask_energy_share(m / 255.0, m) == pytest.approx(1.0)
    assert fa.mask_energy_share(m > 0, m > 0) == pytest.approx(1.0)  # bool masks work too


def test_mask_energy_share_of_uniform_map_is_the_area_share():
    m = _mask()
    area = (m > 0).mean()
    assert fa.mask_energy_share(np.full(m.shape, 0.3), m) == pytest.approx(area, abs=1e-9)
    # a map with no energy ranks nothing: scored like a uniform one
    assert fa.mask_energy_share(np.zeros(m.shape), m) == pytest.approx(area)
    # a map on the complement scores 0, noise scores near the area share
    assert fa.mask_energy_share((m == 0).astype(float), m) == pytest.approx(0.0)
    noise = np.random.default_rng(0).random(m.shape)
    assert abs(fa.mask_energy_share(noise, m) - area) < 0.05


def test_mask_energy_share_resizes_the_mask_and_rejects_an_empty_one():
    m = _mask(32)
    big = np.kron(m / 255.0, np.ones((4, 4)))  # the same map at 128 px
    assert fa.mask_energy_share(big, m) == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="empty"):
        fa.mask_energy_share(big, np.zeros((32, 32), np.uint8))


class RegionModel(nn.Module):
    """Class 0's logit is the mean input inside a fixed region: the region is the true evidence."""

    def __init__(self, region: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("region", torch.from_numpy(region.astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.region).sum(dim=(1, 2, 3)) / self.region.sum() / 3
        return torch.stack([4 * s, torch.zeros_like(s), torch.zeros_like(s)], dim=1)


def test_deletion_insertion_rewards_the_true_evidence():
    region = _mask() > 0
    model = RegionModel(region)
    x = torch.ones(1, 3, 32, 32)  # bright image: class 0 is confident; the mean baseline is 0
    good = fa.deletion_insertion(model, x, region.astype(float), 0, steps=10, baseline="mean")
    bad = fa.deletion_insertion(model, x, (~region).astype(float), 0, steps=10, baseline="mean")
    assert len(good["deletion_curve"]) == len(good["insertion_curve"]) == 11
    p0 = torch.softmax(model(x), -1)[0, 0].item()
    assert good["deletion_curve"][0] == pytest.approx(p0, abs=1e-6)  # nothing removed yet
    assert good["insertion_curve"][-1] == pytest.approx(p0, abs=1e-6)  # everything back
    assert good["deletion"] < bad["deletion"] - 0.1
    assert good["insertion"] > bad["insertion"] + 0.1
    for r in (good, bad):
        assert 0.0 <= r["deletion"] <= 1.0 and 0.0 <= r["insertion"] <= 1.0


def test_deletion_insertion_checks_its_inputs():
    model = RegionModel(_mask() > 0)
    x = torch.ones(1, 3, 32, 32)
    with pytest.raises(ValueError, match="does not match"):
        fa.deletion_insertion(model, x, np.ones((16, 16)), 0)
    with pytest.raises(ValueError, match="baseline"):
        fa.deletion_insertion(model, x, np.ones((32, 32)), 0, baseline="noise")


def test_blur_baseline_keeps_the_mean_and_removes_detail():
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    b = fa.baseline_image(x, "blur")
    assert b.shape == x.shape
    assert b.std() < 0.5 * x.std()
    assert abs(b.mean() - x.mean()) < 0.1


def test_deletion_insertion_on_a_real_image():
    root = shared_data_or_skip("webfaces3")
    from emotion_core.data import images

    path = next(p for p in sorted(root.rglob("*.jpg")))
    x, _ = model_input(images.load_rgb(path), 32, (0.5,) * 3, (0.25,) * 3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3))
    heat = np.random.default_rng(0).random((32, 32))
    res = fa.deletion_insertion(model, x, heat, 1, steps=8)
    for curve in (res["deletion_curve"], res["insertion_curve"]):
        assert len(curve) == 9 and all(np.isfinite(curve)) and all(0 <= p <= 1 for p in curve)


def _toy_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))


def _synthetic_faces(tmp_path, n: int = 4) -> list[tuple[Any, int]]:
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i, label in enumerate(["angry", "happy", "sad", "happy"][:n]):
        rgb, mask = synthetic.draw_face(rng, label, size=48)
        p = tmp_path / label / f"{i:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(p)
        Image.fromarray(mask).save(mask_path(p))
        out.append((p, ["angry", "happy", "sad"].index(label)))
    return out


def test_evaluate_model_scores_masks_on_synthetic_faces(tmp_path, register_toy):
    images = _synthetic_faces(tmp_path)
    manifest = {"image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
    res = em.evaluate_model(register_toy(_toy_cnn(), 2), manifest, images, methods=["gradcam", "eigencam"],
                            progress=False)
    assert res["kind"] == "mask_energy_share" and res["n"] == 4
    assert set(res["methods"]) == {"gradcam", "eigencam", fa.REFERENCE}
    assert 0.0 < res["chance"] < 1.0
    for v in res["methods"].values():
        assert 0.0 <= v["mean"] <= 1.0 and v["n"] == 4
        assert v["pointing"] in (0.0, 0.25, 0.5, 0.75, 1.0)  # a hit rate over 4 images
    # a random map's energy share is close to the chance level (the mask's area share)
    assert abs(res["methods"][fa.REFERENCE]["mean"] - res["chance"]) < 0.05
    assert "gradcam" in em.format_table(res)


def test_a_run_on_face_crops_is_scored_on_the_face_and_its_mask_cut_alike(tmp_path, register_toy,
                                                                         monkeypatch):
    from emotion_core.data import faces
    from emotion_core.data.images import load_rgb
    from emotion_core.data.transforms import resize_square

    images = _synthetic_faces(tmp_path)
    box = faces.FaceBox(12, 14, 24, 24)  # the middle of each 48 px face: its mask's share grows
    monkeypatch.setattr(faces, "largest_face", lambda rgb: box)
    whole = {"image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
    cropped = {**whole, "config": {"crop_faces": True, "face_margin": 0.0, "face_fit": "inside"}}
    model = register_toy(_toy_cnn(), 2)
    res_whole = em.evaluate_model(model, whole, images, methods=["gradcam"], progress=False)
    res_crop = em.evaluate_model(model, cropped, images, methods=["gradcam"], progress=False)
    cut = [resize_square(load_rgb(mask_path(p))[14:38, 12:36], 32)[..., 0] > 127 for p, _ in images]
    assert res_crop["chance"] == pytest.approx(float(np.mean([m.mean() for m in cut])))
    assert res_crop["chance"] > res_whole["chance"]
    assert res_crop["methods"]["gradcam"]["mean"] != pytest.approx(res_whole["methods"]["gradcam"]["mean"])


def test_pointing_game_asks_whether_the_peak_is_inside_the_mask():
    m = _mask(32)
    heat = np.zeros(m.shape)
    heat[24, 15] = 1.0  # in the "mouth"
    assert fa.pointing_hit(heat, m)
    heat[0, 0] = 2.0  # a stronger peak in a corner
    assert not fa.pointing_hit(heat, m)
    with pytest.raises(ValueError, match="differ"):
        fa.pointing_hit(heat, m[:16])


def test_ideal_share_grows_with_the_grid_and_is_one_at_full_resolution():
    m = _mask(32)
    shares = [fa.ideal_share(m, (g, g)) for g in (2, 4, 8, 16)]
    assert shares == sorted(shares) and shares[0] < 0.6 < shares[-1]
    assert fa.ideal_share(m, (32, 32)) == pytest.approx(1.0)
    assert fa.ideal_share(m, (1, 1)) == pytest.approx((m > 0).mean())  # one cell: uniform
    with pytest.raises(ValueError, match="grid"):
        fa.ideal_share(m, (0, 4))


def test_ceiling_share_is_the_most_any_map_on_the_grid_can_score():
    m = _mask(32)
    rng = np.random.default_rng(0)
    for g in [(1, 1), (2, 2), (4, 4), (3, 5), (8, 8)]:
        ceiling = fa.ceiling_share(m, g)
        # no map on that grid beats it: random ones, sparse ones, and the mask-shaped one
        grids = [rng.random(g) ** p for p in (1, 4, 16)] + [
            np.where(rng.random(g) < 0.3, rng.random(g), 0) + 1e-9 for _ in range(20)]
        shares = [fa.mask_energy_share(explain.to_heatmap(c, m.shape), m) for c in grids]
        assert max(shares) <= ceiling + 1e-6
        assert fa.ideal_share(m, g) <= ceiling + 1e-6
        # and one map reaches it: the single best cell lit
        best = max(fa.mask_energy_share(explain.to_heatmap(np.eye(1, g[0] * g[1], k).reshape(g), m.shape), m)
                   for k in range(g[0] * g[1]))
        assert ceiling == pytest.approx(best, abs=1e-6)
    assert fa.ceiling_share(m, (1, 1)) == pytest.approx((m > 0).mean())  # one cell: uniform
    assert fa.ceiling_share(m, (32, 32)) == pytest.approx(1.0)  # a pixel inside the mask
    with pytest.raises(ValueError, match="grid"):
        fa.ceiling_share(m, (4, 0))
    with pytest.raises(ValueError, match="empty"):
        fa.ceiling_share(np.zeros_like(m), (4, 4))


def _strided_cnn() -> nn.Module:
    """Three resolutions (32, 16, 8 px grids at 32 px) before the default CAM layer."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    return model


def test_sweep_scores_every_cam_layer_against_its_grids_ideal(tmp_path, register_toy):
    images = _synthetic_faces(tmp_path)
    manifest = {"image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
    model = register_toy(_strided_cnn(), 5)
    res = em.evaluate_model(model, manifest, images, methods=["gradcam"], progress=False)
    assert res["cam_layer"] == "5" and res["cam_grid"] == [8, 8]
    assert res["chance"] < res["ideal"] <= res["ceiling"] <= 1.0
    by = em.sweep_cam_layers(model, manifest, images, "stages", methods=["gradcam"],
                             progress=False)
    assert list(by) == ["1", "3", "5"] and [e["grid"] for e in by.values()] == [[32, 32], [16, 16], [8, 8]]
    assert [e["default"] for e in by.values()] == [False, False, True]
    ideals = [e["ideal"] for e in by.values()]
    assert ideals == sorted(ideals, reverse=True)  # finer grids can localise better
    assert by["5"]["methods"]["gradcam"]["mean"] == pytest.approx(res["methods"]["gradcam"]["mean"])
    assert by["1"]["methods"]["gradcam"]["mean"] != pytest.approx(by["5"]["methods"]["gradcam"]["mean"])
    table = em.format_layer_table({**res, "by_layer": by})
    assert "5*" in table and "ideal" in table and "ceiling" in table and "16x16" in table
    assert all(e["ideal"] <= e["ceiling"] for e in by.values())
    with pytest.raises(ValueError, match="no layer"):
        em.sweep_cam_layers(model, manifest, images, ["nope"], methods=["gradcam"], progress=False)


def test_evaluate_model_falls_back_to_deletion_without_masks(tmp_path, register_toy):
    images = _synthetic_faces(tmp_path, n=2)
    for p, _ in images:
        mask_path(p).unlink()
    manifest = {"image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
    res = em.evaluate_model(register_toy(_toy_cnn(), 2), manifest, images, methods=["gradcam"], steps=4,
                            progress=False)
    assert res["kind"] == "deletion_insertion"
    assert set(res["methods"]["gradcam"]) == {"deletion", "insertion", "n"}
    with pytest.raises(explain.NotApplicableError, match="rollout"):
        em.evaluate_model(register_toy(_toy_cnn(), 2), manifest, images, methods=["rollout"], progress=False)


def test_sample_images_skips_masks_and_reads_labels(tmp_path):
    _synthetic_faces(tmp_path)
    picked = em.sample_images(tmp_path, ["angry", "happy", "sad"], 10)
    assert len(picked) == 4
    assert all(not p.name.endswith(".mask.png") for p, _ in picked)
    assert sorted(lbl for _, lbl in picked) == [0, 1, 1, 2]
    with pytest.raises(FileNotFoundError):
        em.sample_images(tmp_path / "nowhere", ["a"], 1)


def test_cli_scores_a_stored_run_and_stores_the_result(tmp_path, capsys):
    """End to end: a tiny registry ViT, held-out synthetic faces, scores merged into metrics.json."""
    import pandas as pd

    from emotion_core import models, store
    from scripts import explain as cli

    images = _synthetic_faces(tmp_path)
    torch.manual_seed(0)
    model, _ = models.build_model("vit_scratch", 3, pretrained=False, image_size=32, tiny=True)
    classes = ["angry", "happy", "sad"]
    rels = [p.relative_to(tmp_path).as_posix() for p, _ in images]
    preds = pd.DataFrame({"rel": rels, "subset": ["train", "val", "val", "val"],
                          "label": [classes[lbl] for _, lbl in images]})
    manifest = {"kind": "model", "model": "vit_scratch", "classes": classes, "image_size": 32,
                "mean": [0.5] * 3, "std": [0.5] * 3, "config": {"tiny": True}}
    store.save_run("tiny", manifest=manifest, metrics={"accuracy": 0.4}, history=preds,
                       confusion=preds, predictions=preds, state_dict=model.state_dict())
    args = ["--run", "tiny", "--faithfulness", "--data", str(tmp_path), "--n", "8",
            "--methods", "gradcam,rollout"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "rollout" in out and "chance" in out
    stored = store.load_run("tiny", tables=False).metrics
    assert stored["accuracy"] == 0.4  # merged, not replaced
    res = stored["faithfulness"]["mask_energy_share"]
    assert res["n"] == 3  # the val images only: the training image is never scored
    assert set(res["methods"]) == {"gradcam", "rollout", fa.REFERENCE}
    assert cli.main([*args[:-2], "--methods", "featuremap"]) == 2
    assert "cannot be scored" in capsys.readouterr().err
    assert cli.main([*args[:-2], "--methods", "gradcam", "--cam-layers", "stages"]) == 0
    assert "CAM layer" in capsys.readouterr().out
    by = store.load_run("tiny", tables=False).metrics["faithfulness"]["mask_energy_share"]["by_layer"]
    (entry,) = by.values()  # a ViT has one token grid: one layer to score
    assert entry["default"] and entry["grid"] == [32 // 8, 32 // 8]
