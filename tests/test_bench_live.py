"""scripts.bench.live --beside: a frozen frame timed beside a streaming worker, per thread count."""
from __future__ import annotations

import threading

import torch
from torch import nn

from emotion_core.views import live_video as lv
from scripts.bench import live as bench
from tests.fixtures_runs import photo_640x480


class _Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.calls: dict[str, int] = {}  # forwards per thread: the timed one and the worker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        who = "timed" if threading.current_thread() is threading.main_thread() else "worker"
        self.calls[who] = self.calls.get(who, 0) + 1
        return torch.zeros(x.shape[0], 3) + self.w


def test_beside_times_both_thread_counts_while_the_worker_streams() -> None:
    before = torch.get_num_threads()
    net = _Counting()
    manifest = {"model": "tiny", "classes": ["angry", "happy", "sad"], "image_size": 32,
                "mean": [0.5] * 3, "std": [0.25] * 3}
    try:
        times = bench.measure_beside([lv.LiveModel("r", "tiny", net, manifest)],
                                     photo_640x480(1), pairs=2)
    finally:
        torch.set_num_threads(before)
    assert set(times) == {1, before}
    assert all(len(v) == (2 if before > 1 else 4) and min(v) > 0 for v in times.values())
    # the frozen frame's face was classified each time (a warm-up and 4 timed); the worker streamed
    assert net.calls["timed"] == 5 and net.calls["worker"] >= 1


def test_stored_runs_answer_as_in_the_app_or_through_pytorch_when_asked() -> None:
    """`--run` models: the run's export (as the app's webcam) and, asked for, its PyTorch model."""
    from emotion_core.evaluation.export import export_run
    from tests.test_export import store_tiny_run

    store_tiny_run("r", "mobilenet_v2")
    assert [m.name for m in bench._models([], 32, ["r"])] == ["r [torch]"]  # no export yet
    export_run("r")
    models = bench._models([], 32, ["r"], ("predict", "torch"))
    assert [m.name for m in models] == ["r [onnx]", "r [torch]"]
    assert getattr(models[0].model, "engine", "") == "onnx"
