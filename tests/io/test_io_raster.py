"""Raster pixel formats through Pillow: the channel rule, 16-bit depth, EXIF orientation, frames."""

from __future__ import annotations

import numpy as np
import pytest
from io_helpers import pil_bytes
from PIL import Image

from medimg.io import Window, load_image

EIGHT_BIT = Window(127.5, 255.0, "stored range (0-255)", "LINEAR_EXACT")


def _ramp(rows: int = 32, cols: int = 48) -> np.ndarray:
    return (np.arange(rows * cols).reshape(rows, cols) % 256).astype(np.uint8)


def test_l_8bit_default_window_is_unchanged() -> None:
    arr = _ramp()
    img = load_image(pil_bytes(Image.fromarray(arr, "L"), "PNG"))
    np.testing.assert_array_equal(img.pixels, arr.astype(np.float32))
    assert img.windows == (EIGHT_BIT,)  # the shipped model is trained with exactly this window
    assert img.units == "8-bit" and img.photometric == "MONOCHROME2" and not img.invert


def test_1_bit() -> None:
    arr = (_ramp() > 100)
    img = load_image(pil_bytes(Image.fromarray(arr), "PNG"))
    assert set(np.unique(img.pixels)) == {0.0, 255.0}
    assert img.windows == (EIGHT_BIT,)


def test_16_bit_png_12_bit_ramp_is_not_clipped() -> None:
    ramp = (np.arange(64 * 64) % 4096).astype(np.uint16).reshape(64, 64)
    img = load_image(pil_bytes(Image.fromarray(ramp), "PNG"))
    assert img.units == "16-bit"
    assert float(img.pixels.max()) == 4095.0
    np.testing.assert_array_equal(img.pixels, ramp.astype(np.float32))
    w = img.default_window
    assert w.center == pytest.approx(4095 / 2) and w.width == pytest.approx(4095)
    # a naive convert("L") would saturate everything above 255: most of the ramp
    assert float((img.display() < 1.0).mean()) > 0.9


def test_16_bit_tiff() -> None:
    ramp = (np.arange(32 * 32) * 50).astype(np.uint16).reshape(32, 32)
    img = load_image(pil_bytes(Image.fromarray(ramp), "TIFF"))
    np.testing.assert_array_equal(img.pixels, ramp.astype(np.float32))


def test_palette_gray_and_colour() -> None:
    gray = Image.fromarray(_ramp()).convert("P")
    img = load_image(pil_bytes(gray, "PNG"))
    assert img.pixels.ndim == 2
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8, :, 0] = 255
    rgb[8:, :, 2] = 200
    img = load_image(pil_bytes(Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"))
    assert img.is_color and img.photometric == "RGB"
    assert img.pixels[0, 0].tolist() == [255.0, 0.0, 0.0]


def test_palette_with_transparency_composites_over_black() -> None:
    im = Image.new("P", (8, 8), 1)
    im.putpalette([0, 0, 0, 200, 200, 200] + [0] * 762)
    im.putpixel((0, 0), 0)
    im.info["transparency"] = 1  # palette index 1 (the light gray) is transparent
    img = load_image(pil_bytes(im, "PNG", transparency=1))
    assert float(img.pixels.max()) == 0.0  # everything transparent or black


def test_la_and_rgba_alpha_composited() -> None:
    la = Image.merge("LA", [Image.new("L", (8, 8), 200), Image.new("L", (8, 8), 128)])
    img = load_image(pil_bytes(la, "PNG"))
    assert img.pixels.ndim == 2
    assert float(img.pixels[0, 0]) == pytest.approx(200 * 128 / 255, abs=1e-3)
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    img = load_image(pil_bytes(rgba, "PNG"))
    assert float(img.pixels.max()) == 0.0  # fully transparent = no signal


def test_cmyk_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red
    for fmt in ("JPEG", "TIFF"):
        img = load_image(pil_bytes(cmyk, fmt))
        assert img.is_color
        r, g, b = img.pixels[8, 8]
        assert r > 200 and g < 60 and b < 60


def test_rgb_with_equal_channels_is_gray() -> None:
    arr = np.repeat(_ramp()[..., None], 3, axis=2)
    img = load_image(pil_bytes(Image.fromarray(arr), "JPEG", quality=95))
    assert img.pixels.ndim == 2 and img.photometric == "MONOCHROME2"


def test_exif_orientation_6_transposes() -> None:
    im = Image.fromarray(np.zeros((20, 40), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    img = load_image(pil_bytes(im, "JPEG", exif=exif))
    assert img.shape == (40, 20)
    assert "EXIF orientation applied" in img.notes


def test_animated_gif_frames() -> None:
    frames = [Image.fromarray(np.full((12, 10), v, np.uint8)) for v in (10, 120, 240)]
    data = pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    first, last = load_image(data), load_image(data, frame=2)
    assert first.n_frames == last.n_frames == 3 and last.frame_index == 2
    assert float(first.pixels.mean()) == pytest.approx(10, abs=1)
    assert float(last.pixels.mean()) == pytest.approx(240, abs=1)
    with pytest.raises(ValueError):
        load_image(data, frame=3)


def test_multipage_tiff() -> None:
    pages = [Image.fromarray(np.full((12, 10), v, np.uint8)) for v in (5, 50, 150, 250)]
    data = pil_bytes(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    img = load_image(data, frame=3)
    assert img.n_frames == 4 and img.frame_index == 3
    assert float(img.pixels.mean()) == 250.0
    assert float(load_image(data).pixels.mean()) == 5.0


def test_same_input_same_output() -> None:
    data = pil_bytes(Image.fromarray(_ramp()), "JPEG")
    a, b = load_image(data), load_image(data)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert a.windows == b.windows and a.metadata == b.metadata
