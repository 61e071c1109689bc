"""Format by content (magic bytes), never by name."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from io_helpers import make_dicom, pil_bytes
from PIL import Image

from medimg.errors import UnsupportedFormatError
from medimg.io import sniff_format
from medimg.io.sniff import looks_like_raw_dicom


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpeg", "JPEG"), ("tiff", "TIFF"), ("gif", "GIF"),
                                          ("bmp", "BMP")])
def test_raster_magic(fmt: str, pil: str) -> None:
    assert sniff_format(pil_bytes(Image.new("L", (8, 8)), pil)) == fmt


def test_part10_dicom() -> None:
    assert sniff_format(make_dicom(np.zeros((4, 4), np.uint16))) == "dicom"


def test_raw_dicom_needs_consistent_elements() -> None:
    no_preamble = make_dicom(np.zeros((4, 4), np.uint16), preamble=False)
    assert looks_like_raw_dicom(no_preamble)
    # starts with a plausible tag but the rest is not DICOM
    assert not looks_like_raw_dicom(b"\x08\x00\x05\x00" + b"hello world, not a data element" * 3)
    assert not looks_like_raw_dicom(b"\x08\x00\x05\x00CS\xff\x7f" + bytes(20))  # length beyond the data
    assert not looks_like_raw_dicom(b"\x08\x00")
    # two ascending explicit VR elements of group 0008
    raw = (struct.pack("<HH2sH", 0x0008, 0x0005, b"CS", 10) + b"ISO_IR 100"
           + struct.pack("<HH2sH", 0x0008, 0x0060, b"CS", 2) + b"CT")
    assert looks_like_raw_dicom(raw)
    # descending tags are not a data set
    bad = (struct.pack("<HH2sH", 0x0008, 0x0060, b"CS", 2) + b"CT"
           + struct.pack("<HH2sH", 0x0008, 0x0005, b"CS", 10) + b"ISO_IR 100")
    assert not looks_like_raw_dicom(bad)
    # implicit VR
    imp = struct.pack("<HHL", 0x0008, 0x0016, 4) + b"1.2\x00" + struct.pack("<HHL", 0x0008, 0x0018, 4) + b"1.3\x00"
    assert looks_like_raw_dicom(imp)


@pytest.mark.parametrize(("data", "what"), [
    (b"", "empty"),
    (b"\x01", "too short"),
    (b"%PDF-1.4 ...." * 3, "PDF"),
    (b"PK\x03\x04" + bytes(40), "ZIP"),
    (b"\x7fELF" + bytes(40), "executable"),
    (b"MZ\x90\x00" + bytes(40), "executable"),
    (b"   <!doctype html><html></html>" + bytes(10), "HTML"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "SVG"),
    (b"hello, this is plain text and nothing else at all", "plain text"),
    (b"BM this is a text about a car, not a bitmap" * 2, "plain text"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(40), "JPEG 2000"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(40), "WebP"),
])
def test_refusals_name_what_the_file_is(data: bytes, what: str) -> None:
    with pytest.raises(UnsupportedFormatError) as info:
        sniff_format(data)
    assert what in str(info.value)


def test_random_bytes_are_unknown() -> None:
    rng = np.random.default_rng(0)
    data = bytes([0x01, 0x02]) + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(UnsupportedFormatError, match="not a recognised image format"):
        sniff_format(data)
