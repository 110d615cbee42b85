"""scripts/benchmark_data: the real CLI on a tiny folder, and its user-error handling."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from scripts.bench import data as benchmark_data


def tiny_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "valid"):
        for label in ("angry", "happy", "sad"):
            (root / split / label).mkdir(parents=True)
            for k in range(3 if split == "train" else 1):
                img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(img).save(root / split / label / f"{k}.png")
    return root


def test_benchmark_prints_both_rates_and_ends_with_speedup(tmp_path, capsys):
    root = tiny_folder(tmp_path / "faces")
    args = ["--data", str(root), "--size", "16", "--batch-size", "4", "--threads", "1"]
    assert benchmark_data.main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"speedup: \d+\.\d\d", out[-1])
    assert any(line.startswith("slow ") and "img/s" in line for line in out)
    assert any("6 train images" in line for line in out)  # 3 per class, 1 carved for test
    assert benchmark_data.main(args) == 0  # second run reuses the preparation and the cache
    assert "reused preparation" in capsys.readouterr().out


def test_benchmark_user_errors_exit_2_with_one_sentence(tmp_path, capsys):
    assert benchmark_data.main(["--data", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not a folder" in err and "Traceback" not in err
    assert benchmark_data.main(["--data", str(tmp_path), "--size", "2"]) == 2
