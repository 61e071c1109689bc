"""Reading a DICOM file up to its pixel data, with the safety checks that come before any decoding.

Holds the transfer syntax (0002,0010) allowlist :data:`TRANSFER_SYNTAXES` and the safety limits
(:data:`MAX_DECODED_BYTES`, :data:`MAX_INFLATED_BYTES`, :data:`MAX_FRAMES`, and private bounds on header
elements, encapsulated fragments and deferred values); the File Meta Information and header parsing (PS3.10
7.1; PS3.5 7.1 data elements, 7.5 sequences), after counting the data elements before pydicom parses them; the
inflation of a Deflated Explicit VR Little Endian data set (PS3.5 A.5) under a cap, since pydicom would inflate
without limit; and :func:`_check_size`, which refuses a declared Rows x Columns x Number of Frames x Samples x
Bits Allocated (PS3.3 C.7.6.3) over :data:`MAX_DECODED_BYTES` or the per-frame
:data:`medimg.io.raster.MAX_PIXELS` before any pixel is decoded.
"""

from __future__ import annotations

import io
import struct
import zlib

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from medimg.errors import CompressionNotSupportedError, ImageTooLargeError, UnsupportedFormatError
from medimg.io.dicom.common import _corrupt
from medimg.io.metadata import clean_text
from medimg.io.raster import MAX_DECODED_VALUES, MAX_FRAMES, MAX_PIXELS
from medimg.io.sniff import looks_like_raw_dicom

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

#: Largest declared decoded size of the whole pixel data (all frames), in bytes.
MAX_DECODED_BYTES = 512 * 2**20
#: Largest inflated size of a Deflated Explicit VR Little Endian data set (up to the end of its pixel data), bytes.
MAX_INFLATED_BYTES = 128 * 2**20
#: Largest inflated header (everything before the pixel data) of a deflated data set, in bytes.
_MAX_DEFLATED_HEADER = 16 * 2**20
#: Most data elements (all nesting depths) before the pixel data: bounds pydicom's parse time on hostile files.
_MAX_ELEMENTS = 100_000
#: Most items in encapsulated pixel data (Basic Offset Table + fragments) walked before decoding.
_MAX_FRAGMENTS = 200_000
#: Values read from the file into memory before the pixel data are deferred above this size.
_DEFER_SIZE = 4 * 2**20

_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"UV"})


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
