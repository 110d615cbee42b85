"""AppTest for every page: against a tiny real run store, the empty store, and a broken run."""
from __future__ import annotations

import io
import json
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emotion_core import store
from emotion_core.jobs import status
from emotion_core.views import samples
from emotion_core.views import tables as explorer
from tests.fixtures_runs import DATASET, MODELS, copy_store, photo_640x480

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.apptest_helpers import (
    APP,
    PAGES,
    TIMEOUT,
    chart_data,
    face_png,
    open_page,
    page_texts,
)


def test_empty_store_explains_what_is_missing_and_offers_the_demo(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(store.paths.ENV_ROOT, str(tmp_path / "empty"))
    at = open_page(AppTest.from_file(APP, default_timeout=TIMEOUT))
    text = page_texts(at)
    assert "no trained runs" in text and "no prepared dataset" in text
    assert at.button(key="start_demo").label == "Start the quick demo job"
    for page in PAGES:
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert at.title[0].value  # the page still renders its title and a hint


def test_home_shows_dataset_source_and_leaderboard_with_weights(at_store) -> None:
    at, ids = at_store
    open_page(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Dataset"] == DATASET and metrics["Data source"] == "synthetic demo"
    assert metrics["Runs shown"] == f"{len(ids)} of {len(ids)}"
    board = at.dataframe[0].value
    assert list(board.columns) == ["run", "val accuracy", "val macro-F1", "test accuracy",
                                   "test macro-F1", "CPU ms per image"]
    assert board["run"].is_unique
    parts = [run.split(" · ") for run in board["run"]]
    assert sorted(p[0] for p in parts) == sorted([*MODELS, f"ensemble({MODELS[0]}+{MODELS[1]})"])
    assert all(len(p) >= 3 and p[1] for p in parts)  # every number beside its weights and time
    assert board["val macro-F1"].is_monotonic_decreasing
    # what each weights source is: the registry's sentence in the run picker's tooltip
    assert "scratch: random initialisation" in at.multiselect(key="runs").help
    (chart,) = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    bars = [y for trace in spec["data"] for y in trace["y"]]
    assert len(bars) == len(ids)  # one bar per run, horizontal, best on top
    chance = [s for s in spec["layout"]["shapes"] if s.get("line", {}).get("dash") == "dash"]
    assert chance and chance[0]["x0"] == pytest.approx(1 / 3)
    assert any("chance level, 1/3" in c.value for c in at.caption)


def test_data_page(at_store) -> None:
    at, _ = at_store
    open_page(at, "data")
    assert "Cleaning report" in [s.value for s in at.subheader]
    # two labelled class-distribution charts: as found, and after cleaning and carving
    assert len(at.get("plotly_chart")) == 2  # no empty cleaning chart: the tiny set is clean
    bold = " ".join(m.value for m in at.markdown)
    assert "As found in the folders" in bold and "After cleaning and carving (what models" in bold
    assert any(c.value.startswith("Test: ") for c in at.caption), "where test and val came from"
    assert any("No cleaning issue" in x.value for x in at.success)
    captions = [c for img in at.image for c in img.captions]
    assert captions[0].startswith("sample grid (train)")
    assert any(c.startswith("mean face per class") for c in captions)
    assert any(c.startswith("batch-wise mean faces") for c in captions)


def test_compare_page_shows_table_and_the_studys_numbers(at_store) -> None:
    at, ids = at_store
    open_page(at, "compare")
    scores, cost, origin = (at.dataframe[k].value for k in range(3))
    assert set(origin["run id"]) == set(ids.values()) and set(origin["role"]) == {"trained here", "ensemble of runs trained here"}
    assert "val macro-F1" in scores.columns and "parameters (M)" in cost.columns
    assert not set(scores.columns) & {"label", "model", "weights_source", "val_macro_f1"}
    # one name per row, the same rows in the same order in all three tables
    assert scores["run"].is_unique and list(scores["run"]) == list(cost["run"]) == list(origin["run"])
    study = at.dataframe[-1].value
    reported = dict(zip(study["model"], study["study's validation accuracy"], strict=True))
    assert reported.keys() == {"resnet34", "efficientnet_b4", "vgg16", "vit_scratch", "vit_hf",
                               "ensemble(resnet34+efficientnet_b4)"}
    assert reported["ensemble(resnet34+efficientnet_b4)"] == 0.84 and reported["vit_hf"] == 0.969
    assert reported["vit_scratch"] == 0.44 and pd.isna(reported["vgg16"]), "VGG-16: feature maps only"
    assert "study's validation accuracy" in study.columns
    assert any("VGG-16 has no number" in c.value for c in at.caption)
    assert not any("ambiguous" in c.value for c in at.caption), "no hedge on the mapping"
    assert len(at.get("plotly_chart")) >= 2  # metric bars + curves (+ per-class recall)


def test_compare_page_gives_each_score_its_interval_and_pairs_two_runs(at_store) -> None:
    at, ids = at_store
    open_page(at, "compare")
    shown = [d.value for d in at.dataframe]
    intervals = next(d for d in shown if "95% interval from" in d.columns)
    rec = store.load_run(ids[MODELS[0]])
    mine = intervals[(intervals["subset"] == "val") & (intervals["n"] == rec.metrics["val"]["n"])]
    assert len(mine) >= 1 and (mine["95% interval from"] <= mine["accuracy"]).all()
    assert (mine["accuracy"] <= mine["95% interval to"]).all()
    at.selectbox(key="cmp_pair_a").set_value(ids[MODELS[0]]).run()
    at.selectbox(key="cmp_pair_b").set_value(ids["ensemble"]).run()
    pair = next(d.value for d in at.dataframe if "p (McNemar)" in d.value.columns)
    val = pair.set_index("subset").loc["val"]
    assert val["n"] == rec.metrics["val"]["n"]
    assert val["A accuracy"] == pytest.approx(rec.metrics["val"]["accuracy"])
    at.selectbox(key="cmp_pair_b").set_value(ids[MODELS[0]]).run()
    assert "Pick two different runs." in page_texts(at)


def test_confusion_page_cell_drilldown(at_store) -> None:
    at, ids = at_store
    open_page(at, "confusion")
    board = explorer.comparison_table([store.load_run(r, tables=False) for r in ids.values()])
    assert at.selectbox(key="cm_run").value == board["run_id"].iloc[0], "Compare's best first"
    at.selectbox(key="cm_run").set_value(ids[MODELS[0]]).run()
    rec = store.load_run(ids[MODELS[0]])
    true_cls = rec.predictions["label"].iloc[0]
    pred_cls = rec.predictions["pred"].iloc[0]
    subset = rec.predictions["subset"].iloc[0]
    at.radio(key="cm_subset").set_value(subset)
    at.selectbox(key="cm_true").set_value(true_cls)
    at.selectbox(key="cm_pred").set_value(pred_cls).run()
    assert not at.exception
    expected = len(explorer.cell_examples(rec, subset, true_cls, pred_cls))
    assert expected >= 1
    shown = f"{expected} image{'' if expected == 1 else 's'} shown"
    assert any(shown in c.value for c in at.caption)
    assert len(at.image) >= 1  # the images behind the cell, with probabilities in captions


def test_confusion_page_shows_the_images_most_runs_miss(at_store) -> None:
    at, ids = at_store
    open_page(at, "confusion")
    picker = at.multiselect(key="agree_runs")
    models = [ids[m] for m in MODELS]
    assert sorted(picker.value) == sorted(models), "ensembles are left out at first"
    assert any(o.startswith("ensemble(") for o in picker.options)
    split = at.radio(key="agree_subset").value
    summary, hard = explorer.agreement_tables([store.load_run(r) for r in models], split)
    shown = next(d.value for d in at.dataframe if "missed by every run" in d.value.columns)
    assert shown["images"].tolist() == summary["images"].tolist()
    assert shown["missed by every run"].tolist() == summary["missed_by_all"].tolist()
    assert shown["right by most runs"].tolist() == pytest.approx(summary["majority_right"].tolist())
    missed = hard[hard["missed"] > 0]
    assert len(missed), "two tiny runs miss some image"
    captions = [c for img in at.image for c in img.captions if "missed by" in c]
    assert len(captions) == min(len(missed), 16)
    top = missed.iloc[0]
    assert f"missed by {top['missed']} of 2" in captions[0] and top["rel"] in captions[0]

    picker.set_value([*models, ids["ensemble"]]).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = next(d.value for d in at.dataframe if "missed by every run" in d.value.columns)
    assert set(shown["runs"]) == {3}
    picker.set_value(models[:1]).run()
    assert any("at least two runs" in w.value for w in at.warning)


def test_confusion_cell_lists_names_when_the_images_are_not_here(at_store, monkeypatch) -> None:
    """A bundled or reference run whose pictures are on another machine: one line and a table of
    names and probabilities, not a caption per missing image."""

    at, ids = at_store
    monkeypatch.setattr(samples, "run_images_root", lambda manifest: None)
    open_page(at, "confusion")
    at.selectbox(key="cm_run").set_value(ids[MODELS[0]]).run()
    rec = store.load_run(ids[MODELS[0]])
    row = rec.predictions.iloc[0]
    at.radio(key="cm_subset").set_value(row["subset"])
    at.selectbox(key="cm_true").set_value(row["label"])
    at.selectbox(key="cm_pred").set_value(row["pred"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("are not on this machine" in x.value for x in at.info)
    table = at.dataframe[0].value  # the cell's; the most-missed images follow
    assert "rel" in table.columns and row["rel"] in set(table["rel"]) and len(at.image) == 0


def test_feature_maps_page_walks_the_conv_layers(at_store) -> None:
    at, ids = at_store
    open_page(at, "feature_maps")
    assert at.selectbox(key="fm_run").value == ids[MODELS[1]]  # the CNN (no VGG-16 run here)
    slider = at.select_slider(key="fm_layer")
    layers = slider.options
    assert len(layers) > 3
    slider.set_value(slider.options[-1]).run()
    assert not at.exception
    assert any(f"Layer {len(layers)} of {len(layers)}" in c.value for c in at.caption)
    assert any(c.startswith(layers[-1]) for img in at.image for c in img.captions)


def test_explain_page_cams_side_by_side_and_vit_attention(at_store) -> None:
    at, ids = at_store
    open_page(at, "explain")
    captions = [c for img in at.image for c in img.captions]
    assert sum("→" in c for c in captions) == 2  # both runs' Grad-CAM overlays
    assert any("rollout" in c for c in captions) and any("patch grid" in c for c in captions)
    assert any(m.label == "mask energy share" for m in at.metric)  # faithfulness beside maps
    at.slider(key="ex_layer").set_value(0)
    at.slider(key="ex_head").set_value(0).run()
    assert not at.exception
    assert any("layer 0, head 0" in c for img in at.image for c in img.captions)
    default_layers = {c.value.split(" · ")[-1] for c in at.caption if " · gradcam · " in c.value}
    at.select_slider(key="ex_finer").set_value(1).run()
    assert not at.exception
    finer_layers = {c.value.split(" · ")[-1] for c in at.caption if " · gradcam · " in c.value}
    # the CNN moves to a finer grid; the ViT has one token grid at every depth and keeps it
    assert len(finer_layers) == 2 and len(finer_layers & default_layers) == 1
    (moved,) = finer_layers - default_layers
    assert moved.startswith("features.")


def test_explain_page_scores_on_demand_and_shows_the_runs_stored_scores(built_store, monkeypatch,
                                                                       tmp_path) -> None:
    from emotion_core.explain import evaluate_maps

    root = copy_store(built_store[0], tmp_path / "store")
    ids = built_store[1]
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    stored = evaluate_maps.evaluate_run(ids[MODELS[1]], root / "data" / DATASET, n=3,
                                       methods=["gradcam"], progress=False)
    at = open_page(AppTest.from_file(APP, default_timeout=TIMEOUT), "explain")
    run_share = [m for m in at.metric if m.label == "run mask share"]
    assert len(run_share) == 1  # only the run that was scored, beside its Grad-CAM
    assert run_share[0].value == f"{stored['methods']['gradcam']['mean']:.3f}"
    # an upload has no mask: deletion/insertion only when asked for
    at.radio(key="ex_src").set_value("upload").run()
    at.file_uploader(key="ex_upload").set_value(("face.png", face_png(), "image/png")).run()
    assert not any(m.label.endswith(" AUC") for m in at.metric)
    at.checkbox(key="ex_score").check().run()
    assert not at.exception, [e.value for e in at.exception]
    aucs = [float(m.value) for m in at.metric if m.label in ("deletion AUC", "insertion AUC")]
    assert len(aucs) == 2 * 4  # two CAM columns + attention + rollout, two AUCs each
    assert all(0.0 <= v <= 1.0 for v in aucs)


def test_predict_page_every_run_and_the_ensemble(at_store) -> None:
    at, ids = at_store
    open_page(at, "predict")
    at.file_uploader(key="pr_upload").set_value(("face.png", face_png(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    summary = at.dataframe[0].value
    models = " ".join(summary["run"])
    for name in MODELS:
        assert name in models
    assert summary["prediction"].notna().all() and (summary["latency_ms"] >= 0).all()
    # the mean computed now and the stored ensemble run are named apart, and explained
    names = list(summary["run"])
    assert "mean of the 2 runs above (computed now)" in names
    (stored,) = [n for n in names if n.startswith("stored ensemble run ")]
    assert f"{MODELS[0]} + {MODELS[1]}" in stored and "equal weights" in stored
    assert any("How the two kinds of ensemble differ" in c.value for c in at.caption)
    axis = {y for trace in chart_data(at, 0) for y in trace["y"]}
    assert axis == {*MODELS, "mean (now)", "stored ensemble"}  # short names on the chart
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["name"] for t in spec["data"]} == {"angry", "happy", "sad"}  # a legend entry each
    # the classes in one row above the bars: a legend beside a short chart scrolls and hides one
    assert spec["layout"]["legend"]["orientation"] == "h"


def test_predict_page_why_maps_beside_every_answer_and_the_link_to_explain(at_store) -> None:
    at, ids = at_store
    open_page(at, "predict")
    at.file_uploader(key="pr_upload").set_value(("face.png", face_png(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    why = [c for img in at.image for c in img.captions if " · Grad-CAM" in c or " · attention" in c]
    assert sorted(c.split(" → ")[0] for c in why) == sorted(MODELS)  # one map per model run
    assert any(c.startswith(f"{MODELS[0]} → ") and c.endswith("attention rollout") for c in why)
    assert any(c.startswith(f"{MODELS[1]} → ") and c.endswith("Grad-CAM") for c in why)
    vit = ids[MODELS[0]]
    at.button(key=f"pr_why_1_{vit}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Explain"
    assert at.radio(key="ex_src").value == "face from Predict"
    assert at.multiselect(key="ex_runs").value == [vit]
    assert at.selectbox(key="ex_vit").value == vit
    captions = [c for img in at.image for c in img.captions]
    assert "face 1 from Predict" in captions and any("rollout" in c for c in captions)


def test_predict_page_tall_upload_is_scaled_to_fit(at_store) -> None:
    at, _ = at_store
    open_page(at, "predict")
    buf = io.BytesIO()
    Image.fromarray(np.full((3800, 200, 3), 90, np.uint8)).save(buf, format="PNG")  # thinnest accepted
    at.file_uploader(key="pr_upload").set_value(("strip.png", buf.getvalue(), "image/png")).run()
    assert not at.exception
    assert any("200x3800 px, shown scaled to fit" in c.value for c in at.caption)


class _FakeStreamer:
    """Stands in for streamlit_webrtc.webrtc_streamer, which needs a real server session: records
    its arguments and, while "playing", feeds the page's frame callback a few camera frames."""

    def __init__(self) -> None:
        self.playing, self.frames, self.kwargs, self.out = False, 0, {}, []

    def __call__(self, **kwargs):
        import av

        self.kwargs = kwargs
        for _ in range(self.frames if self.playing else 0):
            frame = av.VideoFrame.from_ndarray(photo_640x480(1), format="rgb24")
            self.out.append(kwargs["video_frame_callback"](frame).to_ndarray(format="rgb24"))
        return SimpleNamespace(state=SimpleNamespace(playing=self.playing))


def test_predict_page_live_mode(at_store, monkeypatch) -> None:
    streamlit_webrtc = pytest.importorskip("streamlit_webrtc")
    fake = _FakeStreamer()
    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", fake)
    at, ids = at_store
    open_page(at, "predict")
    at.radio(key="pr_source").set_value("Live webcam").run()
    assert not at.exception, [e.value for e in at.exception]
    live = at.multiselect(key="live_runs")
    assert live.value == [ids[MODELS[1]]]  # the fastest model run (no stored ensemble live)
    assert ids["ensemble"] not in live.options
    assert at.select_slider(key="live_every").value == 2
    assert at.slider(key="live_window").value == 5
    text = page_texts(at)
    assert "exponential moving average" in text and "alpha = 0.33" in text
    assert "Press START" in text
    assert fake.kwargs["rtc_configuration"] == {"iceServers": []}  # loopback/LAN, no STUN
    assert fake.kwargs["async_processing"] is True
    at.slider(key="live_window").set_value(1).run()
    assert "not smoothed" in page_texts(at)
    at.button(key="live_freeze").click().run()
    assert any("No frame yet" in w.value for w in at.warning)

    fake.playing, fake.frames = True, 4  # START pressed: frames arrive and come back labelled
    at.multiselect(key="live_runs").set_value([ids[m] for m in MODELS]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(fake.out) == 4 and fake.out[-1].shape == (480, 640, 3)
    assert not np.array_equal(fake.out[-1], photo_640x480(1))  # boxed and labelled
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Frames per second"]) > 0 and metrics["Latency per frame"].endswith(" ms")
    assert any("4 frames processed · 1 face ·" in c.value for c in at.caption)
    assert any(m.value.startswith(f"**{MODELS[0]}** on the video") for m in at.markdown)
    from emotion_core.evaluation import inference
    shared = []  # what the page told share_cores: the live worker streaming holds a core
    monkeypatch.setattr(inference, "share_cores", shared.append)
    at.button(key="live_freeze").click().run()  # the frozen frame: every run side by side
    assert not at.exception, [e.value for e in at.exception]
    assert shared == [True]
    assert {"Frozen frame", "Face 1"} <= {h.value for h in at.subheader}
    assert len(at.dataframe[0].value) == len(ids) + 1  # each run, the stored and the live mean
    assert any(" · Grad-CAM" in c for img in at.image for c in img.captions)


def test_predict_page_bad_upload_gets_a_message_not_a_traceback(at_store) -> None:
    at, _ = at_store
    open_page(at, "predict")
    at.file_uploader(key="pr_upload").set_value(("notes.jpg", b"not an image", "image/jpeg")).run()
    assert not at.exception
    assert any("not an image" in e.value for e in at.error)


def test_predict_page_no_face_offers_the_whole_image(at_store) -> None:
    at, _ = at_store
    open_page(at, "predict")
    buf = io.BytesIO()
    Image.fromarray(np.full((240, 320, 3), 100, np.uint8)).save(buf, format="PNG")
    at.file_uploader(key="pr_upload").set_value(("wall.png", buf.getvalue(), "image/png")).run()
    assert any("No face" in w.value for w in at.warning)
    at.checkbox(key="pr_whole").check().run()
    assert not at.exception and "Whole image" in [s.value for s in at.subheader]


def test_train_page_lists_runs(at_store) -> None:
    at, ids = at_store
    open_page(at, "train")
    assert set(at.dataframe[0].value["run id"]) == set(ids.values())


def test_broken_run_is_listed_and_the_others_still_work(built_store, monkeypatch, tmp_path) -> None:
    root = copy_store(built_store[0], tmp_path / "store")
    ids = built_store[1]
    (root / "runs" / ids[MODELS[0]] / "weights.safetensors").unlink()
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    at = open_page(AppTest.from_file(APP, default_timeout=TIMEOUT))
    assert ids[MODELS[0]] in page_texts(at) and "weights.safetensors" in page_texts(at)
    assert not any(r.startswith(f"{MODELS[0]} · ") for r in at.dataframe[0].value["run"])
    at.switch_page("pages/predict.py").run()
    at.file_uploader(key="pr_upload").set_value(("face.png", face_png(), "image/png")).run()
    assert not at.exception
    summary = at.dataframe[0].value
    assert any(MODELS[1] in r for r in summary["run"])
    # the ensemble whose member lost its weights says so instead of failing the page
    assert summary["error"].str.contains("missing|unavailable").any()


def test_second_training_job_is_refused(built_store, monkeypatch, tmp_path) -> None:
    root = copy_store(built_store[0], tmp_path / "store")
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    holder = status.start_steps([[sys.executable, "-c", "import time; time.sleep(60)"]],
                              models=["vgg16"])
    try:
        at = open_page(AppTest.from_file(APP, default_timeout=TIMEOUT), "train")
        at.button(key="train_start").click().run()
        assert not at.exception
        assert any("already running" in e.value for e in at.error)
        assert status.job_status().job_id == holder.job_id  # no second job was started
    finally:
        status.cancel_job()
