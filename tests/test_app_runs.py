"""AppTest of runs told apart (two runs of one model), controls that keep their state, the Train
form, and runs that appear mid-session."""
from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from emotion_core import store
from emotion_core.jobs import status
from emotion_core.models import REGISTRY
from emotion_core.views import dataset_tables, run_choice
from emotion_core.views import labels as run_names
from tests.fixtures_runs import DATASET, MODELS, copy_run, copy_store
from tests.polling import wait_until

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.apptest_helpers import (
    APP,
    TIMEOUT,
    chart_data,
    face_png,
    open_page,
)

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
    open_page(at, "predict")
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
    open_page(at)
    _offered(at.multiselect(key="runs"), cnns, labels)  # the sidebar
    assert set(cnns) <= set(at.multiselect(key="runs").value)
    board = at.dataframe[0].value
    assert mine <= set(board["run"])  # all three runs of the CNN are listed, by name
    assert mine <= {y for trace in chart_data(at, 0) for y in trace["y"]}  # one bar each

    open_page(at, "compare")
    table = at.dataframe[2].value  # provenance: the run ids
    assert set(cnns) <= set(table["run id"]) and table["run id"].is_unique
    assert mine <= {y for trace in chart_data(at, 0) for y in trace["y"]}  # metric bars
    for chart in (1, 2):  # per-class recall and training curves: one legend entry per run
        assert mine <= {trace["name"] for trace in chart_data(at, chart)}

    open_page(at, "confusion")
    _offered(at.selectbox(key="cm_run"), cnns, labels)
    for rid in cnns:
        at.selectbox(key="cm_run").set_value(rid).run()
        assert not at.exception and len(at.get("plotly_chart")) == 1

    open_page(at, "feature_maps")
    _offered(at.selectbox(key="fm_run"), cnns, labels)
    for rid in cnns:
        at.selectbox(key="fm_run").set_value(rid).run()
        assert not at.exception and len(at.image) == 2  # the input and its channel grid

    open_page(at, "explain")
    _offered(at.multiselect(key="ex_runs"), cnns, labels)
    at.multiselect(key="ex_runs").set_value(cnns).run()
    assert not at.exception
    captions = [c for img in at.image for c in img.captions]
    for rid in cnns:
        assert sum(c.startswith(f"{labels[rid]} → ") for c in captions) == 1

    open_page(at, "predict")
    _offered(at.multiselect(key="pr_runs"), cnns, labels)
    ticked = at.multiselect(key="pr_runs").value
    assert len(set(ticked) & set(cnns)) == 1, "one run per model ticked at first"
    at.multiselect(key="pr_runs").set_value([*ticked, *(set(cnns) - set(ticked))]).run()
    at.file_uploader(key="pr_upload").set_value(("face.png", face_png(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    summary = at.dataframe[0].value.set_index("run")
    assert summary.index.is_unique and mine <= set(summary.index)
    assert summary.loc[sorted(mine), "prediction"].notna().all()  # every one answers
    axis = {y for trace in chart_data(at, 0) for y in trace["y"]}  # short names, one per answer
    assert {MODELS[1], f"{MODELS[1]} #2", f"{MODELS[1]} #3"} <= axis
    hover = {c[0] for trace in chart_data(at, 0) for c in trace["customdata"]}
    assert mine <= hover  # the full label on hover


# ---------------------------------------------------------------------------------------------
# Controls that keep their state, the Train form, runs that appear mid-session


def test_a_run_written_mid_session_is_ticked_in_the_sidebar(built_store, monkeypatch,
                                                            tmp_path) -> None:
    root = copy_store(built_store[0], tmp_path / "store")
    ids = built_store[1]
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    at = open_page(AppTest.from_file(APP, default_timeout=TIMEOUT))
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
    open_page(at)
    assert not any(b.key == "train_start" for b in at.button)  # not hidden in the sidebar
    assert not at.sidebar.code  # no clipped log box in the sidebar
    open_page(at, "train")
    assert at.multiselect(key="train_models").value == ["mini_xception", "mobilenet_v2"]
    options = at.multiselect(key="train_models").options
    # the defaults lead the list; a variant of a body (mini_xception_96) sits beside it, unticked
    assert [o for o in options if not REGISTRY[o].variant_of][:2] == ["mini_xception", "mobilenet_v2"]
    assert options.index("mini_xception_96") == options.index("mini_xception") + 1
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
    open_page(at, "train")
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
        picker = open_page(at, "train").multiselect(key="train_datasets")
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
    open_page(at, "data")
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
    step = ("from emotion_core.store.events import EventLog; print('hello from the job'); "
            "EventLog.from_env().bind(model='vgg16').emit('warning', text='constant', epoch=None)")
    job = status.start_steps([[sys.executable, "-c", step]], models=["vgg16"])
    wait_until(lambda: not status.job_status(job.job_id).running, timeout=10, every=0.1)
    at = open_page(AppTest.from_file(APP, default_timeout=TIMEOUT), "train")
    assert any(job.job_id in c.value for c in at.caption)
    (log,) = [e for e in at.expander if e.label == "Log"]
    assert "hello from the job" in log.code[0].value
    assert "**vgg16**: constant" in [w.value for w in at.main.warning]  # the training's warning
    assert not at.sidebar.code and not at.sidebar.warning  # the sidebar: state and progress only


def test_explain_keeps_the_cam_layer_when_the_picture_source_changes(at_store) -> None:
    at, _ = at_store
    open_page(at, "explain")
    at.select_slider(key="ex_finer").set_value(2).run()
    at.radio(key="ex_src").set_value("upload").run()  # no upload yet: the page waits for one
    assert at.select_slider(key="ex_finer").value == 2
    at.file_uploader(key="ex_upload").set_value(("face.png", face_png(), "image/png")).run()
    assert not at.exception
    assert at.select_slider(key="ex_finer").value == 2
    hints = [c for c in at.caption if "scripts.explain" in c.value]
    assert len(hints) <= 1  # the CLI hint once, not under every map


def test_feature_maps_slider_and_maps_stay_on_one_layer_after_switching_to_upload(at_store) -> None:
    at, _ = at_store
    open_page(at, "feature_maps")
    slider = at.select_slider(key="fm_layer")
    last = slider.options[-1]
    slider.set_value(last).run()
    at.radio(key="fm_src").set_value("upload").run()
    at.file_uploader(key="fm_upload").set_value(("face.png", face_png(), "image/png")).run()
    assert not at.exception
    assert at.select_slider(key="fm_layer").value == last
    assert any(c.startswith(f"{last}: channels") for img in at.image for c in img.captions)


# ---------------------------------------------------------------------------------------------
# A run whose model answers one class for every image


def test_compare_and_the_leaderboard_say_which_run_collapsed(built_store, monkeypatch, tmp_path,
                                                             capsys) -> None:
    from scripts import leaderboard as leaderboard_cli

    root = copy_store(built_store[0], tmp_path / "store")
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    cnn = built_store[1][MODELS[1]]
    collapsed = copy_run(root, cnn, cnn[:-2] + ("58" if cnn.endswith("59") else "59"))
    path = store.paths.run_file(collapsed, store.paths.METRICS)
    scores = store.read_json(path)
    n = len(scores["classes"])  # 10 images of each class, all answered with the first class
    scores["val"]["confusion"] = [[10] + [0] * (n - 1) for _ in range(n)]
    scores["val"].update(n=10 * n, accuracy=1 / n)
    store.write_json(path, scores)
    label = run_names.run_labels(store.list_runs()[0])[collapsed]

    what = f"'{scores['classes'][0]}' for every val image"
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for page in (None, "compare"):  # Home's leaderboard, Compare's scores
        (warning,) = open_page(at, page).warning
        assert warning.value.startswith("These runs give one answer to every image")
        assert warning.value.endswith(f"started.\n- **{label}**: {what}")  # that run, no other
    assert leaderboard_cli.main([]) == 0
    out = capsys.readouterr().out
    assert "note: These runs give one answer" in out and out.endswith(f"- {collapsed}: {what}\n")
