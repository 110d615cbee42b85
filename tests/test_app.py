"""AppTest for every page: against a tiny real run store, the empty store, and a broken run."""
from __future__ import annotations

import io
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emotion_core import store
from emotion_core.jobs import status
from emotion_core.views import dataset_tables, run_choice, samples
from emotion_core.views import labels as run_names
from emotion_core.views import tables as explorer
from tests.fixtures_runs import DATASET, MODELS, copy_run, copy_store, photo_640x480, tiny_store
from tests.polling import wait_until

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 120  # model loads and CAMs on 2 shared cores
PAGES = ["data", "compare", "confusion", "feature_maps", "explain", "predict", "train"]


@pytest.fixture(scope="session")
def built_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Dataset + two tiny trained runs + their ensemble, built once with the real code."""
    return tiny_store(tmp_path_factory)


@pytest.fixture
def at_store(built_store, monkeypatch: pytest.MonkeyPatch) -> tuple[AppTest, dict[str, str]]:
    root, ids = built_store
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    return AppTest.from_file(APP, default_timeout=TIMEOUT), ids


def _open(at: AppTest, page: str | None = None) -> AppTest:
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [x.value for kind in ("info", "warning", "error", "success") for x in at.get(kind)]
    return "\n".join(str(p) for p in parts)


def _face_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo_640x480(1)).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------


def test_empty_store_explains_what_is_missing_and_offers_the_demo(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(store.paths.ENV_ROOT, str(tmp_path / "empty"))
    at = _open(AppTest.from_file(APP, default_timeout=TIMEOUT))
    text = _texts(at)
    assert "no trained runs" in text and "no prepared dataset" in text
    assert at.button(key="start_demo").label == "Start the quick demo job"
    for page in PAGES:
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert at.title[0].value  # the page still renders its title and a hint


def test_home_shows_dataset_source_and_leaderboard_with_weights(at_store) -> None:
    at, ids = at_store
    _open(at)
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
    _open(at, "data")
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
    _open(at, "compare")
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
    _open(at, "compare")
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
    assert "Pick two different runs." in _texts(at)


def test_confusion_page_cell_drilldown(at_store) -> None:
    at, ids = at_store
    _open(at, "confusion")
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
    _open(at, "confusion")
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
    from emotion_core.views import samples

    at, ids = at_store
    monkeypatch.setattr(samples, "run_images_root", lambda manifest: None)
    _open(at, "confusion")
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
    _open(at, "feature_maps")
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
    _open(at, "explain")
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
    at = _open(AppTest.from_file(APP, default_timeout=TIMEOUT), "explain")
    run_share = [m for m in at.metric if m.label == "run mask share"]
    assert len(run_share) == 1  # only the run that was scored, beside its Grad-CAM
    assert run_share[0].value == f"{stored['methods']['gradcam']['mean']:.3f}"
    # an upload has no mask: deletion/insertion only when asked for
    at.radio(key="ex_src").set_value("upload").run()
    at.file_uploader(key="ex_upload").set_value(("face.png", _face_png(), "image/png")).run()
    assert not any(m.label.endswith(" AUC") for m in at.metric)
    at.checkbox(key="ex_score").check().run()
    assert not at.exception, [e.value for e in at.exception]
    aucs = [float(m.value) for m in at.metric if m.label in ("deletion AUC", "insertion AUC")]
    assert len(aucs) == 2 * 4  # two CAM columns + attention + rollout, two AUCs each
    assert all(0.0 <= v <= 1.0 for v in aucs)


def _fresh_warm_up(monkeypatch) -> tuple[list[str], object]:
    """Warm-up on, empty model cache, load_model counted; returns (loads, gate to hold loads)."""
    import threading

    from emotion_core import evaluation as evaluate
    from pages import _cache, _warmup

    monkeypatch.setenv(_warmup.WARM_UP_ENV, "1")
    _cache._model.clear()
    _warmup._started.clear()
    loads: list[str] = []
    gate = threading.Event()
    gate.set()
    real = evaluate.load_model

    def counted(rid, **kw):
        gate.wait(TIMEOUT)
        loads.append(rid)
        return real(rid, **kw)

    monkeypatch.setattr(evaluate, "load_model", counted)
    return loads, gate


def _join_warm_up() -> None:
    import threading

    from pages import _warmup

    for t in threading.enumerate():
        if t.name == _warmup.WARM_UP_THREAD:
            t.join(timeout=TIMEOUT)


def test_app_start_warms_the_model_cache_for_the_pages(at_store, monkeypatch) -> None:
    at, ids = at_store
    loads, _ = _fresh_warm_up(monkeypatch)
    _open(at)  # Home only: no page needs a model yet
    _join_warm_up()
    assert sorted(loads) == sorted(ids[m] for m in MODELS)  # every model run, each once
    at.switch_page("pages/explain.py").run()
    at.switch_page("pages/feature_maps.py").run()
    assert not at.exception
    assert len(loads) == len(MODELS)  # the pages found every model already loaded


def test_warm_up_imports_wait_while_a_page_runs(monkeypatch) -> None:
    import threading

    from pages import _warmup

    done: list[str] = []
    monkeypatch.setattr(_warmup, "WARM_UP_IMPORTS", ("first.piece", "second.piece"))
    monkeypatch.setattr(_warmup, "QUIET_FOR_S", 1.0)
    monkeypatch.setattr(_warmup.importlib, "import_module", done.append)
    page_done = threading.Event()
    page = threading.Thread(target=page_done.wait, args=(TIMEOUT,), name=_warmup.SCRIPT_THREAD)
    page.start()  # a session's page run, as Streamlit names its thread
    importer = threading.Thread(target=_warmup._import_slow_libraries)
    importer.start()
    importer.join(timeout=0.5)
    assert done == [] and importer.is_alive(), "no import while a page runs"
    page_done.set()
    page.join()
    importer.join(timeout=0.2)
    assert done == [] and importer.is_alive(), "nor right after one: its person may act next"
    importer.join(timeout=TIMEOUT)
    assert done == ["first.piece", "second.piece"]


def test_warm_up_imports_go_at_once_while_a_page_waits_for_the_warm_up(monkeypatch) -> None:
    """A page waiting for the warm-up polls it every second, so pages always seem to run: had
    the imports yielded to them, each piece would wait QUIET_WAIT_S (Explain said "Loading"
    for 96 s on a fresh server)."""
    import threading

    from pages import _warmup

    done: list[str] = []
    monkeypatch.setattr(_warmup, "WARM_UP_IMPORTS", ("first.piece", "second.piece"))
    monkeypatch.setattr(_warmup, "QUIET_WAIT_S", 120.0)
    monkeypatch.setattr(_warmup, "_waited_on", None)
    monkeypatch.setattr(_warmup.importlib, "import_module", done.append)
    page_done = threading.Event()
    page = threading.Thread(target=page_done.wait, args=(TIMEOUT,), name=_warmup.SCRIPT_THREAD)
    page.start()
    try:
        _warmup._note_waiting()  # what wait_for and its poll do
        importer = threading.Thread(target=_warmup._import_slow_libraries)
        importer.start()
        importer.join(timeout=30)
        assert done == ["first.piece", "second.piece"] and page.is_alive()
    finally:
        page_done.set()
        page.join()


def _two_modules(tmp_path, monkeypatch, tag: str) -> tuple[str, str]:
    """A module whose first statement imports a second one, both new to this process."""
    outer, inner = f"warmup_{tag}_outer", f"warmup_{tag}_inner"
    (tmp_path / f"{outer}.py").write_text(f"import {inner}\n")
    (tmp_path / f"{inner}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return outer, inner


def test_a_warm_up_import_holds_at_its_next_statement_while_a_page_runs(tmp_path,
                                                                         monkeypatch) -> None:
    import builtins
    import threading

    from pages import _warmup

    outer, inner = _two_modules(tmp_path, monkeypatch, "hold")
    monkeypatch.setattr(_warmup, "YIELD_MAX_S", 60.0)  # only the page's end may release it
    real_import = builtins.__import__
    page_done = threading.Event()
    page = threading.Thread(target=page_done.wait, args=(TIMEOUT,), name=_warmup.SCRIPT_THREAD)
    page.start()
    importer = threading.Thread(target=_warmup._import_yielding, args=(outer,))
    importer.start()
    try:
        assert wait_until(lambda: outer in sys.modules, TIMEOUT)  # the piece has begun...
        importer.join(timeout=0.3)
        assert inner not in sys.modules and importer.is_alive(), "...and holds while a page runs"
    finally:
        page_done.set()
    importer.join(timeout=TIMEOUT)
    assert sys.modules[inner].VALUE == 1 and not importer.is_alive()
    assert builtins.__import__ is real_import  # the hook is gone after the piece


def test_a_warm_up_import_never_holds_a_module_a_page_waits_for(tmp_path, monkeypatch) -> None:
    import threading

    from pages import _warmup

    outer, inner = _two_modules(tmp_path, monkeypatch, "lock")
    monkeypatch.setattr(_warmup, "YIELD_MAX_S", 60.0)
    page_done = threading.Event()
    got: list[bool] = []

    def page() -> None:  # a page run that needs the module the warm-up is half-way through
        assert wait_until(lambda: outer in sys.modules, TIMEOUT)
        got.append(__import__(outer) is not None)
        page_done.wait(TIMEOUT)

    runner = threading.Thread(target=page, name=_warmup.SCRIPT_THREAD)
    runner.start()
    importer = threading.Thread(target=_warmup._import_yielding, args=(outer,))
    importer.start()
    try:
        # Held for the page, the warm-up would deadlock with it until YIELD_MAX_S ran out.
        assert wait_until(lambda: got == [True], timeout=10), "the page got its module"
        importer.join(timeout=10)
        assert not importer.is_alive() and inner in sys.modules
    finally:
        page_done.set()
        runner.join()


def test_a_warm_up_import_does_not_hold_while_a_page_waits_for_the_warm_up(tmp_path,
                                                                           monkeypatch) -> None:
    import threading

    from pages import _warmup

    outer, inner = _two_modules(tmp_path, monkeypatch, "waited")
    monkeypatch.setattr(_warmup, "YIELD_MAX_S", 60.0)
    monkeypatch.setattr(_warmup, "QUIET_WAIT_S", 120.0)  # without the rule it held 60 s
    monkeypatch.setattr(_warmup, "_waited_on", None)
    page_done = threading.Event()
    page = threading.Thread(target=page_done.wait, args=(TIMEOUT,), name=_warmup.SCRIPT_THREAD)
    page.start()
    try:
        _warmup._note_waiting()
        importer = threading.Thread(target=_warmup._import_yielding, args=(outer,))
        importer.start()
        importer.join(timeout=30)
        assert inner in sys.modules and not importer.is_alive() and page.is_alive()
    finally:
        page_done.set()
        page.join()


def test_explain_page_waits_for_the_warm_up_instead_of_blocking(at_store, monkeypatch) -> None:
    from pages import _warmup

    at, ids = at_store
    loads, gate = _fresh_warm_up(monkeypatch)
    monkeypatch.setattr(_warmup, "_waited_on", None)
    gate.clear()  # the warm-up thread is stuck on its first model
    _open(at)
    at.switch_page("pages/explain.py").run()
    assert not at.exception
    assert any("in the background" in i.value for i in at.info)
    assert not any("→" in c for img in at.image for c in img.captions)  # no map yet
    assert _warmup._someone_waits(), "the warm-up knows a person waits for it"
    gate.set()
    _join_warm_up()
    at.run()
    assert not at.exception
    assert not any("in the background" in i.value for i in at.info)
    assert sum("→" in c for img in at.image for c in img.captions) == 2
    assert sorted(loads) == sorted(ids[m] for m in MODELS)  # loaded by the thread, once each


def test_predict_page_every_run_and_the_ensemble(at_store) -> None:
    at, ids = at_store
    _open(at, "predict")
    at.file_uploader(key="pr_upload").set_value(("face.png", _face_png(), "image/png")).run()
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
    axis = {y for trace in _chart_data(at, 0) for y in trace["y"]}
    assert axis == {*MODELS, "mean (now)", "stored ensemble"}  # short names on the chart
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["name"] for t in spec["data"]} == {"angry", "happy", "sad"}  # a legend entry each
    # the classes in one row above the bars: a legend beside a short chart scrolls and hides one
    assert spec["layout"]["legend"]["orientation"] == "h"


def test_predict_page_why_maps_beside_every_answer_and_the_link_to_explain(at_store) -> None:
    at, ids = at_store
    _open(at, "predict")
    at.file_uploader(key="pr_upload").set_value(("face.png", _face_png(), "image/png")).run()
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
    _open(at, "predict")
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
    _open(at, "predict")
    at.radio(key="pr_source").set_value("Live webcam").run()
    assert not at.exception, [e.value for e in at.exception]
    live = at.multiselect(key="live_runs")
    assert live.value == [ids[MODELS[1]]]  # the fastest model run (no stored ensemble live)
    assert ids["ensemble"] not in live.options
    assert at.select_slider(key="live_every").value == 2
    assert at.slider(key="live_window").value == 5
    text = _texts(at)
    assert "exponential moving average" in text and "alpha = 0.33" in text
    assert "Press START" in text
    assert fake.kwargs["rtc_configuration"] == {"iceServers": []}  # loopback/LAN, no STUN
    assert fake.kwargs["async_processing"] is True
    at.slider(key="live_window").set_value(1).run()
    assert "not smoothed" in _texts(at)
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
    _open(at, "predict")
    at.file_uploader(key="pr_upload").set_value(("notes.jpg", b"not an image", "image/jpeg")).run()
    assert not at.exception
    assert any("not an image" in e.value for e in at.error)


def test_predict_page_no_face_offers_the_whole_image(at_store) -> None:
    at, _ = at_store
    _open(at, "predict")
    buf = io.BytesIO()
    Image.fromarray(np.full((240, 320, 3), 100, np.uint8)).save(buf, format="PNG")
    at.file_uploader(key="pr_upload").set_value(("wall.png", buf.getvalue(), "image/png")).run()
    assert any("No face" in w.value for w in at.warning)
    at.checkbox(key="pr_whole").check().run()
    assert not at.exception and "Whole image" in [s.value for s in at.subheader]


def test_train_page_lists_runs(at_store) -> None:
    at, ids = at_store
    _open(at, "train")
    assert set(at.dataframe[0].value["run id"]) == set(ids.values())


def test_broken_run_is_listed_and_the_others_still_work(built_store, monkeypatch, tmp_path) -> None:
    root = copy_store(built_store[0], tmp_path / "store")
    ids = built_store[1]
    (root / "runs" / ids[MODELS[0]] / "weights.safetensors").unlink()
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    at = _open(AppTest.from_file(APP, default_timeout=TIMEOUT))
    assert ids[MODELS[0]] in _texts(at) and "weights.safetensors" in _texts(at)
    assert not any(r.startswith(f"{MODELS[0]} · ") for r in at.dataframe[0].value["run"])
    at.switch_page("pages/predict.py").run()
    at.file_uploader(key="pr_upload").set_value(("face.png", _face_png(), "image/png")).run()
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
        at = _open(AppTest.from_file(APP, default_timeout=TIMEOUT), "train")
        at.button(key="train_start").click().run()
        assert not at.exception
        assert any("already running" in e.value for e in at.error)
        assert status.job_status().job_id == holder.job_id  # no second job was started
    finally:
        status.cancel_job()


# ---------------------------------------------------------------------------------------------
# Two runs of one model: both offered, both named apart, both answering, on every page


@pytest.fixture
def at_twins(built_store, monkeypatch, tmp_path) -> tuple[AppTest, list[str], dict[str, str]]:
    """The tiny store plus two more runs of the CNN: one retrained an hour later, and one made in
    the same minute (their labels differ only by the run id's tail). Returns (app, the three CNN
    run ids, {run id: expected label})."""
    root = copy_store(built_store[0], tmp_path / "store")
    cnn = built_store[1][MODELS[1]]
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    created = datetime.fromisoformat(store.load_run(cnn, tables=False).manifest["created"])
    later = created + timedelta(hours=1)
    retrained = copy_run(root, cnn, f"{DATASET}-{MODELS[1]}-{later:%Y%m%d-%H%M%S}",
                         created=later.isoformat())
    same_minute = copy_run(root, cnn, cnn[:-2] + ("58" if cnn.endswith("59") else "59"))
    runs, _ = store.list_runs()
    return (AppTest.from_file(APP, default_timeout=TIMEOUT), [cnn, retrained, same_minute],
            run_names.run_labels(runs))


def _chart_data(at: AppTest, i: int) -> list[dict]:
    return json.loads(at.get("plotly_chart")[i].proto.spec)["data"]


def _offered(widget, cnns: list[str], labels: dict[str, str]) -> None:
    assert len(set(widget.options)) == len(widget.options), widget.options  # no label twice
    assert {labels[r] for r in cnns} <= set(widget.options)


def test_predict_ticks_one_run_per_model_of_a_real_face_dataset(at_twins, monkeypatch) -> None:
    """Answering with every run ever trained was slow and repeated one architecture (30 runs
    ticked on an experiment store): the best run of each model is ticked, the rest offered."""
    at, cnns, labels = at_twins
    monkeypatch.setattr(run_choice, "learned_real_faces", lambda rec: True)  # as if real photos
    path = store.paths.run_file(cnns[2], store.paths.MANIFEST)  # an external model scored here,
    manifest = store.read_json(path)  # the best on validation of its model's runs
    store.write_json(path, {**manifest, "kind": "reference", "trained_on": "X",
                            "headline": {**manifest["headline"], "val_macro_f1": 0.99}})
    _open(at, "predict")
    widget = at.multiselect(key="pr_runs")
    assert len(widget.options) == len(set(widget.options)) and len(widget.options) >= 3
    assert len(set(widget.value) & set(cnns[:2])) == 1  # one of the two runs of the CNN...
    assert cnns[2] not in widget.value  # ...and the external reference offered, not ticked
    models = [store.load_run(r, tables=False).manifest["model"] for r in widget.value]
    assert len(models) == len(set(models)) and MODELS[0] in models


def test_runs_of_one_model_are_told_apart_on_every_page(at_twins) -> None:
    at, cnns, labels = at_twins
    mine = {labels[r] for r in cnns}
    assert len(mine) == 3 and all(label.startswith(f"{MODELS[1]} · ") for label in mine)
    _open(at)
    _offered(at.multiselect(key="runs"), cnns, labels)  # the sidebar
    assert set(cnns) <= set(at.multiselect(key="runs").value)
    board = at.dataframe[0].value
    assert mine <= set(board["run"])  # all three runs of the CNN are listed, by name
    assert mine <= {y for trace in _chart_data(at, 0) for y in trace["y"]}  # one bar each

    _open(at, "compare")
    table = at.dataframe[2].value  # provenance: the run ids
    assert set(cnns) <= set(table["run id"]) and table["run id"].is_unique
    assert mine <= {y for trace in _chart_data(at, 0) for y in trace["y"]}  # metric bars
    for chart in (1, 2):  # per-class recall and training curves: one legend entry per run
        assert mine <= {trace["name"] for trace in _chart_data(at, chart)}

    _open(at, "confusion")
    _offered(at.selectbox(key="cm_run"), cnns, labels)
    for rid in cnns:
        at.selectbox(key="cm_run").set_value(rid).run()
        assert not at.exception and len(at.get("plotly_chart")) == 1

    _open(at, "feature_maps")
    _offered(at.selectbox(key="fm_run"), cnns, labels)
    for rid in cnns:
        at.selectbox(key="fm_run").set_value(rid).run()
        assert not at.exception and len(at.image) == 2  # the input and its channel grid

    _open(at, "explain")
    _offered(at.multiselect(key="ex_runs"), cnns, labels)
    at.multiselect(key="ex_runs").set_value(cnns).run()
    assert not at.exception
    captions = [c for img in at.image for c in img.captions]
    for rid in cnns:
        assert sum(c.startswith(f"{labels[rid]} → ") for c in captions) == 1

    _open(at, "predict")
    _offered(at.multiselect(key="pr_runs"), cnns, labels)
    ticked = at.multiselect(key="pr_runs").value
    assert len(set(ticked) & set(cnns)) == 1, "one run per model ticked at first"
    at.multiselect(key="pr_runs").set_value([*ticked, *(set(cnns) - set(ticked))]).run()
    at.file_uploader(key="pr_upload").set_value(("face.png", _face_png(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    summary = at.dataframe[0].value.set_index("run")
    assert summary.index.is_unique and mine <= set(summary.index)
    assert summary.loc[sorted(mine), "prediction"].notna().all()  # every one answers
    axis = {y for trace in _chart_data(at, 0) for y in trace["y"]}  # short names, one per answer
    assert {MODELS[1], f"{MODELS[1]} #2", f"{MODELS[1]} #3"} <= axis
    hover = {c[0] for trace in _chart_data(at, 0) for c in trace["customdata"]}
    assert mine <= hover  # the full label on hover


# ---------------------------------------------------------------------------------------------
# Controls that keep their state, the Train form, runs that appear mid-session


def test_a_run_written_mid_session_is_ticked_in_the_sidebar(built_store, monkeypatch,
                                                            tmp_path) -> None:
    root = copy_store(built_store[0], tmp_path / "store")
    ids = built_store[1]
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    at = _open(AppTest.from_file(APP, default_timeout=TIMEOUT))
    at.multiselect(key="runs").set_value([ids[MODELS[1]]]).run()  # the user narrows the choice
    assert {m.label: m.value for m in at.metric}["Runs shown"] == f"1 of {len(ids)}"
    cnn = ids[MODELS[1]]
    created = datetime.fromisoformat(store.load_run(cnn, tables=False).manifest["created"])
    new = copy_run(root, cnn, f"{DATASET}-{MODELS[1]}-{created + timedelta(hours=2):%Y%m%d-%H%M%S}",
                   created=(created + timedelta(hours=2)).isoformat())  # a job just wrote it
    at.run()
    assert not at.exception
    assert at.multiselect(key="runs").value == [cnn, new]  # kept the choice, added the new run
    assert {m.label: m.value for m in at.metric}["Runs shown"] == f"2 of {len(ids) + 1}"
    board = at.dataframe[0].value  # on the leaderboard
    assert sum(r.startswith(f"{MODELS[1]} · ") for r in board["run"]) == 2


def test_train_form_is_on_the_train_page_with_fast_defaults(at_store) -> None:
    at, _ = at_store
    _open(at)
    assert not any(b.key == "train_start" for b in at.button)  # not hidden in the sidebar
    assert not at.sidebar.code  # no clipped log box in the sidebar
    _open(at, "train")
    assert at.multiselect(key="train_models").value == ["mini_xception", "mobilenet_v2"]
    assert at.multiselect(key="train_models").options[:2] == ["mini_xception", "mobilenet_v2"]
    assert "fer_mini_xception" not in at.multiselect(key="train_models").options
    assert at.button(key="train_start").label == "Start training"


def test_train_form_starts_the_real_face_recipe_when_chosen(at_store, monkeypatch) -> None:
    from emotion_core import jobs
    from emotion_core.views import train_form

    started: list[list[str]] = []
    def start_job(args: list[str]) -> status.JobInfo:  # records what the form would start
        started.append(args)
        return status.JobInfo(job_id=f"job-{len(started)}", state="running", pid=None, started=0.0)

    monkeypatch.setattr(jobs, "start_job", start_job)
    at, _ = at_store
    _open(at, "train")
    radio = at.radio(key="train_recipe")
    assert radio.value == "profile" and radio.options == list(train_form.RECIPES.values())
    at.button(key="train_start").click().run()
    at.radio(key="train_recipe").set_value("real-faces").run()  # a fresh handle: the old tree still holds the click
    at.button(key="train_start").click().run()
    assert len(started) == 2, started
    plain, real = started
    assert "--crop-faces" not in plain and "--epochs" not in plain
    assert plain[:4] == ["--data", str(dataset_tables.dataset_root(DATASET)), "--name", DATASET]
    assert real[real.index("--models") + 1] == "mini_xception,mobilenet_v2"
    assert all(flag in real for flag in train_form.REAL_FACE_FLAGS)
    assert real[-2:] == ["--epochs", str(train_form.REAL_FACE_EPOCHS)]


def test_train_form_trains_several_sets_together(built_store, monkeypatch, tmp_path) -> None:
    from emotion_core import jobs
    from emotion_core.data import open_folder
    from emotion_core.data.combine import combine
    from tests import tiny_shapes

    root = copy_store(built_store[0], tmp_path / "store")
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    other = tiny_shapes.make_folder(tmp_path / "shapes")
    open_folder(other, "shapes", progress=False)
    started: list[list[str]] = []
    monkeypatch.setattr(jobs, "start_job", lambda args: started.append(args) or status.JobInfo(
        job_id="job-1", state="running", pid=None, started=0.0))
    combine([open_folder(dataset_tables.dataset_root(DATASET), DATASET, progress=False),
             open_folder(other, "shapes", progress=False)])  # as a two-set training run does
    for current in (DATASET, "shapes"):  # the sidebar's dataset comes ticked
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.session_state["dataset"] = current
        picker = _open(at, "train").multiselect(key="train_datasets")
        assert set(picker.options) == {DATASET, "shapes", f"{DATASET}+shapes"}
        assert picker.value == [current]
    mine = [str(dataset_tables.dataset_root(DATASET)), str(other)]
    for chosen in ([DATASET, "shapes"], [f"{DATASET}+shapes"], [f"{DATASET}+shapes", "shapes"]):
        at.multiselect(key="train_datasets").set_value(chosen).run()
        at.button(key="train_start").click().run()
        assert not at.exception
        args = started.pop()
        assert "--name" not in args  # several sets are named 'a+b' by scripts.train
        # a combination trains on its sets' own folders, not on the parent its report names
        assert [args[i + 1] for i, a in enumerate(args) if a == "--data"] == mine, chosen
    at.multiselect(key="train_datasets").set_value([]).run()
    assert at.button(key="train_start").disabled  # nothing to train on


def test_data_page_of_sets_trained_together_shows_each_set_and_links_to_it(
        built_store, monkeypatch, tmp_path) -> None:
    import shutil

    from emotion_core.data import open_folder
    from emotion_core.data.combine import combine
    from emotion_core.data.layout import is_image_file
    from tests import tiny_shapes

    root = copy_store(built_store[0], tmp_path / "store")
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    other = tiny_shapes.make_folder(tmp_path / "shapes")
    mine = open_folder(dataset_tables.dataset_root(DATASET), DATASET, progress=False)
    first = sorted(p for p in (Path(mine.root) / "test").rglob("*") if is_image_file(p))[0]
    shutil.copy(first, other / "train" / first.parent.name / "copied.png")  # in both sets
    both = combine([mine, open_folder(other, "shapes", progress=False)])
    counts = dataset_tables.counts_by_source(both.name)
    assert list(dict.fromkeys(counts["source"])) == [DATASET, "shapes"]
    for source, part in counts.groupby("source"):
        assert part["n"].sum() == (both.split["source"] == source).sum()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["dataset"] = both.name
    _open(at, "data")
    assert not at.exception, [e.value for e in at.exception]
    assert any("2 prepared sets trained together" in i.value for i in at.info)
    assert not any("prepare_data" in i.value for i in at.info), "no advice to prepare it again"
    (copies,) = [d.value for d in at.dataframe]
    assert list(copies["issue"]) == ["duplicate_across_sets"] and "copied.png" in copies["file"].iloc[0]
    for source in (DATASET, "shapes"):  # where each set's test and val came from
        assert any(c.value.startswith(f"{source}: Test: ") for c in at.caption), source
    at.button(key="data_show_shapes").click().run()
    assert at.session_state["dataset"] == "shapes" and not at.exception
    assert not any("trained together" in i.value for i in at.info)
    assert any(c.value.startswith("Dataset **shapes**") for c in at.caption)


def test_train_page_shows_the_jobs_status_line_and_keeps_the_log_in_an_expander(
        built_store, monkeypatch, tmp_path) -> None:
    root = copy_store(built_store[0], tmp_path / "store")
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    job = status.start_steps([[sys.executable, "-c", "print('hello from the job')"]],
                             models=["mobilenet_v2"])
    wait_until(lambda: not status.job_status(job.job_id).running, timeout=10, every=0.1)
    at = _open(AppTest.from_file(APP, default_timeout=TIMEOUT), "train")
    assert any(job.job_id in c.value for c in at.caption)
    (log,) = [e for e in at.expander if e.label == "Log"]
    assert "hello from the job" in log.code[0].value
    assert not at.sidebar.code  # the sidebar shows state and progress only


def test_explain_keeps_the_cam_layer_when_the_picture_source_changes(at_store) -> None:
    at, _ = at_store
    _open(at, "explain")
    at.select_slider(key="ex_finer").set_value(2).run()
    at.radio(key="ex_src").set_value("upload").run()  # no upload yet: the page waits for one
    assert at.select_slider(key="ex_finer").value == 2
    at.file_uploader(key="ex_upload").set_value(("face.png", _face_png(), "image/png")).run()
    assert not at.exception
    assert at.select_slider(key="ex_finer").value == 2
    hints = [c for c in at.caption if "scripts.explain" in c.value]
    assert len(hints) <= 1  # the CLI hint once, not under every map


def test_feature_maps_slider_and_maps_stay_on_one_layer_after_switching_to_upload(at_store) -> None:
    at, _ = at_store
    _open(at, "feature_maps")
    slider = at.select_slider(key="fm_layer")
    last = slider.options[-1]
    slider.set_value(last).run()
    at.radio(key="fm_src").set_value("upload").run()
    at.file_uploader(key="fm_upload").set_value(("face.png", _face_png(), "image/png")).run()
    assert not at.exception
    assert at.select_slider(key="fm_layer").value == last
    assert any(c.startswith(f"{last}: channels") for img in at.image for c in img.captions)


# ---------------------------------------------------------------------------------------------
# Bundled real-face models and reference runs (GPU or CPU) beside the user's runs

BUNDLED_ID = "realfaces-mobilenet_v2"


def _bundle_real_face_model(ids: dict[str, str]) -> str:
    """The tiny CNN run bundled as if it had learned on two real-face sets, with its export."""
    from emotion_core.evaluation.export import export_run
    from emotion_core.store import bundle

    path = bundle.bundle_run(ids["mobilenet_v2"], "# realfaces card\nresearch-only data",
                             bundle_id=BUNDLED_ID)
    manifest = store.read_json(path / store.paths.MANIFEST)
    manifest.update(dataset="seta+setb", sources=["seta", "setb"], dataset_root="/nowhere")
    store.write_json(path / store.paths.MANIFEST, manifest)
    export_run(BUNDLED_ID)  # as the server's start exports every bundled model
    return BUNDLED_ID


def _write_reference_set(ids: dict[str, str], name: str = "gpuset", device: str = "cuda:0",
                         rid: str | None = None) -> str:
    """A reference set holding a copy of the tiny CNN run's tables (no weights), as if trained
    on `device`; `rid`: its run id (default: a new one)."""
    rec = store.load_run(ids["mobilenet_v2"])
    rid = rid or f"tinyfaces-mobilenet_v2-{name}"
    manifest = dict(rec.manifest, run_id=rid, created="2026-11-27T21:19:11", git_commit="abc123def",
                    git_changed=False,  # whatever state this checkout is in
                    timings=dict(rec.manifest["timings"], device=device))
    folder = store.paths.reference_dir() / name
    folder.mkdir(parents=True)
    store.write_json(folder / store.paths.REFERENCE_MANIFESTS,
                     {"note": "full profile on a test GPU", "runs": {rid: manifest}})
    store.write_json(folder / store.paths.REFERENCE_METRICS, {rid: rec.metrics})
    for table in ("history", "confusion", "predictions"):
        store.write_csv(folder / f"{table}.csv", getattr(rec, table).assign(run_id=rid))
    return rid


def test_a_reference_set_of_runs_still_in_the_store_lists_each_run_once(at_store) -> None:
    """On the machine that made a reference set its runs are also in the store: one row each
    (two rows with one id drew one stacked bar of twice the score)."""
    at, ids = at_store
    _write_reference_set(ids, "ownset", device="cpu", rid=ids["mobilenet_v2"])
    _open(at)
    board = at.dataframe[0].value
    assert len(board) == len(ids) and board["run"].is_unique
    assert {m.label: m.value for m in at.metric}["Runs shown"] == f"{len(ids)} of {len(ids)}"
    bars = [y for trace in _chart_data(at, 0) for y in trace["y"]]
    assert len(bars) == len(set(bars)) == len(ids)


def test_predict_and_explain_default_to_bundled_models_on_a_synthetic_dataset(at_store) -> None:
    at, ids = at_store
    bundled = _bundle_real_face_model(ids)
    _open(at, "predict")
    assert at.multiselect(key="pr_runs").value == [bundled]  # the demo's runs are cartoon-trained
    assert len(at.multiselect(key="pr_runs").options) == len(ids) + 1  # theirs still offered
    assert any("research-only" in c.value and "bundled real-face" in c.value for c in at.caption)
    assert any("realfaces card" in m.value for m in at.markdown)  # its model card, on demand
    at.file_uploader(key="pr_upload").set_value(("face.png", _face_png(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    names = list(at.dataframe[0].value["run"])
    assert len(names) == 1 and "bundled" in names[0]
    assert list(at.dataframe[0].value["engine"]) == ["onnx"]  # through the export it ships
    at.switch_page("pages/explain.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key="ex_runs").value == [bundled]
    # real-face models open on the real sample photo, not on one of the demo's cartoons
    src = at.radio(key="ex_src")
    assert src.options == ["sample photo", "dataset sample", "upload"]
    assert src.value == "sample photo"
    assert any(c.value == samples.SAMPLE_PHOTO_NAME for c in at.caption)
    # a cartoon-trained run ticked beside them: the dataset's samples come first again, and
    # the source already shown is kept
    at.multiselect(key="ex_runs").set_value([bundled, ids[MODELS[0]]]).run()
    assert at.radio(key="ex_src").options == ["dataset sample", "sample photo", "upload"]
    assert at.radio(key="ex_src").value == "sample photo"


def test_explain_and_feature_maps_cut_the_face_for_a_run_trained_on_face_crops(
        built_store, monkeypatch, tmp_path) -> None:
    import streamlit as st

    from emotion_core.views import probe

    root = copy_store(built_store[0], tmp_path / "store")
    cnn = built_store[1][MODELS[1]]
    cropper = copy_run(root, cnn, cnn[:-2] + ("58" if cnn.endswith("59") else "59"))
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    path = store.paths.run_file(cropper, store.paths.MANIFEST)
    manifest = store.read_json(path)
    manifest["config"] = dict(manifest.get("config") or {}, crop_faces=True, face_margin=0.25,
                              face_fit="inside")
    store.write_json(path, manifest)
    st.cache_data.clear()  # maps of this picture from other tests would skip the spies
    read: dict[str, tuple[int, ...]] = {}
    real_cam, real_grid = probe.cam_view, probe.feature_map_grid

    def cam_spy(model, manifest, rgb, *args, **kwargs):
        read[manifest["run_id"]] = rgb.shape
        return real_cam(model, manifest, rgb, *args, **kwargs)

    def grid_spy(model, manifest, rgb, *args, **kwargs):
        read["feature maps"] = rgb.shape
        return real_grid(model, manifest, rgb, *args, **kwargs)

    monkeypatch.setattr(probe, "cam_view", cam_spy)
    monkeypatch.setattr(probe, "feature_map_grid", grid_spy)
    at = _open(AppTest.from_file(APP, default_timeout=TIMEOUT), "explain")
    at.multiselect(key="ex_runs").set_value([cropper, cnn]).run()
    at.radio(key="ex_src").set_value("upload").run()
    at.file_uploader(key="ex_upload").set_value(("face.png", _face_png(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert read[cnn] == (480, 640, 3)  # a run on whole pictures: the upload as it is
    h, w, _ = read[cropper]
    assert h == w < 480  # the face crop it was trained on
    notes = [c.value for c in at.caption if "largest face, cut as it was trained" in c.value]
    assert len(notes) == 1 and "kept inside the picture" in notes[0]

    # a synthetic sample: the cut run's ground-truth mask is cut with its picture's box
    from emotion_core.data import faces

    box = faces.FaceBox(20, 20, 24, 24)
    monkeypatch.setattr(faces, "largest_face", lambda rgb: box)
    st.cache_data.clear()  # the first view of this sample searched it for real
    cuts = []
    real_mask = probe.load_mask
    monkeypatch.setattr(probe, "load_mask", lambda path, size, cut=None: (
        cuts.append(cut), real_mask(path, size, cut))[1])
    at.radio(key="ex_src").set_value("dataset sample").run()
    assert not at.exception, [e.value for e in at.exception]
    assert read[cropper] == (36, 36, 3)  # the 24 px box grown by 0.25 per side
    # the cut run's mask is cut like its picture; the whole-picture runs' masks are not
    assert [c for c in cuts if c is not None] == [(faces.CropSpec(0.25, "inside"), box)]
    assert len(cuts) > 1 and len([m for m in at.metric if m.label == "mask energy share"]) == len(cuts)

    at.switch_page("pages/feature_maps.py").run()
    at.selectbox(key="fm_run").set_value(cropper).run()
    at.radio(key="fm_src").set_value("upload").run()
    at.file_uploader(key="fm_upload").set_value(("face.png", _face_png(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert read["feature maps"] == (36, 36, 3)  # the same face search (still the fixed box)
    assert any("largest face" in c.value for c in at.caption)


def test_the_bundled_caption_counts_what_is_ticked() -> None:
    from pages import _sidebar

    sets = ["affectnet3", "webfaces3"]
    assert _sidebar.bundled_caption(2, 2, sets).startswith("Ticked: 2 bundled real-face")
    assert _sidebar.bundled_caption(2, 1, sets).startswith("Ticked: 1 of the 2 bundled")  # handoff
    assert _sidebar.bundled_caption(2, 0, sets).startswith("Also offered: 2 bundled")
    assert "trained on affectnet3, webfaces3; research-only" in _sidebar.bundled_caption(1, 1, sets)
    assert "2 bundled real-face models that come with" in _sidebar.bundled_caption(2, 2, sets)
    assert "1 bundled real-face model that comes with" in _sidebar.bundled_caption(1, 1, sets)


def test_predict_prefers_the_datasets_runs_once_they_learned_real_faces(at_store, monkeypatch) -> None:
    at, ids = at_store
    bundled = _bundle_real_face_model(ids)
    # the same runs, as if their dataset were photos: no generator metadata at its root
    monkeypatch.setattr(dataset_tables.synthetic, "METADATA_FILE", "no-such-file.json")
    monkeypatch.setattr(dataset_tables.synthetic, "DEMO_DATASET", "no-such-dataset")
    _open(at, "predict")
    chosen = at.multiselect(key="pr_runs").value
    assert bundled not in chosen and set(chosen) == set(ids.values())
    assert any("Also offered" in c.value for c in at.caption)
    at.switch_page("pages/explain.py").run()  # the dataset's own photos come first
    assert at.radio(key="ex_src").value == "dataset sample"
    at.multiselect(key="ex_runs").set_value([bundled]).run()  # photos of its own: still them
    assert at.radio(key="ex_src").options[0] == "dataset sample"


def test_home_offers_the_demo_and_points_to_the_bundled_models(monkeypatch, tmp_path,
                                                               built_store) -> None:
    root, ids = built_store
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    _bundle_real_face_model(ids)
    monkeypatch.setenv(store.paths.ENV_ROOT, str(tmp_path / "empty"))  # a fresh clone's store
    at = _open(AppTest.from_file(APP, default_timeout=TIMEOUT))
    assert at.button(key="start_demo").label == "Start the quick demo job"
    assert any("1 bundled real-face model is ready" in s.value for s in at.success)
    # the bundled model's dataset is picked: its runs are listed, not hidden by the empty state
    ready, board = at.dataframe  # the bundled models first (beside any peer), then all runs
    assert "Bundled models beside the peers" in {h.value for h in at.subheader}
    assert [r.endswith("· bundled") for r in ready.value["run"]] == [True]
    assert ready.value["all sets"].iloc[0] == pytest.approx(
        store.load_run(BUNDLED_ID, tables=False).manifest["headline"]["test_accuracy"])
    assert [r.endswith("· bundled") for r in board.value["run"]] == [True]
    assert {m.label: m.value for m in at.metric}["Data source"] == "not prepared here"
    assert any("scripts.prepare_data" in c.value for c in at.caption)
    _open(at, "predict")
    assert at.multiselect(key="pr_runs").value == [BUNDLED_ID]
    at.checkbox(key="pr_sample").check().run()  # no photo at hand: the committed real face
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.value.startswith(f"{samples.SAMPLE_PHOTO_NAME}: 1 face found")
               for c in at.caption)
    assert [n.endswith("· bundled") for n in at.dataframe[0].value["run"]] == [True]
    # Explain has no dataset folder to draw samples from: the sample photo's maps at once, the
    # uploader one click away, not a dead end
    _open(at, "explain")
    assert at.radio(key="ex_src").options == ["sample photo", "upload"]
    assert any(c.value == samples.SAMPLE_PHOTO_NAME for c in at.caption)
    assert len(at.image) >= 1, "the bundled model's maps of the sample's face"
    at.radio(key="ex_src").set_value("upload").run()
    assert at.file_uploader(key="ex_upload") is not None
    assert any("image folder is not on this machine" in c.value for c in at.caption)
    assert not any("upload a picture instead" in i.value for i in at.info)
    _open(at, "data")  # names the set the sidebar picked and why it has nothing to show
    (info,) = [i.value for i in at.info if "**seta+setb** is known here only from its runs" in i.value]
    assert "for each of its sets (seta, setb)" in info and "scripts.train --data" in info


def test_a_fresh_clones_warm_up_loads_the_bundled_model_before_the_first_photo(
        monkeypatch, tmp_path, built_store) -> None:
    root, ids = built_store
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    _bundle_real_face_model(ids)
    monkeypatch.setenv(store.paths.ENV_ROOT, str(tmp_path / "empty"))  # a fresh clone's store
    loads, _ = _fresh_warm_up(monkeypatch)
    at = _open(AppTest.from_file(APP, default_timeout=TIMEOUT))  # Home: no page needs it yet
    _join_warm_up()
    assert loads == [BUNDLED_ID]
    _open(at, "predict")
    at.file_uploader(key="pr_upload").set_value(("face.png", _face_png(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert loads == [BUNDLED_ID]  # the photo's answer found the model loaded


def test_reference_runs_in_compare_and_confusion_only(at_store) -> None:
    at, ids = at_store
    rid = _write_reference_set(ids)
    _write_reference_set(ids, "cpuset", device="cpu")
    _open(at, "compare")
    origin = at.dataframe[2].value
    assert {"GPU reference (set gpuset, 11-27 21:19, abc123de)",
            "CPU reference (set cpuset, 11-27 21:19, abc123de)"} <= set(origin["role"])
    assert any(c.value.startswith("GPU reference set `gpuset`: full profile on a test GPU")
               for c in at.caption)
    assert any(c.value.startswith("CPU reference set `cpuset`") for c in at.caption)
    at.switch_page("pages/confusion.py").run()
    assert any("GPU reference" in o for o in at.selectbox(key="cm_run").options)
    at.selectbox(key="cm_run").set_value(rid).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 1
    for page, key in (("predict", "pr_runs"), ("explain", "ex_runs")):
        at.switch_page(f"pages/{page}.py").run()
        options = at.multiselect(key=key).options
        assert not at.exception and options
        assert not any(k in o for o in options for k in ("GPU reference", "CPU reference"))


def test_predict_says_when_a_training_job_shares_the_cpu(at_store, monkeypatch) -> None:
    from emotion_core import jobs

    at, _ = at_store
    running = SimpleNamespace(running=True, job_id="j", state="running", progress=0.5,
                              message="", models=[], started=0.0, returncode=None, steps=[])
    for busy in (False, True):
        monkeypatch.setattr(jobs, "job_status", lambda *a, _b=busy, **k: running if _b else None)
        _open(at, "predict")
        at.file_uploader(key="pr_upload").set_value(("face.png", _face_png(), "image/png")).run()
        note = [c.value for c in at.caption if " found · detection" in c.value]
        assert not at.exception and note and ("a training job is running" in note[0]) == busy


def test_a_refit_run_shows_test_numbers_only_on_every_page(built_store, monkeypatch,
                                                           tmp_path) -> None:
    """A refit has no val answers: the pages show its test numbers and leave val empty."""
    from emotion_core import data
    from emotion_core.training import loop as train
    from emotion_core.training.config import DRY_RUN_CHANGES, get_profile

    root = copy_store(built_store[0], tmp_path / "store")
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    ds = data.prepare_dataset(store.paths.generated_data_dir(DATASET), DATASET, progress=False)
    config = get_profile("quick").override(**{**DRY_RUN_CHANGES, "max_batches": 0,
                                              "batch_size": 16, "refit": True})
    rid = train.fit(MODELS[1], ds, config, progress=False)
    store.write_leaderboard()
    at = _open(AppTest.from_file(APP, default_timeout=TIMEOUT))
    board = at.dataframe[0].value
    shown = [r for r in store.list_runs()[0] if r.manifest.get("dataset") == DATASET]
    (row,) = (r for _, r in board.iterrows() if r["run"] == run_names.run_labels(shown)[rid])
    assert pd.isna(row["val macro-F1"]) and not pd.isna(row["test macro-F1"])
    for page in PAGES:
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
    at.switch_page("pages/compare.py").run()
    origin = next(d.value for d in at.dataframe if "role" in d.value.columns)
    refit_roles = [r for r in origin["role"] if "refit on train + val" in r]
    assert len(refit_roles) == 1 and refit_roles[0].startswith("trained here")
    at.switch_page("pages/confusion.py").run()
    at.selectbox(key="cm_run").set_value(rid).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 1


def test_predict_offers_the_external_references_whose_weights_are_here(at_store, monkeypatch,
                                                                         tmp_path) -> None:
    """A fresh clone's reference set of face-api.js (tables only) answers a photo on Predict once
    its npm weights are here: offered beside the bundled model, not ticked, labelled external."""
    from tests.test_faceapi import SOURCE, _peer_set
    from tests.tfjs_reference import make_faceapi_manifest

    at, ids = at_store
    monkeypatch.setenv(store.paths.ENV_WEIGHTS_DIR, str(tmp_path / "weights"))
    bundled = _bundle_real_face_model(ids)
    make_faceapi_manifest(SOURCE.folder() / "model")
    peer = _peer_set()["run_id"]
    _open(at, "predict")
    picker = at.multiselect(key="pr_runs")
    offered = [o for o in picker.options if o.startswith("faceapi_expression")]
    assert len(offered) == 1 and offered[0].endswith("external reference")
    assert picker.value == [bundled]  # offered, never ticked at first
    picker.set_value([bundled, peer]).run()
    at.file_uploader(key="pr_upload").set_value(("face.png", _face_png(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    names = list(at.dataframe[0].value["run"])
    assert any(n.startswith("faceapi_expression") and n.endswith("external reference") for n in names)
    assert "bundled" in names[0] and len(names) == 3  # and the mean of the two, computed now
    # the bundled model through its export, the peer (no export: rebuilt from its weights) not
    assert list(at.dataframe[0].value["engine"]) == ["onnx", "torch", "onnx+torch"]
    at.switch_page("pages/explain.py").run()  # Explain offers it too, and draws its maps
    at.multiselect(key="ex_runs").set_value([peer]).run()
    at.radio(key="ex_src").set_value("upload").run()
    at.file_uploader(key="ex_upload").set_value(("face.png", _face_png(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    at.checkbox(key="ex_score").check().run()
    assert not at.exception, [e.value for e in at.exception]
    aucs = [m for m in at.metric if m.label in ("deletion AUC", "insertion AUC")]
    assert len(aucs) >= 2, "its maps are drawn and scored like any run's"
    (SOURCE.folder() / "model" / "face_expression_model.bin").unlink()
    _open(at, "predict")
    assert not any(o.startswith("faceapi_expression") for o in at.multiselect(key="pr_runs").options)
