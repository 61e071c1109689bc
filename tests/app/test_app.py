"""AppTest of app.py: navigation, the shared sidebar and the notice on every page."""

from __future__ import annotations

from apptest_helpers import assert_clean, assert_notice


def test_app_defaults_to_analyze_with_sidebar_and_notice(make_app) -> None:
    at = make_app("app.py").run()
    assert_clean(at)
    assert [t.value for t in at.title] == ["Analyze an image"]
    assert_notice(at)
    picker = at.sidebar.selectbox(key="medimg.model_picker")
    assert picker.label == "Model" and "Tiny test CNN" in picker.options
    assert any("badge" in m.value and "Runs on" in m.value for m in at.sidebar.markdown)
    # the notice is rendered once per area, not twice
    assert sum("Not for diagnostic use" in w.value for w in at.main.warning) == 1
    assert sum("Not for diagnostic use" in w.value for w in at.sidebar.warning) == 1


def test_app_navigates_to_dashboard(make_app) -> None:
    at = make_app("app.py").run()
    at.switch_page("pages/dashboard.py").run()
    assert_clean(at)
    assert [t.value for t in at.title] == ["Test-set dashboard"]
    assert_notice(at)
