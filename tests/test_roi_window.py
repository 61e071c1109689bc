"""The foreground region of interest and the HU model window of the preprocessing contract (head CT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimg.errors import PreprocessError, SpecError
from medimg.io.image import MedicalImage, Window
from medimg.preprocess import FOREGROUND_LEVEL, Geometry, foreground_box, run
from medimg.spec import ModelSpec, PreprocessConfig, parse_hu_window

W8 = Window(127.5, 255.0, "stored range", "LINEAR_EXACT")


def _ct_slice(rows: int = 256, cols: int = 256) -> np.ndarray:
    """A synthetic axial CT slice in HU: air, an elliptical head (skull 1000 HU, brain 35 HU, a 70 HU bleed),
    and a thin bright head-rest arc below it that touches nothing."""
    rr, cc = np.mgrid[0:rows, 0:cols].astype(np.float32)
    hu = np.full((rows, cols), -1000.0, np.float32)
    head = ((rr - 110) / 70) ** 2 + ((cc - 120) / 55) ** 2
    hu[head <= 1.0] = 1000.0
    hu[head <= 0.85] = 35.0
    hu[((rr - 100) / 12) ** 2 + ((cc - 140) / 12) ** 2 <= 1] = 70.0
    arc = np.abs(np.hypot(rr - 60, cc - 120) - 180) < 1.5
    hu[arc & (rr > 200)] = 300.0
    return hu


def _ct(hu: np.ndarray) -> MedicalImage:
    return MedicalImage(pixels=hu, format="dicom", units="HU",
                        windows=(Window(30.0, 300.0, "header 1", "LINEAR"),))


def _cfg(**kw) -> PreprocessConfig:
    base = dict(input_size=(64, 64), in_chans=1, mean=(0.5,), std=(0.25,), geometry="pad")
    base.update(kw)
    return PreprocessConfig(**base)


def test_foreground_box_finds_the_head_not_the_head_rest() -> None:
    hu = _ct_slice()
    shown = np.clip((hu - 0.0) / 80.0, 0, 1)  # brain window 40/80
    box = foreground_box(shown)
    assert box is not None and all(isinstance(v, int) for v in box)
    r0, r1, c0, c1 = box
    # the head spans rows 40-180, columns 65-175; the margin is 3 % of 141 px (4 px); the arc (rows > 200) is out
    assert 34 <= r0 <= 40 and 180 <= r1 <= 186 and 59 <= c0 <= 65 and 175 <= c1 <= 181
    # a preview taken every 2nd pixel gives the same box to within the stride
    half = foreground_box(shown[::2, ::2], stride=2, shape=shown.shape)
    assert half is not None and np.max(np.abs(np.subtract(half, box))) <= 4


def test_foreground_box_is_none_when_nothing_is_large_enough() -> None:
    assert foreground_box(np.zeros((100, 100), np.float32)) is None
    speck = np.zeros((100, 100), np.float32)
    speck[50:53, 50:53] = 1.0  # 9 px < 2 % of the image, and removed by the opening anyway
    assert foreground_box(speck) is None
    dim = np.full((100, 100), FOREGROUND_LEVEL * 0.9, np.float32)
    assert foreground_box(dim) is None


def test_hu_window_for_ct_and_default_window_for_an_8bit_export() -> None:
    cfg = _cfg(window="HU 40/80")
    ct = run(_ct(_ct_slice()), cfg)
    assert "40/80 HU" in ct.steps[0].description and "center 40, width 80" in ct.steps[0].description
    png = MedicalImage(pixels=np.clip(_ct_slice() / 4 + 128, 0, 255), format="png", windows=(W8,))
    out = run(png, cfg)
    assert out.steps[0].description.startswith("stored range")
    # a window the user feeds replaces the model's
    fed = run(_ct(_ct_slice()), cfg, window=Window(75.0, 215.0, "subdural", "LINEAR"))
    assert fed.steps[0].description.startswith("subdural")


def test_roi_crops_to_the_head_whatever_window_is_fed() -> None:
    hu = _ct_slice()
    cfg = _cfg(window="HU 40/80", roi="foreground")
    pre = run(_ct(hu), cfg)
    box = pre.geometry.box
    assert box is not None and box == foreground_box(np.clip(hu / 80.0, 0, 1))
    assert "foreground box" in pre.steps[2].description
    # the box is found through the model's window: feeding the bone window does not move it
    bone = run(_ct(hu), cfg, window=Window(600.0, 2800.0, "bone (head)", "LINEAR"))
    assert bone.geometry.box == box
    # the network sees what a run on the cut-out image sees
    r0, r1, c0, c1 = box
    cut = run(_ct(np.ascontiguousarray(hu[r0:r1, c0:c1])), _cfg(window="HU 40/80"))
    np.testing.assert_allclose(pre.image, cut.image, atol=1e-5)
    # no ROI: the whole image, air and head rest included
    whole = run(_ct(hu), _cfg(window="HU 40/80"))
    assert whole.geometry.box is None and not np.allclose(whole.image, pre.image, atol=0.05)


def test_roi_geometry_inverse_is_zero_outside_the_box() -> None:
    g = Geometry((120, 100), (32, 32), "pad", box=(10, 90, 20, 70))
    assert g.region == (80, 50) and g.canvas == (80, 80)
    back = g.inverse(np.ones((32, 32), np.float32))
    assert back.shape == (120, 100)
    assert np.all(back[:10] == 0) and np.all(back[90:] == 0) and np.all(back[:, :20] == 0) and np.all(back[:, 70:] == 0)
    np.testing.assert_allclose(back[20:80, 30:60], 1.0, atol=1e-5)
    with pytest.raises(PreprocessError):
        Geometry((120, 100), (32, 32), "pad", box=(10, 130, 20, 70))
    with pytest.raises(PreprocessError):
        Geometry((120, 100), (32, 32), "pad", box=(50, 50, 20, 70))


def test_cam_result_maps_back_into_the_box() -> None:
    from medimg.explain import to_original

    h = np.random.default_rng(3).uniform(0.2, 1, (32, 32)).astype(np.float32)
    roi = (10 / 120, 90 / 120, 20 / 100, 70 / 100)
    np.testing.assert_array_equal(to_original(h, (120, 100), (32, 32), "pad", roi),
                                  Geometry((120, 100), (32, 32), "pad", box=(10, 90, 20, 70)).inverse(h))
    # on a display grid twice the size the box scales with it
    big = to_original(h, (240, 200), (32, 32), "pad", roi)
    assert np.all(big[:20] == 0) and np.all(big[180:] == 0) and big[20:180, 40:140].min() > 0


def test_spec_window_and_roi_are_validated_and_round_trip() -> None:
    assert parse_hu_window("HU 40/80") == (40.0, 80.0) and parse_hu_window("default") is None
    assert parse_hu_window("HU -600/1500") == (-600.0, 1500.0)
    for bad in ("HU 40", "HU a/b", "HU 40/0.5", "brain"):
        with pytest.raises(SpecError):
            _cfg(window=bad)
    with pytest.raises(SpecError):
        _cfg(roi="head")
    spec = ModelSpec(name="t", title="t", architecture="smallcnn", labels=("a", "b"),
                     preprocess=_cfg(window="HU 40/80", roi="foreground"))
    back = ModelSpec.from_dict(spec.to_dict())
    assert back.preprocess.window == "HU 40/80" and back.preprocess.roi == "foreground"
    old = spec.to_dict()
    del old["preprocess"]["roi"]  # a spec written before the field existed
    assert ModelSpec.from_dict(old).preprocess.roi == "none"


def test_head_ct_task_uses_the_brain_window_and_the_head_box() -> None:
    from medimg.training.tasks import preprocess_config

    cfg = preprocess_config("head-ct", 224)
    assert cfg.window == "HU 40/80" and cfg.roi == "foreground" and cfg.geometry == "pad"
    assert preprocess_config("kermany-cxr", 224).roi == "none"


def test_real_head_ct_series_is_cut_to_the_head(shared_data: Path) -> None:
    """The real CQ500 slices (512 x 512 with air and a head rest) are cut to the head; a training PNG (already cut
    tightly by its author) keeps nearly all of itself."""
    from medimg.io import load_image
    from medimg.training.tasks import preprocess_config

    cfg = preprocess_config("head-ct", 64)
    files = sorted((shared_data / "dicom" / "head-ct").rglob("*.dcm"))
    assert files
    mid = run(load_image(files[len(files) // 2]), cfg)
    r0, r1, c0, c1 = mid.geometry.box
    assert (r1 - r0) * (c1 - c0) < 0.8 * 512 * 512 and r1 - r0 > 200 and c1 - c0 > 200
    png = sorted((shared_data / "head-ct" / "normal").glob("*.png"))[0]
    im = load_image(png)
    box = run(im, cfg).geometry.box
    rows, cols = im.pixels.shape[:2]
    assert box is not None and (box[1] - box[0]) * (box[3] - box[2]) > 0.8 * rows * cols


def test_size_check_measures_the_region_the_model_sees() -> None:
    """A small head in a large field of view is enlarged to the input: the size check reads the box, not the
    image."""
    from medimg.gate import check_image

    spec = ModelSpec(name="t", title="t", architecture="smallcnn", labels=("a", "b"),
                     preprocess=_cfg(input_size=(128, 128), window="HU 40/80", roi="foreground"))
    small = np.full((512, 512), -1000.0, np.float32)
    rr, cc = np.mgrid[0:512, 0:512]
    small[np.hypot(rr - 256, cc - 256) < 50] = 35.0  # a 100 px head (3 % of the image)
    img = _ct(small)
    (size,) = [c for c in check_image(img, run(img, spec.preprocess), spec) if c.name == "size"]
    assert not size.passed and "region the model sees" in size.reason
    large = np.full((512, 512), -1000.0, np.float32)
    large[np.hypot(rr - 256, cc - 256) < 200] = 35.0  # a 400 px head
    big = _ct(large)
    assert not [c for c in check_image(big, run(big, spec.preprocess), spec) if c.name == "size"]


def test_outline_box_draws_the_region_on_a_display_of_any_size() -> None:
    from medimg.ui.widgets import outline_box

    pic = np.zeros((100, 50), np.uint8)  # a display of a 200 x 100 source at half size
    out = outline_box(pic, (20, 120, 10, 60), (200, 100))
    assert out.shape == (100, 50, 3) and pic.max() == 0  # a copy
    lit = out.any(axis=2)
    assert lit[10, 5:30].all() and lit[59, 5:30].all() and lit[10:60, 5].all() and lit[10:60, 29].all()
    assert not lit[11:59, 6:29].any() and not lit[:10].any() and not lit[61:].any()
