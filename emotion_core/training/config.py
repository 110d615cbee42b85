"""Training configuration: every default in one place, and the two profiles as data.

A profile is a `TrainConfig` value, never a code path: `quick` is the CPU setting for the demo
and CI, `full` the study's GPU setting. Scripts start from a profile and override fields.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from emotion_core import words


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the one training loop (emotion_core/training/loop.py)."""

    profile: str = "quick"  # name recorded in the manifest
    image_size: int = 112  # square input side in pixels (the cache is built at this size)
    epochs: int = 8  # maximum epochs, head-only epochs included
    batch_size: int = 48  # images per optimisation step (per process under torchrun)
    lr: float = 1e-3  # peak AdamW learning rate for from-scratch training and the head phase
    finetune_lr: float = 1e-4  # peak learning rate once a pretrained backbone is unfrozen
    head_epochs: int = 2  # pretrained models: epochs training the head with the backbone frozen
    weight_decay: float = 0.05  # AdamW decoupled weight decay
    warmup_epochs: float = 0.5  # linear warm-up length (in epochs) at the start of each phase
    min_lr_ratio: float = 0.01  # cosine schedule floor, as a fraction of the peak rate
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    recipe: str = "finetune"  # "finetune": the loop's phases; "probe": frozen features + a logistic-regression head (probe.py)
    ema: float = 0.0  # per-step decay of a moving average of the weights that validation, early stopping and the run keep (0 = off; training/ema.py)
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup: each training batch mixed with a shuffled copy of itself, labels too (0 = off; training/mixup.py)
    sam: float = 0.0  # radius of sharpness-aware minimisation: each step takes the gradient at the worst weights within it (0 = off; training/sam.py)
    forget_rate: float = 0.0  # share of each training batch, highest loss first, left out of the label loss from epoch 2 (0 = off; training/small_loss.py)
    distill: str = ""  # teacher whose soft answers the loss also learns: an external reference model or a stored run id ("" = off; training/distill.py)
    distill_weight: float = 0.3  # with distill: the soft term's share of the loss
    distill_temperature: float = 2.0  # with distill: softmax temperature of both teacher and student
    layer_decay: float = 1.0  # fine-tune: each of 12 depth groups (input side first) gets this times the next group's rate (1 = one rate)
    tta_flip: bool = False  # evaluate and predict on the picture and its mirror image, probabilities averaged
    class_weighted: bool = True  # weight the loss by inverse class frequency of the train subset
    set_sampling: str = "proportional"  # several sets: each set's share of an epoch (training/sampling.py)
    patience: int = 3  # early stopping: epochs without a val macro-F1 gain before stopping
    refit: bool = False  # train on train + val for exactly `epochs` (fixed by a validated run): no validation, no early stopping, no val numbers
    budget_tflop: float = 0.0  # training compute per model in TFLOP (1e12 FLOPs): epochs/batches are planned to fit it (0 = none; see planner.py)
    grad_clip: float = 1.0  # max gradient norm (0 disables clipping)
    augment: bool = True  # random rotation / brightness / contrast / flip on train batches
    scale_jitter: float = 0.0  # with augment: zoom the content by U(1 - s, 1 + s) (0 = off, the study's setting)
    shift_jitter: float = 0.0  # with augment: shift it by U(-s, s) of the side per axis (0 = off)
    erase: float = 0.0  # with augment: probability of erasing one random rectangle (0 = off; transforms.py)
    lowres: float = 0.0  # with augment: probability of shrinking a picture and bringing it back (0 = off; transforms.py)
    crop_faces: bool = False  # train on face crops from the prepared face boxes
    face_margin: float = 0.25  # with crop_faces: the box grows by this fraction of its side on each side (faces.DEFAULT_MARGIN)
    face_align: bool = False  # with crop_faces: turn each face until its eyes are level before cutting it (faces.CropSpec)
    face_fit: str = "inside"  # (faces.DEFAULT_FIT) with crop_faces: the crop square stays inside the picture ("inside") or is padded black ("pad"; faces.FACE_FITS)
    pretrained: bool = True  # ask for pretrained weights; offline, models without any get scratch (warned, in the manifest)
    tiny: bool = False  # minimal model configs (tests and --dry-run)
    max_batches: int = 0  # stop each epoch after this many batches (0 = all; --dry-run uses 1)
    eval_batch_size: int = 128  # images per evaluation forward pass
    seed: int = 0  # seeds torch, numpy, python and the loader
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # channels_last memory format on CUDA (ignored on CPU)
    checkpoint_every: int = 1  # write a resumable checkpoint every N epochs (0 = never)
    measure_speed: bool = True  # count FLOPs and time CPU latency for the headline
    wandb: bool = False  # log to Weights & Biases
    wandb_mode: str = "offline"  # "online" or "offline" (sync later with `wandb sync`)
    wandb_project: str = "emotion-bench"  # Weights & Biases project name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def override(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` applied; None values are ignored (unset CLI flags)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown training {words.noun(len(unknown), 'option')}: "
                             f"{', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# The quick profile's compute budget per model. Calibrated once on the team's 2-core CPU so that
# every model still trains in minutes, like the 85 s wall-clock budget it replaces: in the idle
# quick run on webfaces3 that the README reports (465 train + 115 val images at 112 px), the models
# trained at 32-94 GFLOP/s by the planner's cost model (3x forward FLOPs per training image, 1x per
# head-only or validation image): MobileNetV2 and both EfficientNets ~32, ViT-scratch ~50, VGG-16
# and ViT-B ~80-87, ResNet-34 and DINOv2-S ~93. 85 s x their median, ~65 GFLOP/s, is 5.5 TFLOP;
# rounded up to 6 so ResNet-34 keeps the 2 epochs it had (5.8 TFLOP). Checked with this budget:
# all 8 models + the ensemble in about 13 min on that machine (35-185 s per model), as before.
# `python -m scripts.bench.models --section budget` re-measures the rates on any machine.
# It is a number, not a measurement: the same command plans the same schedule everywhere.
QUICK_BUDGET_TFLOP = 6.0

PROFILES: dict[str, TrainConfig] = {
    # CPU, minutes for every model: the demo, CI and the embedded dataset.
    "quick": TrainConfig(profile="quick", image_size=112, epochs=8, batch_size=48, lr=1e-3,
                         finetune_lr=2e-4, head_epochs=2, patience=3,
                         budget_tflop=QUICK_BUDGET_TFLOP),
    # GPU, the study's setting: 224 px, longer schedule, more patience.
    "full": TrainConfig(profile="full", image_size=224, epochs=30, batch_size=64, lr=5e-4,
                        finetune_lr=5e-5, head_epochs=3, patience=6, eval_batch_size=256),
}

# --dry-run: the real script path, one tiny batch per epoch, one epoch, tiny models.
DRY_RUN_CHANGES: dict[str, Any] = dict(epochs=1, head_epochs=0, max_batches=1, tiny=True,
                                       image_size=32, batch_size=8, checkpoint_every=0,
                                       measure_speed=False)


RECIPES = ("finetune", "probe")


def get_profile(name: str) -> TrainConfig:
    if name not in PROFILES:
        raise ValueError(f"unknown profile '{name}'; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]
