"""Teaching helpers: layer names, first-layer filters, feature maps, occlusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from explain_helpers import in_box, make_pre

from medimg import explain as ex
from medimg.errors import SpecError
from medimg.models import create_model


def test_layer_names(tiny_predictor) -> None:
    assert ex.layer_names(tiny_predictor) == ["features", "features.conv1", "features.conv2", "features.conv3"]
    names = ex.layer_names(create_model("resnet18", 1, 2))
    assert names[:3] == ["conv1", "layer1", "layer1.0.conv1"] and "layer4" in names
    assert names.index("layer3") < names.index("layer4") and "fc" not in names


def test_first_layer_filters(tiny_predictor) -> None:
    f = ex.first_layer_filters(tiny_predictor)
    w = tiny_predictor.model.features.conv1.weight
    assert f.shape == (16, 3, 3) and f.dtype == np.float32
    np.testing.assert_allclose(f, w.detach().numpy()[:, 0])
    f[:] = 0  # a copy: the model is untouched
    assert w.abs().sum() > 0
    rgb = ex.first_layer_filters(create_model("resnet18", 3, 2))
    assert rgb.shape == (64, 7, 7)
    with pytest.raises(ex.ExplainError):
        ex.first_layer_filters(torch.nn.Linear(3, 2))


def test_feature_maps(tiny_predictor, tiny_images) -> None:
    pre = make_pre(tiny_images[0], tiny_predictor.spec.preprocess)
    f1 = ex.feature_maps(tiny_predictor, pre, "features.conv1")
    f3 = ex.feature_maps(tiny_predictor, pre, "features.relu3")
    assert f1.shape == (16, 64, 64) and f1.dtype == np.float32
    assert f3.shape == (64, 16, 16) and f3.min() >= 0
    with torch.inference_mode():
        ref = tiny_predictor.model.features.conv1(torch.from_numpy(pre.model_input[None]))[0].numpy()
    np.testing.assert_allclose(f1, ref, atol=1e-5)
    with pytest.raises(SpecError):
        ex.feature_maps(tiny_predictor, pre, "features.conv9")
    with pytest.raises(ex.ExplainError, match="feature maps"):
        ex.feature_maps(tiny_predictor, pre, "classifier.1")
    assert ex.hook_count(tiny_predictor.model) == 0


def test_occlusion_shape_and_validation(tiny_predictor, tiny_images) -> None:
    pre = make_pre(tiny_images[0], tiny_predictor.spec.preprocess)
    occ = ex.occlusion(tiny_predictor, pre, target=1, patch=16, stride=12)
    assert occ.shape == (64, 64) and occ.dtype == np.float32
    assert np.isfinite(occ).all() and occ.min() >= -1 and occ.max() <= 1
    with pytest.raises(ex.ExplainError, match="patch"):
        ex.occlusion(tiny_predictor, pre, patch=0)
    with pytest.raises(ex.ExplainError, match="patch"):
        ex.occlusion(tiny_predictor, pre, patch=65)


def test_occlusion_finds_the_planted_square(planted) -> None:
    """Hiding the square lowers p(square) most: the occlusion peak lies in the square."""
    hits = []
    for pre, box in planted.positives(8):
        occ = ex.occlusion(planted.predictor, pre, target="square", patch=6, stride=3)
        hits.append(in_box(np.unravel_index(np.argmax(occ), occ.shape), box, side=8))
        assert occ.max() > 0.05
    assert np.mean(hits) >= 0.75, hits
