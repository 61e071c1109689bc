"""The Bethesda grade view (NILM / low-grade / high-grade) of a six-class cytology model, on synthetic
probabilities whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.screening import BETHESDA_GRADES, grade_metrics, grade_of, grade_probs, has_bethesda_grades

LABELS = ["NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC"]


def test_grade_probabilities_are_the_sums_of_their_classes() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(6), size=50)
    g, names = grade_probs(p, LABELS)
    assert names == ("NILM", "low-grade", "high-grade")
    np.testing.assert_allclose(g[:, 0], p[:, 0])
    np.testing.assert_allclose(g[:, 1], p[:, 1] + p[:, 2])
    np.testing.assert_allclose(g[:, 2], p[:, 3:].sum(1))
    np.testing.assert_allclose(g.sum(1), 1.0)
    # column order of the labels does not matter
    order = [5, 0, 3, 1, 4, 2]
    g2, names2 = grade_probs(p[:, order], [LABELS[k] for k in order])
    assert names2 == names
    np.testing.assert_allclose(g2, g)


def test_a_cell_torn_between_asch_and_hsil_is_called_high_grade() -> None:
    # argmax over the six classes says NILM (0.4), but ASC-H + HSIL = 0.6: the high-grade call
    p = np.array([[0.4, 0.0, 0.0, 0.3, 0.3, 0.0]])
    m = grade_metrics(np.array([3]), p, LABELS)
    assert grade_of(p[0], LABELS) == ("high-grade", pytest.approx({"NILM": 0.4, "low-grade": 0.0, "high-grade": 0.6}))
    assert grade_of(np.array([0.3, 0.7]), ["normal", "pneumonia"]) is None
    assert m["confusion"] == [[0, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert m["routing"][3] == {"label": "ASC-H", "grade": "high-grade", "n": 1, "called": [0, 0, 1]}


def test_grade_confusion_sensitivity_ppv_and_routing() -> None:
    y = np.array([0, 0, 0, 1, 2, 3, 4, 5, 5])
    called_grade = [0, 0, 1, 1, 2, 2, 2, 1, 2]  # NILM 2/3, low 1/2, high 3/4 (one SCC called low-grade)
    columns = {0: 0, 1: 1, 2: 4}  # put all mass on one class of the called grade
    p = np.zeros((len(y), 6))
    for i, g in enumerate(called_grade):
        p[i, columns[g]] = 1.0
    m = grade_metrics(y, p, LABELS)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 1, 3]]
    assert m["n"] == [3, 2, 4]
    assert m["sensitivity"] == pytest.approx([2 / 3, 1 / 2, 3 / 4])
    assert m["ppv"] == pytest.approx([1.0, 1 / 3, 3 / 4])
    assert m["accuracy"] == pytest.approx(6 / 9)
    by_label = {r["label"]: r for r in m["routing"]}
    assert by_label["SCC"]["called"] == [0, 1, 1] and by_label["NILM"]["called"] == [2, 1, 0]
    assert sum(sum(r["called"]) for r in m["routing"]) == len(y)


def test_labels_without_a_grade_or_wrong_shapes_are_refused() -> None:
    assert has_bethesda_grades(LABELS) and has_bethesda_grades(LABELS[::-1])
    assert not has_bethesda_grades(["NILM", "abnormal"]) and not has_bethesda_grades(LABELS + ["AGC"])
    with pytest.raises(ValueError, match="no grade"):
        grade_probs(np.full((2, 2), 0.5), ["NILM", "AGC"])
    with pytest.raises(ValueError, match="must be"):
        grade_probs(np.full((2, 5), 0.2), LABELS)
    assert set(BETHESDA_GRADES.values()) == {"NILM", "low-grade", "high-grade"}
