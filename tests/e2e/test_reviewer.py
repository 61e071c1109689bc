"""Real-browser test of the reviewer's path: upload on Analyze, open the saliency lab (same image, the method
grid), then click a confusion-matrix cell on the dashboard and see its gallery.

Uses the server and browser helpers of test_browser.py (system Chromium through Playwright; skips without it or
without the shipped weights). Set ``MEDIMG_E2E_SCREENSHOTS`` to keep the screenshots.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_browser import _analyse_in_browser, _browser, _open, _screenshot_dir

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_reviewer_upload_lab_grid_and_dashboard_cell(server: tuple[str, Path], shared_data: Path,  # noqa: F811
                                                     tmp_path: Path) -> None:
    url, log = server
    jpeg = (shared_data / "kermany-cxr" / "test" / "PNEUMONIA" / "person100_bacteria_475.jpeg").read_bytes()
    shots = _screenshot_dir(tmp_path)
    with _browser() as browser:
        page = _open(browser, url, 1100)
        page.get_by_role("heading", name="Analyze an image").wait_for()
        _analyse_in_browser(page, jpeg, "scan.jpeg", "image/jpeg")
        # the same image in the saliency lab: the grid of every method, each labelled with its grid
        page.get_by_role("link", name="Saliency lab").click()
        page.get_by_role("heading", name="Saliency lab").wait_for()
        page.get_by_text("7 x 7 cells", exact=False).first.wait_for()
        page.get_by_text("coincide at features.18 by construction", exact=False).first.wait_for()
        page.set_viewport_size({"width": 1440, "height": 2400})
        page.wait_for_timeout(2000)
        page.screenshot(path=str(shots / "saliency_lab.png"), full_page=True)
        lab = page.inner_text("body")
        for name in ("Grad-CAM", "HiResCAM", "XGrad-CAM", "Grad-CAM++", "LayerCAM", "Eigen-CAM", "Score-CAM",
                     "Ablation-CAM"):
            assert name in lab, name
        # the dashboard: click the (true normal, predicted pneumonia) cell of the confusion matrix
        page.get_by_role("link", name="Test-set dashboard").click()
        page.get_by_role("heading", name="Test-set dashboard").wait_for()
        page.get_by_text("(counts): click a cell", exact=False).first.wait_for()
        page.wait_for_timeout(2000)
        cm = page.locator(".js-plotly-plot").filter(has_text="(counts): click a cell").first
        box = cm.locator(".nsewdrag").first.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 0.75 * box["width"], box["y"] + 0.25 * box["height"])
        page.get_by_text("predicted pneumonia:", exact=False).first.wait_for()
        page.get_by_text("computed in one batched pass", exact=False).first.wait_for()
        page.wait_for_timeout(2000)
        page.screenshot(path=str(shots / "dashboard_cell_gallery.png"), full_page=True)
        body = page.inner_text("body")
    assert "True normal, predicted pneumonia" in body
    assert "Traceback" not in lab + body and "Something went wrong" not in lab + body
    assert "Traceback" not in log.read_text(errors="replace")
