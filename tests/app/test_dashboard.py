"""AppTests of the Test-set dashboard: metrics with intervals, the operating-point explorer (threshold slider,
prevalence), a click on a confusion-matrix cell that opens its cases, the most confident errors, a case opened in
the saliency lab, the multi-class view and the reviewer's HTML report."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from apptest_helpers import assert_clean, assert_notice, plotly_array, plotly_specs
from PIL import Image
from sklearn import metrics as skm
from streamlit.testing.v1 import AppTest

from medimg.evaluate import EvalReport
from medimg.ui.dashboard import CELL_KEY, case_captions, gallery_columns
from medimg.ui.saliency import CASE_KEY

PAGE = "pages/dashboard.py"


def _dashboard(make_app, model: str | None = "tiny_smallcnn.json", folder: Path | None = None) -> AppTest:
    at = make_app(PAGE, folder).run()
    if model is not None:
        at.sidebar.selectbox(key="medimg.model_picker").set_value(model).run()
    return at


_FIRST = {"metrics-table": "Accuracy", "op-table": "Sensitivity"}


def _frame(at: AppTest, column: str, first: str | None = None):
    """The dataframe with ``column`` (and ``first`` as its first value, when given)."""
    for d in at.dataframe:
        df = d.value
        if column in df.columns and (first is None or str(df[column].iloc[0]) == first):
            return df
    raise AssertionError(f"no table with column {column!r} starting {first!r}")


def _table(at: AppTest, key: str) -> tuple[dict[str, str], dict[str, str]]:
    df = _frame(at, "Metric", _FIRST[key])
    return dict(zip(df["Metric"], df["Value"], strict=True)), dict(zip(df["Metric"], df["95 % CI"], strict=True))


def test_dashboard_with_report(make_app) -> None:
    at = _dashboard(make_app)
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert_notice(at)
    assert [t.value for t in at.title] == ["Test-set dashboard"]
    figs = plotly_specs(at)
    assert {"cm", "op-curves", "calibration", "training"} <= set(figs)
    assert "(counts)" in figs["cm"]["layout"]["title"]["text"]
    z = plotly_array(figs["cm"]["data"][0]["z"])
    assert z.shape == (2, 2) and z.sum() == 80
    # the clickable markers: one per cell, carrying (true, predicted)
    cells = next(t for t in figs["cm"]["data"] if t.get("name") == "cells")
    assert sorted(map(tuple, cells["customdata"])) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # every metric the README promises has a 95 % CI: PPV, NPV, F1 and ECE included
    values, cis = _table(at, "metrics-table")
    for name in ("Accuracy", "AUROC", "Sensitivity (recall)", "Specificity", "PPV (precision)", "NPV", "F1",
                 "ECE (lower is better)"):
        assert "–" in cis[name], (name, cis[name])
        lo, hi = (float(v) for v in cis[name].split(" – "))
        assert lo <= float(values[name]) + 1e-9 and float(values[name]) <= hi + 1e-9, name
    # calibration before and after, side by side, each with its ECE
    titles = [a["text"] for a in figs["calibration"]["layout"]["annotations"]]
    assert titles[0].startswith("Before temperature scaling: ECE") and titles[1].startswith("After temperature")
    # the checkpoint epoch is not in the tiny spec: no marker claimed
    assert "checkpoint" not in figs["training"]["layout"]["title"]["text"]
    at.toggle(key="cm-normalise").set_value(True).run()
    assert_clean(at)
    cm = plotly_specs(at)["cm"]
    assert "row-normalised" in cm["layout"]["title"]["text"]
    assert abs(plotly_array(cm["data"][0]["z"]).sum(axis=1) - 1.0).max() < 1e-9


def test_threshold_slider_moves_the_operating_point(make_app, app_weights: Path) -> None:
    report = EvalReport.load(app_weights / "tiny_smallcnn.eval.json")
    at = _dashboard(make_app)
    slider = at.slider(key="op-threshold-tiny_smallcnn")
    assert slider.value == pytest.approx(0.5)
    for t in (0.3, 0.72):
        slider.set_value(t).run()
        assert_clean(at)
        called = report.probs[:, 1] >= t
        tn, fp, fn, tp = skm.confusion_matrix(report.y_true, called.astype(int)).ravel()
        values, cis = _table(at, "op-table")
        assert float(values["Sensitivity"]) == pytest.approx(skm.recall_score(report.y_true, called), abs=5e-4)
        assert float(values["Specificity"]) == pytest.approx(tn / (tn + fp), abs=5e-4)
        assert float(values["PPV"]) == pytest.approx(skm.precision_score(report.y_true, called), abs=5e-4)
        assert float(values["NPV"]) == pytest.approx(tn / (tn + fn), abs=5e-4)
        assert float(values["F1"]) == pytest.approx(skm.f1_score(report.y_true, called), abs=5e-4)
        assert all("–" in v for v in cis.values())
        z = plotly_array(plotly_specs(at)["cm"]["data"][0]["z"])
        assert z.tolist() == [[tn, fp], [fn, tp]]
        curves = plotly_specs(at)["op-curves"]
        point = next(tr for tr in curves["data"] if tr.get("name") == f"threshold {t:.2f}")
        assert plotly_array(point["y"])[0] == pytest.approx(tp / (tp + fn))
    # PPV and NPV at a typed prevalence (Bayes)
    at.number_input(key="op-prevalence-tiny_smallcnn").set_value(0.05).run()
    assert_clean(at)
    se, sp = tp / (tp + fn), tn / (tn + fp)
    ppv = se * 0.05 / (se * 0.05 + (1 - sp) * 0.95)
    assert any(f"PPV **{ppv:.3f}**" in m.value for m in at.markdown), [m.value for m in at.markdown]


def test_no_cell_clicked_shows_most_confident_errors_list(make_app) -> None:
    """Without the test images on the server the cases are still listed (numbers, no images)."""
    at = _dashboard(make_app)
    assert_clean(at)
    assert at.radio(key="cases-view-tiny_smallcnn").value == "Most confident errors"
    assert any("not on this server" in i.value for i in at.info)
    assert _frame(at, "Calibrated probability").shape[0] >= 1


@pytest.fixture
def gallery_setup(app_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model whose test images exist: a data folder of 80 PNGs and a spec pointing at it."""
    data = tmp_path / "data" / "tinyset"
    (data / "test").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["path,split,label"]
    for i in range(80):
        img = (rng.random((64, 64)) * 200).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        (data / "test" / f"img{i}.png").write_bytes(buf.getvalue())
        rows.append(f"test/img{i}.png,test,x")
    (data / "MANIFEST.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setenv("MEDIMG_DATA", str(tmp_path / "data"))
    weights = tmp_path / "weights"
    weights.mkdir()
    for f in app_weights.glob("tiny_smallcnn.*"):
        shutil.copyfile(f, weights / f.name)
    spec = json.loads((weights / "tiny_smallcnn.json").read_text(encoding="utf-8"))
    spec["training"] = {"data": "shared/data/tinyset", "best_epoch": 2}
    (weights / "tiny_smallcnn.json").write_text(json.dumps(spec), encoding="utf-8")
    rep = json.loads((weights / "tiny_smallcnn.eval.json").read_text(encoding="utf-8"))
    rep["ids"] = [f"test/img{i}.png" for i in range(80)]
    (weights / "tiny_smallcnn.eval.json").write_text(json.dumps(rep), encoding="utf-8")
    return weights


def test_click_on_a_confusion_matrix_cell_opens_its_gallery(make_app, gallery_setup: Path) -> None:
    report = EvalReport.load(gallery_setup / "tiny_smallcnn.eval.json")
    at = _dashboard(make_app, folder=gallery_setup)
    assert_clean(at)
    # the click: the cell the chart's selection reported (ui.viz.cell_from_selection) is kept per model
    at.session_state[CELL_KEY] = {"tiny_smallcnn.json": (0, 1)}
    at.run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert at.radio(key="cases-view-tiny_smallcnn").value == "Clicked confusion-matrix cell"
    called = report.probs[:, 1] >= 0.5
    want = np.flatnonzero((report.y_true == 0) & called)
    assert any(f"predicted **pneumonia**: {len(want)} images" in m.value for m in at.markdown)
    fig = plotly_specs(at)["cases-gallery"]
    images = [t for t in fig["data"] if t.get("type") == "image"]
    assert len(images) == min(len(want), 24)
    probs = [float(a["text"].split(") ")[1].split("<br>")[0]) for a in fig["layout"]["annotations"]]
    assert all(a["text"].startswith("p(pneumonia) ") for a in fig["layout"]["annotations"])
    assert probs == sorted(probs, reverse=True)  # most confident first
    assert all("true normal" in a["text"] for a in fig["layout"]["annotations"])
    # the selected cell is outlined on the matrix
    assert plotly_specs(at)["cm"]["layout"]["shapes"]
    # the checkpoint epoch from the spec is marked on the training log
    assert "epoch 2" in plotly_specs(at)["training"]["layout"]["title"]["text"]
    # open one case in the saliency lab (the app switches page; alone, the page stays)
    at.selectbox(key="cases-pick-tiny_smallcnn").set_value(1).run()
    at.button(key="cases-open").click().run()
    assert_clean(at)
    first = int(want[np.argsort(-report.probs[want, 1], kind="stable")][1])
    assert at.session_state[CASE_KEY] == ("tiny_smallcnn.json", f"test/img{first}.png", "test")
    # the most confident errors view
    at.radio(key="cases-view-tiny_smallcnn").set_value("Most confident errors").run()
    assert_clean(at)
    errors = np.flatnonzero(report.y_true != called.astype(int))
    assert any(f"**{len(errors)} errors**" in m.value for m in at.markdown)


def test_saliency_lab_opens_the_dashboard_case(make_app, gallery_setup: Path) -> None:
    at = make_app("pages/saliency.py", gallery_setup)
    at.session_state[CASE_KEY] = ("tiny_smallcnn.json", "test/img5.png", "test")
    at.run()
    at.sidebar.selectbox(key="medimg.model_picker").set_value("tiny_smallcnn.json").run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert any("Test case test/img5.png" in m.value and "true class" in m.value for m in at.markdown)
    assert "lab-grid" in plotly_specs(at)
    at.button(key="lab-close-case").click().run()
    assert CASE_KEY not in at.session_state


def test_review_report_is_one_self_contained_html(make_app) -> None:
    at = _dashboard(make_app)
    at.button(key="review-prepare").click().run()
    assert_clean(at)
    dl = next(el for el in at.get("download_button"))
    assert dl.proto.label == "Download the review (HTML)"
    from medimg.ui.report_review import build_html
    from medimg.ui.resources import available_models

    option = next(o for o in available_models() if o.path.name == "tiny_smallcnn.json")
    doc = build_html(option, EvalReport.load(option.eval_path), 0.5,
                     [{"method": "Grad-CAM", "deletion_auc": 0.1, "sanity": "Passes"}]).decode("utf-8")
    assert doc.startswith("<!DOCTYPE html>") and doc.count("<script") >= 4
    assert "src=\"http" not in doc  # plotly.js is inlined, nothing is fetched
    for text in ("PPV (precision)", "NPV", "ECE (lower is better)", "Operating point: threshold 0.50",
                 "Calibration before and after temperature scaling", "Grad-CAM", "Not for diagnostic use"):
        assert text in doc, text


def test_multiclass_one_vs_rest_and_readable_pr(make_app, app_weights: Path, tmp_path: Path) -> None:
    for f in app_weights.glob("tiny_smallcnn.*"):
        shutil.copyfile(f, tmp_path / f.name)
    spec = json.loads((tmp_path / "tiny_smallcnn.json").read_text(encoding="utf-8"))
    spec.update(labels=["a", "b", "c"], positive_label=None)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 90)
    logits = rng.normal(0, 1, (90, 3))
    logits[np.arange(90), y] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    EvalReport.build("tiny_smallcnn", "test", ["a", "b", "c"], y, probs, n_boot=20).save(tmp_path / "tiny_smallcnn.eval.json")
    from medimg.spec import ModelSpec

    try:
        ModelSpec.from_dict(spec)
    except Exception:  # noqa: BLE001 - a 3-class spec needs a 3-class head: keep the 2-class weights' spec
        pytest.skip("spec with 3 labels does not load with the 2-class tiny weights")
    (tmp_path / "tiny_smallcnn.json").write_text(json.dumps(spec), encoding="utf-8")
    at = _dashboard(make_app, folder=tmp_path)
    assert_clean(at)
    ovr = _frame(at, "Class")
    assert list(ovr["Class"]) == ["a", "b", "c"]
    for c in range(3):
        auc = skm.roc_auc_score(y == c, probs[:, c])
        assert ovr["AUROC"][c].startswith(f"{auc:.3f} (")
    pr = plotly_specs(at)["pr"]
    assert not pr["layout"].get("annotations")  # no stacked prevalence labels
    assert all("prevalence" in t["name"] for t in pr["data"] if t.get("showlegend", True))


