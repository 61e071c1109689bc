"""Decide a file's format from its content (magic bytes), never from its name."""

from __future__ import annotations

from medimg.errors import UnsupportedFormatError

__all__ = ["sniff_format"]

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)

_KNOWN_OTHERS: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (export single images, not archives)"),
    (b"\x7fELF", "an executable program"),
    (b"MZ", "an executable program"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"<?xml", "an XML or SVG document"),
    (b"<svg", "an SVG drawing"),
    (b"<!DOCTYPE", "an HTML page"),
    (b"<html", "an HTML page"),
    (b"II+\x00", "a BigTIFF (not supported)"),
    (b"\x00\x00\x00\x0cjP  ", "a bare JPEG 2000 file (wrap it in DICOM)"),
)


def _looks_like_raw_dicom(data: bytes) -> bool:
    """A DICOM stream without the 128-byte preamble: first element is a group 0x0002/0x0008 tag."""
    if len(data) < 8:
        return False
    group = int.from_bytes(data[0:2], "little")
    return group in (0x0002, 0x0008) and data[4:6].isalpha() is True or group == 0x0008


def sniff_format(data: bytes) -> str:
    """Return the image format of ``data`` from its magic bytes.

    Parameters
    ----------
    data : bytes
        The whole file (or at least its first 132 bytes).

    Returns
    -------
    str
        One of ``"dicom"``, ``"png"``, ``"jpeg"``, ``"tiff"``, ``"gif"``, ``"bmp"``.

    Raises
    ------
    UnsupportedFormatError
        Empty input, a known non-image type (PDF, ZIP, executable, HTML/SVG, text), or unknown bytes.

    References
    ----------
    DICOM PS3.10 section 7.1: 128-byte preamble followed by the prefix ``DICM``.
    """
    if not data:
        raise UnsupportedFormatError("The file is empty (0 bytes). Choose the image file again.")
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    for magic, fmt in _SIGNATURES:
        if data.startswith(magic):
            return fmt
    if _looks_like_raw_dicom(data):
        return "dicom"
    head = data[:64].lstrip().lower()
    for magic, what in _KNOWN_OTHERS:
        if data.startswith(magic) or head.startswith(magic.lower()):
            raise UnsupportedFormatError(
                f"This file is {what}, not a medical image. Upload a DICOM, PNG, JPEG or TIFF image."
            )
    sample = data[:512]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        raise UnsupportedFormatError(
            "This file is plain text, not an image. Upload a DICOM, PNG, JPEG or TIFF image."
        )
    raise UnsupportedFormatError(
        f"The file's content ({len(data):,} bytes) is not a recognised image format. "
        "Upload a DICOM, PNG, JPEG or TIFF image."
    )
