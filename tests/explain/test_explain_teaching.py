"""Teaching helpers: layer table, filters, feature maps, CAM at every stage, occlusion, what-ifs, slide images."""

from __future__ import annotations

import io

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from explain_helpers import PLANT_SIDE, in_box, make_pre
from PIL import Image

from medimg import explain as ex
from medimg import viz_teaching as vt
from medimg.errors import SpecError
from medimg.explain import teaching as tm
from medimg.io import Window, load_image
from medimg.models import create_model


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def chest_like(rng: np.random.Generator):
    """A decoded 8-bit PNG, wider than tall (so aspect policies differ), with a bright blob."""
    rr, cc = np.mgrid[0:90, 0:120]
    img = 90 + 30 * rng.standard_normal((90, 120)) + 120 * np.exp(-((rr - 40) ** 2 + (cc - 70) ** 2) / 300.0)
    return load_image(_png(np.clip(img, 0, 255).astype(np.uint8)))


# --------------------------------------------------------------------------------------------------------------
# Existing helpers


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


def test_channel_order_most_active_first() -> None:
    maps = np.zeros((4, 3, 3), dtype=np.float32)
    maps[2] = 5.0
    maps[0] = -3.0  # absolute activation counts
    maps[3, 0, 0] = 1.0
    assert list(tm.channel_order(maps)) == [2, 0, 3, 1]


# --------------------------------------------------------------------------------------------------------------
# The layer table


