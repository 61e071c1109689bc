"""medimg.viz: pure figure builders (no Streamlit, no torch); inputs are never mutated."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import plotly.graph_objects as go
import pytest
from sklearn.metrics import roc_auc_score

from medimg import viz


@pytest.fixture
def scores(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, 200)
    p1 = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, 200), 0.001, 0.999)
    return y, np.stack([1 - p1, p1], axis=1)


def test_viz_imports_no_torch_or_streamlit() -> None:
    code = "import sys, medimg.viz; print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules), 'streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.split() == ["False", "False"]


def test_to_uint8_range_shape_and_no_mutation(rng: np.random.Generator) -> None:
    x = rng.normal(0.5, 0.5, (300, 200)).astype(np.float32)
    x[0, 0] = np.nan
    before = x.copy()
    out = viz.to_uint8(x, max_side=150)
    assert out.dtype == np.uint8 and out.shape == (150, 100)
    np.testing.assert_array_equal(np.isnan(x), np.isnan(before))
    np.testing.assert_array_equal(x[~np.isnan(x)], before[~np.isnan(before)])
    assert viz.to_uint8(np.ones((4, 4, 1), np.float32)).shape == (4, 4)


def test_heatmap_overlay_has_relative_colorbar(rng: np.random.Generator) -> None:
    rgb = rng.random((120, 90, 3)).astype(np.float32)
    before = rgb.copy()
    fig = viz.heatmap_overlay_figure(rgb)
    assert isinstance(fig, go.Figure)
    np.testing.assert_array_equal(rgb, before)
    image = [t for t in fig.data if t.type == "image"]
    assert len(image) == 1 and image[0].source.startswith("data:image/png;base64,")
    bars = [t for t in fig.data if t.type == "scatter" and t.marker.showscale]
    assert bars[0].marker.colorbar.title.text == viz.RELATIVE_SCALE_TITLE == "relative importance (min–max per image)"
    assert (bars[0].marker.cmin, bars[0].marker.cmax) == (0.0, 1.0)
    # rows down: the y axis is reversed over the image's rows
    assert tuple(fig.layout.yaxis.range) == (119.5, -0.5)
    glob = viz.heatmap_overlay_figure(rgb, relative=False)
    assert [t for t in glob.data if t.type == "scatter"][0].marker.colorbar.title.text == viz.GLOBAL_SCALE_TITLE


def test_probability_bars() -> None:
    fig = viz.probability_bars({"normal": 0.2, "pneumonia": 0.8}, highlight="pneumonia", threshold=0.5,
                               threshold_label="pneumonia")
    bar = fig.data[0]
    assert list(bar.y) == ["normal", "pneumonia"] and list(bar.x) == [0.2, 0.8]
    assert bar.marker.color[1] != bar.marker.color[0]
    assert fig.layout.shapes and fig.layout.shapes[0].x0 == 0.5


def test_confusion_matrix_counts_and_normalised() -> None:
    cm = [[8, 2], [1, 9]]
    counts = viz.confusion_matrix_figure(cm, ["a", "b"])
    np.testing.assert_array_equal(np.asarray(counts.data[0].z), [[8, 2], [1, 9]])
    norm = viz.confusion_matrix_figure(cm, ["a", "b"], normalise=True)
    np.testing.assert_allclose(np.asarray(norm.data[0].z), [[0.8, 0.2], [0.1, 0.9]])
    assert cm == [[8, 2], [1, 9]]
    empty_row = viz.confusion_matrix_figure([[0, 0], [1, 1]], ["a", "b"], normalise=True)
    assert np.isfinite(np.asarray(empty_row.data[0].z)).all()


def test_roc_pr_reliability(scores: tuple[np.ndarray, np.ndarray]) -> None:
    y, probs = scores
    before = probs.copy()
    roc = viz.roc_figure(y, probs, ["normal", "pneumonia"], positive_label=1, ci=(0.8, 0.9))
    auc = roc_auc_score(y, probs[:, 1])
    assert f"AUROC {auc:.3f}" in roc.layout.title.text and "95 % CI" in roc.layout.title.text
    pr = viz.pr_figure(y, probs, ["normal", "pneumonia"], positive_label=1)
    assert "AP" in pr.data[0].name
    rel = viz.reliability_figure(y, probs, n_bins=10, ece=0.05)
    assert "ECE 0.050" in rel.layout.title.text
    counts = [t for t in rel.data if t.name == "images"][0]
    assert sum(counts.y) == len(y)
    np.testing.assert_array_equal(probs, before)


def test_multiclass_roc_one_vs_rest(rng: np.random.Generator) -> None:
    y = rng.integers(0, 3, 90)
    probs = rng.dirichlet(np.ones(3), 90)
    fig = viz.roc_figure(y, probs, ["a", "b", "c"])
    assert len([t for t in fig.data if t.name != "chance"]) == 3


def test_training_curves_and_steps() -> None:
    hist = [{"epoch": 1, "train_loss": 0.7, "val_loss": 0.6, "val_auroc": 0.8},
            {"epoch": 2, "train_loss": 0.5, "val_loss": 0.5, "val_auroc": 0.9}]
    fig = viz.training_curves_figure(hist)
    assert {t.name for t in fig.data} == {"train loss", "validation loss", "validation AUROC"}
    strip = viz.steps_figure([np.zeros((10, 12)), np.ones((8, 8, 3))], ["a", "b"])
    assert len(strip.data) == 2
