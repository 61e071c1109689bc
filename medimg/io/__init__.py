"""Bytes or path -> :class:`MedicalImage`. pydicom and Pillow only; no torch, no Streamlit."""

from __future__ import annotations

import os
from pathlib import Path

from medimg.errors import ImageTooLargeError, UnsupportedFormatError
from medimg.io.image import BURNED_IN_STATES, MedicalImage, Overlay, Window, apply_window, full_range_window
from medimg.io.raster import load_raster
from medimg.io.sniff import sniff_format

__all__ = ["MedicalImage", "Window", "Overlay", "BURNED_IN_STATES", "apply_window", "full_range_window", "load_image", "sniff_format",
           "MAX_FILE_BYTES"]

#: Largest upload accepted, in bytes (the largest real single study file we expect, with headroom).
MAX_FILE_BYTES = 200 * 1024 * 1024


def load_image(data: bytes | bytearray | memoryview | str | os.PathLike, frame: int | None = None) -> MedicalImage:
    """Decode one image from bytes (an upload) or a path, deciding the format by content.

    Parameters
    ----------
    data : bytes-like or path
        The file's content, or a path to read it from. Uploads are passed as bytes and never touch disk.
    frame : int, optional
        0-based frame of a multi-frame DICOM, multi-page TIFF or animated GIF; the first when None.

    Returns
    -------
    MedicalImage
        ``pixels`` (H, W) or (H, W, 3) float32 in modality units, display windows, de-identified metadata.

    Raises
    ------
    UnsupportedFormatError
        Not an image medimg reads (decided by content: PDF, ZIP, text, HTML/SVG, executables, unknown bytes).
    CorruptFileError
        Truncated or damaged file, header/data mismatch, undecodable code stream.
    CompressionNotSupportedError
        A DICOM transfer syntax (0002,0010) outside :data:`medimg.io.dicom.TRANSFER_SYNTAXES`.
    ImageTooLargeError
        Over :data:`MAX_FILE_BYTES`, or declared dimensions/frames over the decoding limits (checked before
        any pixel is decoded: :data:`medimg.io.raster.MAX_PIXELS`, :data:`medimg.io.dicom.MAX_DECODED_BYTES`).
        All four are :class:`medimg.errors.MedimgError` subclasses whose message is safe to show a user: it
        names the problem and the fix and never contains patient data, file names or library error text.
    ValueError
        ``frame`` outside the file's frames (a programming error, not bad input).

    Notes
    -----
    Deterministic, no file is ever written, and each input is bounded to about 5 s and +256 MB (see
    RELIABILITY.md). See :func:`medimg.io.dicom.load_dicom` for the DICOM order of operations (Modality LUT ->
    VOI LUT / window -> MONOCHROME1 / Presentation LUT Shape inversion) and :func:`medimg.io.raster.load_raster`
    for the raster channel rule.
    """
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageTooLargeError(f"The file is larger than {MAX_FILE_BYTES // 2**20} MB.")
        data = path.read_bytes()
    data = bytes(data)
    if len(data) > MAX_FILE_BYTES:
        raise ImageTooLargeError(f"The file is larger than {MAX_FILE_BYTES // 2**20} MB.")
    fmt = sniff_format(data)
    if fmt == "dicom":
        from medimg.io.dicom import load_dicom

        return load_dicom(data, frame=frame)
    if fmt in ("png", "jpeg", "tiff", "gif", "bmp"):
        return load_raster(data, fmt, frame=frame)
    raise UnsupportedFormatError(f"Format {fmt!r} is not supported.")  # pragma: no cover
