"""AppTests of the dashboard's screening view (NILM vs abnormal) of the cervical cytology model: the ROC of the
abnormal score with both operating points, the table, the 2 x 2 table and the per-class sensitivities, each equal to
what :mod:`medimg.screening` computes from the model's stored test report at the threshold its spec fixed on the
validation split; the Bethesda grade view (NILM / low-grade / high-grade); a binary model has neither."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from apptest_helpers import assert_clean, plotly_array, plotly_specs

from medimg import load_spec
from medimg.evaluate import EvalReport
from medimg.screening import abnormal_score, screening_metrics, sensitivity_at_specificity
from medimg.viz import screening_roc_figure

REPO = Path(__file__).resolve().parents[2]
PAGE = "pages/dashboard.py"
PICKER = "medimg.model_picker"
CERVIX = "cric_cervix_mobilenet_v2_128.json"
CHEST = "kermany_cxr_mobilenet_v2_224.json"


def _needs(name: str) -> Path:
    path = REPO / "weights" / name
    if not path.exists() or not path.with_name(f"{path.stem}.eval.json").exists():
        pytest.skip(f"not shipped with its test report: {name}")
    return path


def _dashboard(make_app, name: str):  # noqa: ANN001, ANN202 - AppTest
    at = make_app(PAGE, REPO / "weights").run()
    at.sidebar.selectbox(key=PICKER).set_value(name).run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    return at


def _frame(at, column: str, first: str):  # noqa: ANN001, ANN202 - AppTest
    """The static table with ``column`` whose first row is ``first``."""
    frames = [d.value for d in at.table if column in d.value.columns and str(d.value[column].iloc[0]) == first]
    assert len(frames) <= 1
    return frames[0] if frames else None


def test_cervical_model_shows_the_screening_view_of_its_test_report(make_app) -> None:
    path = _needs(CERVIX)
    spec = load_spec(path)
    report = EvalReport.load(path.with_name(f"{path.stem}.eval.json"))
    stored = spec.metrics["screening"]
    neg, t = stored["negative"], stored["validation_threshold"]
    assert neg == "NILM" and list(spec.labels) == ["NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC"]
    want = screening_metrics(report.y_true, report.probs, report.labels, neg, 0.95, t)
    # the report is the one the spec's screening figures were computed on
    for k in ("auroc", "sensitivity", "specificity", "sensitivity_at_spec", "n_abnormal", "n_negative"):
        assert want[k] == pytest.approx(stored["test"][k], abs=1e-9), k
    score = abnormal_score(report.probs, report.labels, neg)
    y = report.y_true != 0
    called = score >= t
    tp, fn, fp, tn = (int((y & called).sum()), int((y & ~called).sum()), int((~y & called).sum()),
                      int((~y & ~called).sum()))

    at = _dashboard(make_app, CERVIX)
    assert "Screening: NILM vs abnormal" in [s.value for s in at.subheader]
    assert any(f"The threshold **{t:.3f}** was fixed on the validation split" in c.value for c in at.caption)

    table = _frame(at, "Metric", "AUROC (abnormal vs NILM)")
    values = dict(zip(table["Metric"], table["Value"], strict=True))
    cis = dict(zip(table["Metric"], table["95 % CI"], strict=True))
    assert values["AUROC (abnormal vs NILM)"] == f"{want['auroc']:.3f}"
    assert values["Sensitivity, validation-fixed threshold"] == f"{want['sensitivity']:.3f}"
    assert values["Specificity, validation-fixed threshold"] == f"{want['specificity']:.3f}"
    assert values["PPV, validation-fixed threshold"] == f"{tp / (tp + fp):.3f}"
    assert values["NPV, validation-fixed threshold"] == f"{tn / (tn + fn):.3f}"
    optimistic = "Sensitivity at 95 % specificity, threshold chosen on the test data (optimistic)"
    assert values[optimistic] == f"{want['sensitivity_at_spec']:.3f}"
    assert values["Images: abnormal / NILM"] == f"{want['n_abnormal']}\u00a0/\u00a0{want['n_negative']}"
    assert (want["n_abnormal"], want["n_negative"]) == (293, 869)
    for name in ("AUROC (abnormal vs NILM)", "Sensitivity, validation-fixed threshold",
                 "Specificity, validation-fixed threshold"):
        lo, hi = (float(v) for v in cis[name].replace("\u2060", "").split("–"))
        assert lo <= float(values[name]) <= hi, name

    cm = _frame(at, "True class", "Abnormal")
    assert list(cm["True class"]) == ["Abnormal", "NILM", "Total"]
    assert list(cm["Called abnormal"]) == [tp, fp, tp + fp]
    assert list(cm["Called NILM"]) == [fn, tn, fn + tn]
    assert tp + fn == want["n_abnormal"] and fp + tn == want["n_negative"]

    line = next(m.value for m in at.markdown if m.value.startswith("**Sensitivity per abnormal class**"))
    for k, label in enumerate(report.labels):
        if k == 0:
            assert f" {label} " not in line
            continue
        n, caught = int((report.y_true == k).sum()), int(called[report.y_true == k].sum())
        assert f"{label} {caught}/{n} ({caught / n:.3f})" in line, (label, line)
    assert sum(int((report.y_true == k).sum()) for k in range(1, 6)) == want["n_abnormal"]

    fig = plotly_specs(at)["screening-roc"]
    assert fig["layout"]["title"]["text"] == f"ROC, abnormal vs NILM (AUROC {want['auroc']:.3f})"
    marks = {tr["name"]: (float(plotly_array(tr["x"])[0]), float(plotly_array(tr["y"])[0]))
             for tr in fig["data"] if tr.get("mode") == "markers"}
    fixed = marks[f"validation-fixed threshold {t:.3f}"]
    assert fixed == pytest.approx((1 - want["specificity"], want["sensitivity"]), abs=1e-12)
    fx, fy = marks["read off this ROC at 95 % specificity (optimistic)"]
    assert fy == pytest.approx(want["sensitivity_at_spec"], abs=1e-12) and fx <= 0.05


def test_binary_chest_model_has_no_screening_view(make_app) -> None:
    _needs(CHEST)
    assert "screening" not in (load_spec(REPO / "weights" / CHEST).metrics or {})
    at = _dashboard(make_app, CHEST)
    assert "op-curves" in plotly_specs(at)  # the binary dashboard is drawn ...
    assert not any(s.value.startswith("Screening") for s in at.subheader)  # ... without a screening section
    assert "screening-roc" not in plotly_specs(at)
    assert _frame(at, "Metric", "AUROC (abnormal vs NILM)") is None and _frame(at, "True class", "Abnormal") is None
    assert not any(s.value.startswith("Bethesda grades") for s in at.subheader)  # nor a grade view
    assert _frame(at, "True grade", "NILM") is None


def test_screening_roc_figure_marks_both_operating_points() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200, bool), np.ones(80, bool)]
    score = np.clip(np.where(y, 0.7, 0.3) + rng.normal(0, 0.2, len(y)), 0, 1)
    t = 0.62
    fig = screening_roc_figure(y, score, t, 0.9, negative="NILM").to_plotly_json()
    marks = {tr["name"]: (tr["x"][0], tr["y"][0]) for tr in fig["data"] if tr.get("mode") == "markers"}
    assert marks[f"validation-fixed threshold {t:.3f}"] == pytest.approx(
        ((score[~y] >= t).mean(), (score[y] >= t).mean()))
    fx, fy = marks["read off this ROC at 90 % specificity (optimistic)"]
    assert fy == pytest.approx(sensitivity_at_specificity(y, score, 0.9)) and fx <= 0.1 + 1e-12
    assert fig["layout"]["xaxis"]["title"]["text"] == "1 − specificity (NILM images called abnormal)"


def test_review_report_carries_the_screening_view() -> None:
    """The downloadable review of the cervical model holds the screening table at the stored threshold."""
    from medimg.ui.report_review import build_html
    from medimg.ui.resources import available_models

    path = _needs(CERVIX)
    option = next(o for o in available_models(REPO / "weights") if o.path.name == path.name)
    report = EvalReport.load(option.eval_path)
    doc = build_html(option, report).decode("utf-8")
    sc = load_spec(path).metrics["screening"]
    want = screening_metrics(report.y_true, report.probs, report.labels, sc["negative"],
                             threshold=sc["validation_threshold"])
    assert "Screening: NILM vs abnormal" in doc and f"threshold {sc['validation_threshold']:.3f}" in doc
    assert f"{want['sensitivity']:.3f}" in doc and f"{want['specificity']:.3f}" in doc
    assert "Screening ROC: abnormal vs NILM" in doc
    assert "Bethesda grades: NILM, low-grade, high-grade" in doc and "ASC-H cells called high-grade" in doc
    chest = next(o for o in available_models(REPO / "weights") if o.path.name == CHEST)
    chest_doc = build_html(chest, EvalReport.load(chest.eval_path), 0.5).decode("utf-8")
    assert "Screening" not in chest_doc and "Bethesda grades" not in chest_doc


def test_cervical_model_shows_its_bethesda_grades(make_app) -> None:
    """The grade tables equal :func:`medimg.screening.grade_metrics` of the stored test report."""
    from medimg.screening import grade_metrics

    path = _needs(CERVIX)
    report = EvalReport.load(path.with_name(f"{path.stem}.eval.json"))
    want = grade_metrics(report.y_true, report.probs, report.labels)
    at = _dashboard(make_app, CERVIX)
    assert "Bethesda grades: NILM, low-grade, high-grade" in [s.value for s in at.subheader]
    grades = _frame(at, "True grade", "NILM")
    assert list(grades["True grade"]) == ["NILM", "low-grade", "high-grade", "PPV"]
    for j, name in enumerate(want["grades"]):
        assert [int(v) for v in grades[f"Called {name}"].iloc[:3]] == [row[j] for row in want["confusion"]]
        assert grades[f"Called {name}"].iloc[3] == f"{want['ppv'][j]:.3f}"
        assert grades["Sensitivity"].iloc[j] == f"{want['sensitivity'][j]:.3f}"
    assert sum(want["n"]) == len(report.y_true)
    routing = _frame(at, "Class", "NILM")
    assert list(routing["Class"]) == list(report.labels)
    asch = list(routing["Class"]).index("ASC-H")
    h = want["grades"].index("high-grade")
    assert int(routing["Called high-grade"].iloc[asch]) == want["routing"][asch]["called"][h]
    line = next(m.value for m in at.markdown if m.value.startswith("**Grade accuracy**"))
    assert f"high-grade sensitivity {want['sensitivity'][h]:.3f}" in line
    n_asch = int((report.y_true == asch).sum())
    assert f"ASC-H cells called high-grade: {want['routing'][asch]['called'][h]}/{n_asch}" in line

