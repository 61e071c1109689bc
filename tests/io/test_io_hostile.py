"""Untrusted input (RELIABILITY.md): every input gives a valid image or a typed, safe error within 5 s / 256 MB."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from io_helpers import (
    MEMORY_LIMIT_B,
    TIME_LIMIT_S,
    dataset_bytes,
    deflated_dicom,
    gif_declaring,
    make_dicom,
    measure,
    pil_bytes,
    pixel_header_only,
    png_declaring,
)
from PIL import Image

from medimg.errors import (
    CompressionNotSupportedError,
    CorruptFileError,
    ImageTooLargeError,
    MedimgError,
    UnsupportedFormatError,
)
from medimg.io import MedicalImage, load_image, sniff_format

TYPED = (CorruptFileError, CompressionNotSupportedError, ImageTooLargeError, UnsupportedFormatError)
#: worst time and memory seen over this module, reported at the end of the run (see test_zz_report)
WORST: dict[str, tuple[float, str]] = {"time": (0.0, ""), "memory": (0.0, "")}


def check(data: bytes, expected: type[Exception] | tuple[type[Exception], ...] | None = None, label: str = "",
          allow_ok: bool = False) -> MedicalImage | MedimgError:
    """load_image(data) within the limits; the outcome is a valid image or a typed error (``expected``)."""
    outcome, elapsed, peak = measure(lambda: load_image(data))
    if elapsed > WORST["time"][0]:
        WORST["time"] = (elapsed, label)
    if peak > WORST["memory"][0]:
        WORST["memory"] = (peak, label)
    assert elapsed < TIME_LIMIT_S, f"{label}: {elapsed:.2f} s"
    assert peak < MEMORY_LIMIT_B, f"{label}: {peak / 2**20:.0f} MB"
    if isinstance(outcome, MedicalImage):
        assert allow_ok or expected is None, f"{label}: decoded, expected {expected}"
        assert np.isfinite(outcome.pixels).all()
        assert outcome.pixels.ndim in (2, 3) and outcome.pixels.dtype == np.float32
        return outcome
    assert isinstance(outcome, TYPED), f"{label}: raw {type(outcome).__name__}: {outcome}"
    if expected is not None:
        assert isinstance(outcome, expected), f"{label}: {type(outcome).__name__}: {outcome}"
    msg = str(outcome)
    assert msg and len(msg) < 400 and "Traceback" not in msg and "\n" not in msg
    assert outcome.__cause__ is None or isinstance(outcome.__cause__, MedimgError)
    return outcome


# ----------------------------------------------------------------------------------------- not images

NOT_IMAGES = {
    "empty": b"",
    "one byte": b"\x00",
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 4,
    "zip": b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(200),
    "elf": b"\x7fELF\x02\x01\x01\x00" + bytes(200),
    "exe": b"MZ\x90\x00\x03\x00\x00\x00" + bytes(200),
    "html": b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "xml": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
    "text": b"Patient name: nobody. This is a plain text note renamed .dcm\n" * 10,
    "utf8 text": "Überweisung: Röntgen Thorax, bitte befunden.\n".encode() * 10,
    "gzip": b"\x1f\x8b\x08\x00" + bytes(100),
    "pickle": b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94." + bytes(40),
    "dicm at 0": b"DICM" + bytes(200),
    "preamble only": bytes(128) + b"DICM",
}


@pytest.mark.parametrize("name", list(NOT_IMAGES))
def test_not_an_image(name: str) -> None:
    err = check(NOT_IMAGES[name], (UnsupportedFormatError, CorruptFileError), name)
    assert isinstance(err, MedimgError)


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(2, 200_000))
    check(rng.integers(0, 256, size, dtype=np.uint8).tobytes(), label=f"random {seed}")


@pytest.mark.parametrize("magic", [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"GIF89a",
                                   bytes(128) + b"DICM", b"\x08\x00\x05\x00CS\x0a\x00"])
def test_magic_followed_by_garbage(magic: bytes) -> None:
    rng = np.random.default_rng(len(magic))
    check(magic + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), CorruptFileError | UnsupportedFormatError,
          f"garbage after {magic[:4]!r}")


def test_content_wins_over_the_name(tmp_path: Path, dicom_dir: Path) -> None:
    png = pil_bytes(Image.new("L", (32, 32), 100), "PNG")
    dcm = (dicom_dir / "ct/CT1_UNC.dcm").read_bytes()
    (tmp_path / "scan.dcm").write_bytes(png)
    (tmp_path / "photo.png").write_bytes(dcm)
    (tmp_path / "note.dcm").write_bytes(NOT_IMAGES["text"])
    assert load_image(tmp_path / "scan.dcm").format == "png"
    img = load_image(tmp_path / "photo.png")
    assert img.format == "dicom" and img.units == "HU"
    with pytest.raises(UnsupportedFormatError, match="plain text"):
        load_image(tmp_path / "note.dcm")
    assert sniff_format(png) == "png" and sniff_format(dcm) == "dicom"


# ----------------------------------------------------------------------------------------- decompression bombs


def test_png_declaring_100000_squared() -> None:
    data = png_declaring(100_000, 100_000)
    assert len(data) < 200
    check(data, ImageTooLargeError, "png 1e10 px")


def test_png_between_our_cap_and_pillows() -> None:
    check(png_declaring(7_000, 7_000), ImageTooLargeError, "png 49 MP")  # Pillow would only warn at 89 MP
    check(png_declaring(4_000, 4_000, 8, 2), ImageTooLargeError, "rgb png 16 MP")  # colour cap 13.3 MP


def test_gif_bombs() -> None:
    check(gif_declaring((65_535, 65_535)), ImageTooLargeError, "gif logical screen")
    check(gif_declaring((16, 16), (0, 0, 9_000, 9_000)), ImageTooLargeError, "gif frame extent")
    many = gif_declaring((8, 8))[:-1]
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 8, 8, 0) + b"\x02\x02\x44\x01\x00"
    check(many + frame * 3_000 + b"\x3b", ImageTooLargeError, "gif 3000 frames")


def test_apng_declaring_millions_of_frames() -> None:
    frames = [Image.new("L", (8, 8), v) for v in (0, 255)]
    data = bytearray(pil_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:]))
    i = data.index(b"acTL")
    payload = struct.pack(">LL", 5_000_000, 0)
    data[i + 4 : i + 12] = payload
    data[i + 12 : i + 16] = struct.pack(">L", zlib.crc32(b"acTL" + payload))
    check(bytes(data), (ImageTooLargeError, CorruptFileError), "apng 5e6 frames")


def test_tiff_with_too_many_pages() -> None:
    pages = [Image.new("L", (2, 2), i % 256) for i in range(2_100)]
    check(pil_bytes(pages[0], "TIFF", save_all=True, append_images=pages[1:]), ImageTooLargeError, "tiff 2100 pages")


@pytest.mark.parametrize(("attrs", "label"), [
    ({"Rows": 60_000, "Columns": 60_000}, "rows x columns"),
    ({"NumberOfFrames": 1_000_000}, "frames"),
    ({"Rows": 4_096, "Columns": 4_096, "NumberOfFrames": 40}, "total bytes"),
    ({"Rows": 4_000, "Columns": 4_000, "SamplesPerPixel": 3, "PhotometricInterpretation": "RGB",
      "PlanarConfiguration": 0}, "colour frame"),
])
def test_dicom_declaring_absurd_sizes(attrs: dict, label: str) -> None:
    check(make_dicom(np.zeros((8, 8), np.uint16), **attrs), ImageTooLargeError, label)


def _edited(data: bytes, **attrs: object) -> bytes:
    """A DICOM's bytes with some header attributes overwritten (pixel data untouched)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    for key, value in attrs.items():
        setattr(ds, key, value)
    fp = io.BytesIO()
    ds.save_as(fp, enforce_file_format=True)
    return fp.getvalue()


