"""AppTest of the bundled real-face models and reference runs (GPU or CPU) beside the user's runs."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from emotion_core import store
from emotion_core.views import dataset_tables, samples
from emotion_core.views import labels as run_names
from tests.fixtures_runs import DATASET, MODELS, copy_run, copy_store

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.apptest_helpers import (
    APP,
    PAGES,
    TIMEOUT,
    chart_data,
    face_png,
    fresh_warm_up,
    join_warm_up,
    open_page,
)

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
    open_page(at)
    board = at.dataframe[0].value
    assert len(board) == len(ids) and board["run"].is_unique
    assert {m.label: m.value for m in at.metric}["Runs shown"] == f"{len(ids)} of {len(ids)}"
    bars = [y for trace in chart_data(at, 0) for y in trace["y"]]
    assert len(bars) == len(set(bars)) == len(ids)


def test_predict_and_explain_default_to_bundled_models_on_a_synthetic_dataset(at_store) -> None:
    at, ids = at_store
    bundled = _bundle_real_face_model(ids)
    open_page(at, "predict")
    assert at.multiselect(key="pr_runs").value == [bundled]  # the demo's runs are cartoon-trained
    assert len(at.multiselect(key="pr_runs").options) == len(ids) + 1  # theirs still offered
    assert any("research-only" in c.value and "bundled real-face" in c.value for c in at.caption)
    assert any("realfaces card" in m.value for m in at.markdown)  # its model card, on demand
    at.file_uploader(key="pr_upload").set_value(("face.png", face_png(), "image/png")).run()
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
    at = open_page(AppTest.from_file(APP, default_timeout=TIMEOUT), "explain")
    at.multiselect(key="ex_runs").set_value([cropper, cnn]).run()
    at.radio(key="ex_src").set_value("upload").run()
    at.file_uploader(key="ex_upload").set_value(("face.png", face_png(), "image/png")).run()
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
    at.file_uploader(key="fm_upload").set_value(("face.png", face_png(), "image/png")).run()
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
    open_page(at, "predict")
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
    at = open_page(AppTest.from_file(APP, default_timeout=TIMEOUT))
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
    open_page(at, "predict")
    assert at.multiselect(key="pr_runs").value == [BUNDLED_ID]
    at.checkbox(key="pr_sample").check().run()  # no photo at hand: the committed real face
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.value.startswith(f"{samples.SAMPLE_PHOTO_NAME}: 1 face found")
               for c in at.caption)
    assert [n.endswith("· bundled") for n in at.dataframe[0].value["run"]] == [True]
    # Explain has no dataset folder to draw samples from: the sample photo's maps at once, the
    # uploader one click away, not a dead end
    open_page(at, "explain")
    assert at.radio(key="ex_src").options == ["sample photo", "upload"]
    assert any(c.value == samples.SAMPLE_PHOTO_NAME for c in at.caption)
    assert len(at.image) >= 1, "the bundled model's maps of the sample's face"
    at.radio(key="ex_src").set_value("upload").run()
    assert at.file_uploader(key="ex_upload") is not None
    assert any("image folder is not on this machine" in c.value for c in at.caption)
    assert not any("upload a picture instead" in i.value for i in at.info)
    open_page(at, "data")  # names the set the sidebar picked and why it has nothing to show
    (info,) = [i.value for i in at.info if "**seta+setb** is known here only from its runs" in i.value]
    assert "for each of its sets (seta, setb)" in info and "scripts.train --data" in info


def test_a_fresh_clones_warm_up_loads_the_bundled_model_before_the_first_photo(
        monkeypatch, tmp_path, built_store) -> None:
    root, ids = built_store
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    _bundle_real_face_model(ids)
    monkeypatch.setenv(store.paths.ENV_ROOT, str(tmp_path / "empty"))  # a fresh clone's store
    loads, _ = fresh_warm_up(monkeypatch)
    at = open_page(AppTest.from_file(APP, default_timeout=TIMEOUT))  # Home: no page needs it yet
    join_warm_up()
    assert loads == [BUNDLED_ID]
    open_page(at, "predict")
    at.file_uploader(key="pr_upload").set_value(("face.png", face_png(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert loads == [BUNDLED_ID]  # the photo's answer found the model loaded


def test_reference_runs_in_compare_and_confusion_only(at_store) -> None:
    at, ids = at_store
    rid = _write_reference_set(ids)
    _write_reference_set(ids, "cpuset", device="cpu")
    open_page(at, "compare")
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
        open_page(at, "predict")
        at.file_uploader(key="pr_upload").set_value(("face.png", face_png(), "image/png")).run()
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
    at = open_page(AppTest.from_file(APP, default_timeout=TIMEOUT))
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
    open_page(at, "predict")
    picker = at.multiselect(key="pr_runs")
    offered = [o for o in picker.options if o.startswith("faceapi_expression")]
    assert len(offered) == 1 and offered[0].endswith("external reference")
    assert picker.value == [bundled]  # offered, never ticked at first
    picker.set_value([bundled, peer]).run()
    at.file_uploader(key="pr_upload").set_value(("face.png", face_png(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    names = list(at.dataframe[0].value["run"])
    assert any(n.startswith("faceapi_expression") and n.endswith("external reference") for n in names)
    assert "bundled" in names[0] and len(names) == 3  # and the mean of the two, computed now
    # the bundled model through its export, the peer (no export: rebuilt from its weights) not
    assert list(at.dataframe[0].value["engine"]) == ["onnx", "torch", "onnx+torch"]
    at.switch_page("pages/explain.py").run()  # Explain offers it too, and draws its maps
    at.multiselect(key="ex_runs").set_value([peer]).run()
    at.radio(key="ex_src").set_value("upload").run()
    at.file_uploader(key="ex_upload").set_value(("face.png", face_png(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    at.checkbox(key="ex_score").check().run()
    assert not at.exception, [e.value for e in at.exception]
    aucs = [m for m in at.metric if m.label in ("deletion AUC", "insertion AUC")]
    assert len(aucs) >= 2, "its maps are drawn and scored like any run's"
    (SOURCE.folder() / "model" / "face_expression_model.bin").unlink()
    open_page(at, "predict")
    assert not any(o.startswith("faceapi_expression") for o in at.multiselect(key="pr_runs").options)
