"""Training: the one loop for every registry model, its configuration and its schedule.

    config        TrainConfig (every default, one line each) and the profiles as data
    planner       fits a profile's schedule to its budget
    loop          fit(): train, keep the best validation epoch, evaluate, write the run
    checkpoint    resumable, pickle-free checkpoints (safetensors + JSON)
    distributed   torchrun helpers (single-process runs never touch torch.distributed)
"""
from emotion_core.training.config import DRY_RUN_CHANGES, PROFILES, TrainConfig, get_profile
from emotion_core.training.loop import fit

__all__ = ["DRY_RUN_CHANGES", "PROFILES", "TrainConfig", "get_profile", "fit"]
