"""Resumable training checkpoints without pickle: tensors in safetensors, the rest in JSON.

A checkpoint folder holds `last.safetensors` (model + optimizer tensors + torch RNG states),
`best.safetensors` (the best weights so far, rewritten only when they improve) and `state.json`
(epoch, phase, history, scheduler, optimizer hyper-parameters, numpy/python RNG, config, run id).
`state.json` is written last, so a crash mid-save leaves the previous complete checkpoint.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from emotion_core import store

STATE = store.paths.CHECKPOINT_STATE


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


def save_checkpoint(folder: Path, *, model_state: dict[str, torch.Tensor], optimizer: Any,
                    scheduler: Any, state: dict[str, Any]) -> None:
    """Write last.safetensors then state.json (json last = the commit point)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().clone().contiguous() for k, v in model_state.items()}
    opt_t, opt_js = _flatten_optimizer(optimizer.state_dict())
    rng_t, rng_js = rng_state()
    tensors.update(opt_t)
    tensors.update(rng_t)
    with store.atomic_path(folder / store.paths.CHECKPOINT_LAST) as tmp:
        save_file(tensors, str(tmp))
    js = dict(state, optimizer=opt_js, scheduler=_scheduler_json(scheduler), rng=rng_js)
    store.write_json(folder / STATE, js)


def save_best(folder: Path, best_state: dict[str, torch.Tensor]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with store.atomic_path(folder / store.paths.CHECKPOINT_BEST) as tmp:
        save_file({k: v.detach().cpu().clone().contiguous() for k, v in best_state.items()}, str(tmp))


def load_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """(state json, tensors of last.safetensors) or None when there is no complete checkpoint."""
    if not (folder / STATE).exists() or not (folder / store.paths.CHECKPOINT_LAST).exists():
        return None
    return json.loads((folder / STATE).read_text()), load_file(str(folder / store.paths.CHECKPOINT_LAST))


def load_best(folder: Path) -> dict[str, torch.Tensor] | None:
    path = folder / store.paths.CHECKPOINT_BEST
    return load_file(str(path)) if path.exists() else None


def restore(tensors: dict[str, torch.Tensor], state: dict[str, Any], *, model: torch.nn.Module,
            optimizer: Any, scheduler: Any) -> None:
    """Load model, optimizer, scheduler and RNG states saved by save_checkpoint."""
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
    sched = dict(state["scheduler"], lr_lambdas=[None] * len(optimizer.param_groups))
    scheduler.load_state_dict(sched)
    set_rng_state(tensors, state["rng"])


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
