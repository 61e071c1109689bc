"""Builders and measuring helpers for the medimg.io tests (imported as ``io_helpers``; no fixtures here)."""

from __future__ import annotations

import csv
import io
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medimg.catalog import data_root

#: Generous per-file limits of the reliability bar (RELIABILITY.md: 5 s and +256 MB).
TIME_LIMIT_S = 5.0
MEMORY_LIMIT_B = 256 * 2**20

#: A canary identity written into synthetic DICOMs; must never appear in any message or metadata value.
CANARY = {
    "PatientName": "Canary^Zebedee",
    "PatientID": "CANARY-8472",
    "AccessionNumber": "ACC-CANARY-99",
    "PatientBirthDate": "19010203",
    "InstitutionName": "Canary Hospital",
    "ReferringPhysicianName": "Doctor^Canary",
    "StudyDate": "20200102",
}


def dicom_root() -> Path:
    return data_root() / "dicom"


def manifest_rows() -> list[dict[str, str]]:
    path = dicom_root() / "MANIFEST.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def pydicom_file(name: str) -> Path:
    """A pydicom test file, from pydicom's bundled set or the offline ``pydicom-data`` package; skip if absent."""
    from pydicom.data import get_testdata_file

    try:
        path = get_testdata_file(name, read=False)
    except Exception:  # pragma: no cover - network fallback refused offline
        path = None
    if not path or not Path(str(path)).is_file():
        pytest.skip(f"pydicom test file {name} not available offline")
    return Path(str(path))


# ------------------------------------------------------------------------------------------ measuring


