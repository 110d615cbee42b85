"""A tiny but real artifact store for app tests: built once per session with the real code.

Synthetic faces (generated), prepared by emotion_core.data, two tiny models trained for one epoch
at 32 px by emotion_core.train.fit (the function scripts/train calls), and their ensemble.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from emotion_core import store

DATASET = "tinyfaces"
MODELS = ("vit_scratch", "mobilenet_v2")  # a from-scratch ViT and a small CNN


@contextmanager
def artifacts_at(root: Path) -> Iterator[Path]:
    """Point the artifact store at `root` for the duration of the block."""
    old = os.environ.get(store.paths.ENV_ROOT)
    os.environ[store.paths.ENV_ROOT] = str(root)
    try:
        yield root
    finally:
        if old is None:
            os.environ.pop(store.paths.ENV_ROOT, None)
        else:
            os.environ[store.paths.ENV_ROOT] = old


def build_tiny_runs(root: Path) -> dict[str, str]:
    """Create dataset + runs under `root`; returns {model name or "ensemble": run id}."""
    from emotion_core import data
    from emotion_core.data import synthetic
    from emotion_core.evaluation import ensemble
    from emotion_core.training import loop as train
    from emotion_core.training.config import DRY_RUN_CHANGES, get_profile

    with artifacts_at(root):
        images_dir = store.paths.generated_data_dir(DATASET)
        synthetic.generate_dataset(images_dir, n=48, size=64, seed=0, progress=False)
        ds = data.prepare_dataset(images_dir, DATASET, progress=False)
        _save_eda(ds)
        config = get_profile("quick").override(**{**DRY_RUN_CHANGES, "max_batches": 0,
                                                  "batch_size": 16})
        ids = {name: train.fit(name, ds, config, progress=False) for name in MODELS}
        ids["ensemble"] = ensemble.build_ensemble([ids[m] for m in MODELS])
        store.write_leaderboard()
    return ids


_MEMO: dict[str, tuple[Path, dict[str, str]]] = {}


def tiny_store(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The session's one tiny store (built on first use; shared by every test module)."""
    if "store" not in _MEMO:
        root = tmp_path_factory.mktemp("app_store")
        _MEMO["store"] = (root, build_tiny_runs(root))
    return _MEMO["store"]


def _save_eda(ds: object) -> None:
    """EDA tables/images when the EDA module is present (the Data page shows them)."""
    try:
        from emotion_core.data import cache, eda
    except ImportError:
        return
    eda.save_eda(ds, cache.build_cache(ds, 32, progress=False))


def copy_store(src: Path, dst: Path) -> Path:
    """A private copy of a built store that a test may damage."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def copy_run(root: Path, run_id: str, new_id: str, *, created: str | None = None) -> str:
    """Copy a run folder under a new id, as if its model had been trained again: the manifest
    gets the new run id and, if given, a new creation time (ISO)."""
    with artifacts_at(root):
        shutil.copytree(store.paths.run_dir(run_id), store.paths.run_dir(new_id))
        path = store.paths.run_file(new_id, store.paths.MANIFEST)
        manifest = store.read_json(path)
        manifest["run_id"] = new_id
        if created is not None:
            manifest["created"] = created
        store.write_json(path, manifest)
    return new_id


def face_image(size: int = 200, seed: int = 0) -> np.ndarray:
    """A synthetic face the face detector (data.faces) finds exactly once (the first such face
    for a fixed seed sequence)."""
    from emotion_core.data import faces, synthetic

    rng = np.random.default_rng(seed)
    for i in range(200):
        rgb, _ = synthetic.draw_face(rng, ("angry", "happy", "sad")[i % 3], size=size)
        if len(faces.detect_faces(rgb)) == 1:
            return rgb
    raise RuntimeError("no detectable synthetic face in 200 draws")


def photo_640x480(n_faces: int = 1) -> np.ndarray:
    """A 640x480 'photo': grey-textured background with `n_faces` detectable faces pasted in."""
    rng = np.random.default_rng(1)
    canvas = (rng.normal(120, 20, (480, 640, 3))).clip(0, 255).astype(np.uint8)
    for k in range(n_faces):
        face = face_image(200, seed=k)
        x = 20 + k * 215
        canvas[140:340, x:x + 200] = face
    return canvas
