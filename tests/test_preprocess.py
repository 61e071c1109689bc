"""Preprocessing: the named steps, geometry on known content, MONOCHROME1, channels, intensity, normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimg.errors import PreprocessError
from medimg.io import load_image
from medimg.io.image import MedicalImage, Window
from medimg.preprocess import MIN_INPUT_SIDE, normalise, run
from medimg.spec import PreprocessConfig

W8 = Window(127.5, 255.0, "stored range", "LINEAR_EXACT")
STEPS = ["window", "channels", "geometry", "intensity", "normalise"]


def _img(pixels: np.ndarray, **kw) -> MedicalImage:
    kw.setdefault("windows", (W8,))
    return MedicalImage(pixels=np.asarray(pixels, np.float32), format="png", **kw)


def _cfg(**kw) -> PreprocessConfig:
    base = dict(input_size=(64, 64), in_chans=1, mean=(0.5,), std=(0.25,))
    base.update(kw)
    return PreprocessConfig(**base)


def test_steps_shapes_dtypes_ranges(rng: np.random.Generator) -> None:
    im = _img(rng.uniform(0, 255, (100, 150)))
    out = run(im, _cfg(input_size=(48, 80)))
    assert [s.name for s in out.steps] == STEPS
    assert all(s.description for s in out.steps)
    assert out.steps[0].image.shape == (100, 150, 1) and out.steps[2].image.shape == (48, 80, 1)
    for s in out.steps[:-1]:
        assert s.image.dtype == np.float32 and 0.0 <= s.image.min() and s.image.max() <= 1.0, s.name
    assert out.image.shape == (48, 80, 1) and out.image.dtype == np.float32
    assert out.model_input.shape == (1, 48, 80) and out.model_input.dtype == np.float32
    assert out.model_input.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out.steps[-1].image, out.model_input.transpose(1, 2, 0))


def test_normalisation_matches_mean_std(rng: np.random.Generator) -> None:
    cfg = _cfg(in_chans=3, mean=(0.1, 0.5, 0.9), std=(0.2, 0.3, 0.4))
    out = run(_img(rng.uniform(0, 255, (64, 64, 3)), photometric="RGB"), cfg)
    expect = (out.image - np.array(cfg.mean, np.float32)) / np.array(cfg.std, np.float32)
    np.testing.assert_allclose(out.model_input, expect.transpose(2, 0, 1), rtol=1e-6)
    np.testing.assert_allclose(normalise(out.image, cfg), out.model_input)


def test_stretch_geometry_keeps_halves() -> None:
    px = np.zeros((32, 64), np.float32)
    px[:, 32:] = 255  # right half white
    out = run(_img(px), _cfg(geometry="stretch")).image[..., 0]
    assert out.shape == (64, 64)
    np.testing.assert_allclose(out[:, :28], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[:, 36:], 1.0, atol=1e-6)


def test_pad_geometry_adds_zero_bands() -> None:
    px = np.full((32, 64), 255.0, np.float32)
    out = run(_img(px), _cfg(geometry="pad")).image[..., 0]
    # 32 x 64 on a 64 x 64 canvas: 16 zero rows above and below, content untouched
    np.testing.assert_array_equal(out[:16], 0.0)
    np.testing.assert_array_equal(out[48:], 0.0)
    np.testing.assert_array_equal(out[16:48], 1.0)
    # tall image: bands left and right; then resized to the input size
    out = run(_img(np.full((100, 50), 255.0)), _cfg(geometry="pad", input_size=(40, 40))).image[..., 0]
    assert out.shape == (40, 40)
    assert out[:, :8].max() < 0.05 and out[:, 32:].max() < 0.05 and out[:, 12:28].min() > 0.99


def test_crop_geometry_keeps_the_centre() -> None:
    px = np.full((32, 64), 255.0, np.float32)
    px[:, 16:48] = 0.0  # the centre square is black, the sides white
    out = run(_img(px), _cfg(geometry="crop")).image[..., 0]
    assert out.shape == (64, 64)
    np.testing.assert_allclose(out, 0.0, atol=1e-6)
    tall = np.zeros((90, 30), np.float32)
    tall[30:60] = 255.0  # only the centre rows are white
    out = run(_img(tall), _cfg(geometry="crop", input_size=(30, 30))).image[..., 0]
    np.testing.assert_allclose(out, 1.0, atol=1e-6)


def test_monochrome1_inverted_in_the_window_step() -> None:
    px = np.tile(np.linspace(0, 1000, 64, dtype=np.float32), (64, 1))
    win = Window(500.0, 1000.0, "header", "LINEAR_EXACT")
    m2 = run(MedicalImage(px, "dicom", "MONOCHROME2", (win,)), _cfg())
    m1 = run(MedicalImage(px, "dicom", "MONOCHROME1", (win,), invert=True), _cfg())
    np.testing.assert_allclose(m1.steps[0].image, 1.0 - m2.steps[0].image, atol=1e-6)
    assert "MONOCHROME1" in m1.steps[0].description and "MONOCHROME1" not in m2.steps[0].description
    np.testing.assert_allclose(m1.image, 1.0 - m2.image, atol=1e-5)
    assert m1.steps[0].image[0, 0, 0] == pytest.approx(1.0)  # low values are white in MONOCHROME1


def test_window_choice(rng: np.random.Generator) -> None:
    px = rng.uniform(-1000, 1000, (64, 64)).astype(np.float32)
    lung = Window(-600.0, 1500.0, "lung", "LINEAR")
    im = MedicalImage(px, "dicom", windows=(lung,), units="HU")
    default = run(im, _cfg())
    assert "lung" in default.steps[0].description
    full = run(im, _cfg(window="full range"))
    np.testing.assert_allclose(full.steps[0].image[..., 0], (px - px.min()) / (px.max() - px.min()), atol=1e-5)
    narrow = run(im, _cfg(), window=Window(0.0, 100.0, "narrow", "LINEAR_EXACT"))
    assert "narrow" in narrow.steps[0].description
    assert not np.allclose(narrow.image, default.image)


def test_rgb_to_gray_luma_and_gray_to_three_channels() -> None:
    red = np.zeros((32, 32, 3), np.float32)
    red[..., 0] = 255
    out = run(_img(red, photometric="RGB"), _cfg(input_size=(32, 32)))
    np.testing.assert_allclose(out.image, 0.299, atol=1e-6)
    assert "luma" in out.steps[1].description
    green = np.zeros((32, 32, 3), np.float32)
    green[..., 1] = 255
    np.testing.assert_allclose(run(_img(green, photometric="RGB"), _cfg(input_size=(32, 32))).image, 0.587, atol=1e-6)
    gray = np.tile(np.linspace(0, 255, 32, dtype=np.float32), (32, 1))
    out3 = run(_img(gray), _cfg(input_size=(32, 32), in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3))
    assert out3.image.shape == (32, 32, 3) and out3.model_input.shape == (3, 32, 32)
    np.testing.assert_array_equal(out3.image[..., 0], out3.image[..., 1])
    np.testing.assert_array_equal(out3.image[..., 0], out3.image[..., 2])


@pytest.mark.parametrize("geometry", ["stretch", "pad", "crop"])
def test_gray_into_colour_model_resizes_once_and_matches_the_gray_model(rng: np.random.Generator,
                                                                        geometry: str) -> None:
    """A grayscale image for a 3-channel model is resized as one channel and then copied: the same input as the
    1-channel path, each channel a separate writable copy; the channels step shows the repetition as a view."""
    gray = rng.uniform(0, 255, (403, 251)).astype(np.float32)
    cfg3 = _cfg(in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3, geometry=geometry)
    out3, out1 = run(_img(gray), cfg3), run(_img(gray), _cfg(geometry=geometry))
    for c in range(3):
        np.testing.assert_allclose(out3.model_input[c], out1.model_input[0], atol=1e-6)
    assert out3.steps[1].image.shape == (403, 251, 3) and "repeated to 3" in out3.steps[1].description
    assert out3.image.flags.writeable and out3.model_input.flags.writeable
    out3.model_input[0] += 1.0  # channels do not alias each other
    assert not np.allclose(out3.model_input[0], out3.model_input[1])


def test_percentile_stretch(rng: np.random.Generator) -> None:
    px = rng.uniform(100, 150, (64, 64)).astype(np.float32)
    px[0, :3] = [0, 255, 255]  # outliers
    out = run(_img(px), _cfg(intensity="percentile"))
    x = out.steps[2].image
    lo, hi = np.percentile(x, [0.5, 99.5])
    np.testing.assert_allclose(out.image, np.clip((x - lo) / (hi - lo), 0, 1), atol=1e-6)
    assert out.image.min() == 0.0 and out.image.max() == 1.0
    # a constant image is left alone (no division by zero)
    flat = run(_img(np.full((64, 64), 80.0)), _cfg(intensity="percentile"))
    assert np.all(np.isfinite(flat.image)) and "skipped" in flat.steps[3].description


def test_equalize_raises_contrast(rng: np.random.Generator) -> None:
    px = (120 + 10 * rng.random((64, 64))).astype(np.float32)  # low contrast
    none = run(_img(px), _cfg())
    eq = run(_img(px), _cfg(intensity="equalize"))
    assert "CLAHE" in eq.steps[3].description
    assert 0.0 <= eq.image.min() and eq.image.max() <= 1.0
    assert eq.image.std() > 3 * none.image.std()


def test_too_small_and_non_finite_images_are_refused() -> None:
    with pytest.raises(PreprocessError, match="pixels"):
        run(_img(np.zeros((MIN_INPUT_SIDE - 1, 200))), _cfg())
    with pytest.raises(PreprocessError):
        run(_img(np.zeros((200, 3))), _cfg())
    px = np.zeros((64, 64), np.float32)
    px[3, 3] = np.nan
    with pytest.raises(PreprocessError, match="non-finite"):
        run(_img(px), _cfg())
    run(_img(np.zeros((MIN_INPUT_SIDE, MIN_INPUT_SIDE))), _cfg())  # the limit itself is accepted


@pytest.mark.parametrize("geometry", ["stretch", "pad", "crop"])
@pytest.mark.parametrize("intensity", ["none", "percentile", "equalize"])
def test_input_not_mutated(rng: np.random.Generator, geometry: str, intensity: str) -> None:
    px = rng.uniform(0, 255, (50, 70, 3)).astype(np.float32)
    im = _img(px.copy(), photometric="RGB")
    run(im, _cfg(geometry=geometry, intensity=intensity))
    np.testing.assert_array_equal(im.pixels, px)


def test_training_data_goes_through_the_same_function(shared_data: Path) -> None:
    from medimg.catalog import read_manifest
    from medimg.training.data import load_manifest_split

    folder = shared_data / "kermany-cxr"
    cfg = _cfg(input_size=(96, 96))
    arrays = load_manifest_split(folder, "test", cfg, limit=3)
    test_paths = {r["path"] for r in read_manifest(folder) if r["split"] == "test"}
    assert len(arrays.ids) == 3 and set(arrays.ids) <= test_paths
    for i, path in enumerate(arrays.ids):
        ref = run(load_image(folder / path), cfg).image.transpose(2, 0, 1)
        np.testing.assert_array_equal(arrays.x[i].numpy(), ref)


# --- the one geometry object: forward and inverse ------------------------------------------------------------

@pytest.mark.parametrize("policy", ["stretch", "pad", "crop"])
@pytest.mark.parametrize("source", [(300, 200), (200, 300), (64, 64), (1000, 997)])
def test_geometry_round_trip(policy: str, source: tuple[int, int]) -> None:
    """forward then inverse gives back a smooth image where the network saw it (and 0 over crop margins);
    a bright block lands at the same place after the round trip."""
    from medimg.preprocess import Geometry

    rows, cols = source
    rr, cc = np.mgrid[0:rows, 0:cols]
    smooth = (0.5 + 0.4 * np.sin(rr / rows * np.pi) * np.cos(cc / cols * np.pi)).astype(np.float32)
    g = Geometry(source, (64, 64), policy)
    back = g.inverse(g.forward(smooth[..., None])[..., 0])
    assert back.shape == source and back.dtype == np.float32
    (r0, c0), (side_r, side_c) = g.offset, g.canvas
    if policy == "crop":
        seen = np.zeros(source, bool)
        seen[r0 : r0 + side_r, c0 : c0 + side_c] = True
        assert np.all(back[~seen] == 0)
    else:
        seen = np.ones(source, bool)
    inner = seen.copy()
    inner[: rows // 10] = inner[-rows // 10 :] = False  # the zero padding blurs into the borders
    inner[:, : cols // 10] = inner[:, -cols // 10 :] = False
    np.testing.assert_allclose(back[inner], smooth[inner], atol=0.03)
    block = np.zeros(source, np.float32)
    br, bc = rows // 2 + rows // 8, cols // 2 - cols // 8
    block[br - rows // 10 : br + rows // 10, bc - cols // 10 : bc + cols // 10] = 1
    peak = np.unravel_index(np.argmax(g.inverse(g.forward(block[..., None])[..., 0])), source)
    assert abs(peak[0] - br) <= rows // 10 and abs(peak[1] - bc) <= cols // 10


def test_geometry_forward_is_the_preprocessing_step_and_refuses_misuse() -> None:
    from medimg.preprocess import Geometry

    img = _img(np.random.default_rng(5).uniform(0, 255, (120, 80)).astype(np.float32))
    cfg = PreprocessConfig(input_size=(32, 32), in_chans=1, mean=(0.5,), std=(0.25,), geometry="pad")
    pre = run(img, cfg)
    g = pre.geometry
    assert g == Geometry((120, 80), (32, 32), "pad") and g.canvas == (120, 120) and g.offset == (0, 20)
    windowed = pre.steps[0].image
    np.testing.assert_array_equal(g.forward(windowed), pre.steps[2].image)
    assert next(s for s in pre.steps if s.name == "geometry").description == g.describe()
    with pytest.raises(PreprocessError):
        g.inverse(np.zeros((16, 16), np.float32))
    with pytest.raises(PreprocessError):
        Geometry((10, 10), (8, 8), "squash")


def test_cam_maps_back_through_the_geometry_inverse() -> None:
    """explain.to_original is the preprocessing geometry's inverse (one definition, not a mirror)."""
    from medimg.explain import to_original
    from medimg.preprocess import Geometry

    h = np.random.default_rng(2).uniform(0, 1, (28, 28)).astype(np.float32)
    for policy in ("stretch", "pad", "crop"):
        np.testing.assert_array_equal(to_original(h, (90, 41), (28, 28), policy),
                                      Geometry((90, 41), (28, 28), policy).inverse(h))
