"""Knowledge distillation (medimg.training.distil): the loss, the teachers' target, their checks, a tiny run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from medimg.errors import SpecError, WeightsError
from medimg.models import create_model, save_weights
from medimg.spec import ModelSpec, PreprocessConfig
from medimg.training.distil import Teacher, distillation_loss, load_teachers, teacher_probabilities


def test_distillation_loss_is_tau_squared_kl_and_zero_only_at_the_teacher() -> None:
    torch.manual_seed(0)
    z = torch.randn(5, 3)
    p = torch.softmax(torch.randn(5, 3), dim=1)
    for tau in (1.0, 2.0, 4.0):
        ref = torch.nn.functional.kl_div(torch.log_softmax(z / tau, 1), p, reduction="none").sum(1) * tau ** 2
        assert torch.allclose(distillation_loss(z, p, tau), ref, atol=1e-6)
    # a student whose softened probabilities equal the teacher's: zero loss; any other: positive
    logits_at_teacher = 2.0 * torch.log(p)
    assert torch.allclose(distillation_loss(logits_at_teacher, p, 2.0), torch.zeros(5), atol=1e-5)
    assert (distillation_loss(z, p, 2.0) > 1e-4).all()
    # a one-hot teacher (zero probabilities) stays finite
    onehot = torch.eye(3)[[0, 1, 2, 0, 1]]
    assert torch.isfinite(distillation_loss(z, onehot, 1.0)).all()
    with pytest.raises(ValueError):
        distillation_loss(z, p, 0.0)


def test_a_student_trained_on_the_loss_alone_learns_the_teachers_decisions() -> None:
    torch.manual_seed(0)
    teacher, student = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    x = torch.randn(512, 4)
    with torch.no_grad():
        target = torch.softmax(teacher(x) / 2.0, dim=1)
    opt = torch.optim.Adam(student.parameters(), lr=0.05)
    with torch.no_grad():
        first = float(distillation_loss(student(x), target, 2.0).mean())
    for _ in range(300):
        opt.zero_grad()
        distillation_loss(student(x), target, 2.0).mean().backward()
        opt.step()
    with torch.no_grad():
        last = float(distillation_loss(student(x), target, 2.0).mean())
        agree = (student(x).argmax(1) == teacher(x).argmax(1)).float().mean()
    assert last < 0.05 * first and agree > 0.97


def _teacher(tmp_path: Path, name: str, temperature: float, labels: tuple[str, ...] = ("a", "b"),
             size: int = 32, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = create_model("smallcnn", 1, len(labels))
    spec = ModelSpec(name=name, title=name, architecture="smallcnn", labels=labels,
                     preprocess=PreprocessConfig(input_size=(size, size), in_chans=1), temperature=temperature)
    save_weights(net, spec, tmp_path)
    return tmp_path / f"{name}.json"


def test_teacher_target_is_the_mean_calibrated_probability_softened_by_tau(tmp_path: Path) -> None:
    pp = PreprocessConfig(input_size=(32, 32), in_chans=1)
    paths = [_teacher(tmp_path, "t1", 1.0, seed=1), _teacher(tmp_path, "t2", 2.0, seed=2)]
    teachers = load_teachers(paths, pp, ("a", "b"), torch.device("cpu"))
    assert all(not p.requires_grad for t in teachers for p in t.model.parameters())
    assert [t.as_dict()["temperature"] for t in teachers] == [1.0, 2.0] and all(t.as_dict()["sha256"]
                                                                                 for t in teachers)
    x = torch.randn(6, 1, 32, 32)
    soft = teacher_probabilities(teachers, x, tau=3.0)
    assert soft.shape == (6, 2) and torch.allclose(soft.sum(1), torch.ones(6))
    # the calibration temperature and tau multiply: teacher 2 (T = 2) at tau 3 = the same network at T = 1, tau 6
    alone = teacher_probabilities([teachers[1]], x, tau=3.0)
    as_t1 = teacher_probabilities([Teacher(teachers[1].model, replace(teachers[1].spec, temperature=1.0))], x, 6.0)
    assert torch.allclose(alone, as_t1, atol=1e-6)
    assert torch.allclose(soft, (teacher_probabilities([teachers[0]], x, 3.0) + alone) / 2, atol=1e-6)


def test_teachers_that_do_not_fit_the_student_are_refused(tmp_path: Path) -> None:
    pp = PreprocessConfig(input_size=(32, 32), in_chans=1)
    cpu = torch.device("cpu")
    with pytest.raises(SpecError, match="labels|predicts"):
        load_teachers([_teacher(tmp_path, "other_labels", 1.0, labels=("x", "y"))], pp, ("a", "b"), cpu)
    with pytest.raises(SpecError, match="reads its input differently"):
        load_teachers([_teacher(tmp_path, "other_size", 1.0, size=48)], pp, ("a", "b"), cpu)
    with pytest.raises(SpecError, match="at least one"):
        load_teachers([], pp, ("a", "b"), cpu)
    tampered = _teacher(tmp_path, "tampered", 1.0)
    w = tampered.with_suffix(".safetensors")
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(WeightsError):
        load_teachers([tampered], pp, ("a", "b"), cpu)


@pytest.mark.usefixtures("fast_training")
def test_a_tiny_distilled_run_calls_the_teacher_and_records_it(tmp_path: Path, shared_data: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from medimg.cli import main
    from medimg.training import distil

    base = ["train", "--task", "pbc-blood", "--arch", "smallcnn", "--size", "32", "--epochs", "1", "--batch-size",
            "8", "--limit", "16", "--out", str(tmp_path), "--device", "cpu", "--threads", "1", "--no-gate",
            "--ema-decay", "0"]
    assert main([*base, "--name", "teacher"]) == 0
    calls: list[int] = []
    real = distil.teacher_probabilities

    def spy(teachers, xb, tau=1.0, autocast=False):  # noqa: ANN001, ANN202
        calls.append(len(xb))
        assert tau == 3.0
        return real(teachers, xb, tau, autocast)

    monkeypatch.setattr(distil, "teacher_probabilities", spy)
    assert main([*base, "--name", "student", "--seed", "1", "--teacher", str(tmp_path / "teacher.json"),
                 "--distil-weight", "0.8", "--distil-temperature", "3"]) == 0
    assert calls and sum(calls) == 16  # every training image of the one epoch went through the teacher
    teacher = json.loads((tmp_path / "teacher.json").read_text())
    student = json.loads((tmp_path / "student.json").read_text())
    assert student["training"]["teachers"] == [{"name": "teacher", "sha256": teacher["sha256"],
                                                "temperature": teacher["temperature"]}]
    assert student["training"]["config"]["distil_weight"] == 0.8
    assert "distilled from 1 network," in student["title"] and "distilled" not in teacher["title"]
    assert teacher["training"]["teachers"] is None
    # a teacher of another input size is a clear error, not a traceback
    assert main([*base, "--size", "48", "--name", "bad", "--teacher", str(tmp_path / "teacher.json")]) != 0
