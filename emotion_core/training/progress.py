"""Training progress as structured events (JSON lines) for programs, console lines for people.

Why: the app's Train page used to learn progress by scraping tqdm text from the job log, so a
changed progress label silently broke it. Now training appends one JSON object per line to an
events file (Lightning/Accelerate-logger style) and `emotion_core.jobs.status` reads only that.
The file's path comes from `--events` or $EMOTION_EVENTS (background jobs set it to their
`store.paths.JOB_EVENTS`); without one, nothing is written. Only rank 0 reports.

Events (each has "event" and "time" in unix seconds; scripts.train binds model, index and of,
"the 2nd of 8 models", to every event of one model's run; the file format is store/events.py):
    train_started     {models, dataset, profile}                         (data loaded)
    run_started       {run_id, planned_epochs, max_batches, recipe, resumed_after}
    epoch_started     {epoch, epochs, phase, batches}                    (epochs: planned)
    batches_done      {epoch, done, batches}                             (about ten per epoch)
    epoch_finished    {epoch, epochs, phase, metrics, seconds, improved}
    warning           {text, epoch}     (e.g. a collapsed model; epoch null: about the written run)
    run_written       {run_id, headline}
    model_failed      {error}
    ensemble_written  {run_id}
    train_finished    {returncode, error, runs, failures}                 (always the last)
jobs.runner adds step_started {index, of, argv} / step_finished {index, of, returncode}.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from emotion_core.store.events import ENV_EVENTS, EventLog, read_events

__all__ = ["BATCH_UPDATES", "ENV_EVENTS", "EventLog", "Reporter", "read_events", "start_wandb"]

BATCH_UPDATES = 10  # batches_done events per epoch, at most


class Reporter:
    """Where one run's progress goes: console lines for people (tqdm bars live in the loop),
    events for the app, and Weights & Biases when the config asks for it."""

    def __init__(self, events: EventLog, *, show: bool, wandb_run: Any = None) -> None:
        self.events, self.show, self.wandb = events, show, wandb_run

    def say(self, text: str) -> None:
        if self.show:
            print(f"  {text}", flush=True)

    def warn(self, text: str, epoch: int | None = None) -> None:
        """Something the person training must know (printed even without progress output);
        `epoch`: the epoch it is about, None when it is about the written run."""
        self.events.emit("warning", text=text, epoch=epoch)
        print(f"  warning: {text}", flush=True)

    def epoch_started(self, epoch: int, epochs: int, phase: str, batches: int) -> None:
        self.events.emit("epoch_started", epoch=epoch, epochs=epochs, phase=phase, batches=batches)

    def on_batch(self, epoch: int, batches: int) -> Callable[[int], None]:
        """A callback for train_one_epoch: batches_done about BATCH_UPDATES times an epoch."""
        every = max(1, math.ceil(batches / BATCH_UPDATES))

        def done(n: int) -> None:
            if n % every == 0 or n == batches:
                self.events.emit("batches_done", epoch=epoch, done=n, batches=batches)
        return done

    def epoch_finished(self, row: dict[str, Any], *, epochs: int, improved: bool) -> None:
        metrics = {k: v for k, v in row.items() if k not in ("epoch", "phase", "seconds")}
        self.events.emit("epoch_finished", epoch=row["epoch"], epochs=epochs, phase=row["phase"],
                         metrics=metrics, seconds=round(float(row["seconds"]), 3), improved=improved)
        val = ("no validation (refit)" if math.isnan(row["val_loss"]) else
               f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f} macro-F1 "
               f"{row['val_macro_f1']:.3f}{' *' if improved else ''}")
        self.say(f"epoch {row['epoch']:>3} {row['phase']:<8} loss {row['train_loss']:.4f} "
                 f"acc {row['train_acc']:.3f} | {val} ({row['seconds']:.1f}s)")
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
