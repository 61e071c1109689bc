"""Loading a model's test-set report and training log for the dashboard page."""

from __future__ import annotations

import json
import math
from typing import Any

from medimg.errors import MedimgError
from medimg.evaluate import EvalReport
from medimg.ui.resources import ModelOption

__all__ = ["ReportError", "load_report", "load_history", "metrics_rows", "confusion_matrix", "METRIC_NAMES"]

#: Metrics of the table, in order: report key -> displayed name.
METRIC_NAMES: dict[str, str] = {
    "accuracy": "Accuracy",
    "auroc": "AUROC",
    "sensitivity": "Sensitivity (recall)",
    "specificity": "Specificity",
    "ppv": "PPV (precision)",
    "npv": "NPV",
    "f1": "F1",
    "macro_sensitivity": "Sensitivity (macro, one-vs-rest; = balanced accuracy)",
    "macro_specificity": "Specificity (macro, one-vs-rest)",
    "macro_f1": "Macro F1",
    "ece": "ECE (lower is better)",
}


class ReportError(MedimgError):
    """A report or log file beside the weights cannot be read."""

    title = "Test-set report could not be read"


def load_report(option: ModelOption) -> EvalReport | None:
    """The test-set :class:`medimg.EvalReport` saved beside the model (``<name>.eval.json``).

    Returns
    -------
    EvalReport or None
        None when the model has no report.

    Raises
    ------
    ReportError
        The file exists but is not a valid report.
    """
    path = option.eval_path
    if not path.is_file():
        return None
    try:
        report = EvalReport.load(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ReportError(f"{path.name} is not a valid evaluation report ({type(err).__name__}). "
                          "Re-create it with `medimg evaluate --out`.") from err
    k = len(report.labels)
    if report.probs.ndim != 2 or report.probs.shape[1] != k or len(report.y_true) != len(report.probs):
        raise ReportError(f"{path.name} is inconsistent: probabilities and labels do not match. "
                          "Re-create it with `medimg evaluate --out`.")
    # metrics from the per-image results with today's definitions; the stored bootstrap intervals are kept
    from medimg.evaluate import compute_metrics

    ci = report.metrics.get("ci95") or report.metrics.get("ci") or {}
    report.metrics = {**compute_metrics(report.y_true, report.probs, report.positive_label, report.threshold),
                      "ci95": ci}
    return report


def load_history(option: ModelOption) -> list[dict[str, Any]]:
    """Per-epoch rows of the training log (``<name>.log.json`` ``history``); empty when absent or unreadable."""
    path = option.log_path
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    hist = data.get("history", []) if isinstance(data, dict) else []
    return [row for row in hist if isinstance(row, dict)]


def confusion_matrix(report: EvalReport) -> list[list[int]]:
    """The report's confusion matrix (rows = true, columns = predicted), recomputed if the file lacks it."""
    cm = report.metrics.get("confusion_matrix")
    if cm is not None:
        return cm
    from sklearn.metrics import confusion_matrix as sk_cm

    return sk_cm(report.y_true, report.y_pred, labels=list(range(len(report.labels)))).tolist()


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{float(v):.3f}"


def metrics_rows(report: EvalReport) -> dict[str, list[str]]:
    """The metrics table: metric, value, 95 % CI (bootstrap) where the report has one.

    Returns
    -------
    dict of column -> list of str
        Ready for ``st.dataframe`` / ``st.table``.
    """
    m = report.metrics
    ci = m.get("ci95") or m.get("ci") or {}
    out: dict[str, list[str]] = {"Metric": [], "Value": [], "95 % CI": []}
    for key, name in METRIC_NAMES.items():
        if key not in m:
            continue
        out["Metric"].append(name)
        out["Value"].append(_fmt(m[key]))
        lo_hi = ci.get(key)
        out["95 % CI"].append(f"{_fmt(lo_hi[0])} – {_fmt(lo_hi[1])}" if lo_hi else "")
    return out
