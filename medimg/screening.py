"""The screening view of a multi-class cytology model: negative (NILM) vs abnormal (any other Bethesda class).

Cervical screening asks first whether a cell is abnormal at all; which abnormal class comes second. The abnormal
score of an image is ``1 - P(NILM)`` from the calibrated 6-class probabilities. Two operating points: the
sensitivity read off the ROC at 95 % specificity (an optimistic point chosen on the same data, as papers report
it), and the honest one: a threshold fixed on the VALIDATION split for >= 95 % specificity, applied to the test
split. Serving code (the reviewers' dashboard) reads these; the workshop (:mod:`medimg.training.screening`)
computes the validation threshold of a model.

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

__all__ = ["abnormal_score", "sensitivity_at_specificity", "threshold_for_specificity", "screening_metrics"]


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
