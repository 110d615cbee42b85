"""The resumable state of one training run: what a checkpoint stores besides tensors.

One typed value instead of a dict of loose keys, so the loop, the checkpoint and the run writer
agree on every field; it round-trips through JSON (`to_dict` / `from_dict`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from emotion_core.training.planner import Plan

IMPROVEMENT = 1e-9  # a val macro-F1 gain smaller than this is no gain (float noise)


@dataclass
class RunState:
    """Where a run stands after its last finished epoch."""

    run_id: str
    model: str
    config: dict[str, Any]  # TrainConfig.to_dict() of the command (a changed config starts afresh)
    plan: Plan  # the schedule, fixed before the first epoch
    history: list[dict[str, Any]] = field(default_factory=list)  # one history.csv row per epoch
    phase_index: int = 0  # the phase in progress (index into the plan's phases)
    epoch_in_phase: int = 0  # epochs finished in that phase
    epoch: int = 0  # epochs finished overall
    best_f1: float = -1.0  # best validation macro-F1 so far
    best_epoch: int = 0  # the epoch that reached it (its weights are the run's weights)
    stale: int = 0  # epochs since the last gain (early stopping counts within the final phase)
    train_seconds: float = 0.0  # measured wall time of the epochs so far (a record, not a limit)
    done: bool = False  # early stopping fired

    def record_epoch(self, row: dict[str, Any], *, final_phase: bool, patience: int,
                     keep_last: bool = False) -> bool:
        """Append an epoch's history row and update best/stale/done; True when val macro-F1
        improved. `keep_last` (a refit, which has no validation): every epoch counts as the
        best, so the run keeps its last weights and never stops early."""
        self.history.append(row)
        self.epoch = int(row["epoch"])
        self.epoch_in_phase += 1
        self.train_seconds += float(row["seconds"])
        if keep_last:
            self.best_epoch, self.stale = self.epoch, 0
            return True
        improved = row["val_macro_f1"] > self.best_f1 + IMPROVEMENT
        if improved:
            self.best_f1, self.best_epoch, self.stale = float(row["val_macro_f1"]), self.epoch, 0
        else:
            self.stale += 1
        if final_phase and self.stale >= patience:
            self.done = True
        return improved

    def start_phase(self, index: int, *, final_phase_restarts_patience: bool) -> None:
        """Enter phase `index` from its first epoch."""
        self.phase_index, self.epoch_in_phase = index, 0
        if final_phase_restarts_patience:
            self.stale = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["plan"] = self.plan.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunState:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        values["plan"] = Plan.from_dict(values["plan"])
        return cls(**values)
