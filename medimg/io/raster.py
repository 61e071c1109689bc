"""PNG, JPEG, TIFF, GIF and BMP decoding through Pillow.

Channel rule (documented for users): 1-bit and 8/16/32-bit grayscale stay grayscale with their full
stored range (a 16-bit PNG is never clipped to 8 bits); palette images are expanded through their palette;
an alpha channel is composited over black (transparent = no signal); CMYK and YCbCr become RGB; an RGB
image whose three channels are equal (within JPEG chroma noise) is treated as grayscale. EXIF orientation
(0x0112) is applied. Multi-page TIFF and animated GIF/PNG: one frame at a time, the first by default.

Safety: the format is fixed by the sniffed magic bytes (Pillow tries no other plugin); declared dimensions
(for GIF: the logical screen and every frame's extent), frame counts and the pixels decoded to reach a frame
are checked against :data:`MAX_PIXELS`, :data:`MAX_DECODED_VALUES`, :data:`MAX_FRAMES` and
:data:`MAX_SEEK_PIXELS` before any pixel is decoded; truncated data is an error (Pillow's
``ImageFile.LOAD_TRUNCATED_IMAGES`` stays False).
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps

from medimg.errors import CorruptFileError, ImageTooLargeError, MedimgError, UnsupportedFormatError
from medimg.io.image import MedicalImage, Window, full_range_window

__all__ = ["load_raster", "MAX_PIXELS", "MAX_DECODED_VALUES", "MAX_FRAMES", "MAX_SEEK_PIXELS"]

#: Largest image (rows x columns) decoded; far above any radiograph (a 43x43 cm detector at 100 µm is 18 MP),
#: far below Pillow's own bomb warning (~89 MP), so a decompression bomb is refused before decoding.
MAX_PIXELS = 40_000_000
#: Largest rows x columns x output channels (the float32 result is 4 bytes per value: 160 MB). Colour images
#: are therefore limited to about 13 MP.
MAX_DECODED_VALUES = 40_000_000
#: Largest number of frames a file may declare: multi-page TIFF/GIF and DICOM Number of Frames (0028,0008) alike.
MAX_FRAMES = 2_000
#: Largest number of pixels decoded to reach a frame of an animated GIF/PNG (earlier frames are composited).
MAX_SEEK_PIXELS = 200_000_000

#: Spread (max - min over R, G, B) under which a pixel counts as gray, in 8-bit units.
_GRAY_SPREAD = 3.0
#: Pillow plugins allowed per sniffed format.
_PLUGINS: dict[str, tuple[str, ...]] = {
    "png": ("PNG",), "jpeg": ("JPEG", "MPO"), "tiff": ("TIFF",), "gif": ("GIF",), "bmp": ("BMP", "DIB"),
}
_GRAY_MODES = ("1", "L", "I", "F", "LA", "La")
#: Upper bound on GIF data sub-blocks walked when counting frames (bounds the time on hostile files).
_GIF_MAX_BLOCKS = 2_000_000


def _too_large(fmt: str, what: str) -> ImageTooLargeError:
    return ImageTooLargeError(f"The {fmt.upper()} {what}. Export a smaller image (or a single frame) and try again.")


def _open(data: bytes, fmt: str) -> Image.Image:
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # pragma: no cover - a global someone else set; refuse to run with it
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=_PLUGINS.get(fmt))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(fmt, f"declares an image too large to open safely (limit {MAX_PIXELS:,} pixels)") from None
    except Exception:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ValueError ...
        raise CorruptFileError(
            f"The file looks like a {fmt.upper()} image but its header cannot be read; it may be truncated "
            "or damaged. Export it again from the source system."
        ) from None
    return im


def _gif_scan(data: bytes) -> tuple[int, int, int]:
    """(frames, rows, columns) of a GIF without decoding: the logical screen enlarged by every frame's extent
    (as Pillow does), frames counted up to ``MAX_FRAMES + 1``. Structural damage ends the scan early."""
    n = len(data)
    if n < 13:
        raise CorruptFileError("The GIF header is truncated.")
    cols, rows = struct.unpack_from("<HH", data, 6)
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames, blocks = 0, 0

    def skip_sub_blocks(p: int) -> int:
        nonlocal blocks
        while p < n:
            size = data[p]
            p += 1 + size
            blocks += 1
            if size == 0:
                return p
            if blocks > _GIF_MAX_BLOCKS:
                raise _too_large("gif", "is too complex to open safely (too many data blocks)")
        return n

    while pos < n and frames <= MAX_FRAMES:
        introducer = data[pos]
        if introducer == 0x3B:  # trailer
            break
        if introducer == 0x21:  # extension: label + sub-blocks
            pos = skip_sub_blocks(pos + 2)
        elif introducer == 0x2C:  # image descriptor
            if pos + 10 > n:
                break
            x0, y0, w, h = struct.unpack_from("<HHHH", data, pos + 1)
            cols, rows = max(cols, x0 + w), max(rows, y0 + h)
            lflags = data[pos + 9]
            pos += 10 + (3 << ((lflags & 7) + 1) if lflags & 0x80 else 0)
            pos = skip_sub_blocks(pos + 1)  # LZW minimum code size, then the image data sub-blocks
            frames += 1
        else:
            break
    return max(frames, 1), rows, cols


def _count_frames(im: Image.Image, fmt: str, data: bytes) -> int:
    if fmt == "gif":
        return _gif_scan(data)[0]
    if fmt == "tiff":
        n = 1
        while n <= MAX_FRAMES:
            try:
                im.seek(n)
            except EOFError:
                break
            n += 1
        im.seek(0)
        return n
    return int(getattr(im, "n_frames", 1) or 1)


def _out_channels(mode: str) -> int:
    return 1 if mode in _GRAY_MODES or mode.startswith("I;16") else 3


def _check_size(rows: int, cols: int, mode: str, fmt: str) -> None:
    if rows <= 0 or cols <= 0:
        raise CorruptFileError(f"The {fmt.upper()} declares an empty image ({rows} x {cols} pixels).")
    if rows * cols > MAX_PIXELS:
        raise _too_large(fmt, f"declares {rows:,} x {cols:,} pixels; the limit is {MAX_PIXELS:,} pixels")
    if rows * cols * _out_channels(mode) > MAX_DECODED_VALUES:
        raise _too_large(fmt, f"is a colour image of {rows:,} x {cols:,} pixels; the limit for colour images is "
                         f"{MAX_DECODED_VALUES // 3:,} pixels")


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma (the weights Pillow's convert("L") uses), float32, from (H, W, 3) uint8 or float32."""
    out = rgb[..., 0].astype(np.float32) * np.float32(0.299)
    out += rgb[..., 1].astype(np.float32) * np.float32(0.587)
    out += rgb[..., 2].astype(np.float32) * np.float32(0.114)
    return out


