"""DICOM decoding with pydicom 3: safety checks first, then one frame, the Modality LUT and the VOI presets.

Order of operations (PS3.4 N.2, PS3.3 C.11): stored values -> Modality LUT (Rescale Slope/Intercept
(0028,1053)/(0028,1052) or Modality LUT Sequence (0028,3000)) -> ``MedicalImage.pixels`` in modality units;
VOI LUT Sequence (0028,3010) or Window Center/Width (0028,1050)/(0028,1051) -> ``MedicalImage.windows``;
MONOCHROME1 or Presentation LUT Shape (2050,0020) ``INVERSE`` -> ``MedicalImage.invert``. Enhanced multi-frame
objects keep these in the Shared / Per-frame Functional Groups Sequences (5200,9229)/(5200,9230): Pixel Value
Transformation Sequence (0028,9145) and Frame VOI LUT Sequence (0028,9132), read here per frame.

Before any pixel is decoded: the transfer syntax (0002,0010) must be on :data:`TRANSFER_SYNTAXES`, a Deflated
data set is inflated here with a cap (:data:`MAX_INFLATED_BYTES`; pydicom would inflate without limit), and the
declared Rows x Columns x Number of Frames x Samples x Bits Allocated must fit :data:`MAX_DECODED_BYTES` and the
per-frame :data:`medimg.io.raster.MAX_PIXELS`. Only the requested frame is decoded.

Privacy: pydicom's reading validation is set to IGNORE on import (its warnings quote element values, patient
names included, and are logged); warnings are silenced while reading; no value is ever logged or put in an
error message; error messages name the problem and the fix only.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import warnings
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pydicom
import pydicom.config
from pydicom.dataset import Dataset
from pydicom.uid import UID

from medimg.errors import (
    CompressionNotSupportedError,
    CorruptFileError,
    ImageTooLargeError,
    MedimgError,
    UnsupportedFormatError,
)
from medimg.io.image import MedicalImage, Window, full_range_window
from medimg.io.metadata import clean_text, count_withheld, describe
from medimg.io.raster import MAX_DECODED_VALUES, MAX_PIXELS
from medimg.io.sniff import looks_like_raw_dicom

__all__ = ["load_dicom", "TRANSFER_SYNTAXES", "CT_PRESETS", "MAX_DECODED_BYTES", "MAX_INFLATED_BYTES",
           "MAX_FRAMES"]

# pydicom must never warn or log with element values (PS3.15 Annex E in mind): no value validation on read.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


class _DropPydicomRecords(logging.Filter):
    """Drop every record of pydicom's logger: with debugging on, pydicom logs raw element bytes (names,
    IDs, dates) and its warnings can quote values. A server that handles patient data keeps none of them."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: ARG002
        return False


_PYDICOM_LOGGER = logging.getLogger("pydicom")
if not any(isinstance(f, _DropPydicomRecords) for f in _PYDICOM_LOGGER.filters):
    _PYDICOM_LOGGER.addFilter(_DropPydicomRecords())
# Records of child loggers (pydicom.pixels..., pydicom.filereader) skip the parent's logger filters; they inherit
# its level, though: a level above CRITICAL drops them at the source (re-applied at every load, since
# ``pydicom.config.debug(True)`` lowers it).
_SILENT = logging.CRITICAL + 10
_PYDICOM_LOGGER.setLevel(_SILENT)


def _quiet_pydicom() -> None:
    """Turn pydicom's debug mode off again (someone may have called ``pydicom.config.debug(True)``) and silence
    pydicom's logger tree."""
    if pydicom.config.debugging:
        pydicom.config.debugging = False
    if _PYDICOM_LOGGER.level != _SILENT:
        _PYDICOM_LOGGER.setLevel(_SILENT)

#: Transfer syntaxes (0002,0010) decoded, UID -> (name, lossy). Anything else is refused before decoding.
TRANSFER_SYNTAXES: dict[str, tuple[str, bool]] = {
    "1.2.840.10008.1.2": ("Implicit VR Little Endian", False),
    "1.2.840.10008.1.2.1": ("Explicit VR Little Endian", False),
    "1.2.840.10008.1.2.1.99": ("Deflated Explicit VR Little Endian", False),
    "1.2.840.10008.1.2.2": ("Explicit VR Big Endian", False),
    "1.2.840.10008.1.2.4.50": ("JPEG Baseline (Process 1)", True),
    "1.2.840.10008.1.2.4.51": ("JPEG Extended (Process 2 and 4)", True),
    "1.2.840.10008.1.2.4.57": ("JPEG Lossless, Non-Hierarchical (Process 14)", False),
    "1.2.840.10008.1.2.4.70": ("JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 "
                               "[Selection Value 1])", False),
    "1.2.840.10008.1.2.4.80": ("JPEG-LS Lossless Image Compression", False),
    "1.2.840.10008.1.2.4.81": ("JPEG-LS Lossy (Near-Lossless) Image Compression", True),
    "1.2.840.10008.1.2.4.90": ("JPEG 2000 Image Compression (Lossless Only)", False),
    "1.2.840.10008.1.2.4.91": ("JPEG 2000 Image Compression", True),
    "1.2.840.10008.1.2.5": ("RLE Lossless", False),
}
_DEFLATED = "1.2.840.10008.1.2.1.99"
_IMPLICIT_LE, _EXPLICIT_LE, _EXPLICIT_BE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
_NATIVE = frozenset({_IMPLICIT_LE, _EXPLICIT_LE, _DEFLATED, _EXPLICIT_BE})
#: One decoding plugin per compressed syntax: a damaged code stream then costs one decode attempt, not one per
#: installed plugin (a corrupt 4 MB JPEG 2000 took 1.9 s in Pillow plus 1.5 s in pylibjpeg), and the result
#: does not depend on which plugins happen to be installed. libjpeg also reads 12-bit JPEG, Pillow does not.
_PREFERRED_PLUGIN: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg",
    "1.2.840.10008.1.2.4.51": "pylibjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg",
    "1.2.840.10008.1.2.4.80": "pyjpegls",
    "1.2.840.10008.1.2.4.81": "pyjpegls",
    "1.2.840.10008.1.2.4.90": "pylibjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg",
    "1.2.840.10008.1.2.5": "pydicom",  # numpy RLE: damaged segments raise ValueError (pylibjpeg-rle can panic)
}

