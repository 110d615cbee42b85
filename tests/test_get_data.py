"""scripts.get_data: the synthetic CLI, and HES failing fast (one sentence, exit 2) offline."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emotion_core import store
from emotion_core.data import synthetic
from scripts import get_data

REPO = Path(__file__).resolve().parent.parent


def _run_cli(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "scripts.get_data", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


def _assert_one_line_error(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"EMOTION_OFFLINE", "HTTPS_PROXY", "https_proxy"}}
    env.update(KAGGLEHUB_CACHE=str(tmp_path / "kagglehub"), **extra)  # no cached copy to fall back on
    return env


# ---------------------------------------------------------------------------------------------
# synthetic


def test_synthetic_default_out_and_reuse(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["synthetic", "--n", "6", "--size", "32", "--quiet"]
    assert get_data.main(args) == 0
    out = store.paths.generated_data_dir("synthetic")
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    assert synthetic.dataset_matches(out, n=6, size=32, seed=0)
    assert len(list(out.glob("*/*/*.mask.png"))) == 6
    assert get_data.main(args) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert get_data.main([*args, "--seed", "1"]) == 0  # other parameters: redrawn in place
    assert synthetic.dataset_matches(out, n=6, size=32, seed=1)


@pytest.mark.parametrize("extra, words", [
    (["--n", "2"], "at least the number of classes"),
    (["--size", "8"], "between 32 and 1024"),
])
def test_synthetic_bad_arguments_exit_2(extra: list[str], words: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert get_data.main(["synthetic", "--out", str(tmp_path / "o"), "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1


def test_synthetic_will_not_overwrite_a_foreign_folder(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert get_data.main(["synthetic", "--out", str(tmp_path), "--n", "3", "--size", "32"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_synthetic_runs_as_a_module(tmp_path: Path) -> None:
    out = tmp_path / "faces"
    proc, _ = _run_cli(["synthetic", "--out", str(out), "--n", "3", "--size", "32"], _clean_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    assert "synthetic faces" in proc.stderr  # the tqdm bar
    assert len([p for p in out.rglob("*.png") if not p.name.endswith(".mask.png")]) == 3


# ---------------------------------------------------------------------------------------------
# hes


def test_hes_offline_flag_fails_fast_with_one_sentence(tmp_path: Path) -> None:
    proc, elapsed = _run_cli(["hes"], _clean_env(tmp_path, EMOTION_OFFLINE="1"))
    _assert_one_line_error(proc)
    assert "kaggle" in proc.stderr.lower() and "synthetic" in proc.stderr
    assert elapsed < 30  # interpreter start-up only; nothing waits on the network


def test_hes_real_probe_fails_fast_without_internet(tmp_path: Path) -> None:
    if get_data.kaggle_reachable(timeout=2.0):
        pytest.skip("www.kaggle.com is reachable here; the offline path cannot be exercised")
    proc, elapsed = _run_cli(["hes", "--timeout", "2"], _clean_env(tmp_path))
    _assert_one_line_error(proc)
    assert elapsed < 30


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_probe_is_bounded_and_honours_the_https_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setattr(get_data, "KAGGLE_HOST", ("127.0.0.1", _closed_port()))
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    start = time.monotonic()
    assert get_data.kaggle_reachable(timeout=1.0) is False
    assert time.monotonic() - start < 2.0
    with socket.socket() as server:  # a listening "proxy": the probe must go there instead
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert get_data.kaggle_reachable(timeout=1.0) is True


def _fake_hes_cache(cache: Path, version: int = 3) -> Path:
    """Lay out a kagglehub cache entry the way kagglehub itself marks it complete."""
    from kagglehub.cache import Cache
    from kagglehub.handle import parse_dataset_handle

    base = cache / "datasets" / "muhammadhananasghar" / "human-emotions-datasethes"
    root = base / "versions" / str(version) / "Emotions Dataset" / "Emotions Dataset"
    for split in ("train", "test"):
        for cls in ("Angry", "Happy", "Sad"):
            (root / split / cls).mkdir(parents=True)
            (root / split / cls / f"{cls.lower()}_1.jpg").write_bytes(b"\xff\xd8fake")
    (root / "train" / "Angry" / "readme.txt").write_text("not an image")
    Cache().mark_as_complete(parse_dataset_handle(
        f"muhammadhananasghar/human-emotions-datasethes/versions/{version}"))
    return root


def test_hes_offline_uses_a_complete_cached_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EMOTION_OFFLINE", "1")
    root = _fake_hes_cache(tmp_path / "cache")
    assert get_data.main(["hes"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(root)

    out = tmp_path / "hes"
    assert get_data.main(["hes", "--out", str(out)]) == 0
    mirrored = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert mirrored == [f"{s}/{c}/{c}_1.jpg" for s in ("test", "train") for c in ("angry", "happy", "sad")]
    assert os.path.samefile(out / "train" / "angry" / "angry_1.jpg", root / "train" / "Angry" / "angry_1.jpg")


def test_hes_offline_ignores_an_incomplete_cached_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EMOTION_OFFLINE", "1")
    _fake_hes_cache(tmp_path / "cache")
    for marker in (tmp_path / "cache").rglob("*.complete"):
        marker.unlink()  # an interrupted download
    assert get_data.main(["hes"]) == 2
    assert "cannot reach www.kaggle.com" in capsys.readouterr().err


def test_find_image_root_flat_nested_and_missing(tmp_path: Path) -> None:
    flat = tmp_path / "flat" / "inner"
    for cls in ("angry", "Happy", "SAD", "other"):
        (flat / cls).mkdir(parents=True)
    assert get_data.find_image_root(tmp_path / "flat") == flat
    nested = tmp_path / "nested" / "data"
    for split in ("train", "valid"):
        for cls in ("angry", "happy", "sad"):
            (nested / split / cls).mkdir(parents=True)
    assert get_data.find_image_root(tmp_path / "nested") == nested
    (tmp_path / "bad" / "train" / "angry").mkdir(parents=True)
    with pytest.raises(get_data.UserError, match="angry/happy/sad"):
        get_data.find_image_root(tmp_path / "bad")
