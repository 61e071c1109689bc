"""AppTest of the Test-set dashboard page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from apptest_helpers import assert_clean, assert_notice, plotly_array, plotly_specs
from streamlit.testing.v1 import AppTest

PAGE = "pages/dashboard.py"


def _dashboard(make_app, model: str | None = "tiny_smallcnn.json", folder: Path | None = None) -> AppTest:
    at = make_app(PAGE, folder).run()
    if model is not None:
        at.sidebar.selectbox(key="medimg.model_picker").set_value(model).run()
    return at


def test_dashboard_with_report(make_app) -> None:
    at = _dashboard(make_app)
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert_notice(at)
    assert [t.value for t in at.title] == ["Test-set dashboard"], ([t.value for t in at.title], [i.value for i in at.info])
    figs = plotly_specs(at)
    assert set(figs) == {"cm", "roc", "pr", "reliability", "training"}
    assert "AUROC" in figs["roc"]["layout"]["title"]["text"]
    assert "95 % CI" in figs["roc"]["layout"]["title"]["text"]
    assert "ECE" in figs["reliability"]["layout"]["title"]["text"]
    assert "(counts)" in figs["cm"]["layout"]["title"]["text"]
    z = plotly_array(figs["cm"]["data"][0]["z"])
    assert z.shape == (2, 2) and z.sum() == 80
    table = at.dataframe[0].value
    metrics = list(table["Metric"])
    for name in ("Accuracy", "AUROC", "Sensitivity (recall)", "Specificity", "PPV (precision)", "NPV", "F1"):
        assert name in metrics
    assert any(m.startswith("ECE") for m in metrics)
    ci = dict(zip(table["Metric"], table["95 % CI"], strict=True))
    assert "–" in ci["AUROC"] and "–" in ci["Accuracy"]
    # toggle: row-normalised confusion matrix
    at.toggle(key="cm-normalise").set_value(True).run()
    assert_clean(at)
    cm = plotly_specs(at)["cm"]
    assert "row-normalised" in cm["layout"]["title"]["text"]
    z = plotly_array(cm["data"][0]["z"])
    assert abs(z.sum(axis=1) - 1.0).max() < 1e-9


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
