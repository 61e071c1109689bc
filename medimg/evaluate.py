"""Test-set evaluation reports: per-image probabilities and metrics (scikit-learn), bootstrap CIs, ECE.

No torch here: a report is computed from arrays of labels and calibrated probabilities, so the dashboard can
load and plot it without the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as skm

__all__ = ["EvalReport", "compute_metrics", "expected_calibration_error", "bootstrap_ci", "predict_labels"]


def predict_labels(probs: np.ndarray, positive_label: int | None = None, threshold: float | None = None) -> np.ndarray:
    """Predicted class per row: argmax, or ``probs[:, positive] >= threshold`` for a binary thresholded model.

    Parameters
    ----------
    probs : (N, K) float ndarray, rows sum to 1
    positive_label, threshold : see :class:`medimg.spec.ModelSpec`

    Returns
    -------
    (N,) int64 ndarray
    """
    probs = np.asarray(probs, dtype=np.float64)
    if threshold is not None and positive_label is not None and probs.shape[1] == 2:
        neg = 1 - positive_label
        return np.where(probs[:, positive_label] >= threshold, positive_label, neg).astype(np.int64)
    return probs.argmax(axis=1).astype(np.int64)


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of the top-label confidence (Guo et al., ICML 2017), equal-width bins.

    Parameters
    ----------
    y_true : (N,) int ndarray
    probs : (N, K) float ndarray
    n_bins : int

    Returns
    -------
    float in [0, 1]
    """
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, positive_label: int | None = None,
                    threshold: float | None = None) -> dict[str, Any]:
    """Classification metrics from labels and probabilities (scikit-learn).

    Parameters
    ----------
    y_true : (N,) int ndarray of label indices
    probs : (N, K) float ndarray of calibrated probabilities
    positive_label : int, optional
        Positive class for binary sensitivity (recall of positive), specificity, PPV, NPV. Defaults to 1 for K=2.
    threshold : float, optional
        Decision threshold on the positive class's probability; argmax when None.

    Returns
    -------
    dict
        ``accuracy``, ``auroc`` (binary, or macro one-vs-rest), ``f1`` (binary) and ``macro_f1``,
        ``sensitivity``, ``specificity``, ``ppv``, ``npv`` (binary), ``macro_sensitivity`` (= balanced
        accuracy), ``macro_specificity`` and ``per_class_sensitivity`` / ``per_class_specificity`` (one-vs-rest,
        K > 2), ``ece``, ``n``, ``confusion_matrix`` (K x K list, rows = true, columns = predicted).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    if k == 2 and positive_label is None:
        positive_label = 1
    y_pred = predict_labels(probs, positive_label, threshold)
    cm = skm.confusion_matrix(y_true, y_pred, labels=list(range(k)))
    out: dict[str, Any] = {
        "n": int(len(y_true)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "macro_f1": float(skm.f1_score(y_true, y_pred, average="macro", labels=list(range(k)), zero_division=0)),
        "ece": expected_calibration_error(y_true, probs),
        "confusion_matrix": cm.tolist(),
    }
    present = np.unique(y_true)
    if k == 2:
        pos = int(positive_label)
        if len(present) == 2:
            out["auroc"] = float(skm.roc_auc_score(y_true == pos, probs[:, pos]))
            out["average_precision"] = float(skm.average_precision_score(y_true == pos, probs[:, pos]))
        tp = int(cm[pos, pos])
        fn = int(cm[pos].sum() - tp)
        fp = int(cm[:, pos].sum() - tp)
        tn = int(cm.sum() - tp - fn - fp)
        div = lambda a, b: float(a / b) if b else float("nan")  # noqa: E731
        out.update(sensitivity=div(tp, tp + fn), specificity=div(tn, tn + fp), ppv=div(tp, tp + fp),
                   npv=div(tn, tn + fn),
                   f1=float(skm.f1_score(y_true == pos, y_pred == pos, zero_division=0)))
    else:
        if len(present) == k:
            out["auroc"] = float(skm.roc_auc_score(y_true, probs, multi_class="ovr", average="macro"))
        # one-vs-rest per class, macro-averaged over the classes present (sensitivity = balanced accuracy)
        tp = np.diag(cm).astype(np.float64)
        pos_n = cm.sum(axis=1).astype(np.float64)
        neg_n = cm.sum() - pos_n
        fp = cm.sum(axis=0) - tp
        sens = np.divide(tp, pos_n, out=np.full(k, np.nan), where=pos_n > 0)
        spec = np.divide(neg_n - fp, neg_n, out=np.full(k, np.nan), where=neg_n > 0)
        out["macro_sensitivity"] = float(np.nanmean(sens))
        out["macro_specificity"] = float(np.nanmean(spec))
        out["per_class_sensitivity"] = [None if np.isnan(v) else float(v) for v in sens]
        out["per_class_specificity"] = [None if np.isnan(v) else float(v) for v in spec]
    return out


def _binary_auroc(pos: np.ndarray, score: np.ndarray) -> float:
    """AUROC as the Mann-Whitney U statistic with mid-ranks for ties (equals sklearn's roc_auc_score)."""
    from scipy.stats import rankdata

    n1 = int(pos.sum())
    n0 = len(pos) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _fast_binary(y_true: np.ndarray, probs: np.ndarray, positive_label: int, threshold: float | None) -> dict[str, float]:
    y_pred = predict_labels(probs, positive_label, threshold)
    pos, pred_pos = y_true == positive_label, y_pred == positive_label
    tp, fn = int((pos & pred_pos).sum()), int((pos & ~pred_pos).sum())
    fp, tn = int((~pos & pred_pos).sum()), int((~pos & ~pred_pos).sum())
    nan = float("nan")
    return {"accuracy": (tp + tn) / len(y_true), "auroc": _binary_auroc(pos, probs[:, positive_label]),
            "sensitivity": tp / (tp + fn) if tp + fn else nan, "specificity": tn / (tn + fp) if tn + fp else nan,
            "ppv": tp / (tp + fp) if tp + fp else nan, "npv": tn / (tn + fn) if tn + fn else nan}


def bootstrap_ci(y_true: np.ndarray, probs: np.ndarray, keys: tuple[str, ...] = ("accuracy", "auroc"),
                 n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, positive_label: int | None = None,
                 threshold: float | None = None) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals (resampling images with replacement; Efron & Tibshirani 1993).

    Binary metrics (accuracy, AUROC, sensitivity, specificity, PPV, NPV) are computed with numpy per resample
    (the same definitions as :func:`compute_metrics`); other keys fall back to :func:`compute_metrics`.

    Returns
    -------
    dict of key -> (low, high)
        The ``alpha/2`` and ``1 - alpha/2`` quantiles of each metric over ``n_boot`` resamples (resamples that
        miss a class are skipped).
    """
    rng = np.random.default_rng(seed)
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    fast = k == 2 and set(keys) <= {"accuracy", "auroc", "sensitivity", "specificity", "ppv", "npv"}
    pos_label = 1 if positive_label is None else positive_label
    vals: dict[str, list[float]] = {key: [] for key in keys}
    n = len(y_true)
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        if len(np.unique(y_true[idx])) < k:
            continue
        m = _fast_binary(y_true[idx], probs[idx], pos_label, threshold) if fast else compute_metrics(
            y_true[idx], probs[idx], positive_label, threshold)
        for key in keys:
            if key in m and not np.isnan(m[key]):
                vals[key].append(m[key])
    return {key: (float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))) for key, v in vals.items() if v}


@dataclass
class EvalReport:
    """A model's per-image results on one split, and the metrics derived from them.

    Attributes
    ----------
    model : str
        Spec name.
    split : str
    labels : list of str
    y_true : (N,) int ndarray
    probs : (N, K) float ndarray of calibrated probabilities
    ids : list of str
        Image identifiers (relative paths in the data set).
    positive_label, threshold : as in the spec
    metrics : dict
        :func:`compute_metrics` output plus ``ci`` (95 % bootstrap intervals).
    """

    model: str
    split: str
    labels: list[str]
    y_true: np.ndarray
    probs: np.ndarray
    ids: list[str] = field(default_factory=list)
    positive_label: int | None = None
    threshold: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, model: str, split: str, labels: list[str], y_true: np.ndarray, probs: np.ndarray,
              ids: list[str] | None = None, positive_label: int | None = None, threshold: float | None = None,
              n_boot: int = 1000) -> EvalReport:
        """Compute metrics (with bootstrap CIs) and return the report."""
        y_true = np.asarray(y_true, dtype=np.int64)
        probs = np.asarray(probs, dtype=np.float64)
        m = compute_metrics(y_true, probs, positive_label, threshold)
        keys = ("accuracy", "auroc", "sensitivity", "specificity") if probs.shape[1] == 2 else ("accuracy", "auroc", "macro_f1")
        m["ci95"] = bootstrap_ci(y_true, probs, keys, n_boot=n_boot, positive_label=positive_label, threshold=threshold)
        return cls(model, split, list(labels), y_true, probs, list(ids or []), positive_label, threshold, m)

    @property
    def y_pred(self) -> np.ndarray:
        """(N,) predicted label indices under the report's threshold rule."""
        return predict_labels(self.probs, self.positive_label, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"model": self.model, "split": self.split, "labels": self.labels,
                "positive_label": self.positive_label, "threshold": self.threshold, "metrics": self.metrics,
                "ids": self.ids, "y_true": self.y_true.tolist(),
                "probs": np.round(self.probs, 6).tolist()}

    def save(self, path: str | Path) -> None:
        """Write as JSON."""
        Path(path).write_text(json.dumps(self.to_dict()) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> EvalReport:
        """Read a report written by :meth:`save`."""
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(d["model"], d["split"], d["labels"], np.asarray(d["y_true"], dtype=np.int64),
                   np.asarray(d["probs"], dtype=np.float64), d.get("ids", []), d.get("positive_label"),
                   d.get("threshold"), d.get("metrics", {}))
