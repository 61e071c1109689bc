"""CAM maps: shapes, dtypes, ranges, scaling, targets, the map back onto the original image, overlays, purity."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from explain_helpers import make_pre
from PIL import Image
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

from medimg import explain as ex
from medimg.catalog import image_from_array
from medimg.errors import MedimgError, ModelInputError, SpecError
from medimg.predict import Predictor
from medimg.preprocess import run as preprocess_run
from medimg.spec import PreprocessConfig

GRADIENT_METHODS = ["gradcam", "hirescam", "gradcam++", "xgradcam", "layercam"]


def test_methods_listed() -> None:
    assert {"gradcam", "hirescam", "gradcam++", "xgradcam", "layercam", "eigencam", "scorecam"} <= set(ex.METHODS)
    assert ex.method_name("Grad-CAM++") == "gradcam++"
    assert ex.method_name("HiResCAM") == "hirescam"
    with pytest.raises(ex.ExplainError, match="Unknown CAM method"):
        ex.method_name("smoothgrad")
    assert issubclass(ex.ExplainError, MedimgError)


@pytest.mark.parametrize("method", list(ex.METHODS))
def test_shape_dtype_range(tiny_predictor, tiny_images, method: str) -> None:
    pre = make_pre(tiny_images[0], tiny_predictor.spec.preprocess)
    r = ex.cam(tiny_predictor, pre, method=method)
    h = r.heatmap
    assert h.shape == (64, 64) and h.dtype == np.float32
    assert np.isfinite(h).all() and h.min() == 0.0
    # an empty map (no positive evidence; possible on this untrained model) stays all zero and says so
    assert h.max() == (0.0 if r.empty else pytest.approx(1.0))
    assert not h.flags.writeable
    assert r.method == method and r.scale == "relative" and r.layer == "features.conv3" and r.grid == (16, 16)
    probs = tiny_predictor.predict_proba(pre.model_input[None])[0]
    assert r.target_index == tiny_predictor.decide(probs)
    assert r.target_label == tiny_predictor.spec.labels[r.target_index]
    assert r.target_probability == pytest.approx(probs[r.target_index], abs=1e-5)


@pytest.mark.parametrize("method,cls", [("gradcam", GradCAM), ("hirescam", HiResCAM), ("gradcam++", GradCAMPlusPlus),
                                        ("xgradcam", XGradCAM), ("layercam", LayerCAM)])
def test_matches_pytorch_grad_cam(tiny_predictor, tiny_images, method: str, cls) -> None:
    """Our replica pipeline gives the library's own relative map (library run on a private copy)."""
    model = copy.deepcopy(tiny_predictor.model)
    for img, target in zip(tiny_images[:3], (0, 1, 1), strict=True):
        pre = make_pre(img, tiny_predictor.spec.preprocess)
        with cls(model=model, target_layers=[model.features.conv3]) as c:
            ref = c(torch.from_numpy(pre.model_input[None]), [ClassifierOutputTarget(target)])[0]
        ours = ex.cam(tiny_predictor, pre, target=target, method=method).heatmap
        np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_eigencam_is_the_first_principal_component() -> None:
    """Our Eigen-CAM projection equals the library's SVD projection up to its arbitrary sign."""
    from medimg.explain.maps import METHODS

    acts = np.random.default_rng(0).random((3, 16, 8, 8)).astype(np.float32)
    lib = get_2d_projection(acts)
    ours = METHODS["eigencam"].get_cam_image(None, None, None, None, acts, None, False)
    for a, b in zip(lib, ours, strict=True):
        assert min(np.abs(a - b).max(), np.abs(a + b).max()) < 1e-4
        assert abs(b.max()) >= abs(b.min())  # sign fixed: the largest magnitude is positive


def test_relative_and_global_scale(tiny_predictor, tiny_images) -> None:
    pre = make_pre(tiny_images[1], tiny_predictor.spec.preprocess)
    rel = ex.cam(tiny_predictor, pre)
    assert rel.raw_max > 0 and rel.vmax is None
    g1 = ex.cam(tiny_predictor, pre, scale="global", vmax=rel.raw_max)
    g2 = ex.cam(tiny_predictor, pre, scale="global", vmax=2 * rel.raw_max)
    assert g1.heatmap.max() == pytest.approx(1.0, abs=1e-5) and g1.vmax == rel.raw_max
    np.testing.assert_allclose(g2.heatmap, g1.heatmap / 2, atol=1e-6)
    assert g1.heatmap.min() >= 0
    with pytest.raises(ex.ExplainError, match="vmax"):
        ex.cam(tiny_predictor, pre, scale="global")
    with pytest.raises(ex.ExplainError, match="scale"):
        ex.cam(tiny_predictor, pre, scale="absolute")
    x = np.stack([make_pre(i, tiny_predictor.spec.preprocess).model_input for i in tiny_images[:4]])
    v = ex.global_vmax(tiny_predictor, x)
    assert v > 0
    gb = ex.cam_batch(tiny_predictor, x, scale="global", vmax=v)
    assert gb.min() >= 0 and gb.max() <= 1


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_constant_map_is_zero_not_nan(tiny_predictor, tiny_images, method: str) -> None:
    """A network whose logits ignore the CAM layer (zero last weights): all-zero gradients -> all-zero map."""
    model = copy.deepcopy(tiny_predictor.model)
    with torch.no_grad():
        model.classifier[-1].weight.zero_()
    pred = Predictor(model, tiny_predictor.spec, device="cpu")
    h = ex.cam(pred, make_pre(tiny_images[0], pred.spec.preprocess), method=method).heatmap
    assert np.isfinite(h).all() and not h.any()