#: Largest declared decoded size of the whole pixel data (all frames), in bytes.
MAX_DECODED_BYTES = 512 * 2**20
#: Largest inflated size of a Deflated Explicit VR Little Endian data set (up to the end of its pixel data), bytes.
MAX_INFLATED_BYTES = 128 * 2**20
#: Largest inflated header (everything before the pixel data) of a deflated data set, in bytes.
_MAX_DEFLATED_HEADER = 16 * 2**20
#: Largest Number of Frames (0028,0008) accepted.
MAX_FRAMES = 10_000
#: Most data elements (all nesting depths) before the pixel data: bounds pydicom's parse time on hostile files.
_MAX_ELEMENTS = 100_000
#: Most items in encapsulated pixel data (Basic Offset Table + fragments) walked before decoding.
_MAX_FRAGMENTS = 200_000
#: Values read from the file into memory before the pixel data are deferred above this size.
_DEFER_SIZE = 4 * 2**20

#: CT display presets in HU, (name, Window Center, Window Width); added after the header's windows.
CT_PRESETS: tuple[tuple[str, float, float], ...] = (
    ("lung", -600.0, 1500.0),
    ("mediastinum", 50.0, 350.0),
    ("bone", 400.0, 1800.0),
    ("brain", 40.0, 80.0),
    ("abdomen", 40.0, 400.0),
)

_MONO = ("MONOCHROME1", "MONOCHROME2")
_COLOR_PI = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422")
_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"UV"})
_BURNED_IN_NOTE = "Burned In Annotation: YES — the pixels may show patient-identifying text"


class _FrameOutOfRange(ValueError):
    """The ``frame`` argument is outside the file's frames (a programming error, not bad input)."""


def _corrupt(msg: str) -> CorruptFileError:
    return CorruptFileError(msg + " Export the image again from the source system (PACS or modality).")


# ----------------------------------------------------------------------------------------------- reading


def _ts_name(uid: str) -> str:
    if uid in TRANSFER_SYNTAXES:
        return TRANSFER_SYNTAXES[uid][0]
    try:
        name = UID(uid).name
    except Exception:
        name = ""
    if name and name != uid:
        return name
    return f"an unrecognised transfer syntax (UID {clean_text(uid)[:64]})"


def _check_transfer_syntax(uid: str) -> None:
    """Refuse transfer syntaxes outside the allowlist, or whose decoder is not installed."""
    if uid not in TRANSFER_SYNTAXES:
        raise CompressionNotSupportedError(
            f"Compression not supported: this DICOM is encoded with {_ts_name(uid)!s}, which medimg does not "
            "decode. Export it from the PACS as uncompressed (Explicit VR Little Endian), JPEG, JPEG-LS, "
            "JPEG 2000 or RLE."
        )
    try:
        from pydicom.pixels import get_decoder

        available = get_decoder(uid).is_available
    except Exception:
        available = False
    if not available:
        raise CompressionNotSupportedError(
            f"Compression not supported: the decoder for {_ts_name(uid)} is not installed on this server. "
            "Export the image as uncompressed (Explicit VR Little Endian) DICOM, or ask the administrator to "
            "install the pylibjpeg / pyjpegls plugins."
        )


_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF",
     b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN",
     b"UR", b"US", b"UT", b"UV"}
)


def _is_sq_tag(tag: int) -> bool:
    try:
        from pydicom.datadict import dictionary_VR

        return dictionary_VR(tag) == "SQ"
    except Exception:
        return False


def _scan_elements(buf: bytes | bytearray, pos: int, *, implicit: bool, little: bool) -> int:
    """Count the data elements before the top-level pixel data, at every nesting depth, without pydicom.

    pydicom parses undefined-length sequences eagerly and every element costs it ~15 µs of Python; a file of
    millions of tiny elements (or a zero-filled inflated bomb, read as 8-byte elements) would take minutes.
    This walker costs ~1 µs per element and stops at :data:`_MAX_ELEMENTS`. Structural damage ends the scan
    (pydicom then reports it). Returns the count.

    Raises
    ------
    ImageTooLargeError
        More than :data:`_MAX_ELEMENTS` data elements.
    """
    end = "<" if little else ">"
    tag_fmt, u16, u32 = f"{end}HH", f"{end}H", f"{end}L"
    unpack = struct.unpack_from
    n, count = len(buf), 0
    stack: list[int] = []  # end offsets of enclosing defined-length sequences/items; -1 when undefined
    while pos + 8 <= n:
        group, elem = unpack(tag_fmt, buf, pos)
        if group == 0xFFFE:  # item, item delimiter, sequence delimiter: tag + 4-byte length, no VR
            (length,) = unpack(u32, buf, pos + 4)
            pos += 8
            if elem == 0xE000:
                stack.append(-1 if length == 0xFFFFFFFF else pos + length)
            elif stack:
                stack.pop()
        else:
            tag = (group << 16) | elem
            if not stack and tag in _PIXEL_TAGS:
                break
            count += 1
            if count > _MAX_ELEMENTS:
                raise ImageTooLargeError(
                    f"The DICOM header holds more than {_MAX_ELEMENTS:,} data elements, over the limit that "
                    "protects the server. Export the image alone (without large private data)."
                )
            vr = b""
            if not implicit:
                vr = bytes(buf[pos + 4 : pos + 6])
            if vr in _LONG_VRS:
                if pos + 12 > n:
                    break
                (length,) = unpack(u32, buf, pos + 8)
                pos += 12
            elif vr in _VRS:
                (length,) = unpack(u16, buf, pos + 6)
                pos += 8
            else:  # implicit VR (or an implicit element inside an explicit data set, which pydicom tolerates)
                (length,) = unpack(u32, buf, pos + 4)
                pos += 8
            if length == 0xFFFFFFFF:
                stack.append(-1)  # an undefined-length sequence (or UN/OB holding items): descend
                continue
            if vr == b"SQ" or (not vr and _is_sq_tag(tag)):
                stack.append(pos + length)
                continue
            pos += length
        while stack and stack[-1] != -1 and pos >= stack[-1]:
            stack.pop()
    return count


