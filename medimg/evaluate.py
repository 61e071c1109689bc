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

__all__ = ["EvalReport", "compute_metrics", "expected_calibration_error", "bootstrap_ci", "predict_labels",
           "operating_point", "operating_point_ci", "predictive_values", "one_vs_rest", "all_metric_cis",
           "uncalibrated", "reliability_bins", "CI_KEYS"]


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
        """JSON-ready dict.

        The probabilities are stored at full float64 precision: rounding them to a fixed number of decimals turns
        a confident model's small probabilities (1e-9 vs 1e-8) into ties at 0, and the one-vs-rest AUROC a
        reviewer recomputes from the file (ROC curves, operating points) then drifts from the one measured in
        memory (0.949 against 0.954 for a brain MRI model at temperature 0.62).
        """
        return {"model": self.model, "split": self.split, "labels": self.labels,
                "positive_label": self.positive_label, "threshold": self.threshold, "metrics": self.metrics,
                "ids": self.ids, "y_true": self.y_true.tolist(),
                "probs": np.asarray(self.probs, dtype=np.float64).tolist()}

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


# --------------------------------------------------------------------------------------------------------------
# Operating points and intervals for reviewers (the dashboard)

#: Metrics that get a 95 % bootstrap interval on the dashboard, binary and multi-class.
CI_KEYS = {
    2: ("accuracy", "auroc", "sensitivity", "specificity", "ppv", "npv", "f1", "macro_f1", "ece"),
    "multi": ("accuracy", "auroc", "macro_sensitivity", "macro_specificity", "macro_f1", "ece"),
}


def _ece_binned(conf: np.ndarray, correct: np.ndarray, bins: np.ndarray, n_bins: int) -> float:
    n = len(conf)
    s_conf = np.bincount(bins, weights=conf, minlength=n_bins)
    s_corr = np.bincount(bins, weights=correct, minlength=n_bins)
    return float(np.abs(s_corr - s_conf).sum() / n)


def _ece_bins(conf: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """Bin index per confidence, exactly as :func:`expected_calibration_error` (bin 0 closed on both sides)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.searchsorted(edges, conf, side="left") - 1
    return np.clip(b, 0, n_bins - 1)


def _counts(pos: np.ndarray, pred_pos: np.ndarray) -> tuple[int, int, int, int]:
    tp = int((pos & pred_pos).sum())
    fn = int((pos & ~pred_pos).sum())
    fp = int((~pos & pred_pos).sum())
    tn = int((~pos & ~pred_pos).sum())
    return tp, fp, tn, fn


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def _all_metrics(y: np.ndarray, probs: np.ndarray, pred: np.ndarray, positive: int, bins: np.ndarray,
                 correct_top: np.ndarray, conf: np.ndarray, n_bins: int) -> dict[str, float]:
    """Every dashboard metric of one (re)sample, numpy only (the definitions of :func:`compute_metrics`)."""
    k = probs.shape[1]
    out: dict[str, float] = {"accuracy": float((pred == y).mean()),
                             "ece": _ece_binned(conf, correct_top, bins, n_bins)}
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k).astype(np.float64)
    tp = np.diag(cm)
    pos_n, pred_n = cm.sum(axis=1), cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(pred_n > 0, tp / pred_n, 0.0)
        rec = np.where(pos_n > 0, tp / pos_n, 0.0)
        f1s = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    out["macro_f1"] = float(f1s.mean())
    if k == 2:
        p = y == positive
        tp_, fp_, tn_, fn_ = _counts(p, pred == positive)
        out.update(sensitivity=_ratio(tp_, tp_ + fn_), specificity=_ratio(tn_, tn_ + fp_), ppv=_ratio(tp_, tp_ + fp_),
                   npv=_ratio(tn_, tn_ + fn_), f1=_ratio(2 * tp_, 2 * tp_ + fp_ + fn_) if tp_ + fp_ + fn_ else 0.0,
                   auroc=_binary_auroc(p, probs[:, positive]))
    else:
        neg_n = cm.sum() - pos_n
        fp = pred_n - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            sens = np.where(pos_n > 0, tp / np.where(pos_n > 0, pos_n, 1), np.nan)
            spec = np.where(neg_n > 0, (neg_n - fp) / np.where(neg_n > 0, neg_n, 1), np.nan)
        out["macro_sensitivity"] = float(np.nanmean(sens))
        out["macro_specificity"] = float(np.nanmean(spec))
        out["auroc"] = float(np.mean([_binary_auroc(y == c, probs[:, c]) for c in range(k)]))
    return out


def all_metric_cis(y_true: np.ndarray, probs: np.ndarray, positive_label: int | None = None,
                   threshold: float | None = None, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                   n_bins: int = 15) -> dict[str, tuple[float, float]]:
    """95 % percentile bootstrap intervals of every dashboard metric (:data:`CI_KEYS`), numpy only.

    Parameters
    ----------
    y_true : (N,) int ndarray
    probs : (N, K) float ndarray of calibrated probabilities
    positive_label : int, optional
        Binary positive class (default 1).
    threshold : float, optional
        Binary decision threshold on the positive class's probability; argmax when None.
    n_boot : int
        Resamples of the images, with replacement (resamples that miss a class are skipped).
    alpha : float
        ``1 - alpha`` intervals.
    seed : int
    n_bins : int
        ECE bins, as in :func:`expected_calibration_error`.

    Returns
    -------
    dict of key -> (low, high)
        Binary: accuracy, AUROC, sensitivity, specificity, PPV, NPV, F1, macro F1, ECE. Multi-class: accuracy,
        AUROC (macro one-vs-rest), macro sensitivity, macro specificity, macro F1, ECE.

    References
    ----------
    .. [1] Efron & Tibshirani, "An Introduction to the Bootstrap", 1993 (percentile intervals).
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    k = p.shape[1]
    pos = 1 if positive_label is None else int(positive_label)
    pred = predict_labels(p, pos if k == 2 else None, threshold)
    conf = p.max(axis=1)
    correct_top = (p.argmax(axis=1) == y).astype(np.float64)
    bins = _ece_bins(conf, n_bins)
    keys = CI_KEYS[2] if k == 2 else CI_KEYS["multi"]
    rng = np.random.default_rng(seed)
    vals: dict[str, list[float]] = {key: [] for key in keys}
    n = len(y)
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        yi = y[i]
        if len(np.unique(yi)) < k:
            continue
        m = _all_metrics(yi, p[i], pred[i], pos, bins[i], correct_top[i], conf[i], n_bins)
        for key in keys:
            v = m.get(key)
            if v is not None and not np.isnan(v):
                vals[key].append(v)
    return {key: (float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2)))
            for key, v in vals.items() if v}