def test_dicom_declaring_absurd_size_in_compressed_syntax(dicom_dir: Path) -> None:
    data = _edited((dicom_dir / "ct/CT1_RLE.dcm").read_bytes(), NumberOfFrames=9_000)
    check(data, ImageTooLargeError, "rle 9000 frames")


def test_deflate_bomb_declaring_huge_pixel_data() -> None:
    data = deflated_dicom(pixel_header_only(0xFFFFFFF0, Rows=40_000, Columns=50_000), zeros_mb=300)
    assert len(data) < 400_000  # 300 MB of zeros compress to ~300 KB
    check(data, ImageTooLargeError, "deflate bomb (declared)")


def test_deflate_bomb_of_zeros() -> None:
    check(deflated_dicom(b"", zeros_mb=300), (ImageTooLargeError, CorruptFileError), "deflate bomb (zeros)")


def test_deflate_with_trailing_zeros_inflates_only_what_it_needs() -> None:
    arr = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    _, body = dataset_bytes(make_dicom(arr))
    img = check(deflated_dicom(body, zeros_mb=300), None, "deflate with 300 MB trailing zeros")
    assert isinstance(img, MedicalImage)
    np.testing.assert_array_equal(img.pixels, arr.astype(np.float32))


def test_deflate_truncated_and_corrupt() -> None:
    _, body = dataset_bytes(make_dicom(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)))
    good = deflated_dicom(body)
    check(good[:-300], CorruptFileError, "deflate truncated")
    bad = bytearray(good)
    bad[len(bad) // 2 : len(bad) // 2 + 40] = b"\xff" * 40
    check(bytes(bad), label="deflate corrupt")


def test_element_flood_is_refused_before_pydicom_parses_it() -> None:
    head, _ = dataset_bytes(make_dicom(np.zeros((4, 4), np.uint16)))
    # 200,000 private LO elements of 8 bytes each (1.6 MB), in ascending tag order
    elems = b"".join(struct.pack("<HH2sH", 0x0009, 0x1000 + (i % 0xEFFF), b"LO", 0) for i in range(200_000))
    check(head + elems, ImageTooLargeError, "element flood")
    # the same flood nested in an undefined-length sequence (pydicom parses those eagerly)
    seq = struct.pack("<HH2sHL", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF) + struct.pack("<HHL", 0xFFFE, 0xE000,
                                                                                      0xFFFFFFFF)
    check(head + seq + elems, ImageTooLargeError, "nested element flood")


def test_deeply_nested_sequences() -> None:
    head, _ = dataset_bytes(make_dicom(np.zeros((4, 4), np.uint16)))
    level = struct.pack("<HH2sHL", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF) + struct.pack("<HHL", 0xFFFE, 0xE000,
                                                                                        0xFFFFFFFF)
    check(head + level * 5_000, label="5000 nested sequences")


# ----------------------------------------------------------------------------------------- damaged files


def test_header_data_mismatch() -> None:
    data = make_dicom(np.zeros((64, 64), np.uint16))
    err = check(_edited(data, Rows=128), CorruptFileError, "rows doubled")
    assert "disagree" in str(err)
    check(_edited(data, NumberOfFrames=3), CorruptFileError, "frames tripled")


def test_fewer_fragments_than_frames(dicom_dir: Path) -> None:
    data = _edited((dicom_dir / "mr/emri_small_RLE.dcm").read_bytes(), NumberOfFrames=12)
    check(data, CorruptFileError, "12 frames declared, 10 present")


@pytest.mark.parametrize("name", ["ct/CT1_JPLL.dcm", "ct/CT1_J2KR.dcm", "ct/CT1_JLSL.dcm", "ct/CT1_RLE.dcm",
                                  "cxr/RG1_J2KI.dcm"])
def test_corrupt_code_streams(dicom_dir: Path, name: str) -> None:
    data = bytearray((dicom_dir / name).read_bytes())
    rng = np.random.default_rng(7)
    start = len(data) // 3
    for k in range(3):  # three damaged variants: noise, zeros, 0xFF run
        bad = bytearray(data)
        fill = [rng.integers(0, 256, 2000, dtype=np.uint8).tobytes(), bytes(2000), b"\xff" * 2000][k]
        bad[start : start + 2000] = fill
        check(bytes(bad), label=f"{name} corrupt {k}")


@pytest.mark.parametrize("name", ["ct/CT1_UNC.dcm", "ct/CT1_JPLL.dcm", "mr/emri_small_RLE.dcm",
                                  "mr/emri_small_jpeg_2k_lossless.dcm", "cxr/dx_image.dcm",
                                  "other/OBXXXX1A_rle_2frame.dcm"])
def test_truncated_dicoms(dicom_dir: Path, name: str) -> None:
    data = (dicom_dir / name).read_bytes()
    offsets = sorted({1, 2, 8, 64, 127, 128, 131, 132, 140, 200, 400, 800, 1500, 3000}
                     | {int(len(data) * f) for f in np.linspace(0.05, 0.999, 25)} | {len(data) - 1, len(data) - 8})
    raw = pydicom.dcmread(io.BytesIO(data)).get_item(0x7FE00010)
    if raw.length == 0xFFFFFFFF:  # encapsulated: value read, then the 8-byte sequence delimiter
        pixel_end = raw.value_tell + len(raw.value) + 8
    else:
        pixel_end = raw.value_tell + raw.length
    for cut in offsets:
        if 0 < cut < len(data):  # any cut before the end of the pixel data damages the image
            check(data[:cut], None if cut >= pixel_end else (CorruptFileError, UnsupportedFormatError),
                  label=f"{name}[:{cut}]")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "GIF", "BMP"])