def _manual_smallcnn(model: torch.nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Shapes of every SmallCNN row, from a forward pass written out by hand (no hooks)."""
    out = {}
    f = model.features
    for name in ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3"):
        x = getattr(f, name)(x)
        out[f"features.{name}"] = tuple(x.shape[1:])
    x = model.pool(x)
    out["pool"] = tuple(x.shape[1:])
    for i, layer in enumerate(model.classifier):
        x = layer(x)
        out[f"classifier.{i}"] = tuple(x.shape[1:])
    return out


def _manual_resnet(model: torch.nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Shapes of every ResNet row (stem, each block, pooling, fc), from a hand-written forward pass."""
    out = {}
    for name in ("conv1", "bn1", "relu", "maxpool"):
        x = getattr(model, name)(x)
        out[name] = tuple(x.shape[1:])
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for i, block in enumerate(getattr(model, stage)):
            x = block(x)
            out[f"{stage}.{i}"] = tuple(x.shape[1:])
    x = model.avgpool(x)
    out["avgpool"] = tuple(x.shape[1:])
    out["fc"] = tuple(model.fc(torch.flatten(x, 1)).shape[1:])
    return out


@pytest.mark.parametrize(("arch", "size", "manual", "cam"), [
    ("smallcnn", 28, _manual_smallcnn, "features.conv3"),
    ("smallcnn", 50, _manual_smallcnn, "features.conv3"),
    ("resnet10_small", 28, _manual_resnet, "layer4"),
    ("resnet18", 96, _manual_resnet, "layer4"),
])
def test_layer_table_shapes_equal_a_forward_pass(arch, size, manual, cam) -> None:
    torch.manual_seed(0)
    model = create_model(arch, 1, 2).eval()
    table = tm.layer_table(model, (1, size, size), cam_layer=cam)
    with torch.inference_mode():
        ref = manual(model, torch.zeros(1, 1, size, size))
    assert table[0].name == "input" and table[0].out_shape == (1, size, size)
    assert {r.name: r.out_shape for r in table[1:]} == ref
    assert [r.name for r in table[1:]] == list(ref)  # execution order
    params = {r.name: r.params for r in table}
    assert sum(params.values()) == sum(p.numel() for p in model.parameters())
    cam_rows = [r.name for r in table if r.is_cam]
    assert len(cam_rows) == 1 and (cam_rows[0] == cam or cam_rows[0].startswith(cam + "."))
    assert ex.hook_count(model) == 0


def test_layer_table_receptive_fields() -> None:
    """By hand: r_out = r_in + (k - 1) * j_in, j_out = j_in * s (Araujo et al. 2019)."""
    rows = {r.name: r for r in tm.layer_table(create_model("smallcnn", 1, 2), (1, 28, 28))}
    expected = {"features.conv1": (3, 1), "features.pool1": (4, 2), "features.conv2": (8, 2),
                "features.pool2": (10, 4), "features.conv3": (18, 4), "features.relu3": (18, 4)}
    for name, (rf, jump) in expected.items():
        assert rows[name].rf == (rf, rf) and rows[name].jump == (jump, jump), name
    assert rows["pool"].rf is None and rows["classifier.4"].rf is None  # global pooling sees everything
    # ResNet-18: 7x7/2 stem, 3x3/2 max-pool, 8 basic blocks -> the well-known 435 px at layer4
    r18 = {r.name: r for r in tm.layer_table(create_model("resnet18", 1, 2), (1, 224, 224))}
    assert r18["conv1"].rf == (7, 7) and r18["maxpool"].rf == (11, 11)
    assert r18["layer4.1"].rf == (435, 435) and r18["layer4.1"].jump == (32, 32)


def test_layer_table_of_predictor_uses_its_spec(tiny_predictor) -> None:
    table = tm.layer_table(tiny_predictor)
    assert table[0].out_shape == (1, 64, 64)
    assert [r.name for r in table if r.is_cam] == ["features.conv3"]
    assert ex.hook_count(tiny_predictor.model) == 0
    with pytest.raises(ex.ExplainError, match="input_shape"):
        tm.layer_table(create_model("smallcnn", 1, 2))
    with pytest.raises(ex.ExplainError, match="cannot run"):
        tm.layer_table(create_model("smallcnn", 1, 2), (1, 1, 1))


def test_stage_layers_one_per_resolution() -> None:
    table = tm.layer_table(create_model("resnet10_small", 1, 2), (1, 28, 28), cam_layer="layer4")
    stages = tm.stage_layers(table)
    assert [s.name for s in stages] == ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    assert [s.spatial for s in stages] == [(28, 28), (14, 14), (7, 7), (4, 4)]
    small = tm.stage_layers(tm.layer_table(create_model("smallcnn", 1, 2), (1, 28, 28), cam_layer="features.conv3"))
    assert [s.name for s in small] == ["features.relu1", "features.relu2", "features.conv3"]


def test_stage_cams(tiny_predictor, tiny_images) -> None:
    pre = make_pre(tiny_images[1], tiny_predictor.spec.preprocess)
    stages = tm.stage_cams(tiny_predictor, pre, target=1)
    assert [s.grid for s in stages] == [(64, 64), (32, 32), (16, 16)]
    last = ex.cam(tiny_predictor, pre, target=1)
    np.testing.assert_allclose(stages[-1].heatmap, last.heatmap, atol=1e-6)  # the Analyze page's map
    for s in stages:
        assert s.heatmap.shape == (64, 64) and s.cells.shape == s.grid
        assert s.cells.min() >= 0 and s.cells.max() <= 1 and s.target_label == "pneumonia"
    assert ex.hook_count(tiny_predictor.model) == 0


# --------------------------------------------------------------------------------------------------------------
# Occlusion


def test_occlusion_shape_and_validation(tiny_predictor, tiny_images) -> None:
    pre = make_pre(tiny_images[0], tiny_predictor.spec.preprocess)
    occ = ex.occlusion(tiny_predictor, pre, target=1, patch=16, stride=12)
    assert occ.shape == (64, 64) and occ.dtype == np.float32
    assert np.isfinite(occ).all() and occ.min() >= -1 and occ.max() <= 1
    with pytest.raises(ex.ExplainError, match="patch"):
        ex.occlusion(tiny_predictor, pre, patch=0)
    with pytest.raises(ex.ExplainError, match="patch"):
        ex.occlusion(tiny_predictor, pre, patch=65)


def test_occlusion_reports_progress(tiny_predictor, tiny_images) -> None:
    pre = make_pre(tiny_images[0], tiny_predictor.spec.preprocess)
    seen: list[tuple[int, int]] = []
    tm.occlusion(tiny_predictor, pre, patch=16, stride=16, batch_size=5, progress=lambda d, t: seen.append((d, t)))
    assert [t for _, t in seen] == [16] * 4  # 4 x 4 patches, 4 batches
    assert [d for d, _ in seen] == [5, 10, 15, 16]


def test_occlusion_finds_the_planted_square(planted) -> None:
    """Hiding the square lowers p(square) most: the occlusion peak lies in the square."""
    hits = []
    for pre, box in planted.positives(8):
        occ = ex.occlusion(planted.predictor, pre, target="square", patch=6, stride=3)
        hits.append(in_box(np.unravel_index(np.argmax(occ), occ.shape), box, side=8))
        assert occ.max() > 0.05
    assert np.mean(hits) >= 0.75, hits


def _most_salient_patch(heat: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left corner of the side x side window with the largest summed saliency."""
    s = np.pad(np.cumsum(np.cumsum(heat, 0), 1), ((1, 0), (1, 0)))
    sums = s[side:, side:] - s[:-side, side:] - s[side:, :-side] + s[:-side, :-side]
    r, c = np.unravel_index(np.argmax(sums), sums.shape)
    return int(r), int(c)


def test_covering_the_most_salient_patch_lowers_p_more_than_a_random_patch(planted) -> None:
    """The Grad-CAM-most-salient patch, covered, costs p(square) more than random patches of the same size."""
    rng = np.random.default_rng(5)
    side = PLANT_SIDE
    margins = []
    for pre, _box in planted.positives(8):
        p0 = planted.predictor.predict_proba(pre.model_input[None])[0, 1]
        heat = ex.cam(planted.predictor, pre, target="square").heatmap
        r, c = _most_salient_patch(heat, side)
        salient = p0 - tm.occlude(planted.predictor, pre, (r, c, r + side, c + side))[1]
        n = pre.model_input.shape[1] - side + 1
        rand = [p0 - tm.occlude(planted.predictor, pre, (rr, cc, rr + side, cc + side))[1]
                for rr, cc in rng.integers(0, n, (20, 2))]
        margins.append(salient - float(np.mean(rand)))
    assert np.mean(np.asarray(margins) > 0) >= 7 / 8, margins
    assert float(np.mean(margins)) > 0.1, margins


def test_occlude_box(tiny_predictor, tiny_images) -> None:
    pre = make_pre(tiny_images[2], tiny_predictor.spec.preprocess)
    before = pre.model_input.copy()
    p_all = tm.occlude(tiny_predictor, pre, (-5, -5, 100, 100))  # clipped to the whole input
    flat = np.zeros_like(pre.model_input)
    np.testing.assert_allclose(p_all, tiny_predictor.predict_proba(flat[None])[0], atol=1e-7)
    np.testing.assert_array_equal(pre.model_input, before)  # not modified
    assert abs(p_all.sum() - 1) < 1e-9
    with pytest.raises(ex.ExplainError, match="empty"):
        tm.occlude(tiny_predictor, pre, (10, 10, 10, 20))


# --------------------------------------------------------------------------------------------------------------
# Preprocessing what-ifs


def test_what_if_unchanged_reproduces_the_predictor(tiny_predictor, chest_like) -> None:
    wi = tm.what_if(tiny_predictor, chest_like)
    ref = tiny_predictor.predict(chest_like, tta=False)
    np.testing.assert_allclose(wi.probs, ref.probs, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(wi.model_input, ref.preprocessed.model_input)
    assert wi.label == ref.label and wi.size == (64, 64) and wi.name == "as trained"


def test_what_if_unchanged_reproduces_the_shipped_predictor(chest_like) -> None:
    """With the shipped PneumoniaMNIST model (test-time augmentation on): the same calibrated probabilities."""
    from medimg import WEIGHTS_DIR
    from medimg.predict import Predictor

    spec = WEIGHTS_DIR / "pneumoniamnist_mobilenet_v2_224.json"
    if not spec.exists():
        pytest.skip("shipped weights not present")
    pred = Predictor.from_spec(spec, device="cpu")
    ref = pred.predict(chest_like)
    wi = tm.what_if(pred, chest_like)
    np.testing.assert_allclose(wi.probs, ref.probs, atol=1e-5)
    assert wi.label_index == ref.label_index


def test_what_if_changes(tiny_predictor, chest_like) -> None:
    base = tm.what_if(tiny_predictor, chest_like)
    raw = tm.what_if(tiny_predictor, chest_like, normalise=False)
    np.testing.assert_array_equal(raw.model_input, base.pixels.transpose(2, 0, 1))
    assert not raw.normalised and "no normalisation" in raw.description
    big = tm.what_if(tiny_predictor, chest_like, input_size=96)
    assert big.size == (96, 96) and big.model_input.shape == (1, 96, 96) and abs(big.probs.sum() - 1) < 1e-9
    pad = tm.what_if(tiny_predictor, chest_like, geometry="pad")
    assert pad.pixels[0].max() == 0  # the top rows are the zero padding of a wide image
    assert not np.array_equal(pad.pixels, base.pixels)
    narrow = tm.what_if(tiny_predictor, chest_like, window=Window(center=128, width=40, name="narrow"))
    assert (narrow.pixels == 0).mean() > (base.pixels == 0).mean()  # a narrow window clips more to black
    with pytest.raises(ex.ExplainError, match="outside"):
        tm.what_if(tiny_predictor, chest_like, input_size=4)
    with pytest.raises(SpecError):
        tm.what_if(tiny_predictor, chest_like, geometry="warp")


# --------------------------------------------------------------------------------------------------------------
# Slide images and teaching figures


def test_slide_images(tiny_predictor, chest_like) -> None:
    files = tm.slide_images(tiny_predictor, chest_like, channels=4)
    assert {"input.png", "filters.png", "cam_stages.png", "layers.csv"} <= set(files)
    stages = [n for n in files if n.startswith("cam_") and n != "cam_stages.png"]
    maps = [n for n in files if n.startswith("feature_maps_")]
    assert len(stages) == len(maps) == 3
    for name, data in files.items():
        if name.endswith(".png"):
            im = Image.open(io.BytesIO(data))
            assert im.format == "PNG" and min(im.size) > 0
    inp = np.asarray(Image.open(io.BytesIO(files["input.png"])))
    assert inp.shape[0] % 64 == 0 and inp.shape[0] >= 336  # whole-pixel blocks of the 64 x 64 input
    csv = files["layers.csv"].decode().splitlines()
    assert csv[0].startswith("layer,type,output") and any(line.endswith(",1") for line in csv[1:])
    assert ex.hook_count(tiny_predictor.model) == 0


def test_enlarge_nearest_keeps_real_pixels() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 11
    big = vt.enlarge_nearest(x, min_side=40)
    assert big.shape == (30, 40) and big.dtype == np.uint8
    np.testing.assert_array_equal(big[::10, ::10], vt.enlarge_nearest(x, min_side=1))
    assert len(np.unique(big[:10, :10])) == 1  # a block is one pixel, not a blend


def test_teaching_figures() -> None:
    rng = np.random.default_rng(0)
    assert isinstance(vt.filter_grid_figure(rng.normal(size=(16, 3, 3))), go.Figure)
    fm = vt.feature_maps_figure(rng.random((8, 5, 5)), [3, 1])
    assert fm.data[0].z.shape == (5, 11)  # two 5 x 5 tiles and a 1-pixel gap
    stages = vt.cam_stages_figure(rng.random((28, 28)), [("a", rng.random((28, 28))), ("b", rng.random((7, 7)))])
    heat = [t for t in stages.data if t.opacity is not None and t.opacity < 1]
    assert [h.z.shape for h in heat] == [(28, 28), (7, 7)] and heat[1].dx == 4
    curves = vt.lab_curves_figure([{"epoch": 1, "train_loss": 0.6, "val_loss": 0.5, "train_accuracy": 0.7,
                                    "val_accuracy": 0.75}])
    assert {t.name for t in curves.data} == {"training loss", "validation loss", "training accuracy",
                                             "validation accuracy"}
