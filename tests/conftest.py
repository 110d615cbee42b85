"""Shared fixtures. Every test runs offline against a temporary artifacts folder."""
from __future__ import annotations

import os

# Set before any hub-aware library is imported: tests never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("WANDB_MODE", "disabled")
# AppTests switch the artifacts folder between tests: no background model warm-up across them
# (test_app enables it where it is the behaviour under test; the browser test runs it for real).
os.environ["EMOTION_APP_WARMUP"] = "0"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from emotion_core import store  # noqa: E402


def _full_error_details_in_tests() -> None:
    """The committed .streamlit/config.toml hides error details from visitors; AppTest reads it
    too, so tests put them back (a failing page then names its exception in the assertion)."""
    try:
        from streamlit import config
    except ImportError:
        return
    config.get_option("client.showErrorDetails")  # parse the config files first
    config.set_option("client.showErrorDetails", "full")


_full_error_details_in_tests()


@pytest.fixture(autouse=True)
def isolated_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the artifact store at a fresh temp folder for each test, inside the test's tmp_path:
    removed when the test passes (tmp_path_retention_policy), kept when it fails."""
    root = tmp_path / "artifacts"
    root.mkdir()
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    monkeypatch.setenv(store.paths.ENV_BUNDLED, str(root / "bundled"))  # none unless a test adds
    monkeypatch.setenv(store.paths.ENV_REFERENCE, str(root / "reference"))
    return root


def shared_data_or_skip(name: str) -> Path:
    """The team's real face set `name`, or skip with a visible reason where it is absent."""
    path = store.paths.shared_data_dir(name)
    if not path.is_dir():
        pytest.skip(f"real dataset {name} not found at {path} (only on the team's machines)")
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module: on a shared 2-core machine two OpenMP threads per
    process oversubscribe the cores and make small torch ops ~10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def register_toy(monkeypatch: pytest.MonkeyPatch):
    """Register a hand-made CNN in the model registry for one test, so the explainers (which ask
    the registry about a model) can run on it: `register_toy(model, cam_index)`."""
    from torch import nn

    from emotion_core import models

    def register(model: nn.Module, cam_index: int, name: str = "toy") -> nn.Module:
        spec = models.ModelSpec(name=name, family="cnn", description="a test CNN",
                                builder=lambda *a: model, head=lambda m: m[-1],
                                cam_target=lambda m: m[cam_index])
        monkeypatch.setitem(models.REGISTRY, name, spec)
        model.registry_name = name
        return model
    return register


@pytest.fixture(scope="session")
def built_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Dataset + two tiny trained runs + their ensemble, built once a session with the real code;
    (store root, {model: run id})."""
    from tests.fixtures_runs import tiny_store

    return tiny_store(tmp_path_factory)


@pytest.fixture
def at_store(built_store, monkeypatch: pytest.MonkeyPatch):
    """An AppTest of app.py on the tiny store, and its run ids."""
    pytest.importorskip("streamlit.testing.v1")
    from tests.apptest_helpers import new_app

    root, ids = built_store
    monkeypatch.setenv(store.paths.ENV_ROOT, str(root))
    return new_app(), ids
