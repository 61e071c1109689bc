"""Decide a file's format from its content (magic bytes), never from its name."""

from __future__ import annotations

import struct

from medimg.errors import UnsupportedFormatError

__all__ = ["sniff_format", "looks_like_raw_dicom"]

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)

_KNOWN_OTHERS: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (export single images, not archives)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\x7fELF", "an executable program"),
    (b"MZ", "an executable program"),
    (b"\xca\xfe\xba\xbe", "an executable program"),
    (b"\xcf\xfa\xed\xfe", "an executable program"),
    (b"#!", "a script"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x28\xb5\x2f\xfd", "a Zstandard archive"),
    (b"<?xml", "an XML or SVG document"),
    (b"<svg", "an SVG drawing"),
    (b"<!doctype", "an HTML page"),
    (b"<html", "an HTML page"),
    (b"<head", "an HTML page"),
    (b"<body", "an HTML page"),
    (b"<script", "an HTML page"),
    (b"{\\rtf", "a text document (RTF)"),
    (b"\xd0\xcf\x11\xe0", "an Office document"),
    (b"II+\x00", "a BigTIFF (not supported)"),
    (b"MM\x00+", "a BigTIFF (not supported)"),
    (b"\x00\x00\x00\x0cjP  ", "a bare JPEG 2000 file (wrap it in DICOM)"),
    (b"\xffO\xffQ", "a bare JPEG 2000 code stream (wrap it in DICOM)"),
    (b"\x93NUMPY", "a NumPy array file (export it as PNG or DICOM)"),
    (b"\x80\x02", "a Python pickle (never loaded)"),
    (b"\x80\x03", "a Python pickle (never loaded)"),
    (b"\x80\x04", "a Python pickle (never loaded)"),
    (b"\x80\x05", "a Python pickle (never loaded)"),
    (b"\x89HDF", "an HDF5 file"),
    (b"\x1a\x45\xdf\xa3", "a video (WebM/Matroska)"),
)

#: Value Representations of PS3.5 Table 6.2-1, for recognising an Explicit VR element header.
_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OD",
     b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI",
     b"UL", b"UN", b"UR", b"US", b"UT", b"UV"}
)
#: VRs with a 2-byte reserved field and a 4-byte length in Explicit VR (PS3.5 7.1.2).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"UV"})
_UNDEFINED = 0xFFFFFFFF


def _walk_elements(data: bytes, explicit: bool, limit: int = 4) -> int:
    """Parse up to ``limit`` consecutive Little Endian data element headers; return how many were valid.

    An element is valid when its tag is greater than the previous one (PS3.5 7.1: ascending order), its
    group is even (standard) and its value fits in ``data`` (or has undefined length where allowed).
    """
    pos, prev, count = 0, -1, 0
    n = len(data)
    while count < limit and pos + 8 <= n:
        group, elem = struct.unpack_from("<HH", data, pos)
        tag = (group << 16) | elem
        if tag <= prev or group % 2 or group == 0:
            break
        if explicit:
            vr = data[pos + 4 : pos + 6]
            if vr not in _VRS:
                break
            if vr in _LONG_VRS:
                if pos + 12 > n:
                    break
                (length,) = struct.unpack_from("<L", data, pos + 8)
                header = 12
            else:
                (length,) = struct.unpack_from("<H", data, pos + 6)
                header = 8
        else:
            (length,) = struct.unpack_from("<L", data, pos + 4)
            header = 8
        if length == _UNDEFINED:
            # undefined length only for SQ (or UN/OB/pixel data); accept and stop walking
            if explicit and data[pos + 4 : pos + 6] not in (b"SQ", b"UN", b"OB", b"OW"):
                break
            return count + 1
        if pos + header + length > n:
            break
        count += 1
        prev = tag
        pos += header + length
        if pos == n:
            # the whole (tiny) file parsed cleanly
            return max(count, 2)
    return count


