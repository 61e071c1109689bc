"""Pixel data: locating the element, checking its encapsulation and decoding one frame.

:func:`_pixel_element` finds the top-level Pixel Data (7FE0,0010) (or Float / Double Float Pixel Data
(7FE0,0008)/(7FE0,0009)) element after the header; :func:`_check_fragments` walks the items of encapsulated
pixel data (PS3.5 A.4) before decoding; :func:`_native_length` is the byte length natively encoded pixel data
must have (PS3.5 8.1.1, PS3.3 C.7.6.3.1.2); :func:`_decode_frame` decodes only the requested frame with
pydicom's decoder and one preferred plugin per compressed transfer syntax (:data:`_PREFERRED_PLUGIN`).
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np

from medimg.errors import ImageTooLargeError
from medimg.io.dicom.common import _corrupt
from medimg.io.dicom.reading import _EXPLICIT_BE, _IMPLICIT_LE, _LONG_VRS, _MAX_FRAGMENTS, _PIXEL_TAGS

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
