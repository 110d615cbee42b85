"""scripts.bench.predict_cost: Predict's per-face cost of several runs, alone and together."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from scripts.bench import predict_cost as bench

CLASSES = ["angry", "happy", "sad"]


class _Logged(nn.Module):
    """A tiny classifier that writes its name into a shared log on every forward."""

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name, self.log = name, log
        self.conv = nn.Conv2d(3, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.name)
        return self.conv(x).mean(dim=(2, 3))


def _loader(log: list[str]):
    manifest = {"model": "tiny", "classes": CLASSES, "image_size": 32, "mean": [0.5] * 3,
                "std": [0.25] * 3, "weights_source": "scratch"}
    models = {rid: _Logged(rid, log) for rid in ("a", "b", "c")}
    return lambda rid: (models[rid], {**manifest, "model": rid})


def test_times_every_run_on_every_face_and_the_sum_per_face() -> None:
    log: list[str] = []
    crops = [np.full((40, 40, 3), v, dtype=np.uint8) for v in (10, 120, 240)]
    times = bench.measure(["a", "b", "c"], crops, passes=2, loader=_loader(log))
    assert set(times) == {"a", "b", "c", "all"}
    assert all(len(v) == 2 * len(crops) for v in times.values())  # the warm-up pass dropped
    for j, total in enumerate(times["all"]):  # together = the sum of the runs on that face
        assert total == pytest.approx(sum(times[r][j] for r in "abc"))
    # every face read by every run in each of the 3 passes (warm-up included)...
    assert sorted(log) == sorted(["a", "b", "c"] * 3 * len(crops))
    # ...in a rotating order, so no run is always the first (cold) one on a face
    firsts = {log[k] for k in range(0, len(log), 3)}
    assert firsts == {"a", "b", "c"}


def test_two_engines_are_timed_face_by_face_in_one_rotation() -> None:
    """With two loaders (Predict's and PyTorch's) every run goes through each on every face, the
    order rotating over all of them, and each engine's sum per face is its own."""
    log_a: list[str] = []
    log_b: list[str] = []
    crops = [np.full((40, 40, 3), v, dtype=np.uint8) for v in (10, 120, 240, 60)]
    times = bench.measure(["a", "b"], crops, passes=1,
                          engines={"predict": _loader(log_a), "torch": _loader(log_b)})
    assert set(times) == {"a [predict]", "b [predict]", "a [torch]", "b [torch]",
                          "all [predict]", "all [torch]"}
    assert sorted(log_a) == sorted(log_b) == sorted(["a", "b"] * 2 * len(crops))
    for j, total in enumerate(times["all [torch]"]):
        assert total == pytest.approx(times["a [torch]"][j] + times["b [torch]"][j])


def test_an_unknown_engine_is_a_usage_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(["--runs", "r", "--images", str(tmp_path), "--engines", "predict,tensorrt"])
    assert exc.value.code == 2 and "--engines" in capsys.readouterr().err


def test_a_run_that_fails_stops_the_benchmark_naming_it() -> None:
    def broken(rid: str):
        raise FileNotFoundError("no weights")

    with pytest.raises(SystemExit, match="r1: cannot load"):
        bench.measure(["r1"], [np.zeros((40, 40, 3), np.uint8)], passes=1, loader=broken)


def test_percentile_interpolates_like_numpy() -> None:
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0]
    for q in (0, 10, 50, 90, 100):
        assert bench.percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_a_missing_folder_or_no_run_is_a_usage_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(["--runs", "r", "--images", str(tmp_path / "nowhere")])
    assert exc.value.code == 2 and "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        bench.main(["--runs", " , ", "--images", str(tmp_path)])
    assert exc.value.code == 2