class _Inflater:
    """Incremental raw-deflate inflater (RFC 1951) that never produces more than it is asked for."""

    def __init__(self, body: memoryview) -> None:
        self._z = zlib.decompressobj(-zlib.MAX_WBITS)
        self._src: bytes | memoryview = body
        self.out = bytearray()

    @property
    def done(self) -> bool:
        return self._z.eof or not self._src

    def fill(self, limit: int) -> None:
        """Inflate until ``len(out) >= limit`` or the stream ends."""
        while len(self.out) < limit and not self._z.eof:
            try:
                chunk = self._z.decompress(self._src, min(limit - len(self.out), 4 * 2**20))
            except zlib.error:
                raise _corrupt("The deflate-compressed DICOM data cannot be inflated: the file is damaged.") from None
            self._src = self._z.unconsumed_tail
            self.out += chunk
            if not chunk and not self._src:
                break


def _pixel_value_end(dataset: bytearray) -> int | None:
    """End offset of the top-level pixel data value in an (Explicit VR Little Endian) data set prefix, or None
    when the prefix does not reach that far (or the pixel data have an undefined length)."""
    from pydicom.filereader import _at_pixel_data, read_dataset

    _scan_elements(dataset, 0, implicit=False, little=True)
    fp = io.BytesIO(dataset)
    try:
        read_dataset(fp, is_implicit_VR=False, is_little_endian=True, stop_when=_at_pixel_data, defer_size=_DEFER_SIZE)
    except Exception:
        return None
    pos = fp.tell()
    if pos + 12 > len(dataset):
        return None
    group, elem = struct.unpack_from("<HH", dataset, pos)
    if (group << 16) | elem not in _PIXEL_TAGS:
        return None
    if bytes(dataset[pos + 4 : pos + 6]) in _LONG_VRS:
        (length,) = struct.unpack_from("<L", dataset, pos + 8)
        start = pos + 12
    else:
        (length,) = struct.unpack_from("<L", dataset, pos + 4)
        start = pos + 8
    if length == 0xFFFFFFFF:
        raise _corrupt("The deflate-compressed DICOM pixel data have an undefined length, which is not valid.")
    return start + length


def _inflate(body: memoryview) -> bytes:
    """Inflate a Deflated Explicit VR Little Endian data set, only as far as the end of its pixel data.

    The header is inflated first (growing up to :data:`_MAX_DEFLATED_HEADER`); the Pixel Data element's declared
    length then says how much more is needed, refused beyond :data:`MAX_INFLATED_BYTES` before inflating it.
    A bomb therefore costs at most the header cap in work and memory, whatever it would inflate to.
    """
    inflater = _Inflater(body)
    limit, end = 2**20, None
    while True:
        inflater.fill(limit)
        end = _pixel_value_end(inflater.out)
        if end is not None or inflater.done or len(inflater.out) < limit:
            break
        if limit >= _MAX_DEFLATED_HEADER:
            raise ImageTooLargeError(
                f"This deflate-compressed DICOM has more than {_MAX_DEFLATED_HEADER // 2**20} MB of header before "
                "its pixel data, over the limit that protects the server (a possible decompression bomb)."
            )
        limit *= 4
    if end is None:  # no pixel data found: hand the whole (bounded) data set to the normal checks
        return bytes(inflater.out)
    if end > MAX_INFLATED_BYTES:
        raise ImageTooLargeError(
            f"This deflate-compressed DICOM inflates to more than {MAX_INFLATED_BYTES // 2**20} MB, the limit "
            "that protects the server (a possible decompression bomb). Export it uncompressed."
        )
    inflater.fill(end)
    if len(inflater.out) < end:
        raise _corrupt("The deflate-compressed DICOM data end early: the file is truncated.")
    del inflater.out[end:]
    return bytes(inflater.out)


