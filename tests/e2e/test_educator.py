"""Real-browser test of the educators' main path: `streamlit run app.py`, Chromium through Playwright, the
Training lab trains the small CNN for one epoch and the loss curve appears; then Inside the CNN shows the layer
table for the shipped model.

Needs the shipped weights, PneumoniaMNIST in the shared data and Debian's Chromium; skips with the reason
otherwise. Set ``MEDIMG_E2E_SCREENSHOTS=/some/folder`` to keep the screenshots.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_browser import _browser, _open, _screenshot_dir

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = REPO / "weights"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def lab_server(server: tuple[str, Path], shared_data: Path) -> tuple[str, Path]:
    """The shared e2e server (tests/e2e/conftest.py), when the lab's data and the shipped model are there."""
    if not (WEIGHTS / "pneumoniamnist_mobilenet_v2_224.safetensors").exists():
        pytest.skip("the shipped PneumoniaMNIST model is not in weights/")
    if not (shared_data / "medmnist" / "pneumoniamnist.npz").exists():
        pytest.skip("PneumoniaMNIST is not in the shared data")
    return server


def _curve_points(page) -> int:  # noqa: ANN001 - playwright Page
    """Points of the training-loss trace in the lab's curves figure (0 when not drawn yet)."""
    return int(page.evaluate(
        """() => { for (const el of document.querySelectorAll('.js-plotly-plot')) {
                 const d = (el.data || []).find(t => t.name === 'training loss');
                 if (d) { return (d.y || []).filter(v => v !== null).length; } }
               return 0; }"""))


def test_training_lab_trains_one_epoch_and_draws_the_curve(lab_server: tuple[str, Path], tmp_path: Path) -> None:
    url, log = lab_server
    shots = _screenshot_dir(tmp_path)
    with _browser() as browser:
        page = _open(browser, url, 1400)
        page.get_by_role("link", name="Training lab").click()
        page.get_by_role("heading", name="Training lab").wait_for()
        epochs = page.get_by_role("spinbutton", name="Epochs")
        epochs.fill("1")
        epochs.press("Enter")
        subset = page.get_by_role("spinbutton", name="Images per split (0 = all)")
        subset.fill("1000")
        subset.press("Enter")
        page.get_by_role("button", name="Train").click()
        page.get_by_text("Epoch 1: training loss", exact=False).first.wait_for()
        page.wait_for_function(
            """() => [...document.querySelectorAll('.js-plotly-plot')].some(
                   el => (el.data || []).some(t => t.name === 'training loss' && (t.y || []).length === 1))""")
        assert _curve_points(page) == 1
        page.get_by_role("heading", name="Test split").wait_for()
        # the comparison figure: the small CNN, HOG + SVM and the shipped model (MobileNetV2, 224 px) on the same
        # test split
        page.wait_for_function(
            """() => [...document.querySelectorAll('.js-plotly-plot')].some(el => {
                   const names = (el.data || []).map(t => t.name || '');
                   return names.some(n => n.startsWith('HOG + SVM')) && names.some(n => n.startsWith('shipped'));
               })""")  # the page default (PAGE_TIMEOUT_MS): a loaded 2-core machine needs minutes
        page.set_viewport_size({"width": 1440, "height": 3200})
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shots / "train_lab.png"), full_page=True)
        body = page.inner_text("body")
        assert "Not for diagnostic use" in body and "Traceback" not in body and "Something went wrong" not in body
        assert "shipped mobilenet_v2 (224 px)" in body
        # Inside the CNN, same session: the shipped model's layers
        page.get_by_role("link", name="Inside the CNN").click()
        page.get_by_role("heading", name="Inside the CNN").wait_for()
        page.get_by_text("how many input pixels", exact=False).first.wait_for()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(shots / "inside_layers.png"), full_page=True)
    server_log = log.read_text(errors="replace")
    assert "Traceback" not in server_log, server_log[-3000:]
    assert (shots / "train_lab.png").stat().st_size > 10_000
