"""The screening views of a multi-class cytology model: negative (NILM) vs abnormal (any other Bethesda class), and
the three Bethesda grades (NILM / low-grade / high-grade).

Cervical screening asks first whether a cell is abnormal at all; which abnormal class comes second. The abnormal
score of an image is ``1 - P(NILM)`` from the calibrated 6-class probabilities. Two operating points: the
sensitivity read off the ROC at 95 % specificity (an optimistic point chosen on the same data, as papers report
it), and the honest one: a threshold fixed on the VALIDATION split for >= 95 % specificity, applied to the test
split. Serving code (the reviewers' dashboard) reads these; the workshop (:mod:`medimg.training.screening`)
computes the validation threshold of a model.

The grade view asks the second question in the terms that decide follow-up: low-grade squamous abnormalities
(ASC-US, LSIL) against high-grade ones (ASC-H, "atypical squamous cells, cannot exclude HSIL"; HSIL; SCC), which
are referred for colposcopy. A grade's probability is the sum of its classes' calibrated probabilities, and the
called grade is the most probable one: a cell torn between ASC-H and HSIL is still called high-grade.

References
----------
Nayar R., Wilbur D. C. (eds.), "The Bethesda System for Reporting Cervical Cytology", 3rd ed., Springer 2015.
Rezende M. T. et al., "Cric searchable image database as a public platform for conventional pap smear cytology
data", Scientific Data 8, 151 (2021).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

__all__ = ["abnormal_score", "sensitivity_at_specificity", "threshold_for_specificity", "threshold_for_sensitivity",
           "screening_metrics",
           "BETHESDA_GRADES", "GRADE_ORDER", "has_bethesda_grades", "grade_probs", "grade_of", "grade_metrics"]

#: The Bethesda squamous categories by grade (Nayar & Wilbur 2015, ch. 5): class name -> grade.
BETHESDA_GRADES: dict[str, str] = {"NILM": "NILM", "ASC-US": "low-grade", "LSIL": "low-grade",
                                   "ASC-H": "high-grade", "HSIL": "high-grade", "SCC": "high-grade"}
#: The grades in order of severity.
GRADE_ORDER: tuple[str, ...] = ("NILM", "low-grade", "high-grade")


def abnormal_score(probs: np.ndarray, labels: Sequence[str], negative: str = "NILM") -> np.ndarray:
    """``1 - P(negative)`` per image.

    Parameters
    ----------
    probs : (N, K) float ndarray
        Calibrated class probabilities (rows sum to 1).
    labels : sequence of str
        The K class names, in column order.
    negative : str
        The negative class.

    Returns
    -------
    (N,) float64 ndarray in [0, 1]

    Raises
    ------
    ValueError
        ``negative`` is not one of ``labels``.
    """
    if negative not in labels:
        raise ValueError(f"negative class {negative!r} is not one of {list(labels)}")
    return 1.0 - np.asarray(probs, dtype=np.float64)[:, list(labels).index(negative)]


def sensitivity_at_specificity(y_abnormal: np.ndarray, score: np.ndarray, specificity: float = 0.95) -> float:
    """Highest sensitivity on the ROC curve of ``score`` at specificity >= ``specificity`` (read off the same data).

    Parameters
    ----------
    y_abnormal : (N,) bool or {0, 1} ndarray
    score : (N,) float ndarray, higher = more abnormal
    specificity : float in (0, 1)

    Returns
    -------
    float in [0, 1]; NaN when one class is absent.
    """
    y = np.asarray(y_abnormal).astype(bool)
    if y.all() or not y.any():
        return float("nan")
    fpr, tpr, _ = skm.roc_curve(y, score)
    ok = fpr <= 1.0 - specificity + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def threshold_for_specificity(y_abnormal: np.ndarray, score: np.ndarray, specificity: float = 0.95) -> float:
    """Smallest threshold ``t`` (predict abnormal when ``score >= t``) whose specificity on these data is at least
    ``specificity``: just above the ``specificity`` quantile of the negatives' scores.

    Raises
    ------
    ValueError
        No negative image.
    """
    y = np.asarray(y_abnormal).astype(bool)
    neg = np.sort(np.asarray(score, dtype=np.float64)[~y])
    if len(neg) == 0:
        raise ValueError("no negative image to set a specificity on")
    k = int(np.ceil(specificity * len(neg))) - 1  # the k-th smallest negative score must fall below t
    k = min(max(k, 0), len(neg) - 1)
    return float(np.nextafter(neg[k], np.inf))


def threshold_for_sensitivity(y_positive: np.ndarray, score: np.ndarray, sensitivity: float = 0.95) -> float:
    """Largest threshold ``t`` (call positive when ``score >= t``) whose sensitivity on these data is at least
    ``sensitivity``: the ``1 - sensitivity`` quantile of the positives' scores.

    The mirror of :func:`threshold_for_specificity` for a miss that costs more than a false alarm (a high-grade
    lesion not referred for colposcopy). Fix it on the validation split and measure it on the test split.

    Parameters
    ----------
    y_positive : (N,) bool or {0, 1} ndarray
    score : (N,) float ndarray, higher = more likely positive
    sensitivity : float in (0, 1]

    Returns
    -------
    float
        A score value of one positive image (so at least ``ceil(sensitivity * n_positive)`` positives reach it).

    Raises
    ------
    ValueError
        No positive image, or ``sensitivity`` outside (0, 1].
    """
    if not 0.0 < sensitivity <= 1.0:
        raise ValueError(f"sensitivity must lie in (0, 1], got {sensitivity}")
    y = np.asarray(y_positive).astype(bool)
    pos = np.sort(np.asarray(score, dtype=np.float64)[y])[::-1]  # descending
    if len(pos) == 0:
        raise ValueError("no positive image to set a sensitivity on")
    k = int(np.ceil(sensitivity * len(pos) - 1e-9)) - 1  # keep the k + 1 highest positives at or above t
    return float(pos[min(max(k, 0), len(pos) - 1)])


def screening_metrics(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str], negative: str = "NILM",
                      specificity: float = 0.95, threshold: float | None = None) -> dict[str, Any]:
    """Negative-vs-abnormal metrics of a multi-class model.

    Parameters
    ----------
    y_true : (N,) int ndarray of label indices
    probs : (N, K) float ndarray of calibrated probabilities
    labels : sequence of str
    negative : str
    specificity : float
        Target specificity of the operating points.
    threshold : float, optional
        A threshold fixed elsewhere (on the validation split) to evaluate here.

    Returns
    -------
    dict
        ``auroc`` (abnormal vs negative), ``sensitivity_at_spec`` (read off these data's ROC), ``n_abnormal``,
        ``n_negative``; with ``threshold``: ``threshold``, ``sensitivity`` and ``specificity`` at it.
    """
    score = abnormal_score(probs, labels, negative)
    y = np.asarray(y_true) != list(labels).index(negative)
    out: dict[str, Any] = {"n_abnormal": int(y.sum()), "n_negative": int((~y).sum()),
                           "auroc": float(skm.roc_auc_score(y, score)) if 0 < y.sum() < len(y) else float("nan"),
                           "target_specificity": specificity,
                           "sensitivity_at_spec": sensitivity_at_specificity(y, score, specificity)}
    if threshold is not None:
        pred = score >= threshold
        out.update(threshold=float(threshold),
                   sensitivity=float(pred[y].mean()) if y.any() else float("nan"),
                   specificity=float((~pred[~y]).mean()) if (~y).any() else float("nan"))
    return out


def has_bethesda_grades(labels: Sequence[str]) -> bool:
    """True when ``labels`` are exactly the six Bethesda classes of :data:`BETHESDA_GRADES` (in any order)."""
    return len(labels) == len(BETHESDA_GRADES) and set(labels) == set(BETHESDA_GRADES)


def grade_probs(probs: np.ndarray, labels: Sequence[str],
                grades: dict[str, str] | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Per-grade probabilities: the sum of each grade's class probabilities.

    Parameters
    ----------
    probs : (N, K) float ndarray
        Calibrated class probabilities (rows sum to 1).
    labels : sequence of str
        The K class names, in column order.
    grades : dict, optional
        Class name -> grade; default :data:`BETHESDA_GRADES`.

    Returns
    -------
    probs : (N, G) float64 ndarray
        Rows sum to the rows of ``probs``.
    names : tuple of str
        The G grades in column order (:data:`GRADE_ORDER` first, then any other grade in order of appearance).

    Raises
    ------
    ValueError
        A label has no grade, or ``probs`` has not one column per label.
    """
    grades = BETHESDA_GRADES if grades is None else grades
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(labels):
        raise ValueError(f"probs must be (N, {len(labels)}), got {p.shape}")
    missing = [label for label in labels if label not in grades]
    if missing:
        raise ValueError(f"no grade for the classes {missing}")
    present = [grades[label] for label in labels]
    names = tuple([g for g in GRADE_ORDER if g in present] + [g for g in dict.fromkeys(present) if g not in GRADE_ORDER])
    out = np.zeros((p.shape[0], len(names)))
    for k, label in enumerate(labels):
        out[:, names.index(grades[label])] += p[:, k]
    return out, names


def grade_of(probs: np.ndarray, labels: Sequence[str]) -> tuple[str, dict[str, float]] | None:
    """The Bethesda grade of one prediction: the called grade and every grade's probability.

    Parameters
    ----------
    probs : (K,) float ndarray
        One image's calibrated class probabilities.
    labels : sequence of str
        The K class names.

    Returns
    -------
    (str, dict of str to float) or None
        The most probable grade and ``{grade: probability}`` in :data:`GRADE_ORDER`; None unless ``labels`` are
        the six Bethesda classes (:func:`has_bethesda_grades`).
    """
    if not has_bethesda_grades(labels):
        return None
    g, names = grade_probs(np.asarray(probs, dtype=np.float64).reshape(1, -1), labels)
    return names[int(g[0].argmax())], {n: float(v) for n, v in zip(names, g[0], strict=True)}


def grade_metrics(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str],
                  grades: dict[str, str] | None = None) -> dict[str, Any]:
    """Grade-level confusion, sensitivity and PPV of a multi-class model, and where each class's images go.

    Parameters
    ----------
    y_true : (N,) int ndarray of label indices
    probs : (N, K) float ndarray of calibrated probabilities
    labels : sequence of str
    grades : dict, optional
        Class name -> grade; default :data:`BETHESDA_GRADES`.

    Returns
    -------
    dict
        ``grades`` (names, G), ``confusion`` ((G, G) list of int: rows true grade, columns called grade),
        ``n`` (images per true grade), ``sensitivity`` and ``ppv`` per grade (NaN where undefined), ``accuracy``,
        ``macro_f1`` (over the grades, scikit-learn), and ``routing``: per class ``label``, ``grade``, ``n`` and
        ``called`` (counts per called grade, in ``grades`` order).

    Raises
    ------
    ValueError
        As :func:`grade_probs`.
    """
    gp, names = grade_probs(probs, labels, grades)
    grades = BETHESDA_GRADES if grades is None else grades
    y = np.asarray(y_true, dtype=np.int64)
    true_g = np.array([names.index(grades[label]) for label in labels])[y]
    called = gp.argmax(axis=1)
    g = len(names)
    cm = skm.confusion_matrix(true_g, called, labels=list(range(g)))
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.diag(cm) / cm.sum(axis=1)
        ppv = np.diag(cm) / cm.sum(axis=0)
    routing = [{"label": label, "grade": grades[label], "n": int((y == k).sum()),
                "called": np.bincount(called[y == k], minlength=g).astype(int).tolist()}
               for k, label in enumerate(labels)]
    return {"grades": names, "confusion": cm.astype(int).tolist(), "n": cm.sum(axis=1).astype(int).tolist(),
            "sensitivity": [float(v) for v in sens], "ppv": [float(v) for v in ppv],
            "accuracy": float((called == true_g).mean()) if len(y) else float("nan"),
            "macro_f1": float(skm.f1_score(true_g, called, labels=list(range(g)), average="macro", zero_division=0)),
            "routing": routing}
