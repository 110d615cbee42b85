"""What a job's events say: how far it is (0..1) and a one-line status for the app.

Computed from the job's JSON-lines events only (store.paths.JOB_EVENTS: the runner's step events
and the training events of emotion_core/training/progress.py), never from console text, so a
changed progress bar label cannot break it. For example:
    "2 of 8 models trained; mobilenet_v2 epoch 3/8; next: efficientnet_lite0"
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobProgress:
    """A job's progress as its events tell it."""

    fraction: float = 0.0  # 0..1
    message: str = "starting"  # one line
    models: list[str] = field(default_factory=list)  # in training order
    trained: list[str] = field(default_factory=list)  # models whose run was written
    failed: dict[str, str] = field(default_factory=dict)  # model -> error
    current: str | None = None  # the model training now
    epoch: int | None = None  # its epoch in progress (1-based)
    epochs: int | None = None  # its planned epochs
    finished: dict[str, Any] | None = None  # the train_finished event, once there is one
    step: dict[str, Any] | None = None  # the runner's last step_started event
    warnings: dict[str, str] = field(default_factory=dict)  # model -> its standing warning


def summarize(events: list[dict[str, Any]], models: list[str] | None = None) -> JobProgress:
    """Fold a job's events into a JobProgress; `models` names the models when no train_started
    event does yet (the job's spec)."""
    p = JobProgress(models=list(models or []))
    within = 0.0  # fraction of the current model done
    warned_at: dict[str, int] = {}  # model -> the epoch its standing warning is about
    for e in events:
        kind = e.get("event")
        if kind == "step_started":
            p.step = e
        elif kind == "train_started":
            p.models = list(e.get("models") or p.models)
        elif kind == "run_started":
            p.current, p.epochs = e.get("model"), int(e.get("planned_epochs") or 0) or None
            p.epoch = int(e.get("resumed_after") or 0) + 1
            within = (p.epoch - 1) / p.epochs if p.epochs else 0.0
        elif kind == "epoch_started" and e.get("model") == p.current:
            p.epoch = int(e["epoch"])
            within = (p.epoch - 1) / p.epochs if p.epochs else 0.0
        elif kind == "batches_done" and e.get("model") == p.current and p.epochs:
            within = (int(e["epoch"]) - 1 + int(e["done"]) / max(1, int(e["batches"]))) / p.epochs
        elif kind == "epoch_finished" and e.get("model") == p.current and p.epochs:
            if int(e["epoch"]) > warned_at.get(str(p.current), int(e["epoch"])):
                del p.warnings[str(p.current)], warned_at[str(p.current)]  # a later epoch without one
            within = int(e["epoch"]) / p.epochs
            p.epoch = int(e["epoch"]) + 1  # the next one, if early stopping does not end it
        elif kind in ("run_written", "model_failed"):
            name = str(e.get("model"))
            if kind == "run_written":
                p.trained.append(name)
            else:
                p.failed[name] = str(e.get("error", ""))
            p.current, p.epoch, p.epochs, within = None, None, None, 0.0
        elif kind == "warning":
            who = str(e.get("model") or "training")
            p.warnings[who] = str(e.get("text", ""))
            if e.get("epoch") is None:
                warned_at.pop(who, None)  # about the written run: it stands
            else:
                warned_at[who] = int(e["epoch"])
        elif kind == "train_finished":
            p.finished = e
    n = max(1, len(p.models))
    done = len(p.trained) + len(p.failed)
    p.fraction = min(1.0, (done + min(within, 1.0)) / n) if p.models else 0.0
    p.message = _message(p)
    return p


def _message(p: JobProgress) -> str:
    if not p.models:  # no training event yet: a data step, or the trainer loading its data
        if p.step is None:
            return "starting"
        return f"step {p.step.get('index')} of {p.step.get('of')}: {step_label(p.step.get('argv') or [])}"
    parts = [f"{len(p.trained)} of {len(p.models)} models trained"
             + (f", {len(p.failed)} failed ({', '.join(p.failed)})" if p.failed else "")]
    if p.finished is not None:
        return "; ".join(parts + ["training finished" if p.finished.get("returncode") == 0
                                  else f"training ended with exit code {p.finished.get('returncode')}"])
    if p.current is not None:
        if p.epochs and p.epoch is not None and p.epoch > p.epochs:
            parts.append(f"{p.current} evaluating its best epoch")
        else:
            parts.append(f"{p.current} epoch {p.epoch}/{p.epochs or '?'}")
    seen = set(p.trained) | set(p.failed) | {p.current}
    upcoming = [m for m in p.models if m not in seen]
    if upcoming:
        parts.append(f"next: {upcoming[0]}")
    elif p.current is None:
        parts.append("ensemble and leaderboard")
    return "; ".join(parts)


def step_label(argv: list[str]) -> str:
    """`scripts.get_data synthetic` for `python -m scripts.get_data synthetic --out ...`."""
    if "-m" in argv:
        i = argv.index("-m")
        return " ".join(a for a in argv[i + 1:i + 3] if not a.startswith("-"))
    return " ".join(argv[:1]) or "?"