def test_constant_raw_map_scales_to_zero() -> None:
    from medimg.explain.maps import _scale

    raw = np.stack([np.full((8, 8), 0.5, np.float32), np.zeros((8, 8), np.float32)])
    out = _scale(raw, "relative", None)
    assert np.isfinite(out).all() and not out.any()


def test_targets(tiny_predictor, tiny_images) -> None:
    pre = make_pre(tiny_images[2], tiny_predictor.spec.preprocess)
    a = ex.cam(tiny_predictor, pre, target="pneumonia")
    b = ex.cam(tiny_predictor, pre, target=1)
    c = ex.cam(tiny_predictor, pre, target=0)
    assert a.target_index == 1 and a.target_label == "pneumonia"
    np.testing.assert_array_equal(a.heatmap, b.heatmap)
    assert not np.allclose(b.heatmap, c.heatmap)
    with pytest.raises(ex.ExplainError, match="out of range"):
        ex.cam(tiny_predictor, pre, target=2)
    with pytest.raises(ex.ExplainError, match="Unknown class"):
        ex.cam(tiny_predictor, pre, target="cat")


def test_deterministic_and_batch_equals_single(tiny_predictor, tiny_images) -> None:
    cfg = tiny_predictor.spec.preprocess
    pres = [make_pre(i, cfg) for i in tiny_images[:5]]
    for method in ("gradcam", "eigencam"):
        first = [ex.cam(tiny_predictor, p, method=method).heatmap for p in pres]
        again = [ex.cam(tiny_predictor, p, method=method).heatmap for p in pres]
        for a, b in zip(first, again, strict=True):
            np.testing.assert_array_equal(a, b)
        batch = ex.cam_batch(tiny_predictor, np.stack([p.model_input for p in pres]), method=method)
        assert batch.shape == (5, 64, 64) and batch.dtype == np.float32
        np.testing.assert_allclose(batch, np.stack(first), atol=1e-4)
    targets = [0, 1, None, 1, 0]
    batch = ex.cam_batch(tiny_predictor, torch.from_numpy(np.stack([p.model_input for p in pres])), targets,
                         batch_size=2)
    for p, t, m in zip(pres, targets, batch, strict=True):
        np.testing.assert_allclose(m, ex.cam(tiny_predictor, p, target=t).heatmap, atol=1e-4)
    with pytest.raises(ex.ExplainError, match="targets"):
        ex.cam_batch(tiny_predictor, np.stack([p.model_input for p in pres]), [0, 1])
    assert ex.cam_batch(tiny_predictor, np.zeros((0, 1, 64, 64), np.float32)).shape == (0, 64, 64)


def test_bad_inputs_and_layers(tiny_predictor, tiny_images) -> None:
    pre = make_pre(tiny_images[0], tiny_predictor.spec.preprocess)
    with pytest.raises(ModelInputError):
        ex.cam(tiny_predictor, np.zeros((1, 32, 32), np.float32))
    bad = pre.model_input.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ModelInputError):
        ex.cam(tiny_predictor, bad)
    with pytest.raises(SpecError, match="features.nope"):
        ex.cam(tiny_predictor, pre, layer="features.nope")
    broken = Predictor(tiny_predictor.model, tiny_predictor.spec.replace(cam_layer="head.fc"), device="cpu")
    with pytest.raises(SpecError, match="cam_layer"):
        ex.cam(broken, pre)
    # another layer by name (teaching: CAM at an earlier block)
    r = ex.cam(tiny_predictor, pre, layer="features.conv2")
    assert r.layer == "features.conv2" and r.heatmap.shape == (64, 64)
    assert ex.hook_count(tiny_predictor.model) == 0


def _blob_image(shape: tuple[int, int], peak: tuple[int, int]) -> np.ndarray:
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]]
    return 255.0 * np.exp(-((rr - peak[0]) ** 2 + (cc - peak[1]) ** 2) / (2 * 3.0**2))