def looks_like_raw_dicom(data: bytes) -> bool:
    """Whether ``data`` is a DICOM data set stored without the 128-byte preamble and ``DICM`` prefix.

    Such "raw" streams (written by some older systems) start directly with a File Meta element of group
    0x0002 or a data set element of group 0x0008 (Identifying module). We require the first elements to
    parse consistently as Little Endian Explicit or Implicit VR: a group 0x0002/0x0008 first tag, ascending
    even-group tags, known VRs (explicit) and lengths that fit inside the file. Random bytes or text that
    happen to start with ``08 00`` are therefore not taken for DICOM.

    Parameters
    ----------
    data : bytes
        The whole file (at least its first few hundred bytes).

    Returns
    -------
    bool

    References
    ----------
    DICOM PS3.5 section 7.1 (data element encoding), PS3.10 section 7.1 (file preamble and prefix).
    """
    if len(data) < 8:
        return False
    group = int.from_bytes(data[0:2], "little")
    if group not in (0x0002, 0x0008):
        return False
    head = bytes(data[:4096])
    return _walk_elements(head, explicit=True) >= 2 or _walk_elements(head, explicit=False) >= 2


def _looks_like_bmp(data: bytes) -> bool:
    """BMP: ``BM``, reserved words zero and a known DIB header size (BITMAPCOREHEADER .. BITMAPV5HEADER)."""
    if len(data) < 18 or not data.startswith(b"BM"):
        return False
    reserved = data[6:10]
    (dib,) = struct.unpack_from("<L", data, 14)
    return reserved == b"\x00\x00\x00\x00" and dib in (12, 16, 40, 52, 56, 64, 108, 124)


def _is_text(sample: bytes) -> bool:
    """True when ``sample`` decodes as UTF-8 (or ASCII) text with almost no control characters."""
    if not sample:
        return False
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(sample) - 4:  # a multi-byte character cut at the end of the sample is fine
            return False
        text = sample[: err.start].decode("utf-8", errors="ignore")
    if not text:
        return False
    bad = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f")
    return bad <= len(text) // 100


def sniff_format(data: bytes) -> str:
    """Return the image format of ``data`` from its magic bytes.

    Parameters
    ----------
    data : bytes
        The whole file (or at least its first 4 KiB).

    Returns
    -------
    str
        One of ``"dicom"``, ``"png"``, ``"jpeg"``, ``"tiff"``, ``"gif"``, ``"bmp"``.

    Raises
    ------
    UnsupportedFormatError
        Empty input, a known non-image type (PDF, ZIP, executable, HTML/SVG, text, archives, pickles), or
        unknown bytes. The message names what the file appears to be, never its name or content.

    References
    ----------
    DICOM PS3.10 section 7.1: 128-byte preamble followed by the prefix ``DICM``; files without the preamble
    are recognised by :func:`looks_like_raw_dicom`.
    """
    if not data:
        raise UnsupportedFormatError("The file is empty (0 bytes). Choose the image file again.")
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    for magic, fmt in _SIGNATURES:
        if data.startswith(magic):
            return fmt
    if _looks_like_bmp(data):
        return "bmp"
    if looks_like_raw_dicom(data):
        return "dicom"
    head = bytes(data[:64]).lstrip().lower()
    for magic, what in _KNOWN_OTHERS:
        if data.startswith(magic) or head.startswith(magic.lower()):
            raise UnsupportedFormatError(
                f"This file is {what}, not a medical image. Upload a DICOM, PNG, JPEG or TIFF image."
            )
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        raise UnsupportedFormatError(
            "This file is a HEIC/AVIF photo, which medimg does not read. Export it as PNG or JPEG."
        )
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        raise UnsupportedFormatError("This file is a WebP image, which medimg does not read. Export it as PNG.")
    if len(data) < 16:
        raise UnsupportedFormatError(
            f"The file is only {len(data)} byte(s) long: too short to be an image. Choose the image file again."
        )
    if _is_text(bytes(data[:512])):
        raise UnsupportedFormatError(
            "This file is plain text, not an image. Upload a DICOM, PNG, JPEG or TIFF image."
        )
    raise UnsupportedFormatError(
        f"The file's content ({len(data):,} bytes) is not a recognised image format. "
        "Upload a DICOM, PNG, JPEG or TIFF image."
    )
