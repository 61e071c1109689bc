"""The reviewers' method grid: empty maps, coinciding methods, class-agnostic methods, grids, Ablation-CAM,
faithfulness against a random map, the sanity verdict, and the layer list."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from explain_helpers import make_pre
from torch import nn

from medimg import explain as ex
from medimg.explain.maps import layer_pass
from medimg.predict import Predictor
from medimg.spec import ModelSpec, PreprocessConfig


class GapNet(nn.Module):
    """conv -> ReLU -> conv (stride 2) -> ReLU -> global average pooling -> linear: the last block feeds GAP."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 8, 3, padding=1), relu1=nn.ReLU(),
                                                  conv2=nn.Conv2d(8, 16, 3, padding=1, stride=2), relu2=nn.ReLU()))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))  # (N, 2)


CONFIG = PreprocessConfig(input_size=(32, 32), in_chans=1, mean=(0.5,), std=(0.25,))


@pytest.fixture(scope="module")
def gapnet() -> Predictor:
    """GapNet whose class 0 weights are all negative: on the non-negative GAP features nothing raises class 0."""
    torch.manual_seed(0)
    model = GapNet().eval()
    with torch.no_grad():
        model.fc.weight[0] = -model.fc.weight[0].abs() - 0.01
        model.fc.weight[1] = model.fc.weight[1].abs() + 0.01
    spec = ModelSpec(name="gapnet", title="GAP net", architecture="smallcnn", labels=("normal", "lesion"),
                     preprocess=CONFIG, positive_label=1, cam_layer="features")
    return Predictor(model, spec, device="cpu")


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(5)
    img = rng.random((32, 32)).astype(np.float32) * 0.5
    img[8:16, 18:26] += 0.5
    return img


def test_empty_map_is_reported_not_stretched(gapnet: Predictor, image: np.ndarray) -> None:
    pre = make_pre(image, CONFIG)
    g = ex.method_grid(gapnet, pre, target="normal", layer="features")
    gm = g.maps["gradcam"]
    assert gm.empty and gm.raw_max == 0.0
    assert not gm.heatmap.any()  # all zero, not min-max stretched round-off
    assert "no region raises normal" in ex.grid.grid_text(g)["gradcam"]
    # the single-method path says the same
    c = ex.cam(gapnet, pre, target="normal", method="gradcam", layer="features")
    assert c.empty and not c.heatmap.any() and c.grid == (16, 16)
    # a class with positive evidence is not empty
    assert not ex.method_grid(gapnet, pre, target="lesion", layer="features").maps["gradcam"].empty


def test_is_empty_threshold() -> None:
    assert ex.is_empty(np.zeros((4, 4)))
    assert ex.is_empty(-np.ones((4, 4)))
    near = -np.ones((4, 4))
    near[0, 0] = 1e-9  # round-off next to values of size 1
    assert ex.is_empty(near)
    real = -np.ones((4, 4))
    real[0, 0] = 0.01
    assert not ex.is_empty(real)


def test_methods_that_coincide_before_global_pooling_are_grouped(gapnet: Predictor, image: np.ndarray) -> None:
    pre = make_pre(image, CONFIG)
    g = ex.method_grid(gapnet, pre, target="lesion", layer="features")
    assert g.uniform_gradient
    group = g.group_of("gradcam")
    assert group is not None and {"gradcam", "hirescam", "xgradcam"} <= set(group)
    assert "by construction" in g.group_reasons[group] and "global average pooling" in g.group_reasons[group]
    assert np.abs(g.maps["gradcam"].heatmap - g.maps["hirescam"].heatmap).max() <= 1e-3
    assert "identical to" in ex.grid.grid_text(g)["hirescam"]
    # one layer earlier the gradient varies over the map and Grad-CAM and HiResCAM differ
    g1 = ex.method_grid(gapnet, pre, target="lesion", layer="features.conv2")
    assert not g1.uniform_gradient
    assert g1.group_of("gradcam") is None or "hirescam" not in g1.group_of("gradcam")


def test_grid_states_resolution_and_every_method(gapnet: Predictor, image: np.ndarray) -> None:
    pre = make_pre(image, CONFIG)
    g = ex.method_grid(gapnet, pre, target="lesion", layer="features")
    assert list(g.maps) == list(ex.GRID_METHODS)
    assert g.grid == (16, 16) and g.grid_label == "16 x 16 cells"
    for gm in g.maps.values():
        assert gm.heatmap.shape == (32, 32) and gm.heatmap.dtype == np.float32
        assert 0.0 <= gm.heatmap.min() and gm.heatmap.max() <= 1.0
        assert not gm.heatmap.flags.writeable
    assert "forward/backward" in g.seconds and set(ex.GRID_METHODS) <= set(g.seconds)
    # the grid equals the single-method CAM of each method
    for m in ("gradcam", "gradcam++", "layercam", "eigencam"):
        single = ex.cam(gapnet, pre, target="lesion", method=m, layer="features").heatmap
        assert np.abs(single - g.maps[m].heatmap).max() < 1e-5, m
    # layer list: stages with their grids, the spec's layer marked
    layers = ex.cam_layers(gapnet)
    assert [(lo.name, lo.grid, lo.default) for lo in layers] == [
        ("features.conv1", (32, 32), False), ("features.conv2", (16, 16), False), ("features", (16, 16), True)]
    assert ex.hook_count(gapnet.model) == 0


