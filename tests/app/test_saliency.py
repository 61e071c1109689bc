"""AppTest of the Saliency lab: the upload shared from Analyze, the method grid, the class-agnostic class picker,
the checks on demand, and a test case opened from the dashboard."""

from __future__ import annotations

import io

import numpy as np
from apptest_helpers import assert_clean, assert_notice, plotly_specs, rendered_text
from PIL import Image
from streamlit.testing.v1 import AppTest

from medimg.ui.saliency import CASE_KEY
from medimg.ui.session import UPLOAD_KEY, Upload

PAGE = "pages/saliency.py"


def _png(seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    img = (rng.random((80, 72)) * 120 + 60).astype(np.uint8)
    img[20:40, 30:50] = 230
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _lab(make_app, upload: bytes | None = None) -> AppTest:
    at = make_app(PAGE)
    if upload is not None:
        at.session_state[UPLOAD_KEY] = Upload.from_bytes(upload)
    at.run()
    at.sidebar.selectbox(key="medimg.model_picker").set_value("tiny_smallcnn.json").run()
    return at


def test_saliency_without_upload_points_to_analyze(make_app) -> None:
    at = _lab(make_app)
    assert_clean(at)
    assert_notice(at)
    assert any("Upload an image on **Analyze** first" in i.value for i in at.info)
    assert not plotly_specs(at)


def test_saliency_grid_of_every_method_with_grids_and_class_agnostic_picker(make_app) -> None:
    at = _lab(make_app, _png())
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert [t.value for t in at.title] == ["Saliency lab"]
    grid = plotly_specs(at)["lab-grid"]
    images = [t for t in grid["data"] if t.get("type") == "image"]
    assert [t["name"] for t in images] == ["gradcam", "hirescam", "xgradcam", "gradcam++", "layercam", "eigencam",
                                            "ablationcam", "scorecam"]
    titles = [a["text"] for a in grid["layout"]["annotations"] if "cells" in a.get("text", "")]
    assert len(titles) == 8 and all("16 x 16 cells" in t for t in titles), titles  # features.conv3 at 64 px
    assert any("class-agnostic" in t for t in titles if t.startswith("Eigen-CAM"))
    # the layer picker lists the network's stages with their grids; an earlier layer gives a finer grid
    layer = at.selectbox(key="lab-layer-tiny_smallcnn")
    assert [str(o) for o in layer.options][:3] == ["features.conv1 (64 x 64 cells, 16 channels)",
                                                   "features.conv2 (32 x 32 cells, 32 channels)",
                                                   "features.conv3 (16 x 16 cells, 64 channels) - the model's CAM layer"]
    layer.set_value(1).run()
    assert_clean(at)
    titles = [a["text"] for a in plotly_specs(at)["lab-grid"]["layout"]["annotations"] if "cells" in a.get("text", "")]
    assert all("32 x 32 cells" in t for t in titles), titles
    # class-agnostic focus method: the class picker is disabled and says why
    target_key = next(k for k in (w.key for w in at.selectbox) if k and k.startswith("lab-target-"))
    assert not at.selectbox(key=target_key).disabled
    at.selectbox(key="lab-focus-tiny_smallcnn").set_value("Eigen-CAM").run()
    assert_clean(at)
    picker = at.selectbox(key=target_key)
    assert picker.disabled and "class-agnostic" in picker.help
    assert any("Eigen-CAM is class-agnostic" in c.value for c in at.caption)


def test_saliency_checks_on_demand(make_app) -> None:
    at = _lab(make_app, _png())
    assert_clean(at)
    buttons = [b for b in at.button if b.key and b.key.startswith("lab-run-checks-")]
    assert len(buttons) == 1
    buttons[0].click().run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    labels = [m.label for m in at.metric]
    assert labels == ["Deletion AUC (lower is better)", "Insertion AUC (higher is better)",
                      "Rank correlation with randomised model"]
    for m in at.metric[:2]:
        assert 0.0 <= float(m.value) <= 1.0
    text = rendered_text(at)
    assert "Faithfulness:" in text and "Sanity check:" in text
    figs = plotly_specs(at)
    assert "lab-curves" in figs and "lab-sanity-maps" in figs
    names = [t["name"] for t in figs["lab-curves"]["data"]]
    assert names[:2] == ["deletion (lower area = more faithful)", "insertion (higher area = more faithful)"]
    # the checks are kept for this image: a rerun shows them again without the button
    at.run()
    assert [m.label for m in at.metric][:1] == ["Deletion AUC (lower is better)"]


def test_saliency_opens_a_dashboard_case_without_data(make_app) -> None:
    """A case whose test images are not on this server gives a clear message, not a traceback."""
    at = make_app(PAGE)
    at.session_state[CASE_KEY] = ("tiny_smallcnn.json", "img3", "test")
    at.run()
    at.sidebar.selectbox(key="medimg.model_picker").set_value("tiny_smallcnn.json").run()
    assert_clean(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "test images are not on this server" in errors[0], errors
