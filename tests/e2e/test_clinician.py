"""Real-browser test of the clinician's image panel and report: typed window, linked zoom, PDF download.

Starts ``streamlit run app.py`` (the server fixture of test_browser.py), uploads a chest DX under a canary file
name, confirms the warnings if asked, types a window center, zooms the image with the mouse wheel (the heat map
beside it must follow) and downloads the PDF report, which must hold no canary.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import pytest
from test_browser import _analyse_in_browser, _browser, _open, _screenshot_dir

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
CANARY = "CANARY_Doe^Jane_0xF00D.dcm"

_RANGES = """() => {
  const el = [...document.querySelectorAll('.js-plotly-plot')].find(p => p._fullLayout && p._fullLayout.xaxis2);
  if (!el) return null;
  const L = el._fullLayout;
  return {x: L.xaxis.range, x2: L.xaxis2.range, y: L.yaxis.range, y2: L.yaxis2.range};
}"""


def _inflate_all(pdf: bytes) -> str:
    parts = [pdf.decode("latin-1")]
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            parts.append(zlib.decompress(m.group(1)).decode("latin-1"))
        except zlib.error:
            pass
    return "\n".join(parts)


def test_viewer_panel_and_report_download(server: tuple[str, Path], shared_data: Path, tmp_path: Path) -> None:  # noqa: F811
    url, log = server
    dcm = (shared_data / "dicom" / "cxr" / "dx_image.dcm").read_bytes()
    shots = _screenshot_dir(tmp_path)
    with _browser() as browser:
        page = _open(browser, url, 1400)
        page.get_by_role("heading", name="Analyze an image").wait_for()
        assert "Chest radiograph" in page.locator("[data-testid=stFileUploader]").first.inner_text()
        _analyse_in_browser(page, dcm, CANARY, "application/dicom")
        # typed window center: the panel's title follows
        center = page.get_by_label("Center (stored value)")
        center.fill("100")
        center.press("Enter")
        page.get_by_text("custom: center 100", exact=False).first.wait_for()
        page.wait_for_timeout(1500)
        before = page.evaluate(_RANGES)
        assert before is not None, "the viewer shows the image and the heat map side by side"
        # zoom with the mouse wheel over the image: the heat map panel follows (linked axes)
        plot = page.locator(".js-plotly-plot").first
        box = plot.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)
        for _ in range(3):
            page.mouse.wheel(0, -240)
            page.wait_for_timeout(300)
        after = page.evaluate(_RANGES)
        assert after["x"] != before["x"], "scrolling zooms the image"
        assert after["x"] == pytest.approx(after["x2"]) and after["y"] == pytest.approx(after["y2"])
        page.set_viewport_size({"width": 1440, "height": 3200})
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shots / "clinician_viewer.png"), full_page=True)
        # the PDF report, downloaded from memory
        with page.expect_download() as dl:
            page.get_by_role("button", name="Download PDF report").click()
        pdf = Path(dl.value.path()).read_bytes()
        body = page.inner_text("body")
    assert pdf.startswith(b"%PDF-")
    text = _inflate_all(pdf)
    assert "Not for diagnostic use" in text and "Model output" in text
    assert "canary" not in text.lower() and "Doe^Jane" not in text
    assert "Traceback" not in body and "Something went wrong" not in body
    server_log = log.read_text(errors="replace")
    assert "CANARY" not in server_log and "Traceback" not in server_log


def test_head_ct_slice_under_the_head_ct_model(server: tuple[str, Path], shared_data: Path, tmp_path: Path) -> None:  # noqa: F811
    """A real head CT slice (CQ500, 512 x 512 with air and head rest): the page offers the head CT model, the
    network sees it in the brain window cut to the head (outlined on "what the network saw"), every gate check
    passes and the heat map is drawn."""
    import csv

    series = shared_data / "dicom" / "head-ct"
    rows = list(csv.DictReader((series / "MANIFEST.csv").open()))
    dcm = (series / min(rows, key=lambda r: abs(float(r["z_mm"]) - 64.0))["path"]).read_bytes()
    shots = _screenshot_dir(tmp_path)
    with _browser() as browser:
        page = _open(browser, url := server[0], 1000)
        page.get_by_role("heading", name="Analyze an image").wait_for()
        page.locator("input[type=file]").first.set_input_files(
            files=[{"name": "slice.dcm", "mimeType": "application/dicom", "buffer": dcm}])
        use = page.get_by_role("button", name=re.compile(r"^Use Head CT"))
        use.wait_for()
        use.click()
        page.get_by_text("Model output:").first.wait_for()
        page.get_by_role("heading", name="Grad-CAM: where the network looked").wait_for()
        page.locator(".js-plotly-plot .colorbar").first.wait_for()
        page.get_by_text("cut to the foreground box", exact=False).first.wait_for()
        page.set_viewport_size({"width": 1440, "height": 3400})
        page.wait_for_timeout(2000)
        page.screenshot(path=str(shots / "analyze_head_ct.png"), full_page=True)
        body = page.inner_text("body")
    assert url and "Traceback" not in body and "Something went wrong" not in body
    assert "Check failed" not in body and "Analyse anyway" not in body
    assert "model window 40/80 HU" in body and "hemorrhage" in body
