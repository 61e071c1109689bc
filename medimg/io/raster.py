"""PNG, JPEG, TIFF, GIF and BMP decoding through Pillow.

Channel rule (documented for users): 1-bit and 8/16/32-bit grayscale stay grayscale with their full
stored range (a 16-bit PNG is never clipped to 8 bits); palette images are expanded through their palette;
an alpha channel is composited over black (transparent = no signal); CMYK and YCbCr become RGB; an RGB
image whose three channels are equal (within JPEG chroma noise) is treated as grayscale. EXIF orientation
(0x0112) is applied. Multi-page TIFF and animated GIF: one frame at a time, the first by default.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from medimg.errors import CorruptFileError, ImageTooLargeError, UnsupportedFormatError
from medimg.io.image import MedicalImage, Window, full_range_window

__all__ = ["load_raster", "MAX_PIXELS"]

#: Largest image (rows x columns) decoded; far above any radiograph (a 43x43 cm detector at 100 µm is 18 MP),
#: far below Pillow's own bomb warning (~89 MP), so a decompression bomb is refused before decoding.
MAX_PIXELS = 40_000_000
#: Largest number of frames a multi-page file may declare.
MAX_FRAMES = 2_000

#: Spread (max - min over R, G, B) under which a pixel counts as gray, in 8-bit units.
_GRAY_SPREAD = 3.0


def _open(data: bytes, fmt: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(
            f"The {fmt.upper()} declares an image too large to open safely (limit {MAX_PIXELS:,} pixels)."
        ) from err
    except Image.DecompressionBombWarning as err:
        raise ImageTooLargeError(
            f"The {fmt.upper()} declares an image too large to open safely (limit {MAX_PIXELS:,} pixels)."
        ) from err
    except Exception as err:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ValueError ...
        raise CorruptFileError(
            f"The file looks like a {fmt.upper()} image but its header cannot be read; it may be truncated "
            "or damaged. Export it again from the source system."
        ) from err
    return im


def _to_array(im: Image.Image, fmt: str) -> tuple[np.ndarray, str]:
    """Decode the current frame to (H, W) or (H, W, 3) float32 with the channel rule; returns (array, kind)."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im.convert("L"), dtype=np.float32), "8-bit"
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im)
        return arr.astype(np.float32), "16-bit"
    if mode == "I":
        return np.asarray(im).astype(np.float32), "32-bit"
    if mode == "F":
        return np.asarray(im, dtype=np.float32), "float"
    if mode == "L":
        return np.asarray(im, dtype=np.float32), "8-bit"
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("LA", "La", "PA"):
        im = im.convert("LA")
        a = np.asarray(im, dtype=np.float32)
        return a[..., 0] * (a[..., 1] / 255.0), "8-bit"
    if mode in ("RGBA", "RGBa"):
        a = np.asarray(im.convert("RGBA"), dtype=np.float32)
        rgb = a[..., :3] * (a[..., 3:4] / 255.0)
    elif mode == "RGB":
        rgb = np.asarray(im, dtype=np.float32)
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    else:
        raise UnsupportedFormatError(
            f"This {fmt.upper()} uses the pixel format '{mode}', which medimg does not read. "
            "Save it as 8- or 16-bit grayscale or RGB."
        )
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    if spread.size and float(np.percentile(spread, 99.9)) <= _GRAY_SPREAD:
        # ITU-R BT.601 luma, the same weights Pillow's convert("L") uses
        gray = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        return gray.astype(np.float32), "8-bit"
    return np.ascontiguousarray(rgb, dtype=np.float32), "8-bit"


def load_raster(data: bytes, fmt: str, frame: int | None = None) -> MedicalImage:
    """Decode a PNG, JPEG, TIFF, GIF or BMP held in memory.

    Parameters
    ----------
    data : bytes
        The whole file.
    fmt : str
        The format sniffed from the magic bytes: ``"png"``, ``"jpeg"``, ``"tiff"``, ``"gif"`` or ``"bmp"``.
    frame : int, optional
        0-based page/frame of a multi-page TIFF or animated GIF; the first when None.

    Returns
    -------
    MedicalImage
        ``pixels`` (H, W) float32 in stored units (0..255 for 8-bit, 0..65535 for 16-bit) or (H, W, 3) RGB
        0..255. Default window: 0..255 for 8-bit data, the data's own min..max otherwise.

    Raises
    ------
    ImageTooLargeError
        More than :data:`MAX_PIXELS` pixels or :data:`MAX_FRAMES` frames declared (checked before decoding).
    CorruptFileError
        Truncated or undecodable data.
    UnsupportedFormatError
        A pixel format outside the channel rule.
    """
    im = _open(data, fmt)
    with im:
        rows, cols = im.height, im.width
        if rows <= 0 or cols <= 0:
            raise CorruptFileError(f"The {fmt.upper()} declares an empty image ({rows} x {cols} pixels).")
        if rows * cols > MAX_PIXELS:
            raise ImageTooLargeError(
                f"The {fmt.upper()} declares {rows:,} x {cols:,} pixels; the limit is {MAX_PIXELS:,} pixels. "
                "Export a smaller image."
            )
        n_frames = int(getattr(im, "n_frames", 1) or 1)
        if n_frames > MAX_FRAMES:
            raise ImageTooLargeError(f"The file declares {n_frames:,} frames; the limit is {MAX_FRAMES:,}.")
        index = 0 if frame is None else int(frame)
        if not 0 <= index < n_frames:
            raise ValueError(f"frame {index} is out of range: this file has {n_frames} frame(s)")
        notes: list[str] = []
        try:
            if index:
                im.seek(index)
            orientation = im.getexif().get(0x0112, 1) if fmt in ("jpeg", "tiff", "png") else 1
            if orientation not in (None, 1):
                im = ImageOps.exif_transpose(im)
                notes.append("EXIF orientation applied")
            im.load()
            pixels, kind = _to_array(im, fmt)
        except (UnsupportedFormatError, ImageTooLargeError):
            raise
        except Exception as err:
            raise CorruptFileError(
                f"The {fmt.upper()} image data cannot be decoded; the file may be truncated or damaged."
            ) from err
    if not np.all(np.isfinite(pixels)):
        raise CorruptFileError(f"The {fmt.upper()} holds non-finite pixel values (NaN or infinity).")
    is_color = pixels.ndim == 3
    if kind == "8-bit":
        windows: tuple[Window, ...] = (Window(127.5, 255.0, "stored range (0-255)", "LINEAR_EXACT"),)
    else:
        windows = (full_range_window(pixels, "data range"),)
    return MedicalImage(
        pixels=pixels,
        format=fmt,
        photometric="RGB" if is_color else "MONOCHROME2",
        windows=windows,
        invert=False,
        units=kind,
        frame_index=index,
        n_frames=n_frames,
        metadata={"Format": fmt.upper(), "Rows": str(pixels.shape[0]), "Columns": str(pixels.shape[1]),
                  "Bit depth": kind, "Frames": str(n_frames)},
        notes=tuple(notes),
    )
