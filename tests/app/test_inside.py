"""AppTests of Inside the CNN: the layer table and filters without an image, then every section for an upload,
with the tiny model (64 x 64 SmallCNN) and real computations checked against the library."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from apptest_helpers import assert_clean, assert_notice, plotly_array, plotly_specs, rendered_text
from PIL import Image
from streamlit.testing.v1 import AppTest

from medimg import load_image
from medimg.explain import teaching as tm
from medimg.predict import Predictor
from medimg.ui.session import UPLOAD_KEY, Upload

PAGE = "pages/inside.py"


def _png(seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0:80, 0:100]
    img = 90 + 25 * rng.standard_normal((80, 100)) + 120 * np.exp(-((rr - 30) ** 2 + (cc - 60) ** 2) / 200.0)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def predictor(app_weights: Path) -> Predictor:
    return Predictor.from_spec(app_weights / "tiny_smallcnn.json", device="cpu")


def _with_image(make_app, data: bytes | None = None) -> AppTest:
    """The page with the tiny model and the session's current image already set (as Analyze leaves it)."""
    at = make_app(PAGE)
    at.session_state["medimg.model"] = "tiny_smallcnn.json"
    at.session_state[UPLOAD_KEY] = Upload.from_bytes(data or _png())
    return at.run()


def test_without_image_shows_layers_and_filters(make_app) -> None:
    at = make_app(PAGE)
    at.session_state["medimg.model"] = "tiny_smallcnn.json"
    at.run()
    assert_clean(at)
    assert_notice(at)
    table = at.dataframe[0].value
    assert list(table["Layer"])[:4] == ["input", "features.conv1", "features.relu1", "features.pool1"]
    assert list(table["Output (C x H x W)"])[:4] == ["1 x 64 x 64", "16 x 64 x 64", "16 x 64 x 64", "16 x 32 x 32"]
    marked = [name for name, mark in zip(table["Layer"], table["Heat map"], strict=True) if mark]
    assert marked == ["features.conv3"]
    assert list(table["Receptive field"])[list(table["Layer"]).index("features.conv3")] == "18 px"
    figs = plotly_specs(at)
    assert "inside-filters" in figs and plotly_array(figs["inside-filters"]["data"][0]["z"]).size > 16 * 9
    assert sum("Upload an image" in i.value for i in at.info) == 4  # every image-dependent tab says so


def test_current_image_from_another_page_drives_every_section(make_app, predictor: Predictor) -> None:
    at = _with_image(make_app)
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    figs = plotly_specs(at)
    assert {"inside-filters", "inside-feature-maps", "inside-stages", "inside-cover-select",
            "inside-cover-probs", "inside-whatif"} <= set(figs)
    assert "inside-occlusion" not in figs  # occlusion runs only on request
    # CAM at every stage: one map per stage, each on its own grid (64, 32, 16 cells across)
    cells = [t for t in figs["inside-stages"]["data"] if t.get("opacity") not in (None, 1)]
    assert [plotly_array(t["z"]).shape for t in cells] == [(64, 64), (32, 32), (16, 16)]
    assert "16 x 16 grid" in rendered_text(at)
    titles = [a["text"] for a in figs["inside-stages"]["layout"]["annotations"]]
    assert titles[0] == "network input<br>64 x 64 px" and len(titles) == 4
    # the what-ifs: "as trained" equals the Predictor's single-view output; sizes printed
    ref = predictor.predict(load_image(_png()), tta=False)
    variants = at.session_state["medimg.inside"].tables["whatif"]  # the page's memo: key -> (value, seconds)
    first = next(iter(variants.values()))[0][0]
    np.testing.assert_allclose(first.probs, ref.probs, atol=1e-9)
    captions = [c.value for c in at.caption]
    assert any(c.startswith("64 x 64 px → **") for c in captions)
    assert any(c.startswith("128 x 128 px → **") for c in captions)  # the other input size (2x)
    bars = figs["inside-whatif"]["data"]
    assert [b["name"] for b in bars] == ["as trained", "another window", "input 128 px", "aspect kept (pad)",
                                         "no normalisation"]


