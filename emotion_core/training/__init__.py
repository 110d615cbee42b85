"""Training: the one loop for every registry model, its configuration and its schedule.

    config        TrainConfig (every default, one line each) and the profiles as data
    planner       the schedule: phases, LR shape, epochs/batches within a FLOP budget (no timing)
    state         RunState, the typed resumable state of one run
    setup         before the first epoch: runtime, data split, loss, checkpoint to resume, plan
    loop          fit(): train, keep the best validation epoch, hand it to the writer
    writer        evaluate the best weights on val/test, measure cost, store the run
    progress      JSON-lines progress events for the app, console lines, optional wandb
    checkpoint    resumable, pickle-free checkpoints committed by one atomic rename
    distributed   torchrun helpers (single-process runs never touch torch.distributed)
"""
from emotion_core.training.config import DRY_RUN_CHANGES, PROFILES, TrainConfig, get_profile
from emotion_core.training.loop import fit

__all__ = ["DRY_RUN_CHANGES", "PROFILES", "TrainConfig", "get_profile", "fit"]
