"""The dashboard's data: a model's test-set report and training log, intervals for every metric, the operating
point explorer, the screening view of a multi-class model (negative vs abnormal) and the case review (the confusion-matrix cell a reviewer clicked, galleries of test images).

Only public test-set data is cached here (``st.cache_data`` / ``st.cache_resource``, keyed by the report file);
no user upload is involved."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import streamlit as st

from medimg.errors import ReportError
from medimg.evaluate import EvalReport
from medimg.ui.resources import ModelOption

__all__ = ["ReportError", "load_report", "load_history", "metrics_rows", "confusion_matrix", "METRIC_NAMES",
           "CELL_KEY", "GALLERY_MAX", "metric_cis", "metrics_table", "default_threshold", "predictions_at",
           "operating_rows", "one_vs_rest_rows", "calibration", "best_epoch", "selected_cell", "select_cell",
           "cell_cases", "confident_errors", "gallery", "case_captions", "screening_view", "screening_rows",
           "screening_confusion_rows", "screening_class_line", "grade_view", "grade_confusion_rows", "grade_routing_rows",
           "grade_line"]

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


# --------------------------------------------------------------------------------------------------------------
# Reviewers: intervals for every metric, the operating point, calibration, and the case review


#: ``st.session_state`` entry: the confusion-matrix cell opened per model, ``{model file: (true, predicted)}``.
CELL_KEY = "medimg.dashboard.cell"
#: Cases shown in a gallery at most.
GALLERY_MAX = 24


def _stamp(path: Any) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_data(max_entries=16, show_spinner="Bootstrapping 95 % intervals ...")
def _cis(path: str, stamp: int, threshold: float | None) -> dict[str, tuple[float, float]]:  # noqa: ARG001
    from medimg.evaluate import all_metric_cis

    r = EvalReport.load(path)
    return all_metric_cis(r.y_true, r.probs, r.positive_label, threshold if threshold is not None else r.threshold)


def metric_cis(option: ModelOption, report: EvalReport) -> dict[str, tuple[float, float]]:
    """95 % bootstrap intervals of every metric of the table (test-set data only; cached per report file).

    Returns
    -------
    dict of key -> (low, high)
        See :func:`medimg.evaluate.all_metric_cis`.
    """
    return _cis(str(option.eval_path), _stamp(option.eval_path), report.threshold)


def metrics_table(report: EvalReport, cis: dict[str, tuple[float, float]]) -> dict[str, list[str]]:
    """:func:`metrics_rows` with the freshly bootstrapped intervals for every metric (PPV, NPV, F1, ECE too)."""
    m = report.metrics
    out: dict[str, list[str]] = {"Metric": [], "Value": [], "95 % CI": []}
    for key, name in METRIC_NAMES.items():
        if key not in m:
            continue
        out["Metric"].append(name)
        out["Value"].append(_fmt(m[key]))
        lo_hi = cis.get(key)
        out["95 % CI"].append(f"{_fmt(lo_hi[0])} – {_fmt(lo_hi[1])}" if lo_hi else "n/a")
    return out


def default_threshold(option: ModelOption, report: EvalReport) -> tuple[float, str]:
    """The threshold to start the explorer at, and what it is.

    Returns
    -------
    (float, str)
        The spec's validation-chosen threshold when it has one; else 0.5 (for two classes, argmax calls the
        positive class exactly when its probability is >= 0.5).
    """
    t = report.threshold if report.threshold is not None else (option.spec.threshold if option.spec else None)
    if t is not None:
        return float(t), "validation-chosen threshold"
    return 0.5, "argmax (no validation-chosen threshold in the spec)"


def predictions_at(report: EvalReport, threshold: float | None) -> np.ndarray:
    """(N,) predicted labels: thresholded for a binary model, argmax otherwise."""
    from medimg.evaluate import predict_labels

    pos = report.positive_label if report.positive_label is not None else 1
    if len(report.labels) == 2 and threshold is not None:
        return predict_labels(report.probs, pos, threshold)
    return report.probs.argmax(axis=1)


def operating_rows(op: dict[str, float], ci: dict[str, tuple[float, float]]) -> dict[str, list[str]]:
    """Table of the operating point's rates with their intervals."""
    names = {"sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV", "npv": "NPV", "f1": "F1",
             "accuracy": "Accuracy"}
    out: dict[str, list[str]] = {"Metric": [], "Value": [], "95 % CI": []}
    for k, name in names.items():
        out["Metric"].append(name)
        out["Value"].append(_fmt(op[k]))
        out["95 % CI"].append(f"{_fmt(ci[k][0])} – {_fmt(ci[k][1])}" if k in ci else "n/a")
    return out


