"""Loading a stored run's model: the one place a checkpoint becomes a model again.

Safetensors only (no pickle); a checkpoint whose model, classes, tensor names or shapes disagree
with its manifest is refused with a message naming the difference.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emotion_core import store, words
from emotion_core.models import build_empty, get_spec
from emotion_core.store import reference as reference_sets


class CheckpointMismatchError(ValueError):
    """A stored checkpoint disagrees with its manifest (architecture or classes)."""


def _peer_manifest(run_id: str) -> dict[str, Any] | None:
    """The manifest of an external reference's run kept in a reference set (tables, no
    weights), when `run_id` is no run of this store but one of those."""
    if store.paths.run_dir(run_id).is_dir():
        return None
    peer = reference_sets.reference_manifest(run_id)
    return peer if peer is not None and peer.get("kind") == "reference" else None


def run_manifest(run_id: str) -> dict[str, Any]:
    """A run's manifest: this store's, a bundled one's, or an external reference's in a
    reference set (whose model `load_model` rebuilds); BrokenRunError otherwise."""
    return _peer_manifest(run_id) or store.load_run(run_id, tables=False).manifest


def load_model(run_id: str, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a run's architecture (no download) and load its safetensors weights; an external
    reference's run committed in a reference set (tables only) is rebuilt from the shipped
    weights on this machine (`evaluation.reference.load_reference_model`).

    Refuses, with a CheckpointMismatchError naming the difference, a checkpoint whose model name,
    classes, parameter names or shapes disagree with the manifest.
    """

    peer = _peer_manifest(run_id)
    if peer is not None:  # an external model's run in a reference set: rebuilt from its files
        from emotion_core.evaluation.reference import load_reference_model

        return load_reference_model(peer).to(device), peer
    rec = store.load_run(run_id, tables=False)
    m = rec.manifest
    if rec.is_ensemble:
        raise CheckpointMismatchError(f"run '{run_id}' is an ensemble of {m.get('members')}; "
                                      "it has no weights of its own (use emotion_core.evaluation.ensemble)")
    state, meta = store.load_weights(run_id)
    classes = list(m["classes"])
    if meta.get("model") and meta["model"] != m["model"]:
        raise CheckpointMismatchError(f"run '{run_id}': weights were saved for model "
                                      f"'{meta['model']}' but the manifest says '{m['model']}'")
    if "classes" in meta and meta["classes"] != ",".join(classes):
        raise CheckpointMismatchError(f"run '{run_id}': weights were saved for classes "
                                      f"[{meta['classes']}] but the manifest lists {classes}")
    cfg = m.get("config", {})
    model = build_empty(m["model"], len(classes), int(m["image_size"]), bool(cfg.get("tiny", False)))
    expected = model.state_dict()
    adapt = get_spec(m["model"]).adapt_keys
    if adapt is not None:  # names that differ between library versions (a run made elsewhere)
        state = adapt(state, set(expected))
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{words.counted(len(missing), 'missing tensor')} e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{words.counted(len(unexpected), 'unexpected tensor')} "
                         f"e.g. {unexpected[0]}")
        if shapes:
            parts.append(f"{words.counted(len(shapes), 'shape mismatch', 'shape mismatches')} "
                         f"e.g. {shapes[0]}")
        raise CheckpointMismatchError(
            f"run '{run_id}': checkpoint does not match architecture '{m['model']}' with "
            f"{len(classes)} classes ({'; '.join(parts)}); refusing to load it")
    on_meta = any(t.is_meta for t in expected.values())
    model.load_state_dict(state, strict=True, assign=on_meta)
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        raise CheckpointMismatchError(f"run '{run_id}': some tensors of '{m['model']}' are not "
                                      "in its checkpoint; refusing a half-loaded model")
    return model.to(device).eval(), m
