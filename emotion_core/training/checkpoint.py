"""Resumable training checkpoints without pickle, committed by one atomic rename.

A checkpoint folder holds `last.safetensors`, ONE file with the model and optimizer tensors, the
torch RNG states and, in its safetensors metadata, the JSON of everything else (the RunState,
optimizer hyper-parameters, scheduler, numpy/python RNG). It is written to a temporary name and
renamed, so the tensors and the state that describes them are always from the same epoch.

The best weights so far live beside it in `best-e<epoch>.safetensors`, named by the epoch that
reached them. A new best file is written *before* the checkpoint that points to it, and older best
files are deleted only *after* it, so a crash at any point leaves a checkpoint whose best file
exists. (The previous layout wrote last.safetensors and then state.json: a crash between the two
paired epoch-2 tensors with epoch-1 state.)
"""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from emotion_core import store
from emotion_core.training.state import RunState

FORMAT = "emotion-bench-checkpoint/2"  # metadata["format"]; other files are not resumed from


@dataclass
class Checkpoint:
    """A loaded checkpoint: the run state, its tensors, the JSON extras and the best weights."""

    state: RunState
    tensors: dict[str, torch.Tensor]  # model.*, optim.*, rng.*, and ema.* under --ema
    extra: dict[str, Any]  # optimizer hyper-parameters, scheduler, numpy/python RNG
    best: dict[str, torch.Tensor] | None  # the best epoch's weights (None before any epoch)

    def model_state(self) -> dict[str, torch.Tensor]:
        return {k[len("model."):]: v for k, v in self.tensors.items() if k.startswith("model.")}

    def ema_state(self) -> dict[str, torch.Tensor]:
        """The weights' moving average (`--ema`) as `AveragedModel.state_dict()` gave it."""
        return {k[len("ema."):]: v for k, v in self.tensors.items() if k.startswith("ema.")}


def best_name(epoch: int) -> str:
    return store.paths.CHECKPOINT_BEST.format(epoch=epoch)


def save_checkpoint(folder: Path, *, state: RunState, model_state: dict[str, torch.Tensor],
                    optimizer: Any, scheduler: Any, best_state: dict[str, torch.Tensor] | None,
                    ema_state: dict[str, torch.Tensor] | None = None) -> None:
    """Write the best weights (if not yet on disk), then the checkpoint (the commit point), then
    drop best files no checkpoint points to. `ema_state` is the weights' moving average."""
    folder.mkdir(parents=True, exist_ok=True)
    best_file = folder / best_name(state.best_epoch)
    if best_state is not None and not best_file.exists():
        with store.atomic_path(best_file) as tmp:
            save_file(_cpu(best_state), str(tmp))
    tensors = {f"model.{k}": v for k, v in _cpu(model_state).items()}
    tensors.update({f"ema.{k}": v for k, v in _cpu(ema_state or {}).items()})
    opt_t, opt_js = _flatten_optimizer(optimizer.state_dict())
    rng_t, rng_js = rng_state()
    tensors.update(opt_t)
    tensors.update(rng_t)
    extra = {"optimizer": opt_js, "scheduler": _scheduler_json(scheduler), "rng": rng_js}
    meta = {"format": FORMAT, "state": json.dumps(state.to_dict()), "extra": json.dumps(extra)}
    with store.atomic_path(folder / store.paths.CHECKPOINT_LAST) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    _prune_best(folder, keep=best_file.name)


def load_checkpoint(folder: Path) -> Checkpoint | None:
    """The folder's checkpoint, or None when there is none (or only an older format).

    Best files the checkpoint does not point to (written by an attempt that crashed before its
    commit) are deleted, so every best file on disk afterwards belongs to this checkpoint."""
    path = folder / store.paths.CHECKPOINT_LAST
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        return None
    state = RunState.from_dict(json.loads(meta["state"]))
    best_path = folder / best_name(state.best_epoch)
    best = load_file(str(best_path)) if state.best_epoch and best_path.exists() else None
    _prune_best(folder, keep=best_path.name)
    return Checkpoint(state, load_file(str(path)), json.loads(meta["extra"]), best)


def restore(ckpt: Checkpoint, *, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> None:
    """Load model, optimizer, scheduler and RNG states saved by save_checkpoint."""
    model.load_state_dict(ckpt.model_state())
    optimizer.load_state_dict(_unflatten_optimizer(ckpt.tensors, ckpt.extra["optimizer"]))
    scheduler.load_state_dict(dict(ckpt.extra["scheduler"],
                                   lr_lambdas=[None] * len(optimizer.param_groups)))
    set_rng_state(ckpt.tensors, ckpt.extra["rng"])


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _prune_best(folder: Path, keep: str) -> None:
    for old in folder.glob(store.paths.CHECKPOINT_BEST_GLOB):
        if old.name != keep:
            old.unlink(missing_ok=True)


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}


def _flatten_optimizer(opt_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in opt_state["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim.{idx}.{key}"] = val.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = val
    return tensors, {"param_groups": opt_state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], js: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = val
    for idx, d in js["scalars"].items():
        state.setdefault(int(idx), {}).update(d)
    return {"state": state, "param_groups": js["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    name, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    js = {"numpy": [name, keys.tolist(), pos, has_gauss, cached],
          "python": [py[0], list(py[1]), py[2]]}
    return tensors, js


def set_rng_state(tensors: dict[str, torch.Tensor], js: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, cached = js["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    v, state, gauss = js["python"]
    random.setstate((v, tuple(state), gauss))


def _scheduler_json(sched: Any) -> dict[str, Any]:
    return {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}
