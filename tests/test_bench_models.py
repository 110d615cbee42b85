"""scripts.benchmark: both sections run end to end on tiny models and report what they timed."""
from __future__ import annotations

import pytest

from scripts.bench import models as benchmark

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_explain_section_times_every_applicable_method(capsys) -> None:
    assert benchmark.main(["--section", "explain", "--tiny", "--threads", "1", "--models", "mobilenet_v2,vit_scratch",
                           "--image-size", "32"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("method"):out.index("maps over 1 s")].splitlines()
    header = table[0].split()[1:]  # drop the "method" label of the columns
    for method in ("gradcam", "layercam", "eigencam", "attention", "rollout", "featuremap"):
        assert method in header
    assert "scorecam" not in header  # only with --scorecam
    cnn = next(line for line in table if line.startswith("mobilenet_v2")).split()[1:]
    vit = next(line for line in table if line.startswith("vit_scratch")).split()[1:]
    assert cnn[header.index("attention")] == "-"  # a CNN has no attention maps
    assert all(float(v) >= 0 for v in vit)
    assert "at 32px, 1 torch threads" in out


def test_throughput_section_reports_both_loops(capsys) -> None:
    assert benchmark.main(["--tiny", "--models", "mobilenet_v2", "--image-size", "32",
                           "--batch-size", "2", "--steps", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "train_ratio" in out and "infer_ratio" in out and "32px" in out


def test_bad_arguments_exit_2(capsys) -> None:
    assert benchmark.main(["--models", "nope"]) == 2
    assert benchmark.main(["--steps", "0", "--models", "mobilenet_v2"]) == 2


def test_onnx_section_times_both_engines(capsys) -> None:
    assert benchmark.main(["--section", "onnx", "--tiny", "--models", "mobilenet_v2,vit_scratch",
                           "--sizes", "32", "--repeats", "2", "--warmup", "0", "--interleave"]) == 0
    out = capsys.readouterr().out
    assert "1 thread each" in out and "interleaved per repeat" in out
    assert "load average (1/5/15 min) at start" in out and "load average at end" in out
    table = out[out.index("model"):out.index("speedup =")].splitlines()
    assert table[0].split() == ["model", "px", "torch_ms", "onnx_ms", "speedup", "max_dp", "onnx_mb"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert set(rows) == {"mobilenet_v2", "vit_scratch"}
    assert all(float(r[2]) > 0 and float(r[3]) > 0 and float(r[5]) <= 1e-4 for r in rows.values())
