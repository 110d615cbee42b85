"""Training progress as structured events (JSON lines) for programs, console lines for people.

Why: the app's Train page used to learn progress by scraping tqdm text from the job log, so a
changed progress label silently broke it. Now training appends one JSON object per line to an
events file (Lightning/Accelerate-logger style) and `emotion_core.jobs.status` reads only that.
The file's path comes from `--events` or $EMOTION_EVENTS (background jobs set it to their
`store.paths.JOB_EVENTS`); without one, nothing is written. Only rank 0 reports.

Events (every one has "event" and "time", unix seconds; `bind` adds fields such as the model):
    train_started   {models, dataset, profile}
    run_started     {model, index, of, run_id, planned_epochs, max_batches, phases}
    epoch_started   {epoch, of, phase, batches}
    batches_done    {epoch, done, of}                  (about ten per epoch)
    epoch_finished  {epoch, of, phase, metrics, seconds, improved}
    run_written     {run_id, headline}
    model_failed    {error}
    ensemble_written {run_id} / ensemble_skipped {reason}
    train_finished  {returncode, runs, failures}
(jobs.runner adds step_started / step_finished around each command of a job.)
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_EVENTS = "EMOTION_EVENTS"  # the events file a process appends to (set by background jobs)
BATCH_UPDATES = 10  # batches_done events per epoch, at most


@dataclass(frozen=True)
class EventLog:
    """Appends events to a JSON-lines file; a log without a path discards them."""

    path: Path | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # added to every event

    @classmethod
    def from_env(cls, path: str | Path | None = None) -> EventLog:
        """The log at `path`, else at $EMOTION_EVENTS, else one that discards events."""
        chosen = path or os.environ.get(ENV_EVENTS)
        return cls(Path(chosen) if chosen else None)

    def bind(self, **fields: Any) -> EventLog:
        """A log that adds `fields` to every event (e.g. model=..., index=..., of=...)."""
        return EventLog(self.path, {**self.fields, **fields})

    def emit(self, event: str, **data: Any) -> None:
        if self.path is None:
            return
        record = _clean({"event": event, "time": round(time.time(), 3), **self.fields, **data})
        line = json.dumps(record, default=_plain, allow_nan=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one write of one line in append mode: a reader sees whole lines, or a partial last one
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)

    def batch_every(self, batches: int) -> int:
        """Emit batches_done every this many batches (about BATCH_UPDATES per epoch)."""
        return max(1, math.ceil(batches / BATCH_UPDATES))


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete event in a JSON-lines file ([] when it does not exist yet)."""
    return list(iter_events(path))


def iter_events(path: Path) -> Iterator[dict[str, Any]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line still being written
        if isinstance(record, dict) and "event" in record:
            yield record


class Reporter:
    """Where one run's progress goes: console lines for people (tqdm bars live in the loop),
    events for the app, and Weights & Biases when the config asks for it."""

    def __init__(self, events: EventLog, *, show: bool, wandb_run: Any = None) -> None:
        self.events, self.show, self.wandb = events, show, wandb_run

    def say(self, text: str) -> None:
        if self.show:
            print(f"  {text}", flush=True)

    def epoch_started(self, epoch: int, of: int, phase: str, batches: int) -> None:
        self.events.emit("epoch_started", epoch=epoch, of=of, phase=phase, batches=batches)

    def on_batch(self, epoch: int, batches: int) -> Callable[[int], None]:
        """A callback for train_one_epoch: batches_done about BATCH_UPDATES times an epoch."""
        every = self.events.batch_every(batches)

        def done(n: int) -> None:
            if n % every == 0 or n == batches:
                self.events.emit("batches_done", epoch=epoch, done=n, of=batches)
        return done

    def epoch_finished(self, row: dict[str, Any], *, of: int, improved: bool) -> None:
        metrics = {k: v for k, v in row.items() if k not in ("epoch", "phase", "seconds")}
        self.events.emit("epoch_finished", epoch=row["epoch"], of=of, phase=row["phase"],
                         metrics=metrics, seconds=round(float(row["seconds"]), 3), improved=improved)
        self.say(f"epoch {row['epoch']:>3} {row['phase']:<8} loss {row['train_loss']:.4f} "
                 f"acc {row['train_acc']:.3f} | val loss {row['val_loss']:.4f} acc "
                 f"{row['val_acc']:.3f} macro-F1 {row['val_macro_f1']:.3f}"
                 f"{' *' if improved else ''} ({row['seconds']:.1f}s)")
        if self.wandb is not None:
            self.wandb.log(row)

    def finish(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def start_wandb(config: Any, run_id: str, extra: dict[str, Any]) -> Any:
    """A Weights & Biases run when config.wandb (the client is optional), else None."""
    if not config.wandb:
        return None
    try:
        import wandb
    except ImportError as exc:
        raise RuntimeError("--wandb needs the Weights & Biases client: `pip install wandb` "
                           "(or drop --wandb)") from exc
    return wandb.init(project=config.wandb_project, name=run_id, mode=config.wandb_mode,
                      config={**config.to_dict(), **extra}, reinit=True)


def _clean(obj: Any) -> Any:
    """NaN and infinities become null (strict JSON); containers are cleaned recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            return _clean(obj.item())
        except (TypeError, ValueError):
            return obj
    return obj


def _plain(obj: Any) -> str:
    return str(obj)  # paths and anything else JSON has no type for