@pytest.mark.parametrize("geometry", ["stretch", "pad", "crop"])
@pytest.mark.parametrize("shape,peak", [((120, 70), (80, 40)), ((70, 120), (30, 75)), ((50, 50), (20, 30))])
def test_heatmap_original_inverts_geometry(geometry: str, shape, peak) -> None:
    """A peak in the original image, carried to the model input by preprocess.run, comes back to its place."""
    cfg = PreprocessConfig(input_size=(64, 64), geometry=geometry)
    pre = preprocess_run(image_from_array(_blob_image(shape, peak)), cfg)
    heat = pre.image[..., 0] / pre.image.max()
    r = ex.CamResult(heatmap=heat, method="gradcam", target_index=0, target_label="a", target_probability=0.5,
                     scale="relative", layer="x", input_size=(64, 64), geometry=geometry, raw_max=1.0)
    back = r.heatmap_original(shape)
    assert back.shape == shape and back.dtype == np.float32
    assert back.min() >= 0 and back.max() <= 1
    got = np.unravel_index(np.argmax(back), shape)
    assert abs(got[0] - peak[0]) <= 2 and abs(got[1] - peak[1]) <= 2, (got, peak)
    if geometry == "crop" and shape[0] != shape[1]:
        # margins the network never saw carry no heat
        if shape[0] > shape[1]:
            assert not back[:10].any() and not back[-10:].any()
        else:
            assert not back[:, :10].any() and not back[:, -10:].any()
    # round trip: the map, put back through the same geometry step, is the map again
    again = preprocess_run(image_from_array(back * 255.0), cfg).image[..., 0]
    assert np.corrcoef(again.ravel(), heat.ravel())[0, 1] > 0.98


def test_heatmap_original_unknown_geometry() -> None:
    with pytest.raises(ex.ExplainError, match="geometry"):
        ex.to_original(np.zeros((8, 8), np.float32), (10, 10), (8, 8), "rotate")


def test_overlay() -> None:
    rng = np.random.default_rng(0)
    gray = rng.random((20, 30)).astype(np.float32)
    heat = rng.random((20, 30)).astype(np.float32)
    for display in (gray, gray[..., None], np.repeat(gray[..., None], 3, axis=2)):
        out = ex.overlay(display, heat, alpha=0.4)
        assert out.shape == (20, 30, 3) and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(ex.overlay(gray, heat, alpha=0.0), np.repeat(gray[..., None], 3, 2), atol=1e-6)
    lut = ex.colormap_lut("jet")
    assert lut.shape == (256, 3) and lut.dtype == np.float32
    np.testing.assert_allclose(ex.overlay(gray, np.zeros_like(heat), alpha=1.0), np.broadcast_to(lut[0], (20, 30, 3)))
    assert ex.overlay(gray, heat, 0.5, colormap="inferno").shape == (20, 30, 3)
    with pytest.raises(ex.ExplainError, match="differ in size"):
        ex.overlay(gray, heat[:10], 0.4)
    with pytest.raises(ex.ExplainError, match="alpha"):
        ex.overlay(gray, heat, 1.5)
    with pytest.raises(ex.ExplainError, match="colormap"):
        ex.overlay(gray, heat, 0.4, colormap="no-such-map")
    with pytest.raises(ex.ExplainError):
        ex.overlay(np.zeros((20, 30, 4), np.float32), heat, 0.4)


def test_inputs_not_mutated(tiny_predictor, tiny_images) -> None:
    pre = make_pre(tiny_images[3], tiny_predictor.spec.preprocess)
    mi, im = pre.model_input.copy(), pre.image.copy()
    r = ex.cam(tiny_predictor, pre)
    heat_before = r.heatmap.copy()
    x = np.stack([pre.model_input, pre.model_input])
    x0 = x.copy()
    ex.cam_batch(tiny_predictor, x)
    display = np.random.default_rng(1).random((100, 80)).astype(np.float32)
    d0 = display.copy()
    ex.overlay(display, r.heatmap_original(display.shape), 0.5)
    ex.feature_maps(tiny_predictor, pre, "features.conv1")
    ex.occlusion(tiny_predictor, pre, patch=16, stride=16)
    ex.deletion_insertion(tiny_predictor, pre, r, steps=4)
    np.testing.assert_array_equal(pre.model_input, mi)
    np.testing.assert_array_equal(pre.image, im)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(display, d0)
    np.testing.assert_array_equal(r.heatmap, heat_before)


def test_cli_explain(tiny_spec_path, tmp_path, capsys) -> None:
    from medimg.cli import main

    rng = np.random.default_rng(3)
    src = tmp_path / "scan.png"
    Image.fromarray((rng.random((90, 70)) * 255).astype(np.uint8)).save(src)
    out = tmp_path / "cam.png"
    assert main(["explain", "--model", str(tiny_spec_path), "--device", "cpu", "--method", "Grad-CAM++",
                 "--out", str(out), str(src)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["method"] == "gradcam++" and info["scale"] == "relative"
    with Image.open(out) as im:
        assert im.size == (70, 90) and im.mode == "RGB"
    assert main(["explain", "--model", str(tiny_spec_path), "--device", "cpu", "--method", "nope",
                 "--out", str(out), str(src)]) == 2