def measure(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """Run ``fn`` twice: once timed (perf_counter), once under tracemalloc. Returns (outcome, seconds, peak).

    ``outcome`` is the return value or the exception instance raised.
    """
    def run() -> Any:
        try:
            return fn()
        except Exception as err:  # the caller inspects the type
            return err

    t0 = time.perf_counter()
    outcome = run()
    elapsed = time.perf_counter() - t0
    tracemalloc.start()
    try:
        run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return outcome, elapsed, peak


# ------------------------------------------------------------------------------------------ DICOM builders


def make_dicom(
    arr: np.ndarray | None,
    *,
    transfer_syntax: str = "1.2.840.10008.1.2.1",
    photometric: str | None = None,
    bits_stored: int | None = None,
    canary: bool = False,
    preamble: bool = True,
    compress: bool = False,
    **attrs: Any,
) -> bytes:
    """Write a small Secondary Capture DICOM with pydicom and return its bytes.

    Parameters
    ----------
    arr : (H, W) or (F, H, W) integer ndarray, or (H, W, 3) / (F, H, W, 3) with an RGB/YBR ``photometric``;
        None for no Pixel Data.
    transfer_syntax : the (0002,0010) UID; with ``compress`` the pixels are encoded with pydicom's encoders.
    attrs : extra data set attributes by keyword (they override the defaults, e.g. Rows=60000).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import UID

    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    meta.TransferSyntaxUID = UID(transfer_syntax) if not compress else UID("1.2.840.10008.1.2.1")
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    if canary:
        for k, v in CANARY.items():
            setattr(ds, k, v)
    if arr is not None:
        a = np.asarray(arr)
        spp = 3 if (photometric or "").startswith(("RGB", "YBR")) else 1
        multi = a.ndim == (4 if spp == 3 else 3)
        shape = a.shape[1:] if multi else a.shape
        ds.Rows, ds.Columns = int(shape[0]), int(shape[1])
        ds.SamplesPerPixel = spp
        ds.PhotometricInterpretation = photometric or ("RGB" if spp == 3 else "MONOCHROME2")
        if spp == 3:
            ds.PlanarConfiguration = 0
        bits = a.dtype.itemsize * 8
        ds.BitsAllocated = bits
        ds.BitsStored = bits_stored or bits
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if a.dtype.kind == "i" else 0
        if multi:
            ds.NumberOfFrames = int(a.shape[0])
        ds.PixelData = a.astype(a.dtype.newbyteorder("<")).tobytes()
    for k, v in attrs.items():
        setattr(ds, k, v)
    if compress:
        ds.compress(transfer_syntax, encoding_plugin="", generate_instance_uid=False)
    fp = io.BytesIO()
    native = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
    ts = str(ds.file_meta.TransferSyntaxUID)
    placeholder = None
    if ts in native:
        dcmwrite(fp, ds, enforce_file_format=True)
    else:  # a syntax medimg must refuse: encapsulate the bytes as they are, write as Explicit VR Little Endian
        from pydicom.encaps import encapsulate

        if "PixelData" in ds and not compress:
            ds.PixelData = encapsulate([bytes(ds.PixelData)])
        if ts.startswith("1.2.840.10008.") and not UID(ts).is_transfer_syntax:
            placeholder = "1.2.840.10008.1.2.4.100".ljust(len(ts), "0")[: len(ts)]
            ds.file_meta.TransferSyntaxUID = placeholder  # same length, patched below
        dcmwrite(fp, ds, implicit_vr=False, little_endian=True, enforce_file_format=True)
    data = fp.getvalue()
    if placeholder is not None:
        data = data.replace(placeholder.encode(), ts.encode(), 1)
    if not preamble:
        data = data[132:]
    return data


def dataset_bytes(data: bytes) -> tuple[bytes, bytes]:
    """Split a Part 10 file written by :func:`make_dicom` into (preamble + file meta, data set) bytes."""
    meta_len = struct.unpack_from("<L", data, 132 + 8)[0]
    meta_end = 132 + 12 + meta_len
    return data[:meta_end], data[meta_end:]


def deflated_dicom(dataset: bytes, zeros_mb: int = 0) -> bytes:
    """A Deflated Explicit VR Little Endian file: the file meta of a small DICOM with the Transfer Syntax UID
    rewritten to 1.2.840.10008.1.2.1.99, then ``dataset`` + ``zeros_mb`` MB of zero bytes, raw-deflated."""
    head, _ = dataset_bytes(make_dicom(np.zeros((4, 4), np.uint8)))
    meta = bytearray(head)
    old, new = b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.1.99"
    i = meta.index(old)
    meta[i - 2 : i] = struct.pack("<H", len(new))
    meta[i : i + len(old)] = new
    struct.pack_into("<L", meta, 132 + 8, struct.unpack_from("<L", meta, 132 + 8)[0] + len(new) - len(old))
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunk = b"\x00" * 2**20
    body = comp.compress(dataset) + b"".join(comp.compress(chunk) for _ in range(zeros_mb)) + comp.flush()
    return bytes(meta) + body


def pixel_header_only(pixel_length: int, **attrs: Any) -> bytes:
    """Explicit VR LE data set bytes of a small image whose Pixel Data element declares ``pixel_length``
    bytes, with no value written after the element header (the caller appends the value, or not)."""
    _, ds = dataset_bytes(make_dicom(np.zeros((4, 4), np.uint16), **attrs))
    i = ds.index(b"\xe0\x7f\x10\x00OW\x00\x00")
    return ds[:i] + b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<L", pixel_length)


# ------------------------------------------------------------------------------------------ raster builders


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">L", len(payload)) + kind + payload + struct.pack(">L", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int, bit_depth: int = 8, color_type: int = 0) -> bytes:
    """A tiny PNG whose IHDR (valid CRC) declares ``width`` x ``height`` with one small IDAT."""
    ihdr = struct.pack(">LLBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def gif_declaring(screen: tuple[int, int], frame: tuple[int, int, int, int] = (0, 0, 1, 1)) -> bytes:
    """A GIF with logical screen ``(width, height)`` and one frame ``(x0, y0, width, height)`` of tiny data."""
    w, h = screen
    head = b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    x0, y0, fw, fh = frame
    desc = b"\x2c" + struct.pack("<HHHHB", x0, y0, fw, fh, 0)
    data = b"\x02\x02\x44\x01\x00"  # LZW min code size 2, one 2-byte sub-block, terminator
    return head + desc + data + b"\x3b"


def pil_bytes(im: Any, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()