def operating_point(y_true: np.ndarray, probs: np.ndarray, threshold: float,
                    positive_label: int = 1) -> dict[str, float]:
    """Confusion counts and rates of a binary model at a threshold on the positive class's probability.

    An image is called positive when ``probs[:, positive_label] >= threshold`` (the rule of
    :func:`predict_labels`).

    Parameters
    ----------
    y_true : (N,) int ndarray of label indices (two classes)
    probs : (N, 2) float ndarray of calibrated probabilities, or (N,) positive-class probabilities
    threshold : float in [0, 1]
    positive_label : int

    Returns
    -------
    dict
        ``threshold``, ``tp``, ``fp``, ``tn``, ``fn`` (int), ``sensitivity`` (recall, TPR), ``specificity``
        (TNR), ``fpr`` (1 - specificity), ``ppv`` (precision), ``npv``, ``f1``, ``accuracy``; NaN where a
        denominator is 0 (F1 is 0 when there is no positive call and no positive case missed... see sklearn's
        ``zero_division=0``).
    """
    y = np.asarray(y_true)
    pr = np.asarray(probs, dtype=np.float64)
    score = pr[:, positive_label] if pr.ndim == 2 else pr
    pos = y == positive_label
    called = score >= float(threshold)
    tp, fp, tn, fn = _counts(pos, called)
    sens, spec = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return {"threshold": float(threshold), "tp": tp, "fp": fp, "tn": tn, "fn": fn, "sensitivity": sens,
            "specificity": spec, "fpr": 1.0 - spec if not np.isnan(spec) else float("nan"),
            "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn),
            "f1": float(2 * tp / (2 * tp + fp + fn)) if (2 * tp + fp + fn) else 0.0,
            "accuracy": float((tp + tn) / len(y)) if len(y) else float("nan")}


