"""The team's real face sets: counts match their README, and the cleaning finds the known leaks."""
from __future__ import annotations

import re

import pytest

from emotion_core import data, store
from emotion_core.data import layout
from tests.conftest import shared_data_or_skip

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def _readme_counts(name: str) -> dict[str, dict[str, int]]:
    """Per-split, per-class counts from the table in shared/data/README.md."""
    text = (store.paths.shared_data_dir(name).parent / "README.md").read_text()
    out: dict[str, dict[str, int]] = {}
    for m in re.finditer(rf"^\|\s*{name}\s*\|\s*(\w+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|",
                         text, flags=re.M):
        split = layout.canonical_split(m.group(1))
        out[split] = dict(zip(("angry", "happy", "sad"), map(int, m.group(2, 3, 4)), strict=True))
    assert out, f"no rows for {name} in the shared data README"
    return out


@pytest.fixture(scope="module")
def affectnet3(tmp_path_factory: pytest.TempPathFactory):
    """Prepared once for the module (indexing 14.6k images takes about a minute on 2 cores)."""
    root = shared_data_or_skip("affectnet3")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(store.paths.ENV_ROOT, str(tmp_path_factory.mktemp("affectnet3")))
        yield data.prepare_dataset(root, progress=False)


@pytest.mark.parametrize("name", ["webfaces3", "affectnet3"])
def test_discovered_counts_match_readme(name):
    root = shared_data_or_skip(name)
    files = data.discover(root).files
    counts = files.groupby(["source_split", "label"]).size()
    found = {s: {c: int(n) for (s2, c), n in counts.items() if s2 == s}
             for s in files["source_split"].unique()}
    assert found == _readme_counts(name)


def test_affectnet3_report(affectnet3):
    rep = affectnet3.report
    assert rep["counts"] == _readme_counts("affectnet3")  # every file decodes
    issues = rep["issues"]
    assert issues["duplicate_across_splits"] > 0  # train copies of test pictures
    assert issues["unreadable"] == issues["not_an_image"] == 0
    # The test set is fixed: cleaning never removes a readable test picture.
    assert rep["subset_counts"]["test"] == rep["counts"]["test"]
    assert rep["val_source"] == "carved"
    assert rep["timings"]["index_s"] < 180