def _rebuild_deflated(data: bytes, body_start: int, meta: Dataset) -> bytes:
    """Preamble + File Meta (Transfer Syntax set to Explicit VR Little Endian) + the inflated data set."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    inflated = _inflate(memoryview(data)[body_start:])
    meta = meta.copy()
    meta.TransferSyntaxUID = _EXPLICIT_LE
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=False)
    return b"\x00" * 128 + b"DICM" + fp.getvalue() + inflated


def _read_header(data: bytes) -> tuple[Dataset, bytes, int, str, str, list[str]]:
    """Parse everything before the pixel data.

    Returns (header, buffer, pixel element offset in buffer, transfer syntax UID as declared, transfer
    syntax UID of the encoding actually read, notes).
    """
    from pydicom.filereader import _read_file_meta_info, read_preamble

    notes: list[str] = []
    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    if not has_preamble:
        if not looks_like_raw_dicom(data):
            raise UnsupportedFormatError(
                "The file is not a DICOM file (no 'DICM' marker and no DICOM data elements at the start). "
                "Upload a DICOM, PNG, JPEG or TIFF image."
            )
        notes.append("The file has no DICOM preamble (an older format); it was read without it.")
    fp = io.BytesIO(data)
    try:
        read_preamble(fp, not has_preamble)
        meta = _read_file_meta_info(fp)
    except Exception:
        raise _corrupt("The DICOM file meta information (group 0002) cannot be read: the file is damaged.") from None
    body_start = fp.tell()
    declared = str(meta.get("TransferSyntaxUID", "") or "").strip("\x00 ")
    if declared:
        _check_transfer_syntax(declared)
    buffer = data
    if declared == _DEFLATED:
        buffer = _rebuild_deflated(data, body_start, meta)
    else:
        first_vr = bytes(buffer[body_start + 4 : body_start + 6])
        _scan_elements(buffer, body_start, implicit=first_vr not in _VRS,
                       little=declared != _EXPLICIT_BE)
    fp = io.BytesIO(buffer)
    try:
        header = pydicom.dcmread(fp, stop_before_pixels=True, force=not has_preamble, defer_size=_DEFER_SIZE)
    except Exception:
        raise _corrupt("The DICOM header cannot be read: the file is damaged or truncated.") from None
    pixel_pos = fp.tell()
    try:
        is_implicit, is_little = header.original_encoding
    except Exception:
        is_implicit, is_little = None, None
    if is_implicit is None or is_little is None:
        is_implicit, is_little = (False, True) if declared != _IMPLICIT_LE else (True, True)
    if declared and declared not in _NATIVE:
        actual = declared
    elif not is_little:
        actual = _EXPLICIT_BE
    else:
        actual = _IMPLICIT_LE if is_implicit else _EXPLICIT_LE
    if not declared:
        _check_transfer_syntax(actual)
    header._medimg_keepalive = fp  # deferred values are read from this buffer
    return header, buffer, pixel_pos, declared or actual, actual, notes


def _pixel_element(buffer: bytes, pos: int, actual_ts: str) -> tuple[str, str, memoryview, int, bool]:
    """Locate the top-level pixel data element at ``pos``: (keyword, VR, value, value offset, undefined length)."""
    little = actual_ts != _EXPLICIT_BE
    end = "<" if little else ">"
    if pos + 8 > len(buffer):
        raise _corrupt("This DICOM holds no image: the Pixel Data element (7FE0,0010) is missing (the file may be "
                       "truncated, or it is a report or other non-image object).")
    group, elem = struct.unpack_from(f"{end}HH", buffer, pos)
    tag = (group << 16) | elem
    if tag not in _PIXEL_TAGS:
        raise _corrupt("This DICOM holds no image: the Pixel Data element (7FE0,0010) is missing or unreadable.")
    vr_bytes = buffer[pos + 4 : pos + 6]
    if actual_ts != _IMPLICIT_LE and vr_bytes in _LONG_VRS:
        if pos + 12 > len(buffer):
            raise _corrupt("The DICOM file ends inside the Pixel Data element header: the file is truncated.")
        (length,) = struct.unpack_from(f"{end}L", buffer, pos + 8)
        start, vr = pos + 12, vr_bytes.decode("ascii")
    else:
        (length,) = struct.unpack_from(f"{end}L", buffer, pos + 4)
        start, vr = pos + 8, "OW"
    undefined = length == 0xFFFFFFFF
    if undefined:
        value = memoryview(buffer)[start:]
    else:
        if start + length > len(buffer):
            raise _corrupt("The DICOM pixel data are shorter than their header declares: the file is truncated.")
        value = memoryview(buffer)[start : start + length]
    return _PIXEL_TAGS[tag], vr, value, start, undefined


def _check_fragments(buffer: bytes, start: int, end: int | None, n_frames: int) -> None:
    """Walk the items of encapsulated pixel data (PS3.5 A.4): Basic Offset Table item, one or more fragment items
    per frame, Sequence Delimitation Item (absent only when the value has a defined length ``end``)."""
    pos, limit, items = start, len(buffer) if end is None else end, 0
    while True:
        if pos == limit and end is not None:
            break
        if pos + 8 > limit:
            raise _corrupt("The DICOM compressed pixel data end early (no sequence delimiter): the file is truncated.")
        group, elem, length = struct.unpack_from("<HHL", buffer, pos)
        if (group, elem) == (0xFFFE, 0xE0DD):
            break
        if (group, elem) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF:
            raise _corrupt("The DICOM compressed pixel data are not validly encapsulated (bad item).")
        pos += 8 + length
        if pos > limit:
            raise _corrupt("The DICOM compressed pixel data are shorter than declared: the file is truncated.")
        items += 1
        if items > _MAX_FRAGMENTS:
            raise ImageTooLargeError(f"The DICOM compressed pixel data hold more than {_MAX_FRAGMENTS:,} fragments.")
    if items - 1 < n_frames:
        raise _corrupt(f"The DICOM header declares {n_frames} frame(s) but the compressed pixel data hold only "
                       f"{max(items - 1, 0)} fragment(s): the file is truncated or damaged.")


# ------------------------------------------------------------------------------------------ attributes


def _get(ds: Dataset | None, keyword: str, default: Any = None) -> Any:
    """``ds.keyword`` or ``default`` when absent, empty or unreadable."""
    if ds is None:
        return default
    try:
        if keyword not in ds:
            return default
        value = ds[keyword].value
    except Exception:
        return default
    if value is None or value == "" or (isinstance(value, (list, tuple)) and not value):
        return default
    return value


def _int(ds: Dataset, keyword: str, tag: str, default: int | None = None) -> int:
    value = _get(ds, keyword, None)
    if value is None:
        if default is None:
            raise _corrupt(f"The DICOM header has no usable {_label(keyword)} {tag}, needed to read the image.")
        return default
    try:
        if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            value = value[0]
        return int(value)
    except Exception:
        raise _corrupt(f"The DICOM header's {_label(keyword)} {tag} is not a valid number.") from None


def _label(keyword: str) -> str:
    out = "".join(" " + ch if ch.isupper() else ch for ch in keyword).strip()
    return out.replace("Of ", "of ")


def _floats(value: Any) -> list[float]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        value = [value]
    out = []
    for v in value:
        try:
            out.append(float(v))
        except Exception:
            out.append(math.nan)
    return out


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        value = [value]
    return [clean_text(v) for v in value]


def _fg_item(header: Dataset, frame: int, sequence: str) -> Dataset | None:
    """First item of functional group macro ``sequence`` for ``frame``: Per-frame (5200,9230) before Shared
    (5200,9229) Functional Groups Sequence (PS3.3 C.7.6.16)."""
    for fg_keyword, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        groups = _get(header, fg_keyword)
        try:
            if groups is None or index >= len(groups):
                continue
            items = _get(groups[index], sequence)
            if items:
                return items[0]
        except Exception:
            continue
    return None


# ---------------------------------------------------------------------------------------------- LUTs


def _lut(item: Dataset, signed: bool) -> tuple[int, int, np.ndarray]:
    """(first mapped, bits per entry, table float32) of a LUT item (LUT Descriptor (0028,3002), LUT Data
    (0028,3006)); PS3.3 C.11.1.1 / C.11.2.1.1."""
    desc = [int(v) for v in item["LUTDescriptor"].value]
    if len(desc) != 3:
        raise ValueError("LUT Descriptor must have 3 values")
    n_entries, first, bits = desc
    n_entries = n_entries or 65536
    if signed and first > 32767:  # descriptor read as US for a signed image (PS3.3 C.11.1.1)
        first -= 65536
    elem = item["LUTData"]
    raw = elem.value
    if isinstance(raw, (bytes, bytearray)):
        little = True
        try:
            little = bool(item.original_encoding[1]) if item.original_encoding[1] is not None else True
        except Exception:
            pass
        table = np.frombuffer(bytes(raw)[: 2 * n_entries], dtype="<u2" if little else ">u2")
    else:
        table = np.asarray(list(raw), dtype=np.float64)
    if table.size < n_entries or table.size == 0:
        raise ValueError("LUT Data shorter than its descriptor")
    table = np.asarray(table[:n_entries], dtype=np.float32)
    if not np.all(np.isfinite(table)):
        raise ValueError("non-finite LUT")
    if bits < 1 or bits > 16:
        bits = 16
    top = float(table.max()) if table.size else 0.0
    if top >= 2**bits:  # descriptor bits too small for the data: scale by what the data needs
        bits = int(math.ceil(math.log2(top + 1)))
    return first, bits, table


def _modality(header: Dataset, frame: int, enhanced: bool) -> tuple[str, float, float, tuple | None, str | None]:
    """Modality LUT of ``frame``: (kind, slope, intercept, lut, rescale type); kind "lut", "rescale" or "none".

    Enhanced objects: Pixel Value Transformation Sequence (0028,9145) in the functional groups (PS3.3
    C.7.6.16.2.9); others: Modality LUT Sequence (0028,3000) or Rescale Slope/Intercept (0028,1053)/(0028,1052)
    (PS3.3 C.11.1).
    """
    signed = _get(header, "PixelRepresentation", 0) == 1
    source: Dataset | None = None
    if enhanced:
        source = _fg_item(header, frame, "PixelValueTransformationSequence")
    if source is None:
        seq = _get(header, "ModalityLUTSequence")
        if seq:
            try:
                first, bits, table = _lut(seq[0], signed)
                return "lut", 1.0, 0.0, (first, bits, table), _get(seq[0], "ModalityLUTType")
            except Exception:
                pass
        source = header
    if "RescaleSlope" not in source and "RescaleIntercept" not in source:
        return "none", 1.0, 0.0, None, None
    slope = _floats(_get(source, "RescaleSlope", 1.0))[:1] or [1.0]
    intercept = _floats(_get(source, "RescaleIntercept", 0.0))[:1] or [0.0]
    s, b = slope[0], intercept[0]
    if not (math.isfinite(s) and math.isfinite(b)) or s == 0.0 or abs(s) > 1e12 or abs(b) > 1e12:
        raise _corrupt("The DICOM Rescale Slope/Intercept (0028,1053)/(0028,1052) are not valid numbers.")
    rtype = _get(source, "RescaleType")
    return "rescale", s, b, None, (clean_text(rtype) if rtype is not None else None)


def _windows_from(source: Dataset, signed_lut: bool, notes: list[str], prefix: str) -> list[Window]:
    """VOI LUT Sequence (0028,3010) items then Window Center/Width (0028,1050)/(0028,1051) of ``source``."""
    out: list[Window] = []
    seq = _get(source, "VOILUTSequence")
    for i, item in enumerate(seq or []):
        try:
            first, bits, table = _lut(item, signed_lut)
        except Exception:
            notes.append("A VOI LUT in the header is unreadable and was ignored.")
            continue
        name = clean_text(_get(item, "LUTExplanation", "") or "") or f"{prefix}VOI LUT {i + 1}"
        out.append(Window(center=first + len(table) / 2.0, width=float(max(len(table), 1)), name=name,
                          function="LINEAR", lut=(first, bits, table)))
    centers = _floats(_get(source, "WindowCenter"))
    widths = _floats(_get(source, "WindowWidth"))
    names = _strings(_get(source, "WindowCenterWidthExplanation"))
    function = str(_get(source, "VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    skipped = False
    for i in range(min(len(centers), len(widths))):
        c, w = centers[i], widths[i]
        if not (math.isfinite(c) and math.isfinite(w)) or w <= 0 or abs(c) > 1e12 or w > 1e12:
            skipped = True
            continue
        name = names[i] if i < len(names) and names[i] else f"{prefix}header {i + 1}"
        out.append(Window(center=c, width=w, name=name, function=function))
    if skipped or len(centers) != len(widths):
        notes.append("A display window in the header is invalid and was ignored.")
    return out


def _misses(window: Window, full: Window) -> bool:
    """True when ``window`` maps every value of the image (range of ``full``) to the same display value."""
    lo, hi = window.center - window.width / 2.0, window.center + window.width / 2.0
    data_lo, data_hi = full.center - full.width / 2.0, full.center + full.width / 2.0
    return hi <= data_lo or lo >= data_hi


# ----------------------------------------------------------------------------------------------- decode


def _check_size(rows: int, cols: int, spp: int, bits: int, n_frames: int) -> None:
    if rows * cols > MAX_PIXELS or rows * cols * spp > MAX_DECODED_VALUES:
        raise ImageTooLargeError(
            f"The DICOM declares frames of {rows:,} x {cols:,} pixels ({spp} sample(s) each); the limit is "
            f"{MAX_PIXELS:,} pixels ({MAX_DECODED_VALUES:,} values) per frame. Export a smaller image."
        )
    if n_frames > MAX_FRAMES:
        raise ImageTooLargeError(f"The DICOM declares {n_frames:,} frames; the limit is {MAX_FRAMES:,}.")
    total = rows * cols * spp * max(bits, 8) // 8 * n_frames
    if total > MAX_DECODED_BYTES:
        raise ImageTooLargeError(
            f"The DICOM declares {total / 2**20:,.0f} MB of decoded pixel data ({n_frames:,} frame(s) of "
            f"{rows:,} x {cols:,}); the limit is {MAX_DECODED_BYTES // 2**20} MB. Export fewer frames or a "
            "smaller image."
        )


def _native_length(rows: int, cols: int, spp: int, bits: int, n_frames: int, pi: str) -> int:
    """Bytes of natively encoded pixel data the header declares (PS3.5 8.1.1, PS3.3 C.7.6.3.1.2)."""
    if pi == "YBR_FULL_422":
        per_frame = rows * cols * 2 * bits // 8
    elif bits == 1:
        return (rows * cols * spp * n_frames + 7) // 8
    else:
        per_frame = rows * cols * spp * bits // 8
    return per_frame * n_frames


def _decode_frame(src: memoryview | io.BytesIO, ts: str, index: int, opts: dict[str, Any]) -> tuple[np.ndarray, dict]:
    """Decode frame ``index`` with pydicom's decoder for ``ts``: native data from a buffer (no copy), encapsulated
    data from a file-like positioned at the Pixel Data value (only that frame's fragments are read)."""
    from pydicom.pixels import get_decoder

    decoder = get_decoder(ts)
    plugin = _PREFERRED_PLUGIN.get(ts, "")
    if plugin not in decoder.available_plugins:
        plugin = ""  # any installed plugin, tried in pydicom's order
    arr, props = decoder.as_array(src, index=index, decoding_plugin=plugin, **opts)
    return arr, props


def _load(data: bytes, frame: int | None) -> MedicalImage:
    header, buffer, pixel_pos, declared_ts, actual_ts, notes = _read_header(data)
    enhanced = "SharedFunctionalGroupsSequence" in header or "PerFrameFunctionalGroupsSequence" in header
    keyword, vr, value, value_start, undefined = _pixel_element(buffer, pixel_pos, actual_ts)

    rows = _int(header, "Rows", "(0028,0010)")
    cols = _int(header, "Columns", "(0028,0011)")
    bits = _int(header, "BitsAllocated", "(0028,0100)")
    spp = _int(header, "SamplesPerPixel", "(0028,0002)", 1)
    stored = _int(header, "BitsStored", "(0028,0101)", bits)
    pixrep = _int(header, "PixelRepresentation", "(0028,0103)", 0)
    planar = _int(header, "PlanarConfiguration", "(0028,0006)", 0)
    n_frames = _int(header, "NumberOfFrames", "(0028,0008)", 1)
    pi = str(_get(header, "PhotometricInterpretation", "") or "").strip().upper()
    if not pi:
        if spp != 1:
            raise _corrupt("The DICOM header has no Photometric Interpretation (0028,0004).")
        pi = "MONOCHROME2"
        notes.append("Photometric Interpretation (0028,0004) missing: read as MONOCHROME2.")

    if not (0 < rows <= 65535 and 0 < cols <= 65535):
        raise _corrupt(f"The DICOM header declares an image of {rows} x {cols} pixels (Rows/Columns (0028,0010)/"
                       "(0028,0011)), which is not valid.")
    if bits not in (1, 8, 16, 32, 64) or not 1 <= stored <= bits or pixrep not in (0, 1):
        raise _corrupt(f"The DICOM header's pixel description is inconsistent (Bits Allocated {bits}, Bits Stored "
                       f"{stored}, Pixel Representation {pixrep}; (0028,0100)/(0028,0101)/(0028,0103)).")
    if n_frames < 1:
        raise _corrupt(f"The DICOM header declares {n_frames} frames (Number of Frames (0028,0008)).")
    if spp in (1, 3) and (pi in _COLOR_PI) != (spp == 3) and pi in (*_MONO, "PALETTE COLOR", *_COLOR_PI):
        raise _corrupt(f"The DICOM header is inconsistent: Photometric Interpretation {clean_text(pi)[:20]} "
                       f"with {spp} sample(s) per pixel ((0028,0004)/(0028,0002)).")
    if spp == 1:
        if pi not in _MONO and pi != "PALETTE COLOR":
            raise UnsupportedFormatError(f"The DICOM Photometric Interpretation '{clean_text(pi)[:20]}' is not "
                                         "supported. Export it as MONOCHROME2 or RGB.")
    elif spp == 3:
        if pi not in _COLOR_PI:
            raise UnsupportedFormatError(f"The DICOM colour encoding '{clean_text(pi)[:20]}' is not supported. "
                                         "Export it as RGB.")
        if planar not in (0, 1):
            raise _corrupt(f"The DICOM Planar Configuration (0028,0006) is {planar}; only 0 or 1 are valid.")
    else:
        raise _corrupt(f"The DICOM header declares {spp} samples per pixel (0028,0002); only 1 or 3 are valid.")
    _check_size(rows, cols, spp, bits, n_frames)

    index = 0 if frame is None else frame
    if not 0 <= index < n_frames:
        raise _FrameOutOfRange(f"frame {index} is out of range: this DICOM has {n_frames} frame(s)")

    encapsulated = actual_ts not in _NATIVE
    if keyword != "PixelData":
        if encapsulated or bits not in (32, 64) or spp != 1:
            raise _corrupt("The DICOM float pixel data do not match the header.")
    if encapsulated:
        _check_fragments(buffer, value_start, None if undefined else value_start + len(value), n_frames)
    else:
        if undefined:
            raise _corrupt("The DICOM pixel data have an undefined length but are not compressed.")
        need = _native_length(rows, cols, spp, bits, n_frames, pi)
        if len(value) < need:
            raise _corrupt(
                f"The DICOM header and pixel data disagree: {n_frames} frame(s) of {rows} x {cols} x {spp} at "
                f"{bits} bits need {need:,} bytes but the file holds {len(value):,} (truncated or damaged)."
            )
        if len(value) > need + 1:
            notes.append("The pixel data hold more bytes than the header declares; the extra bytes were ignored.")
        value = value[: need + need % 2]  # keep the padding byte: 8-bit OW Big Endian data swap in 16-bit words

    opts: dict[str, Any] = {
        "rows": rows, "columns": cols, "samples_per_pixel": spp, "bits_allocated": bits, "bits_stored": stored,
        "pixel_representation": pixrep, "photometric_interpretation": pi, "number_of_frames": n_frames,
        "planar_configuration": planar, "pixel_keyword": keyword, "pixel_vr": vr,
        "correct_unused_bits": True, "as_rgb": True, "view_only": True, "allow_excess_frames": False,
    }
    if "ExtendedOffsetTable" in header and "ExtendedOffsetTableLengths" in header:
        opts["extended_offsets"] = (header.ExtendedOffsetTable, header.ExtendedOffsetTableLengths)
    try:
        if encapsulated:
            src: memoryview | io.BytesIO = io.BytesIO(buffer)
            src.seek(value_start)
        else:
            src = value
        arr, props = _decode_frame(src, actual_ts, index, opts)
    except MedimgError:
        raise
    except MemoryError:
        raise ImageTooLargeError("The DICOM image is too large to decode on this server.") from None
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException:  # decoders raise RuntimeError, ValueError ... and Rust plugins a pyo3 PanicException
        what = "compressed image data" if encapsulated else "pixel data"
        raise _corrupt(f"The DICOM {what} ({_ts_name(declared_ts)}) cannot be decoded: the code stream is "
                       "damaged or does not match the header.") from None
    expected = (rows, cols) if spp == 1 else (rows, cols, 3)
    if tuple(arr.shape) != expected:
        raise _corrupt("The decoded DICOM image does not have the size its header declares.")
    out_pi = str(props.get("photometric_interpretation", pi)).upper()

    invert = False
    modality = str(_get(header, "Modality", "") or "").strip().upper()
    windows: list[Window] = []
    extra: dict[str, object] = {"TransferSyntaxUID": _ts_name(declared_ts), "NumberOfFrames": n_frames,
                                "Rows": rows, "Columns": cols}
    if spp == 1 and pi == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            rgb = apply_color_lut(arr, header)
        except Exception:
            raise _corrupt("The DICOM palette colour lookup tables (0028,1101-1203) are missing or invalid.") from None
        if rgb.ndim != 3 or rgb.shape[:2] != (rows, cols) or rgb.shape[2] < 3:
            raise _corrupt("The DICOM palette colour lookup tables do not match the image.")
        top = 255.0 if rgb.dtype.itemsize == 1 else 65535.0
        pixels = np.ascontiguousarray(rgb[..., :3], dtype=np.float32)
        photometric, units = "RGB", "8-bit" if top == 255.0 else "16-bit"
        windows.append(Window(top / 2.0, top, f"stored range (0-{top:.0f})", "LINEAR_EXACT"))
    elif spp == 3:
        if out_pi in ("YBR_FULL", "YBR_FULL_422"):
            from pydicom.pixels import convert_color_space

            arr = convert_color_space(arr, out_pi, "RGB")
        elif out_pi not in ("RGB", "YBR_ICT", "YBR_RCT"):
            raise UnsupportedFormatError(f"The DICOM colour encoding '{clean_text(out_pi)[:20]}' could not be "
                                         "converted to RGB. Export it as RGB.")
        pixels = np.array(arr, dtype=np.float32)  # a copy: never a view on the upload
        top = float(2**stored - 1)
        photometric, units = "RGB", f"{stored}-bit"
        windows.append(Window(top / 2.0, top, f"stored range (0-{top:.0f})", "LINEAR_EXACT"))
    else:
        pixels = np.array(arr, dtype=np.float32)  # a copy: never a view on the upload
        del arr
        photometric = pi
        kind, slope, intercept, mlut, rtype = ("none", 1.0, 0.0, None, None)
        if keyword == "PixelData":
            kind, slope, intercept, mlut, rtype = _modality(header, index, enhanced)
        if kind == "lut" and mlut is not None:
            first, _bits, table = mlut
            idx = np.clip(np.rint(pixels - first), 0, len(table) - 1).astype(np.intp)
            pixels = table[idx]
            del idx
        elif kind == "rescale":
            if slope != 1.0:
                pixels *= np.float32(slope)
            if intercept != 0.0:
                pixels += np.float32(intercept)
            extra.update(RescaleSlope=slope, RescaleIntercept=intercept)
            if rtype:
                extra["RescaleType"] = rtype
        if kind == "none":
            units = "stored value"
        elif modality == "CT" and kind == "rescale" and (rtype or "HU").upper() in ("HU", "US"):
            units = "HU"
        elif rtype and rtype.upper() not in ("US",):
            units = rtype
        elif kind == "rescale" and slope == 1.0 and intercept == 0.0:
            units = "stored value"
        else:
            units = "rescaled value"
        # VOI: Frame VOI LUT Sequence (0028,9132) for Enhanced objects, else the top-level module
        voi_source = _fg_item(header, index, "FrameVOILUTSequence") if enhanced else None
        signed_lut = pixrep == 1 or (kind == "rescale" and intercept < 0)
        if voi_source is not None:
            windows.extend(_windows_from(voi_source, signed_lut, notes, ""))
        if not windows:
            windows.extend(_windows_from(header, signed_lut, notes, ""))
        has_header_windows = bool(windows)
        if not np.all(np.isfinite(pixels)):
            raise _corrupt("The DICOM pixel values are not finite after the Modality LUT.")
        full = full_range_window(pixels)
        if not has_header_windows:
            windows.append(full)
        elif windows[0].lut is None and _misses(windows[0], full):
            # a header window entirely outside the image's values shows a blank frame: keep it selectable,
            # but open on the full range
            windows.insert(0, full)
            notes.append("The header's display window lies outside this image's values; the full value range is "
                         "shown by default.")
            has_header_windows = False
        if units == "HU":
            windows.extend(Window(c, w, name, "LINEAR") for name, c, w in CT_PRESETS)
        if has_header_windows:
            windows.append(full)
        shape = str(_get(header, "PresentationLUTShape", "") or "").strip().upper()
        invert = pi == "MONOCHROME1" or shape == "INVERSE"
        if enhanced:
            measures = _fg_item(header, index, "PixelMeasuresSequence")
            if measures is not None:
                for kw in ("PixelSpacing", "SliceThickness"):
                    v = _get(measures, kw)
                    if v is not None:
                        extra[kw] = v
    if not np.all(np.isfinite(pixels)):
        raise _corrupt("The DICOM pixel values are not finite.")

    if str(_get(header, "BurnedInAnnotation", "") or "").strip().upper() == "YES":
        notes.append(_BURNED_IN_NOTE)
    lossy_flag = str(_get(header, "LossyImageCompression", "") or "").strip() == "01"
    if TRANSFER_SYNTAXES.get(declared_ts, ("", False))[1] or lossy_flag:
        notes.append("This image was lossy compressed: fine detail may differ from the original acquisition.")

    metadata = describe(header, extra)
    try:
        withheld = count_withheld(header)
    except Exception:  # pragma: no cover - count_withheld guards each element itself
        withheld = {"other": 1}
    return MedicalImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        format="dicom",
        photometric=photometric,
        windows=tuple(windows),
        invert=invert,
        units=units,
        frame_index=index,
        n_frames=n_frames,
        metadata=metadata,
        withheld=withheld,
        notes=tuple(dict.fromkeys(notes)),
    )


