"""The reviewer's report: one self-contained HTML file of the current model's test-set review, built in memory.

Contents: the model and its intended use, the metrics with 95 % bootstrap intervals, the operating point shown
on the dashboard, the screening view of a multi-class model that has one (negative vs abnormal) and a Bethesda model's grades, the figures (confusion matrix, ROC / PR, calibration before and after temperature scaling,
training log) as interactive plotly figures, and the saliency checks run in this session (numbers only: no
image of a user's upload goes into the file). plotly.js is embedded once, so the file opens offline. Nothing is
written on the server: the bytes go straight to ``st.download_button``.
"""

from __future__ import annotations

import datetime as _dt
import html
from typing import Any

import streamlit as st

from medimg.evaluate import EvalReport
from medimg.ui.resources import ModelOption

__all__ = ["build_html", "download_button"]


def _table(rows: dict[str, list[str]]) -> str:
    cols = list(rows)
    n = len(rows[cols[0]]) if cols else 0
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(rows[c][i]))}</td>" for c in cols) + "</tr>"
                   for i in range(n))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def build_html(option: ModelOption, report: EvalReport, threshold: float | None = None,
               checks: list[dict[str, Any]] | None = None) -> bytes:
    """The review as one self-contained HTML document.

    Parameters
    ----------
    option : ModelOption
        The model (title, spec: intended use, temperature, checkpoint epoch).
    report : EvalReport
        Its test-set report.
    threshold : float, optional
        The binary operating point chosen on the dashboard (its rates and intervals are included).
    checks : list of dict, optional
        Saliency checks run in this session (:func:`medimg.ui.saliency.checks_run`), numbers only.

    Returns
    -------
    bytes
        UTF-8 HTML with plotly.js inlined once (opens without a network connection).
    """
    from medimg import viz
    from medimg.ui import dashboard as dash

    spec = option.spec
    cis = dash.metric_cis(option, report)
    parts: list[str] = []
    figs: list[tuple[str, Any]] = []
    title = html.escape(option.title)
    parts.append(f"<h1>Model review: {title}</h1>")
    parts.append(f"<p class='muted'>Generated {_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by medimg. "
                 "<b>Not for diagnostic use.</b></p>")
    if spec is not None:
        parts.append(f"<p><b>Intended use.</b> {html.escape(spec.intended_use)}</p>")
    n = len(report.y_true)
    counts = ", ".join(f"{lab}: {int((report.y_true == i).sum())}" for i, lab in enumerate(report.labels))
    parts.append(f"<p>Test split <b>{html.escape(report.split)}</b>: {n} images ({html.escape(counts)}). "
                 "Probabilities are temperature-calibrated; intervals are 95 % percentile bootstrap intervals "
                 "(1,000 resamples of the images).</p>")
    parts.append("<h2>Metrics</h2>" + _table(dash.metrics_table(report, cis)))
    k = len(report.labels)
    pos = report.positive_label if report.positive_label is not None else 1
    y_pred = dash.predictions_at(report, threshold)
    if k == 2 and threshold is not None:
        op, op_ci = dash.operating_point(report, threshold, option)
        parts.append(f"<h2>Operating point: threshold {threshold:.2f} on p({html.escape(report.labels[pos])})</h2>"
                     + _table(dash.operating_rows(op, op_ci)))
        start, start_name = dash.default_threshold(option, report)
        figs.append(("ROC and precision–recall curves with the operating point",
                     viz.operating_point_figure(report.y_true, report.probs, report.labels, pos, threshold,
                                                reference=start, reference_name=start_name.split(" (")[0])))
    elif k > 2:
        parts.append("<h2>Per class (one vs the rest)</h2>" + _table(dash.one_vs_rest_rows(option)))
        figs.append(("ROC, one class vs the rest", viz.per_class_roc_figure(report.y_true, report.probs,
                                                                             report.labels)))
    screening = dash.screening_view(option, report)
    if screening is not None:  # a multi-class model with a screening question (cytology: NILM vs abnormal)
        neg, t_val = screening["negative"], screening["threshold"]
        parts.append(f"<h2>Screening: {html.escape(neg)} vs abnormal</h2>"
                     f"<p>Abnormal score = 1 − p({html.escape(neg)}); threshold {t_val:.3f} fixed on the validation "
                     f"split for at least {screening['target_specificity'] * 100:.0f} % specificity and applied "
                     "unchanged to these test images (the sensitivity read off the test ROC is optimistic).</p>"
                     + _table(dash.screening_rows(screening)) + _table(dash.screening_confusion_rows(screening))
                     + f"<p>{html.escape(dash.screening_class_line(screening).replace('**', ''))}</p>")
        figs.append((f"Screening ROC: abnormal vs {neg}",
                     viz.screening_roc_figure(screening["y_abnormal"], screening["score"], t_val,
                                              screening["target_specificity"], neg)))
    grades = dash.grade_view(option, report)
    if grades is not None:  # a six-class Bethesda model: NILM / low-grade / high-grade
        parts.append("<h2>Bethesda grades: NILM, low-grade, high-grade</h2>"
                     "<p>Low-grade: ASC-US, LSIL; high-grade: ASC-H, HSIL, SCC. A grade's probability is the sum of "
                     "its classes' calibrated probabilities; the most probable grade is called.</p>"
                     f"<p>{html.escape(dash.grade_line(grades).replace('**', ''))}</p>"
                     + _table(dash.grade_confusion_rows(grades)) + _table(dash.grade_routing_rows(grades)))
    if spec is not None:
        from medimg.ui.model_card import model_card_rows

        parts.append("<h2>Model card: how this model was made</h2>" + _table(model_card_rows(spec)))
    figs.insert(0, ("Confusion matrix", viz.confusion_matrix_figure(dash.confusion_matrix_at(report, y_pred),
                                                                    report.labels, clickable=False)))
    before, e0, e1, t = dash.calibration(option, report)
    figs.append(("Calibration before and after temperature scaling",
                 viz.calibration_figure(report.y_true, before, report.probs, e0, e1, t)))
    history = dash.load_history(option)
    if history:
        figs.append(("Training log", viz.training_curves_figure(history, dash.best_epoch(option))))
    for i, (name, fig) in enumerate(figs):
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False))
    parts.append("<h2>Saliency checks run in this session</h2>")
    if checks:
        keys: list[str] = []
        for row in checks:
            keys.extend(c for c in row if c not in keys and c != "model")
        parts.append(_table({c: ["" if r.get(c) is None else str(r.get(c)) for r in checks] for c in keys}))
        parts.append("<p class='muted'>Deletion / insertion AUCs (Petsiuk et al. 2018) beside a random map; sanity: "
                     "Spearman rank correlation with the map of a network randomised from the output down to the "
                     "CAM layer (Adebayo et al. 2018; at or above 0.5 the map fails); pointing game (Zhang et al. "
                     "2018) and energy inside the expert mask beside a centred Gaussian.</p>")
    else:
        parts.append("<p>None were run. Run them in the saliency lab before downloading to include them.</p>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
             "text-align:left}th{background:#f2f5f7}.muted{color:#666}")
    doc = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Review: {title}</title>"
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    return doc.encode("utf-8")


def download_button(option: ModelOption, report: EvalReport, threshold: float | None = None) -> None:
    """A download button for the review (built in memory when the reviewer asks; never written on the server)."""
    from medimg.ui import saliency

    checks = saliency.checks_run(option)
    st.caption(f"One self-contained HTML file: metrics with CIs, the operating point, the figures, and the "
               f"{len(checks)} saliency check(s) run in this session (numbers only, no images of your uploads).")
    if st.button("Prepare the review report", key="review-prepare", icon=":material/description:"):
        st.session_state["medimg.review.html"] = (option.path.name, build_html(option, report, threshold, checks))
    ready = st.session_state.get("medimg.review.html")
    if ready and ready[0] == option.path.name:
        st.download_button("Download the review (HTML)", ready[1], file_name=f"{option.path.stem}_review.html",
                           mime="text/html", key="review-download", icon=":material/download:")
