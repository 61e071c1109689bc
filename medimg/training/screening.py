"""The screening view of a multi-class cytology model: negative (NILM) vs abnormal (any other Bethesda class).

Cervical screening asks first whether a cell is abnormal at all; which abnormal class comes second. The abnormal
score of an image is ``1 - P(NILM)`` from the calibrated 6-class probabilities. Two operating points are reported:
the sensitivity read off the test ROC at 95 % specificity (an optimistic, test-chosen point, as papers report it),
and the honest one: the threshold fixed on the VALIDATION split to give >= 95 % specificity there, then applied to
the test split (its test sensitivity and specificity both reported).

The metrics themselves live in :mod:`medimg.screening` (serving: the dashboard shows them); this workshop module
runs a model over its validation and test splits to fix and evaluate the threshold.

References
----------
Nayar R., Wilbur D. C. (eds.), "The Bethesda System for Reporting Cervical Cytology", 3rd ed., Springer 2015.
Rezende M. T. et al., "Cric searchable image database as a public platform for conventional pap smear cytology
data", Scientific Data 8, 151 (2021).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medimg.screening import (
    abnormal_score,
    screening_metrics,
    sensitivity_at_specificity,
    threshold_for_specificity,
)

__all__ = ["screening_view", "abnormal_score", "sensitivity_at_specificity", "threshold_for_specificity",
           "screening_metrics", "screening_report"]


def screening_view(y_val: np.ndarray, p_val: np.ndarray, y_test: np.ndarray, p_test: np.ndarray,
                   labels: list[str], negative: str = "NILM", specificity: float = 0.95) -> dict[str, Any]:
    """The screening view as the spec stores it (``metrics["screening"]``, read by the dashboard).

    The decision threshold on the abnormal score ``1 - P(negative)`` is fixed on the validation split for the
    target specificity; the test figures are measured at that threshold (never re-chosen on test).

    Parameters
    ----------
    y_val, y_test : (N,) int ndarray
        Reference class indices of the validation and test images.
    p_val, p_test : (N, K) float ndarray
        Calibrated class probabilities (rows sum to 1) of the same images.
    labels : list of str
        The K class names, in the probabilities' column order.
    negative : str
        The negative class (NILM for the Bethesda classes).
    specificity : float
        Target specificity in (0, 1) of the validation-fixed threshold.

    Returns
    -------
    dict
        ``negative``, ``validation_threshold`` (float in [0, 1]) and the ``val`` and ``test`` metrics of
        :func:`screening_metrics`.

    Raises
    ------
    ValueError
        ``negative`` is not one of ``labels``.
    """
    if negative not in labels:
        raise ValueError(f"{negative!r} is not one of the model's labels {labels}")
    yv, pv, yt, pt = (np.asarray(a) for a in (y_val, p_val, y_test, p_test))
    t = threshold_for_specificity(yv != labels.index(negative), abnormal_score(pv, labels, negative), specificity)
    return {"negative": negative, "validation_threshold": float(t),
            "val": screening_metrics(yv, pv, labels, negative, specificity, t),
            "test": screening_metrics(yt, pt, labels, negative, specificity, t)}


def screening_report(spec_path: str | Path, negative: str = "NILM", specificity: float = 0.95,
                     device: str = "auto") -> dict[str, Any]:
    """The screening view of a trained model: threshold fixed on its validation split, metrics on its test split.

    Also returns the 6-class figures the cytology literature reports: accuracy, macro-F1 and per-class sensitivity
    (recall) on the test split.

    Parameters
    ----------
    spec_path : path
        The model's spec (weights beside it, sha256-checked).
    negative : str
    specificity : float
    device : str

    Returns
    -------
    dict
        :func:`screening_view` (``negative``, ``validation_threshold``, ``val`` and ``test`` screening metrics)
        and ``multiclass`` (accuracy, macro-F1, per-class sensitivity by label name).
    """
    from medimg.evaluate import compute_metrics
    from medimg.training.evaluation import evaluate_split

    val = evaluate_split(spec_path, "val", device=device)
    test = evaluate_split(spec_path, "test", device=device)
    labels = list(test.labels)
    m = compute_metrics(np.asarray(test.y_true), np.asarray(test.probs))
    return {**screening_view(val.y_true, val.probs, test.y_true, test.probs, labels, negative, specificity),
            "multiclass": {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "auroc": m["auroc"],
                           "per_class_sensitivity": dict(zip(labels, m["per_class_sensitivity"], strict=True))}}