def load_dicom(data: bytes | bytearray | memoryview, frame: int | None = None) -> MedicalImage:
    """Decode one frame of a DICOM file held in memory, with its display windows and de-identified metadata.

    Parameters
    ----------
    data : bytes-like
        The whole file: Part 10 (128-byte preamble + ``DICM``) or a raw data set without preamble that
        :func:`medimg.io.sniff.looks_like_raw_dicom` recognises. Never written to disk.
    frame : int, optional
        0-based frame of a multi-frame image (Number of Frames (0028,0008)); the first when None. Only this
        frame is decoded.

    Returns
    -------
    MedicalImage
        ``pixels``: (Rows, Columns) float32 ndarray in modality units after the Modality LUT -- HU for CT
        (Rescale Slope/Intercept (0028,1053)/(0028,1052), Pixel Value Transformation Sequence (0028,9145) for
        Enhanced CT), stored values when there is no rescale -- or (Rows, Columns, 3) float32 RGB for RGB,
        YBR (converted, PS3.3 C.7.6.3.1.2) and PALETTE COLOR (through the Palette Color LUTs, C.7.6.3.1.5).
        ``windows``: the header's VOI LUT Sequence (0028,3010) items and Window Center/Width (0028,1050)/
        (0028,1051) pairs (names from (0028,1055), function from VOI LUT Function (0028,1056)), per frame
        from the Frame VOI LUT Sequence (0028,9132) for Enhanced objects; then :data:`CT_PRESETS` for CT in
        HU; then the full value range (first when the header has no window). ``invert`` is True for
        MONOCHROME1 or Presentation LUT Shape (2050,0020) INVERSE. ``metadata``: allowlisted attributes
        (:data:`medimg.io.metadata.SHOWN`); ``withheld``: counts per category; ``notes``: e.g. Burned In
        Annotation (0028,0301) YES, lossy compression.

    Raises
    ------
    CompressionNotSupportedError
        Transfer Syntax UID (0002,0010) not in :data:`TRANSFER_SYNTAXES`, or its decoder is not installed.
    ImageTooLargeError
        Declared frame over :data:`medimg.io.raster.MAX_PIXELS` pixels, whole pixel data over
        :data:`MAX_DECODED_BYTES`, more than :data:`MAX_FRAMES` frames, or a deflated data set inflating past
        :data:`MAX_INFLATED_BYTES` -- all checked before decoding.
    CorruptFileError
        Truncated file, missing Pixel Data (7FE0,0010) or Rows/Columns/Bits Allocated, header/data length
        mismatch, damaged JPEG / JPEG-LS / JPEG 2000 / RLE code stream, invalid LUTs.
    UnsupportedFormatError
        Not DICOM at all, or a photometric interpretation medimg does not render.
    ValueError
        ``frame`` is negative or not below Number of Frames (a programming error, not bad input).

    References
    ----------
    DICOM PS3.3 C.7.6.3 (Image Pixel), C.11.1 (Modality LUT), C.11.2 (VOI LUT), C.11.6 (Presentation LUT),
    C.7.6.16 (Multi-frame Functional Groups); PS3.5 8 and A.4 (encapsulation); PS3.10 7.1 (file format).
    """
    _quiet_pydicom()
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, (int, np.integer))):
        raise ValueError(f"frame must be an int or None, not {type(frame).__name__}")
    if frame is not None and frame < 0:
        raise ValueError(f"frame must be >= 0, got {frame}")
    data = bytes(data) if not isinstance(data, bytes) else data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _load(data, None if frame is None else int(frame))
        except (MedimgError, _FrameOutOfRange):
            raise
        except MemoryError:
            raise ImageTooLargeError("The DICOM image is too large to decode on this server.") from None
        except RecursionError:
            raise _corrupt("The DICOM file nests sequences too deeply to be read.") from None
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException:  # includes pyo3 PanicException (a BaseException) from Rust-based plugins
            raise _corrupt("The DICOM file cannot be read: it is damaged or not a valid DICOM image.") from None