def test_occlusion_runs_with_progress_and_matches_the_library(make_app, predictor: Predictor) -> None:
    at = _with_image(make_app)
    at.slider(key="inside-occ-patch-64").set_value(16)
    at.slider(key="inside-occ-stride-64").set_value(16)
    at.button(key="inside-occ-run").click().run()
    assert_clean(at)
    bars = at.get("progress")
    assert bars and "16 occluded images" in bars[-1].proto.text
    occ = plotly_array(plotly_specs(at)["inside-occlusion"]["data"][1]["z"])
    pre = predictor.predict(load_image(_png()), tta=False).preprocessed
    target = int(predictor.predict(load_image(_png()), tta=False).label_index)
    ref = tm.occlusion(predictor, pre, target=target, patch=16, stride=16)
    np.testing.assert_allclose(occ, ref, atol=1e-6)
    at.run()  # kept for this image: drawn again without pressing the button
    assert "inside-occlusion" in plotly_specs(at)


def test_covering_a_region_changes_the_probabilities(make_app, predictor: Predictor) -> None:
    at = _with_image(make_app)
    at.slider(key="inside-cover-rows").set_value((0, 63))
    at.slider(key="inside-cover-cols").set_value((0, 31)).run()
    assert_clean(at)
    table = at.dataframe[-1].value
    pre = predictor.predict(load_image(_png()), tta=False).preprocessed
    want = tm.occlude(predictor, pre, (0, 0, 64, 32))
    assert list(table["Covered"]) == [f"{p:.1%}" for p in want]
    assert "Covered rows 0–63, columns 0–31 of the 64 x 64 input (2048 pixels)." in [c.value for c in at.caption]


def test_box_selection_moves_the_cover_sliders(make_app) -> None:
    at = make_app(PAGE)
    at.session_state["medimg.model"] = "tiny_smallcnn.json"
    at.session_state[UPLOAD_KEY] = Upload.from_bytes(_png())
    at.session_state["inside-cover-select"] = {"selection": {"points": [{"x": 5, "y": 10}, {"x": 20, "y": 30}],
                                                             "point_indices": [], "box": [], "lasso": []}}
    at.run()
    assert at.slider(key="inside-cover-rows").value == (10, 30)  # first and last row of the drawn box
    assert at.slider(key="inside-cover-cols").value == (5, 20)
    assert "Covered rows 10–30, columns 5–20 of the 64 x 64 input (336 pixels)." in [c.value for c in at.caption]


def test_feature_map_layer_and_cam_method_choices(make_app) -> None:
    at = _with_image(make_app)
    at.selectbox(key="inside-fm-layer-tiny_smallcnn.json").set_value("features.conv2")
    at.number_input(key="inside-fm-count").set_value(8)
    at.selectbox(key="inside-stage-method").set_value("HiResCAM").run()
    assert_clean(at)
    figs = plotly_specs(at)
    assert "features.conv2: the 8 most active of 32 channels (32 x 32 each)" in figs["inside-feature-maps"]["layout"][
        "title"]["text"]
    assert len(figs["inside-feature-maps"]["layout"]["annotations"]) == 8
    assert any("HiResCAM for **" in c.value for c in at.caption)


def test_unreadable_upload_is_a_clear_message(make_app) -> None:
    at = _with_image(make_app, b"this is not an image, just text")
    assert_clean(at)
    assert any("Unsupported file type" in e.value for e in at.error), [e.value for e in at.error]
    assert "inside-stages" not in plotly_specs(at)


def test_what_the_network_saw_shows_real_pixels_with_their_size(make_app) -> None:
    """Analyze's steps: the 64 x 64 network input is enlarged by whole-pixel blocks, and every size is printed."""
    from medimg.ui.widgets import step_pixels

    small = np.random.default_rng(0).random((28, 28, 1)).astype(np.float32)
    big = step_pixels(small, "geometry")
    assert big.shape == (28 * 14, 28 * 14)  # 384 px reached by an integer factor
    blocks = big.reshape(28, 14, 28, 14)
    assert (blocks == blocks[:, :1, :, :1]).all()  # every block is one pixel's value: nothing smoothed
    assert step_pixels(np.zeros((1000, 800, 1), np.float32), "window").shape == (384, 307)  # originals shrink
    at = make_app("pages/analyze.py")
    at.session_state["medimg.model"] = "tiny_smallcnn.json"
    at.session_state[UPLOAD_KEY] = Upload.from_bytes(_png())
    at.run()
    assert_clean(at)
    sizes = [c.value.rsplit("· ", 1)[-1] for c in at.caption if "· " in c.value and c.value.endswith(" px")]
    assert sizes == ["80 x 100 px", "80 x 100 px", "64 x 64 px", "64 x 64 px", "64 x 64 px"]