def test_class_agnostic_methods_are_flagged_and_ignore_the_class(gapnet: Predictor, image: np.ndarray) -> None:
    pre = make_pre(image, CONFIG)
    assert ex.CLASS_AGNOSTIC == frozenset({"eigencam"})
    a = ex.method_grid(gapnet, pre, target="normal", layer="features")
    b = ex.method_grid(gapnet, pre, target="lesion", layer="features")
    assert a.maps["eigencam"].class_agnostic and not a.maps["gradcam"].class_agnostic
    np.testing.assert_array_equal(a.maps["eigencam"].heatmap, b.maps["eigencam"].heatmap)
    assert "class-agnostic" in ex.grid.grid_text(a)["eigencam"]


def test_ablation_cam_equals_brute_force_channel_ablation(gapnet: Predictor, image: np.ndarray) -> None:
    x = make_pre(image, CONFIG).model_input[None]
    model = gapnet.model
    layer = model.features.conv2
    with torch.no_grad():
        xt = torch.from_numpy(x)
        acts = {}
        h = layer.register_forward_hook(lambda m, i, o: acts.setdefault("a", o.clone()))
        y = float(model(xt)[0, 1])
        h.remove()
        a = acts["a"][0]
        w = []
        for k in range(a.shape[0]):
            def zero(m: nn.Module, i: object, o: torch.Tensor, k: int = k) -> torch.Tensor:
                o = o.clone()
                o[:, k] = 0
                return o
            h = layer.register_forward_hook(zero)
            w.append((y - float(model(xt)[0, 1])) / y)
            h.remove()
    want = (torch.tensor(w)[:, None, None] * a).sum(0).numpy()
    lp = layer_pass(model, "features.conv2", x, [1], ["ablationcam"], lambda lg: 1)
    np.testing.assert_allclose(lp.pre["ablationcam"][0], want, rtol=1e-4, atol=1e-5)


def test_faithfulness_beats_random_on_the_planted_square(planted) -> None:
    pre, _ = planted.positives(1)[0]
    c = ex.cam(planted.predictor, pre, target="square", method="gradcam")
    f = ex.faithfulness(planted.predictor, pre, c)
    assert f.target == 1
    assert f.deletion_auc < f.random_deletion_auc
    assert set(f.curves) == {"fraction", "deletion", "insertion", "random_deletion", "random_insertion"}
    assert f.curves["deletion"].shape == (21,)
    with pytest.raises(ex.ExplainError):
        ex.faithfulness(planted.predictor, pre, c, n_random=0)


def test_sanity_verdicts(planted, gapnet: Predictor, image: np.ndarray) -> None:
    pre, _ = planted.positives(1)[0]
    s = ex.sanity_check(planted.predictor, pre, "gradcam", target="square")
    assert s.passed is not None and -1.0 <= s.rho <= 1.0
    assert s.randomised.shape == (32, 32)
    assert ("barely depends on the trained weights" in s.verdict) == (not s.passed)
    # an empty trained map has nothing to compare
    e = ex.sanity_check(gapnet, make_pre(image, CONFIG), "gradcam", target="normal", layer="features")
    assert e.passed is None and np.isnan(e.rho) and "Not applicable" in e.verdict
    # a map identical to the randomised one fails with the reviewer's sentence
    fail = ex.Sanity("gradcam", "layer4", "cascading", 0.93, s.randomised)
    assert fail.passed is False and "this map barely depends on the trained weights" in fail.verdict


def test_global_scale_per_method(gapnet: Predictor, image: np.ndarray) -> None:
    pre = make_pre(image, CONFIG)
    x = np.stack([pre.model_input, make_pre(np.flipud(image).copy(), CONFIG).model_input])
    vmax = ex.grid_vmax(gapnet, x, layer="features", targets=["lesion", "lesion"])
    assert set(vmax) == set(ex.GRID_METHODS) and all(v > 0 for v in vmax.values())
    g = ex.method_grid(gapnet, pre, target="lesion", layer="features", scale="global", vmax=vmax)
    raw = g.maps["gradcam"].raw
    np.testing.assert_allclose(g.maps["gradcam"].heatmap, np.clip(raw / vmax["gradcam"], 0, 1), atol=1e-6)
    with pytest.raises(ex.ExplainError, match="vmax"):
        ex.method_grid(gapnet, pre, scale="global")
