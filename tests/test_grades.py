"""The grade-aware training loss (medimg.training.grades, `medimg train --grade-weight`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.screening import grade_probs
from medimg.training.grades import grade_membership, grade_nll

BETHESDA = ("NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC")


def test_membership_puts_each_class_in_its_bethesda_grade() -> None:
    m, names = grade_membership(BETHESDA)
    assert names == ("NILM", "low-grade", "high-grade")
    assert m.shape == (6, 3) and m.sum(1).tolist() == [1] * 6
    assert [names[int(g)] for g in m.float().argmax(1)] == ["NILM", "low-grade", "low-grade", "high-grade",
                                                             "high-grade", "high-grade"]


def test_membership_refuses_labels_without_grades() -> None:
    with pytest.raises(ValueError, match="no Bethesda grade"):
        grade_membership(("normal", "pneumonia"))
    with pytest.raises(ValueError, match="one grade"):
        grade_membership(("ASC-H", "HSIL"))


def test_nll_is_minus_log_of_the_grade_probability_the_clinician_sees() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 6, generator=g) * 3
    y = torch.randint(0, 6, (64,), generator=g)
    m, names = grade_membership(BETHESDA)
    probs = torch.softmax(logits.double(), 1).numpy()
    gp, gnames = grade_probs(probs, BETHESDA)
    assert gnames == names
    true_grade = m[y].float().argmax(1).numpy()
    expected = -np.log(gp[np.arange(64), true_grade])
    np.testing.assert_allclose(grade_nll(logits, y, m).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_mass_inside_the_true_grade_costs_nothing_mass_outside_costs() -> None:
    m, _ = grade_membership(BETHESDA)
    y = torch.tensor([3, 3])  # ASC-H
    logits = torch.full((2, 6), -20.0)
    logits[0, 4] = 20.0  # called HSIL: right grade, wrong class
    logits[1, 0] = 20.0  # called NILM: a missed high-grade cell
    nll = grade_nll(logits, y, m)
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert nll[0] < 1e-6 and ce[0] > 30  # cross-entropy alone charges both calls alike
    assert nll[1] > 30 and abs(float(ce[1] - ce[0])) < 1e-3


def test_nll_checks_shapes() -> None:
    m, _ = grade_membership(BETHESDA)
    with pytest.raises(ValueError, match="agree on K"):
        grade_nll(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), m)
    with pytest.raises(ValueError, match="target"):
        grade_nll(torch.zeros(2, 6), torch.zeros(3, dtype=torch.long), m)


def _train_args(tmp_path: Path, task: str, name: str) -> list[str]:
    return ["train", "--task", task, "--arch", "smallcnn", "--size", "32", "--epochs", "1", "--batch-size", "8",
            "--limit", "24", "--out", str(tmp_path), "--name", name, "--device", "cpu", "--threads", "1",
            "--no-gate", "--ema-decay", "0"]


def test_a_tiny_grade_aware_run_uses_and_records_the_loss(tmp_path: Path, shared_data: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from medimg.cli import main
    from medimg.evaluate import EvalReport
    from medimg.training import grades

    build = EvalReport.build.__func__
    monkeypatch.setattr(EvalReport, "build", classmethod(lambda cls, *a, **k: build(cls, *a, **{**k, "n_boot": 10})))
    calls: list[int] = []
    real = grades.grade_nll

    def spy(logits: torch.Tensor, target: torch.Tensor, membership: torch.Tensor) -> torch.Tensor:
        calls.append(len(target))
        return real(logits, target, membership)

    monkeypatch.setattr(grades, "grade_nll", spy)
    assert main(_train_args(tmp_path, "cric-cervix", "graded") + ["--grade-weight", "0.5"]) == 0
    spec = json.loads((tmp_path / "graded.json").read_text())
    sup = spec["training"]["grade_supervision"]
    assert sup["weight"] == 0.5 and sup["grades"] == ["NILM", "low-grade", "high-grade"]
    assert "grade-aware" in spec["title"]
    assert calls and all(n == 8 for n in calls)  # every training batch, nowhere else


def test_grade_weight_on_a_task_without_bethesda_classes_is_a_clear_error(tmp_path: Path, shared_data: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from medimg.cli import main

    assert main(_train_args(tmp_path, "pbc-blood", "nograde") + ["--grade-weight", "1"]) == 2
    assert "Bethesda" in capsys.readouterr().err
    assert not (tmp_path / "nograde.json").exists()
