"""Display at screen size: block-reduced before windowing, never a full-size display copy."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.io.image import MedicalImage, Window, apply_window, block_mean


def _img(pixels: np.ndarray) -> MedicalImage:
    return MedicalImage(pixels=pixels.astype(np.float32), format="png", photometric="MONOCHROME2",
                        windows=(Window(500.0, 1000.0, "w", "LINEAR"),), units="16-bit")


@pytest.mark.parametrize("shape,k", [((10, 7), 3), ((9, 9), 3), ((5, 12, 3), 4), ((8, 8), 1)])
def test_block_mean_equals_the_mean_of_each_block(shape: tuple[int, ...], k: int) -> None:
    x = np.random.default_rng(1).uniform(0, 100, shape).astype(np.float32)
    out = block_mean(x, k, strip_values=17)  # tiny strips: the strip loop is exercised
    assert out.shape[:2] == (-(-shape[0] // k), -(-shape[1] // k)) and out.dtype == np.float32
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            np.testing.assert_allclose(out[i, j], x[i * k : (i + 1) * k, j * k : (j + 1) * k].mean(axis=(0, 1)),
                                       rtol=1e-5)


def test_display_max_side_reduces_before_windowing() -> None:
    px = np.random.default_rng(2).uniform(0, 1000, (300, 200)).astype(np.float32)
    img = _img(px)
    assert img.display_step(None) == 1 and img.display_step(128) == 3
    small = img.display(max_side=128)
    assert small.shape == (100, 67) and small.dtype == np.float32 and 0 <= small.min() and small.max() <= 1
    np.testing.assert_allclose(small, apply_window(block_mean(px, 3), img.default_window), rtol=1e-6)
    np.testing.assert_array_equal(img.display(max_side=300), img.display())


def test_viewer_renders_at_screen_size_with_overlays_subsampled() -> None:
    from medimg.io.image import Overlay
    from medimg.ui.viewer import ViewerSettings, render

    px = np.zeros((2048, 1024), np.float32)
    mask = np.zeros((2048, 1024), bool)
    mask[1000:1010, 500:510] = True
    img = _img(px)
    img = MedicalImage(**{**img.__dict__, "overlays": (Overlay(group=0x6000, mask=mask),)})
    rgb = render(img, ViewerSettings(window=img.default_window, invert=False, overlays=True), max_side=512)
    assert rgb.shape == (512, 256, 3) and rgb.dtype == np.uint8
    assert rgb[:, :, 0].max() > 0 and np.argwhere(rgb.any(axis=2))[0][0] == 250


def test_one_frame_limit_for_every_format() -> None:
    """MAX_FRAMES has one value: the DICOM reader uses the raster limit itself."""
    from medimg.io import dicom, raster
    from medimg.io.dicom import reading

    assert reading.MAX_FRAMES is raster.MAX_FRAMES and dicom.MAX_FRAMES == raster.MAX_FRAMES