@st.cache_data(max_entries=8, show_spinner="Bootstrapping the per-class intervals ...")
def _ovr(path: str, stamp: int) -> list[dict[str, Any]]:  # noqa: ARG001
    from medimg.evaluate import one_vs_rest

    r = EvalReport.load(path)
    return one_vs_rest(r.y_true, r.probs, r.labels, n_boot=500)


def one_vs_rest_rows(option: ModelOption) -> dict[str, list[str]]:
    """Per-class one-vs-rest table (sensitivity, specificity, PPV, F1, AUROC, each with its 95 % CI)."""
    rows = _ovr(str(option.eval_path), _stamp(option.eval_path))
    out: dict[str, list[str]] = {"Class": [], "Images": []}
    keys = (("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("ppv", "PPV"), ("f1", "F1"),
            ("auroc", "AUROC"))
    for _, name in keys:
        out[name] = []
    for r in rows:
        out["Class"].append(r["label"])
        out["Images"].append(str(r["n"]))
        for k, name in keys:
            ci = r["ci"].get(k)
            out[name].append(f"{_fmt(r[k])} ({_fmt(ci[0])} – {_fmt(ci[1])})" if ci else _fmt(r[k]))
    return out


def calibration(option: ModelOption, report: EvalReport) -> tuple[np.ndarray, float, float, float | None]:
    """Probabilities before temperature scaling (recovered exactly from the calibrated ones and the spec's T) and
    the ECE before and after.

    Returns
    -------
    (probs_before, ece_before, ece_after, temperature)
    """
    from medimg.evaluate import expected_calibration_error, uncalibrated

    t = option.spec.temperature if option.spec is not None else None
    before = uncalibrated(report.probs, t) if t else report.probs
    return (before, expected_calibration_error(report.y_true, before),
            expected_calibration_error(report.y_true, report.probs), t)


def best_epoch(option: ModelOption) -> int | None:
    """The epoch whose weights were kept (``spec.training["best_epoch"]``), when the spec says."""
    tr = (option.spec.training if option.spec is not None else None) or {}
    v = tr.get("best_epoch")
    return int(v) if isinstance(v, int | float) else None


def selected_cell(option: ModelOption) -> tuple[int, int] | None:
    """The confusion-matrix cell the reviewer opened for this model, or None."""
    c = st.session_state.get(CELL_KEY, {}).get(option.path.name)
    return (int(c[0]), int(c[1])) if isinstance(c, tuple | list) and len(c) == 2 else None


def select_cell(option: ModelOption, cell: tuple[int, int] | None) -> None:
    """Open (or close, with None) a confusion-matrix cell's cases."""
    cells = dict(st.session_state.get(CELL_KEY, {}))
    if cell is None:
        cells.pop(option.path.name, None)
    else:
        cells[option.path.name] = (int(cell[0]), int(cell[1]))
    st.session_state[CELL_KEY] = cells


def cell_cases(report: EvalReport, y_pred: np.ndarray, cell: tuple[int, int]) -> list[int]:
    """Indices of the test images in a confusion-matrix cell, most confident first (probability of the
    predicted class)."""
    i, j = cell
    idx = np.flatnonzero((report.y_true == i) & (y_pred == j))
    return [int(k) for k in idx[np.argsort(-report.probs[idx, j], kind="stable")]]


def confident_errors(report: EvalReport, y_pred: np.ndarray) -> list[int]:
    """Indices of the misclassified test images, most confident (in the wrong class) first."""
    idx = np.flatnonzero(report.y_true != y_pred)
    conf = report.probs[idx, y_pred[idx]]
    return [int(k) for k in idx[np.argsort(-conf, kind="stable")]]


@st.cache_resource(max_entries=16, show_spinner=False)
def _gallery(spec_path: str, stamp: int, split: str, ids: tuple[str, ...], targets: tuple[int, ...]
             ) -> tuple[list[np.ndarray], np.ndarray, float]:  # noqa: ARG001
    import time

    from medimg import explain as ex
    from medimg.spec import load_spec
    from medimg.ui.resources import get_predictor

    t0 = time.perf_counter()
    spec = load_spec(spec_path)
    pres = ex.case_inputs(spec, list(ids), split)
    x = np.stack([p.model_input for p in pres])
    maps = ex.cam_batch(get_predictor(spec_path), x, list(targets), method="gradcam", batch_size=len(ids))
    images = [p.image for p in pres]
    for im in images:
        im.setflags(write=False)
    maps.setflags(write=False)
    return images, maps, time.perf_counter() - t0


def gallery(option: ModelOption, report: EvalReport, cases: list[int], y_pred: np.ndarray
            ) -> tuple[list[np.ndarray], np.ndarray, float] | None:
    """Images at the model input and Grad-CAMs of the predicted class for up to :data:`GALLERY_MAX` cases, in one
    batched CAM pass (public test images only; shared between sessions).

    Returns
    -------
    (images, maps, seconds) or None
        None when the test images are not on this server.

    Raises
    ------
    medimg.MedimgError
        A case cannot be opened or explained.
    """
    from medimg import explain as ex
    from medimg.ui.resources import compute_slot

    if option.spec is None or not ex.cases_available(option.spec) or not cases:
        return None
    shown = cases[:GALLERY_MAX]
    with compute_slot():
        return _gallery(str(option.path.resolve()), _stamp(option.path), report.split,
                        tuple(report.ids[k] for k in shown), tuple(int(y_pred[k]) for k in shown))


def case_captions(report: EvalReport, cases: list[int], y_pred: np.ndarray) -> list[str]:
    """One caption per case: calibrated probability of the predicted class, true and predicted labels."""
    out = []
    for k in cases:
        j = int(y_pred[k])
        out.append(f"p({report.labels[j]}) {report.probs[k, j]:.2f}<br>true {report.labels[int(report.y_true[k])]}")
    return out


def gallery_columns(captions: list[str], max_cols: int = 5) -> int:
    """Columns of the case gallery so that every caption line fits over its tile.

    The gallery sits in half the page (about 460 px at a 1,440 px window); a 10 px caption font needs about 5.5 px
    per character, so five tiles take lines of up to 17 characters (``p(pneumonia) 0.97``), four up to 22 and three
    up to 28 (``p(meningioma_tumor) 1.00`` would otherwise run into its neighbours' captions).

    Parameters
    ----------
    captions : list of str
        The tiles' captions, lines separated by ``<br>`` (:func:`case_captions`).
    max_cols : int
        The most columns (>= 1).

    Returns
    -------
    int
        Columns in ``[1, max_cols]``.
    """
    longest = max((len(line) for c in captions for line in c.split("<br>")), default=0)
    for cols, fits in ((5, 17), (4, 22), (3, 28), (2, 44)):
        if longest <= fits:
            return max(1, min(cols, max_cols))
    return 1


def fmt(v: Any) -> str:
    """A metric value with 3 decimals, or ``n/a``."""
    return _fmt(v)


@st.cache_data(max_entries=64, show_spinner=False)
def _op(path: str, stamp: int, threshold: float) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:  # noqa: ARG001
    from medimg.evaluate import operating_point as op_at
    from medimg.evaluate import operating_point_ci

    r = EvalReport.load(path)
    pos = r.positive_label if r.positive_label is not None else 1
    return op_at(r.y_true, r.probs, threshold, pos), operating_point_ci(r.y_true, r.probs, threshold, pos)


def operating_point(report: EvalReport, threshold: float, option: ModelOption | None = None
                    ) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Rates at ``threshold`` (:func:`medimg.evaluate.operating_point`) and their 95 % bootstrap intervals."""
    from medimg.evaluate import operating_point as op_at
    from medimg.evaluate import operating_point_ci

    pos = report.positive_label if report.positive_label is not None else 1
    if option is not None:
        return _op(str(option.eval_path), _stamp(option.eval_path), float(threshold))
    return op_at(report.y_true, report.probs, threshold, pos), operating_point_ci(report.y_true, report.probs,
                                                                                   threshold, pos)


def at_prevalence(op: dict[str, float], prevalence: float) -> tuple[float, float]:
    """PPV and NPV of the operating point at another prevalence (:func:`medimg.evaluate.predictive_values`)."""
    from medimg.evaluate import predictive_values

    se, sp = op["sensitivity"], op["specificity"]
    if math.isnan(se) or math.isnan(sp):
        return float("nan"), float("nan")
    return predictive_values(se, sp, float(prevalence))


def confusion_matrix_at(report: EvalReport, y_pred: np.ndarray) -> list[list[int]]:
    """Confusion matrix (rows = true, columns = predicted) for the given predictions."""
    k = len(report.labels)
    cm = np.bincount(report.y_true * k + np.asarray(y_pred, dtype=np.int64), minlength=k * k).reshape(k, k)
    return cm.tolist()


def show_cases(option: ModelOption, report: EvalReport, y_pred: np.ndarray, cell: tuple[int, int] | None) -> None:
    """The case review: the clicked cell's test images (or the most confident errors) with probabilities and
    Grad-CAMs, and a way to open any of them in the saliency lab."""
    from medimg.ui import saliency
    from medimg.ui.errors import guard
    from medimg.viz import case_gallery_figure

    st.subheader("Cases")
    views = ["Clicked confusion-matrix cell", "Most confident errors"]
    view_key = f"cases-view-{option.path.stem}"
    seen_key = f"medimg.dashboard.cell-shown.{option.path.stem}"
    if cell is not None and st.session_state.get(seen_key) != cell:  # a newly clicked cell: show its cases
        st.session_state[view_key] = views[0]
    st.session_state[seen_key] = cell
    view = st.radio("Show", views, index=0 if cell is not None else 1, horizontal=True, key=view_key)
    if view == views[0]:
        if cell is None:
            st.info("Click a cell of the confusion matrix to see its test images.", icon=":material/touch_app:")
            return
        i, j = cell
        cases = cell_cases(report, y_pred, cell)
        title = (f"True **{report.labels[i]}**, predicted **{report.labels[j]}**: {len(cases)} images, most confident "
                 "first")
    else:
        cases = confident_errors(report, y_pred)
        title = f"**{len(cases)} errors**, the most confident (in the wrong class) first"
    shown = cases[:GALLERY_MAX]
    st.markdown(title + (f" (the first {len(shown)} shown)." if len(cases) > len(shown) else "."))
    if not cases:
        st.info("No images here.", icon=":material/check:")
        return
    with guard("opening the test images", stop=False) as g:
        gal = gallery(option, report, shown, y_pred)
    if g.failed:
        return
    caps = case_captions(report, shown, y_pred)
    if gal is None:
        st.info("The test images are not on this server (set MEDIMG_DATA), so only their numbers are listed.",
                icon=":material/image_not_supported:")
        st.dataframe({"Case": [report.ids[k] if report.ids else str(k) for k in shown],
                      "Calibrated probability": [f"{report.probs[k, int(y_pred[k])]:.3f}" for k in shown]},
                     hide_index=True, width="stretch", key="cases-table")
        return
    images, maps, seconds = gal
    st.plotly_chart(case_gallery_figure(images, list(maps), caps, cols=gallery_columns(caps), tile_px=200),
                    key="cases-gallery")
    st.caption(f"Each image as the network saw it, with the Grad-CAM of the predicted class (relative, min–max per "
               f"image); computed in one batched pass ({seconds:.2f} s). Probabilities are calibrated.")
    pick = st.selectbox("Open a case in the saliency lab", range(len(shown)),
                        format_func=lambda n: f"#{shown[n]}: {report.ids[shown[n]]}", key=f"cases-pick-{option.path.stem}")
    if st.button("Open in the saliency lab", key="cases-open", icon=":material/lightbulb:"):
        saliency.open_case(option, report.ids[shown[pick]], report.split)
        saliency.switch_page("pages/saliency.py")


# --------------------------------------------------------------------------------------------------------------
# The screening view: negative (NILM) vs abnormal (any other class) of a multi-class cytology model


@st.cache_data(max_entries=8, show_spinner="Computing the screening view ...")
def _screening(path: str, stamp: int, negative: str, threshold: float, specificity: float  # noqa: ARG001
               ) -> dict[str, Any]:
    from medimg.evaluate import bootstrap_ci, operating_point_ci
    from medimg.evaluate import operating_point as op_at
    from medimg.screening import abnormal_score, screening_metrics

    r = EvalReport.load(path)
    labels = list(r.labels)
    score = abnormal_score(r.probs, labels, negative)
    y = r.y_true != labels.index(negative)
    m = screening_metrics(r.y_true, r.probs, labels, negative, specificity, threshold)
    yi = y.astype(np.int64)
    op = op_at(yi, score, threshold, 1)
    called = score >= threshold
    per_class = [{"label": label, "n": int((r.y_true == k).sum()), "called": int(called[r.y_true == k].sum())}
                 for k, label in enumerate(labels) if label != negative]
    ci = operating_point_ci(yi, score, threshold, 1)
    if 0 < y.sum() < len(y):
        ci.update(bootstrap_ci(yi, np.stack([1.0 - score, score], axis=1), keys=("auroc",), positive_label=1))
    y.setflags(write=False)
    score.setflags(write=False)
    return {**m, "ppv": op["ppv"], "npv": op["npv"], "tp": op["tp"], "fn": op["fn"], "fp": op["fp"],
            "tn": op["tn"], "ci": ci, "per_class": per_class, "y_abnormal": y, "score": score}


def screening_view(option: ModelOption, report: EvalReport) -> dict[str, Any] | None:
    """The screening view of a multi-class model on its test report: negative vs any abnormal class at the
    threshold the spec fixed on the validation split (cached per report file).

    Shown only for a model whose spec stores ``metrics["screening"]`` (the negative class and the validation
    threshold; see :mod:`medimg.training.screening`) and whose report has that negative class.

    Returns
    -------
    dict or None
        None when the model has no screening view. Otherwise :func:`medimg.screening.screening_metrics` on the
        report at the stored threshold (``auroc``, ``sensitivity``, ``specificity``, ``sensitivity_at_spec``,
        ``n_abnormal``, ``n_negative``, ``threshold``, ``target_specificity``) with ``negative``, ``ppv``, ``npv``,
        the counts ``tp``, ``fn``, ``fp``, ``tn`` (abnormal = positive), ``ci`` (95 % bootstrap intervals of
        AUROC, sensitivity, specificity, PPV and NPV), ``per_class`` (``label``, ``n``, ``called`` abnormal, for
        every abnormal class), ``val`` (the spec's validation figures, possibly empty), and the arrays
        ``y_abnormal`` and ``score`` (``1 - P(negative)``) for the ROC.
    """
    sc = (option.spec.metrics or {}).get("screening") if option.spec is not None else None
    if not isinstance(sc, dict):
        return None
    negative, threshold = sc.get("negative"), sc.get("validation_threshold")
    if negative not in report.labels or not isinstance(threshold, int | float):
        return None
    val = sc.get("val") if isinstance(sc.get("val"), dict) else {}
    specificity = float(val.get("target_specificity", 0.95))
    out = _screening(str(option.eval_path), _stamp(option.eval_path), str(negative), float(threshold), specificity)
    return {**out, "negative": str(negative), "val": val}


def screening_rows(view: dict[str, Any]) -> dict[str, list[str]]:
    """The screening table: AUROC, the rates at the validation-fixed threshold (with 95 % CIs), the optimistic
    sensitivity read off the test ROC, and the image counts."""
    ci = view["ci"]
    spec_pct = f"{view['target_specificity'] * 100:.0f} %"
    rows = [("AUROC (abnormal vs " + view["negative"] + ")", view["auroc"], ci.get("auroc")),
            ("Sensitivity, validation-fixed threshold", view["sensitivity"], ci.get("sensitivity")),
            ("Specificity, validation-fixed threshold", view["specificity"], ci.get("specificity")),
            ("PPV, validation-fixed threshold", view["ppv"], ci.get("ppv")),
            ("NPV, validation-fixed threshold", view["npv"], ci.get("npv")),
            (f"Sensitivity at {spec_pct} specificity, threshold chosen on the test data (optimistic)",
             view["sensitivity_at_spec"], None)]
    out: dict[str, list[str]] = {"Metric": [], "Value": [], "95 % CI": []}
    for name, value, lo_hi in rows:
        out["Metric"].append(name)
        out["Value"].append(_fmt(value))
        # no-break space and word joiner: the interval stays on one line in a narrow table
        out["95 % CI"].append(f"{_fmt(lo_hi[0])}\u00a0–\u2060\u00a0{_fmt(lo_hi[1])}" if lo_hi else "n/a")
    out["Metric"].append(f"Images: abnormal / {view['negative']}")
    out["Value"].append(f"{view['n_abnormal']}\u00a0/\u00a0{view['n_negative']}")
    out["95 % CI"].append("")
    return out


def screening_confusion_rows(view: dict[str, Any]) -> dict[str, list[Any]]:
    """The 2 x 2 table at the validation-fixed threshold (rows = true, columns = called)."""
    neg = view["negative"]
    return {"True class": ["Abnormal", neg, "Total"],
            "Called abnormal": [view["tp"], view["fp"], view["tp"] + view["fp"]],
            f"Called {neg}": [view["fn"], view["tn"], view["fn"] + view["tn"]],
            "Total": [view["tp"] + view["fn"], view["fp"] + view["tn"],
                      view["tp"] + view["fn"] + view["fp"] + view["tn"]]}


def screening_class_line(view: dict[str, Any]) -> str:
    """One line: how many images of each abnormal class the validation-fixed threshold calls abnormal."""
    parts = [f"{c['label']} {c['called']}/{c['n']} ({_fmt(c['called'] / c['n']) if c['n'] else 'n/a'})"
             for c in view["per_class"]]
    return "**Sensitivity per abnormal class** at this threshold: " + " · ".join(parts) + "."


# --------------------------------------------------------------------------------------------------------------
# The Bethesda grade view: NILM / low-grade (ASC-US, LSIL) / high-grade (ASC-H, HSIL, SCC)


@st.cache_data(max_entries=8, show_spinner="Computing the grade view ...")
def _grades(path: str, stamp: int) -> dict[str, Any]:  # noqa: ARG001 - stamp keys the cache to the file
    from medimg.screening import grade_metrics

    r = EvalReport.load(path)
    return grade_metrics(r.y_true, r.probs, list(r.labels))


def grade_view(option: ModelOption, report: EvalReport) -> dict[str, Any] | None:
    """The three Bethesda grades of a six-class cervical cytology model on its test report (cached per file).

    Returns
    -------
    dict or None
        None unless the report's labels are the six Bethesda classes
        (:func:`medimg.screening.has_bethesda_grades`); otherwise :func:`medimg.screening.grade_metrics` of the
        report (grade = the most probable sum of its classes' calibrated probabilities).
    """
    from medimg.screening import has_bethesda_grades

    if not has_bethesda_grades(list(report.labels)):
        return None
    return _grades(str(option.eval_path), _stamp(option.eval_path))


def grade_confusion_rows(view: dict[str, Any]) -> dict[str, list[Any]]:
    """The G x G grade table (rows = true grade, columns = called grade) with each row's sensitivity and each
    column's PPV."""
    names = list(view["grades"])
    out: dict[str, list[Any]] = {"True grade": [*names, "PPV"]}
    for j, name in enumerate(names):
        out[f"Called {name}"] = [row[j] for row in view["confusion"]] + [_fmt(view["ppv"][j])]
    out["Sensitivity"] = [_fmt(v) for v in view["sensitivity"]] + [""]
    return out


def grade_routing_rows(view: dict[str, Any]) -> dict[str, list[Any]]:
    """Per class: its grade, its test images and how many are called each grade."""
    names = list(view["grades"])
    out: dict[str, list[Any]] = {"Class": [], "Grade": [], "Images": []}
    out.update({f"Called {name}": [] for name in names})
    for row in view["routing"]:
        out["Class"].append(row["label"])
        out["Grade"].append(row["grade"])
        out["Images"].append(row["n"])
        for j, name in enumerate(names):
            out[f"Called {name}"].append(row["called"][j])
    return out


def grade_line(view: dict[str, Any]) -> str:
    """One line: grade accuracy and macro-F1, and the high-grade sensitivity with ASC-H's share called high-grade."""
    names = list(view["grades"])
    text = f"**Grade accuracy** {_fmt(view['accuracy'])}, macro-F1 {_fmt(view['macro_f1'])}"
    if "high-grade" in names:
        h = names.index("high-grade")
        text += f"; high-grade sensitivity {_fmt(view['sensitivity'][h])}"
        asch = next((r for r in view["routing"] if r["label"] == "ASC-H"), None)
        if asch is not None and asch["n"]:
            text += (f" (ASC-H cells called high-grade: {asch['called'][h]}/{asch['n']}, "
                     f"{_fmt(asch['called'][h] / asch['n'])})")
    return text + "."