def _percentile_999(values: np.ndarray) -> float:
    """``np.percentile(values, 99.9)`` (linear interpolation) through a partial sort, without the float64 copy."""
    flat = values.ravel()
    pos = 0.999 * (flat.size - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, flat.size - 1)
    part = np.partition(flat, [lo, hi] if hi != lo else [lo])
    a, b = float(part[lo]), float(part[hi])
    return a + (b - a) * (pos - lo)


def _float32_by_strips(im: Image.Image, strip_values: int = 4 * 2**20) -> np.ndarray:
    """A single-band image as (H, W) float32, converted a strip of rows at a time (no full-size integer copy
    beside the float32 result: a 6000 x 6000 16-bit image peaks at +144 MB, not +288 MB)."""
    w, h = im.size
    out = np.empty((h, w), dtype=np.float32)
    step = max(1, strip_values // max(w, 1))
    for r in range(0, h, step):
        out[r : r + step] = np.asarray(im.crop((0, r, w, min(h, r + step))))
    return out


def _to_array(im: Image.Image, fmt: str) -> tuple[np.ndarray, str]:
    """Decode the current frame to (H, W) or (H, W, 3) float32 with the channel rule; returns (array, kind)."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im.convert("L"), dtype=np.float32), "8-bit"
    if mode.startswith("I;16"):
        return _float32_by_strips(im), "16-bit"
    if mode == "I":
        kind = "16-bit" if fmt == "png" else "32-bit"  # Pillow may open 16-bit gray PNG as "I"
        return _float32_by_strips(im), kind
    if mode == "F":
        return np.asarray(im, dtype=np.float32), "float"
    if mode == "L":
        return np.asarray(im, dtype=np.float32), "8-bit"
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("LA", "La", "PA"):
        if mode == "PA":
            im = im.convert("RGBA")
            mode = "RGBA"
        else:
            a = np.asarray(im.convert("LA"), dtype=np.float32)
            return a[..., 0] * (a[..., 1] / 255.0), "8-bit"
    if mode in ("RGBA", "RGBa"):
        a = np.asarray(im.convert("RGBA"), dtype=np.float32)
        rgb = a[..., :3] * (a[..., 3:4] / 255.0)
        del a
        spread = rgb.max(axis=2) - rgb.min(axis=2)
    else:
        if mode in ("RGB", "RGBX"):
            rgb8 = np.asarray(im.convert("RGB") if mode == "RGBX" else im)
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV") or mode.startswith("BGR"):
            rgb8 = np.asarray(im.convert("RGB"))
        else:
            raise UnsupportedFormatError(
                f"This {fmt.upper()} uses the pixel format '{mode}', which medimg does not read. "
                "Save it as 8- or 16-bit grayscale or RGB."
            )
        spread = rgb8.max(axis=2) - rgb8.min(axis=2)
        rgb = rgb8
    # gray when the 99.9th percentile of the channel spread is within JPEG chroma noise
    if spread.size and _percentile_999(spread) <= _GRAY_SPREAD:
        return _luma(rgb), "8-bit"
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
        0-based page/frame of a multi-page TIFF or animated GIF/PNG; the first when None.

    Returns
    -------
    MedicalImage
        ``pixels`` (H, W) float32 in stored units (0..255 for 8-bit, 0..65535 for 16-bit, never rescaled) or
        (H, W, 3) RGB 0..255, after EXIF orientation (0x0112). Default window: LINEAR_EXACT centre 127.5 width
        255 for 8-bit data, the data's own min..max otherwise.

    Raises
    ------
    ImageTooLargeError
        More than :data:`MAX_PIXELS` pixels, :data:`MAX_DECODED_VALUES` output values, :data:`MAX_FRAMES`
        frames, or :data:`MAX_SEEK_PIXELS` pixels to decode to reach ``frame`` (checked before decoding).
    CorruptFileError
        Truncated or undecodable data.
    UnsupportedFormatError
        A pixel format outside the channel rule.
    ValueError
        ``frame`` outside the file's frames (a programming error, not bad input).
    """
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or frame < 0):
        raise ValueError(f"frame must be a non-negative int or None, got {frame!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd EXIF/TIFF tags; the result is checked here
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return _load_raster(data, fmt, frame)


def _load_raster(data: bytes, fmt: str, frame: int | None) -> MedicalImage:
    im = _open(data, fmt)
    with im:
        try:
            if fmt == "gif":
                n_frames, rows, cols = _gif_scan(data)
            else:
                rows, cols = im.height, im.width
            _check_size(rows, cols, im.mode, fmt)
            if fmt != "gif":
                n_frames = _count_frames(im, fmt, data)
        except MedimgError:
            raise
        except Exception:
            raise CorruptFileError(f"The {fmt.upper()} frame structure cannot be read; the file may be damaged.") from None
        if n_frames > MAX_FRAMES:
            raise ImageTooLargeError(f"The file declares {n_frames:,} frames; the limit is {MAX_FRAMES:,}.")
        index = 0 if frame is None else int(frame)
        if not 0 <= index < n_frames:
            raise ValueError(f"frame {index} is out of range: this file has {n_frames} frame(s)")
        if fmt in ("gif", "png") and (index + 1) * rows * cols > MAX_SEEK_PIXELS:
            raise _too_large(fmt, f"would need {index + 1} frames decoded to show frame {index + 1}")
        notes: list[str] = []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                if index:
                    im.seek(index)
                    _check_size(im.height, im.width, im.mode, fmt)
                orientation = im.getexif().get(0x0112, 1) if fmt in ("jpeg", "tiff", "png") else 1
                if orientation not in (None, 1):
                    im = ImageOps.exif_transpose(im)
                    notes.append("EXIF orientation applied")
                im.load()
                pixels, kind = _to_array(im, fmt)
        except MedimgError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_large(fmt, "holds a frame too large to decode safely") from None
        except MemoryError:
            raise _too_large(fmt, "is too large to decode on this server") from None
        except Exception:
            raise CorruptFileError(
                f"The {fmt.upper()} image data cannot be decoded; the file may be truncated or damaged. "
                "Export it again from the source system."
            ) from None
    # integer samples are always finite: only float images are checked (no 36 MB mask for a 6000^2 16-bit image)
    if kind == "float" and not np.all(np.isfinite(pixels)):
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