def test_truncated_rasters(fmt: str) -> None:
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 256, (96, 128), dtype=np.uint8)
    data = pil_bytes(Image.fromarray(arr), fmt)
    offsets = {1, 4, 8, 16, 33, 60, 100} | {int(len(data) * f) for f in np.linspace(0.1, 0.99, 20)}
    for cut in sorted(offsets):
        if 0 < cut < len(data):
            check(data[:cut], (CorruptFileError, UnsupportedFormatError), label=f"{fmt}[:{cut}]")


def test_png_with_bad_crc_and_bad_zlib() -> None:
    data = bytearray(pil_bytes(Image.new("L", (64, 64), 7), "PNG"))
    i = data.index(b"IDAT")
    length = struct.unpack(">L", data[i - 4 : i])[0]
    bad = bytearray(data)
    bad[i + 4 : i + 4 + length] = b"\x00" * length  # garbage zlib stream, CRC now wrong too
    check(bytes(bad), CorruptFileError, "png bad idat")
    payload = zlib.compress(b"\x00" * 10)  # IDAT too short for 64 rows
    short = bytes(data[: i - 4]) + struct.pack(">L", len(payload)) + b"IDAT" + payload + struct.pack(
        ">L", zlib.crc32(b"IDAT" + payload)) + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    check(short, CorruptFileError, "png short idat")


def test_zz_report_worst_case(capsys: pytest.CaptureFixture[str]) -> None:
    """Print the worst time and Python memory measured among the bad inputs of this module (for the record)."""
    t, t_label = WORST["time"]
    m, m_label = WORST["memory"]
    with capsys.disabled():
        print(f"\n[io hostile] worst time {t:.2f} s ({t_label}); worst tracemalloc peak {m / 2**20:.1f} MB "
              f"({m_label})")