def test_dashboard_without_report(make_app) -> None:
    at = _dashboard(make_app, "tiny_noreport.json")
    assert_clean(at)
    assert_notice(at)
    assert not at.error
    assert any("has no test-set report" in i.value for i in at.info)
    assert not plotly_specs(at)


def test_dashboard_corrupt_report_and_no_log(make_app, app_weights: Path, tmp_path: Path) -> None:
    for f in app_weights.glob("tiny_smallcnn.*"):
        if not f.name.endswith(".log.json"):
            shutil.copyfile(f, tmp_path / f.name)
    at = _dashboard(make_app, folder=tmp_path)
    assert_clean(at)
    assert "training" not in plotly_specs(at)
    assert any("No training log" in i.value for i in at.info)
    (tmp_path / "tiny_smallcnn.eval.json").write_text(json.dumps({"model": "x"}), encoding="utf-8")
    at.run()
    assert_clean(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Test-set report could not be read: ")


def test_dashboard_without_models(make_app, tmp_path: Path) -> None:
    at = _dashboard(make_app, None, folder=tmp_path)
    assert_clean(at)
    assert_notice(at)
    assert any("nothing to report" in i.value for i in at.info)


def test_gallery_columns_make_room_for_long_class_names() -> None:
    """Five tiles for short labels; fewer when a caption line (a brain MRI class name) would overrun its tile."""
    def report(labels: list[str]) -> EvalReport:
        k = len(labels)
        probs = np.full((k, k), 0.01)
        probs[np.arange(k), (np.arange(k) + 1) % k] = 1.0 - 0.01 * (k - 1)
        return EvalReport("m", "test", labels, np.arange(k), probs, [], None, None, {})

    short = report(["NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC"])
    long = report(["glioma_tumor", "meningioma_tumor", "pituitary_tumor", "no_tumor"])
    cases_s, cases_l = list(range(6)), list(range(4))
    caps_s = case_captions(short, cases_s, short.probs.argmax(1))
    caps_l = case_captions(long, cases_l, long.probs.argmax(1))
    assert gallery_columns(caps_s) == 5
    assert max(len(line) for c in caps_l for line in c.split("<br>")) == len("p(meningioma_tumor) 0.97")
    assert gallery_columns(caps_l) == 3
    assert gallery_columns(caps_l, max_cols=2) == 2 and gallery_columns([]) == 5
    assert gallery_columns(["x" * 60]) == 1