def operating_point_ci(y_true: np.ndarray, probs: np.ndarray, threshold: float, positive_label: int = 1,
                       n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of :func:`operating_point`'s rates at one threshold (vectorised).

    Returns
    -------
    dict of key -> (low, high)
        ``sensitivity``, ``specificity``, ``ppv``, ``npv``, ``f1``, ``accuracy``.
    """
    y = np.asarray(y_true)
    pr = np.asarray(probs, dtype=np.float64)
    score = pr[:, positive_label] if pr.ndim == 2 else pr
    pos = y == positive_label
    called = score >= float(threshold)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), (int(n_boot), len(y)))
    pb, cb = pos[idx], called[idx]
    tp = (pb & cb).sum(1).astype(np.float64)
    fn = (pb & ~cb).sum(1).astype(np.float64)
    fp = (~pb & cb).sum(1).astype(np.float64)
    tn = (~pb & ~cb).sum(1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = {"sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp), "ppv": tp / (tp + fp),
                 "npv": tn / (tn + fn), "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0),
                 "accuracy": (tp + tn) / len(y)}
    out = {}
    for key, v in rates.items():
        v = v[np.isfinite(v)]
        if v.size:
            out[key] = (float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2)))
    return out


def predictive_values(sensitivity: float, specificity: float, prevalence: float) -> tuple[float, float]:
    """PPV and NPV at another prevalence, by Bayes' theorem from sensitivity and specificity.

    ``PPV = se p / (se p + (1 - sp)(1 - p))``, ``NPV = sp (1 - p) / (sp (1 - p) + (1 - se) p)``.

    Parameters
    ----------
    sensitivity, specificity : float in [0, 1]
    prevalence : float in [0, 1]
        Share of positives in the population the reviewer has in mind.

    Returns
    -------
    (float, float)
        PPV and NPV in [0, 1]; NaN where undefined (e.g. PPV when nothing is called positive).

    Raises
    ------
    ValueError
        An argument outside [0, 1].

    References
    ----------
    .. [1] Altman & Bland, "Diagnostic tests 2: predictive values", BMJ 1994;309:102.
    """
    for name, v in (("sensitivity", sensitivity), ("specificity", specificity), ("prevalence", prevalence)):
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {v}")
    se, sp, p = float(sensitivity), float(specificity), float(prevalence)
    return _ratio(se * p, se * p + (1 - sp) * (1 - p)), _ratio(sp * (1 - p), sp * (1 - p) + (1 - se) * p)


def one_vs_rest(y_true: np.ndarray, probs: np.ndarray, labels: list[str] | tuple[str, ...], n_boot: int = 1000,
                alpha: float = 0.05, seed: int = 0) -> list[dict[str, Any]]:
    """Per-class one-vs-rest metrics of a multi-class model (argmax decisions), with bootstrap intervals.

    Parameters
    ----------
    y_true : (N,) int ndarray
    probs : (N, K) float ndarray
    labels : sequence of K str
    n_boot, alpha, seed
        As in :func:`all_metric_cis`.

    Returns
    -------
    list of dict, one per class
        ``label``, ``n`` (cases of the class), ``sensitivity``, ``specificity``, ``ppv``, ``f1``, ``auroc``
        (class score vs rest) and ``ci`` (key -> (low, high)).
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    k = p.shape[1]
    pred = p.argmax(axis=1)

    def per_class(yy: np.ndarray, pp: np.ndarray, pr: np.ndarray) -> list[dict[str, float]]:
        rows = []
        for c in range(k):
            pos, called = yy == c, pr == c
            tp, fp, tn, fn = _counts(pos, called)
            rows.append({"sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
                         "ppv": _ratio(tp, tp + fp), "f1": _ratio(2 * tp, 2 * tp + fp + fn) if tp + fp + fn else 0.0,
                         "auroc": _binary_auroc(pos, pp[:, c])})
        return rows

    point = per_class(y, p, pred)
    rng = np.random.default_rng(seed)
    keys = ("sensitivity", "specificity", "ppv", "f1", "auroc")
    draws: list[dict[str, list[float]]] = [{key: [] for key in keys} for _ in range(k)]
    n = len(y)
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        for c, row in enumerate(per_class(y[i], p[i], pred[i])):
            for key in keys:
                if not np.isnan(row[key]):
                    draws[c][key].append(row[key])
    out = []
    for c in range(k):
        ci = {key: (float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2)))
              for key, v in draws[c].items() if v}
        out.append({"label": labels[c], "n": int((y == c).sum()), **point[c], "ci": ci})
    return out


def uncalibrated(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities before temperature scaling, recovered from the calibrated ones.

    Calibrated ``p = softmax(z / T)``, so ``softmax(T log p) = softmax(z)``: the raw softmax of the same logits.

    Parameters
    ----------
    probs : (N, K) float ndarray of calibrated probabilities (rows sum to 1)
    temperature : float > 0
        The spec's fitted temperature T.

    Returns
    -------
    (N, K) float64 ndarray
        Exact up to the rounding of ``probs`` (reports store 6 decimals; zeros are floored at 1e-12).

    References
    ----------
    .. [1] Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks", ICML 2017.
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    z = float(temperature) * np.log(p)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def reliability_bins(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per-bin accuracy, mean confidence and count of the top-label confidence (equal-width bins, the bins of
    :func:`expected_calibration_error`).

    Returns
    -------
    dict
        ``mid``, ``accuracy``, ``confidence`` (NaN for empty bins), ``count`` (int), each (n_bins,).
    """
    p = np.asarray(probs, dtype=np.float64)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    b = _ece_bins(conf, n_bins)
    cnt = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(b, weights=correct, minlength=n_bins) / cnt
        cf = np.bincount(b, weights=conf, minlength=n_bins) / cnt
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return {"mid": (edges[:-1] + edges[1:]) / 2, "accuracy": acc, "confidence": cf, "count": cnt}
