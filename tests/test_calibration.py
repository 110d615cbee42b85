"""A run's temperature: fitted on validation answers, carried to a refit, applied to every
answer the run gives (never to which class it picks), recorded in its manifest and model card."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from emotion_core import models, store
from emotion_core.evaluation import calibration, inference
from emotion_core.store import bundle
from emotion_core.views import live
from scripts import calibrate as calibrate_cli

CLASSES = ["angry", "happy", "sad"]


def _true_scaled_labels(n: int, t_true: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Answers p = softmax(z) whose labels are drawn from softmax(z / t_true): a model whose
    best temperature is t_true."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, size=(n, 3))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    truth = calibration.scale(p, t_true)
    y = np.array([rng.choice(3, p=row) for row in truth])
    return p, y


@pytest.mark.parametrize("t_true", [0.5, 2.0])
def test_fitting_finds_the_temperature_the_labels_were_drawn_with(t_true):
    p, y = _true_scaled_labels(20000, t_true)
    t = calibration.fit_temperature(p, y)
    assert abs(t - t_true) / t_true < 0.06
    before, after = calibration.summary(p, y), calibration.summary(calibration.scale(p, t), y)
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"]
    assert after["accuracy"] == before["accuracy"]


def test_scaling_keeps_the_choice_and_refuses_a_bad_temperature():
    p, _ = _true_scaled_labels(200, 1.0)
    sharp, soft = calibration.scale(p, 0.5), calibration.scale(p, 3.0)
    assert (sharp.argmax(1) == p.argmax(1)).all() and (soft.argmax(1) == p.argmax(1)).all()
    assert (sharp.max(1) >= p.max(1) - 1e-12).all() and (soft.max(1) <= p.max(1) + 1e-12).all()
    np.testing.assert_allclose(sharp.sum(1), 1.0)
    assert calibration.scale(p, 1.0) is p
    np.testing.assert_allclose(calibration.scale(torch.tensor(p), 0.5).numpy(), sharp, atol=1e-6)
    for bad in (0, -1.0, float("nan"), "2"):
        with pytest.raises(ValueError, match="positive number"):
            calibration.scale(p, bad)
    with pytest.raises(ValueError, match="positive number"):
        inference.run_temperature({"calibration": {"temperature": 0}})
    assert inference.run_temperature({}) == 1.0


def _tiny_run(run_id: str, predictions: pd.DataFrame, *, refit: bool = False,
              model_name: str = "mobilenet_v2") -> torch.nn.Module:
    torch.manual_seed(0)
    model, _ = models.build_model(model_name, 3, pretrained=False, image_size=32, tiny=True)
    with torch.no_grad():  # an untrained head answers 1/3 each: give it an opinion
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 0.5)
                m.bias.copy_(torch.tensor([1.0, 0.0, -0.5]))
    manifest = {"kind": "model", "model": model_name, "classes": CLASSES, "image_size": 32,
                "mean": [0.5] * 3, "std": [0.5] * 3, "dataset": "a+b", "tta_flip": True,
                "config": {"tiny": True, "refit": refit}}
    store.save_run(run_id, manifest=manifest, metrics={}, history=pd.DataFrame(columns=["epoch"]),
                   confusion=pd.DataFrame(columns=["true"]), predictions=predictions,
                   state_dict=model.state_dict())
    return model.eval()


def _answers(p: np.ndarray, y: np.ndarray, subset: str, sources: list[str]) -> pd.DataFrame:
    df = pd.DataFrame({"rel": [f"{subset}{i}.png" for i in range(len(y))], "subset": subset,
                       "source": sources, "label": [CLASSES[i] for i in y],
                       "pred": [CLASSES[i] for i in p.argmax(1)]})
    for i, c in enumerate(CLASSES):
        df[f"p_{c}"] = p[:, i]
    return df


def test_a_refit_takes_the_temperature_of_the_run_that_validated_its_recipe(capsys):
    # the validated run answers too unsurely (its best temperature 0.5); the refit has test
    # answers only, as a refit trained on val
    p_val, y_val = _true_scaled_labels(3000, 0.5, seed=1)
    p_test, y_test = _true_scaled_labels(400, 0.5, seed=2)
    src = ["a"] * 200 + ["b"] * 200
    _tiny_run("validated", _answers(p_val, y_val, "val", ["a"] * 3000))
    _tiny_run("refit", _answers(p_test, y_test, "test", src), refit=True)
    assert calibrate_cli.main(["--run", "refit"]) == 2
    assert "--fit-on" in capsys.readouterr().err
    assert calibrate_cli.main(["--run", "refit", "--fit-on", "validated", "--dry-run"]) == 0
    assert "calibration" not in store.load_run("refit", tables=False).manifest
    assert calibrate_cli.main(["--run", "refit", "--fit-on", "validated"]) == 0
    cal = store.load_run("refit", tables=False).manifest["calibration"]
    assert cal["temperature"] == calibration.fit_temperature(p_val, y_val) < 0.6
    assert cal["fitted_on"] == "validated" and cal["before"]["images"] == 3000
    assert set(cal["test"]) == {"all sets", "a", "b"}  # the refit's own test answers, per set
    assert cal["test"]["all sets"]["after"]["ece"] < cal["test"]["all sets"]["before"]["ece"]
    # another model's answers do not calibrate this one
    _tiny_run("other", _answers(p_val, y_val, "val", ["a"] * 3000), model_name="mini_xception")
    assert calibrate_cli.main(["--run", "refit", "--fit-on", "other"]) == 2
    assert "one recipe" in capsys.readouterr().err
    assert calibrate_cli.main(["--run", "refit", "--clear"]) == 0
    assert "calibration" not in store.load_run("refit", tables=False).manifest


def test_predict_answers_with_the_runs_temperature_and_the_same_choice():
    p_val, y_val = _true_scaled_labels(2000, 0.5, seed=3)
    _tiny_run("r", _answers(p_val, y_val, "val", ["a"] * 2000))
    crop = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    plain = live.predict_crop(crop, ["r"]).runs[0].probs
    assert calibrate_cli.main(["--run", "r"]) == 0
    t = store.load_run("r", tables=False).manifest["calibration"]["temperature"]
    scaled = live.predict_crop(crop, ["r"]).runs[0].probs
    np.testing.assert_allclose(scaled, calibration.scale(plain[None], t)[0], atol=1e-5)
    assert scaled.argmax() == plain.argmax() and scaled.max() > plain.max()
    assert live.summary_table(live.predict_crop(crop, ["r"]))[0]["temperature"] == t  # shown


def test_probabilities_scale_the_flip_averaged_answer():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3)).eval()
    x = torch.randn(5, 3, 4, 4)
    for flip in (False, True):
        plain = inference.probabilities(model, x, tta_flip=flip)
        torch.testing.assert_close(inference.probabilities(model, x, tta_flip=flip, temperature=0.7),
                                   calibration.scale(plain, 0.7))


def test_calibrating_a_bundled_model_rewrites_its_manifest_and_card_never_its_weights():
    p_val, y_val = _true_scaled_labels(2000, 0.6, seed=4)
    _tiny_run("mine", _answers(p_val, y_val, "val", ["a"] * 2000))
    from scripts import bundle as bundle_cli

    assert bundle_cli.main(["--run", "mine", "--as", "realfaces-x", "--note", "How it came."]) == 0
    weights = (store.paths.bundled_dir() / "realfaces-x" / store.paths.WEIGHTS).read_bytes()
    with pytest.raises(store.ReadOnlyRunError):  # the ordinary write path stays closed
        store.runs.update_run_manifest("realfaces-x", {"calibration": {}})
    assert calibrate_cli.main(["--run", "realfaces-x", "--fit-on", "mine"]) == 0
    rec = store.load_run("realfaces-x", tables=False)
    card = bundle.model_card("realfaces-x")
    assert rec.manifest["calibration"]["fitted_on"] == "mine"
    assert "## Calibration" in card and f"T = {rec.manifest['calibration']['temperature']:g}" in card
    assert card.rstrip().endswith("How it came.")  # the release note kept
    assert (store.paths.bundled_dir() / "realfaces-x" / store.paths.WEIGHTS).read_bytes() == weights
    assert calibrate_cli.main(["--run", "realfaces-x", "--clear"]) == 0
    assert "## Calibration" not in bundle.model_card("realfaces-x")
    assert "calibration" not in store.load_run("realfaces-x", tables=False).manifest


def test_the_mean_of_runs_scores_their_scaled_answers_as_predict_averages_them():
    from emotion_core.evaluation import ensemble

    p_a, y = _true_scaled_labels(300, 0.5, seed=5)
    p_b = np.roll(p_a, 1, axis=1) * 0.5 + p_a * 0.5  # a second opinion, often another class
    _tiny_run("a", _answers(p_a, y, "val", ["a"] * 300))
    _tiny_run("b", _answers(p_b, y, "val", ["a"] * 300))
    store.runs.update_run_manifest("a", {"calibration": {"temperature": 0.25}})
    right = int(ensemble.mean_scores(["a", "b"]).set_index("set").loc["all sets", "right"])
    mean = (calibration.scale(p_a, 0.25) + p_b) / 2
    assert right == int((mean.argmax(1) == y).sum())
    assert right != int((((p_a + p_b) / 2).argmax(1) == y).sum())  # the scaling mattered here
