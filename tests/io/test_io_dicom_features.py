"""DICOM features on pydicom's test files and synthetic data sets: LUTs, colour, encodings, metadata, errors."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from io_helpers import CANARY, make_dicom, pydicom_file
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence

from medimg.errors import CompressionNotSupportedError, CorruptFileError, MedimgError, UnsupportedFormatError
from medimg.io import load_image, sniff_format
from medimg.io.dicom import CT_PRESETS, load_dicom
from medimg.io.metadata import WITHHELD_CATEGORIES


def _ref(name: str) -> tuple[Dataset, np.ndarray]:
    ds = pydicom.dcmread(pydicom_file(name))
    return ds, ds.pixel_array


# ----------------------------------------------------------------------------------------- LUTs and windows


def test_voi_lut_sequence_matches_pydicom() -> None:
    ds, arr = _ref("vlut_04.dcm")
    img = load_image(pydicom_file("vlut_04.dcm").read_bytes())
    win = img.windows[0]
    assert win.lut is not None
    first, bits, table = win.lut
    assert (first, bits, len(table)) == (0, 16, 256)
    ref = apply_voi_lut(arr, ds).astype(np.float64) / 65535.0
    np.testing.assert_allclose(img.display(), ref, atol=1e-6)
    assert img.windows[-1].name == "full range"


def test_modality_lut_sequence_matches_pydicom() -> None:
    ds, arr = _ref("mlut_18.dcm")
    img = load_image(pydicom_file("mlut_18.dcm").read_bytes())
    np.testing.assert_array_equal(img.pixels, apply_modality_lut(arr, ds).astype(np.float32))
    assert img.units != "HU"


def test_multiple_windows_names_and_function() -> None:
    arr = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    data = make_dicom(arr, WindowCenter=[100, 2000], WindowWidth=[200, 4000], VOILUTFunction="SIGMOID")
    img = load_image(data)
    assert [(w.name, w.center, w.width, w.function) for w in img.windows[:2]] == [
        ("header 1", 100.0, 200.0, "SIGMOID"), ("header 2", 2000.0, 4000.0, "SIGMOID")]
    assert len(img.windows) == 3 and img.windows[2].name == "full range"


def test_invalid_header_window_is_skipped_with_a_note() -> None:
    arr = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    img = load_image(make_dicom(arr, WindowCenter=[100, 300], WindowWidth=[0, 400]))
    assert [(w.center, w.width) for w in img.windows[:1]] == [(300.0, 400.0)]
    assert any("window" in n and "ignored" in n for n in img.notes)


def test_ct_synthetic_units_and_presets() -> None:
    arr = np.full((32, 32), 24, dtype=np.int16)
    img = load_image(make_dicom(arr, Modality="CT", RescaleSlope=1, RescaleIntercept=-1024))
    assert img.units == "HU"
    assert float(img.pixels[0, 0]) == -1000.0
    assert [w.name for w in img.windows[:-1]] == [n for n, _, _ in CT_PRESETS]
    assert img.default_window.name == "soft tissue" and img.windows[-1].name == "full range"


def test_rescale_type_names_units() -> None:
    arr = np.full((32, 32), 10, dtype=np.uint16)
    img = load_image(make_dicom(arr, Modality="CR", RescaleSlope=0.5, RescaleIntercept=1, RescaleType="OD"))
    assert img.units == "OD" and float(img.pixels[0, 0]) == 6.0
    img = load_image(make_dicom(arr, Modality="MR"))
    assert img.units == "stored value"


@pytest.mark.parametrize(("photometric", "shape", "expected"), [
    ("MONOCHROME1", None, True), ("MONOCHROME2", None, False), ("MONOCHROME2", "INVERSE", True),
    ("MONOCHROME1", "INVERSE", True), ("MONOCHROME2", "IDENTITY", False)])
def test_inversion_rules(photometric: str, shape: str | None, expected: bool) -> None:
    arr = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    kw = {"PresentationLUTShape": shape} if shape else {}
    img = load_image(make_dicom(arr, photometric=photometric, **kw))
    assert img.invert is expected
    disp = img.display()
    assert bool(disp[0, 0] > disp[-1, -1]) is expected


# ----------------------------------------------------------------------------------------- pixel encodings


@pytest.mark.parametrize("bits_stored", [10, 12, 15, 16])
def test_unsigned_bits_stored_masks_unused_high_bits(bits_stored: int) -> None:
    rng = np.random.default_rng(bits_stored)
    true = rng.integers(0, 2**bits_stored, size=(16, 16), dtype=np.uint16)
    garbage = true | np.uint16((0xFFFF << bits_stored) & 0xFFFF)  # e.g. overlay bits in the high bits
    img = load_image(make_dicom(garbage, bits_stored=bits_stored))
    np.testing.assert_array_equal(img.pixels, true.astype(np.float32))


@pytest.mark.parametrize("bits_stored", [10, 12, 15, 16])
def test_signed_bits_stored_sign_extends(bits_stored: int) -> None:
    rng = np.random.default_rng(bits_stored)
    true = rng.integers(-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1), size=(16, 16)).astype(np.int16)
    raw = (true.view(np.uint16) & np.uint16((1 << bits_stored) - 1)).view(np.int16)  # high bits zero
    img = load_image(make_dicom(raw, bits_stored=bits_stored))
    np.testing.assert_array_equal(img.pixels, true.astype(np.float32))
    assert img.metadata["Pixel Representation"] == "signed"


@pytest.mark.parametrize("name", ["SC_ybr_full_uncompressed.dcm", "SC_ybr_full_422_uncompressed.dcm",
                                  "SC_rgb_jpeg_dcmtk.dcm", "US1_J2KR.dcm", "SC_rgb_rle.dcm"])
def test_ybr_and_rgb_become_rgb(name: str) -> None:
    ds, ref = _ref(name)
    img = load_image(pydicom_file(name).read_bytes())
    assert img.photometric == "RGB" and img.shape == ref.shape
    np.testing.assert_array_equal(img.pixels, ref.astype(np.float32))
    assert img.windows[0].center == 127.5 and img.windows[0].width == 255.0


def test_planar_configuration_one_equals_zero() -> None:
    a = load_image(pydicom_file("color-pl.dcm").read_bytes())
    b = load_image(pydicom_file("color-px.dcm").read_bytes())
    np.testing.assert_array_equal(a.pixels, b.pixels)


def test_big_endian_and_implicit_equal_little_endian() -> None:
    ref = load_image(pydicom_file("MR_small.dcm").read_bytes()).pixels
    for name in ("MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm",
                 "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"):
        np.testing.assert_array_equal(load_image(pydicom_file(name).read_bytes()).pixels, ref, err_msg=name)


def test_deflated_file_decodes() -> None:
    ds, ref = _ref("image_dfl.dcm")
    img = load_image(pydicom_file("image_dfl.dcm").read_bytes())
    np.testing.assert_array_equal(img.pixels, ref.astype(np.float32))
    assert img.metadata["Transfer Syntax"] == "Deflated Explicit VR Little Endian"


def test_one_bit_segmentation() -> None:
    img = load_image(pydicom_file("liver.dcm").read_bytes(), frame=1)
    assert set(np.unique(img.pixels)) <= {0.0, 1.0}
    assert img.n_frames == 3


def test_preamble_less_file_with_meta_is_recognised() -> None:
    arr = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    data = make_dicom(arr, preamble=False)
    assert data[:2] == b"\x02\x00"
    assert sniff_format(data) == "dicom"
    img = load_image(data)
    np.testing.assert_array_equal(img.pixels, arr.astype(np.float32))
    assert any("preamble" in n for n in img.notes)


@pytest.mark.parametrize("implicit", [True, False])
def test_raw_data_set_without_meta_is_recognised(implicit: bool) -> None:
    arr = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = pydicom.dcmread(io.BytesIO(make_dicom(arr)))
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, True
    write_dataset(fp, ds)
    data = fp.getvalue()
    assert data[:2] == b"\x08\x00"
    assert sniff_format(data) == "dicom"
    img = load_image(data)
    np.testing.assert_array_equal(img.pixels, arr.astype(np.float32))
    expected = "Implicit VR Little Endian" if implicit else "Explicit VR Little Endian"
    assert img.metadata["Transfer Syntax"] == expected


def test_load_dicom_refuses_non_dicom() -> None:
    with pytest.raises(UnsupportedFormatError):
        load_dicom(b"\x08\x00 this is not dicom at all, just text" * 4)


def test_frame_argument_validation() -> None:
    data = make_dicom(np.zeros((2, 8, 8), np.uint16))
    assert load_image(data, frame=1).frame_index == 1
    for bad in (2, -1):
        with pytest.raises(ValueError):
            load_image(data, frame=bad)
    with pytest.raises(ValueError):
        load_dicom(data, frame=1.5)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- Enhanced objects


def _fg(**seqs: Dataset) -> Dataset:
    item = Dataset()
    for keyword, inner in seqs.items():
        setattr(item, keyword, Sequence([inner]))
    return item


def test_enhanced_per_frame_windows_and_shared_rescale() -> None:
    ramp = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 4
    arr = np.stack([ramp + 100, ramp + 200])
    pvt = Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 2, -1024, "HU"
    v0, v1 = Dataset(), Dataset()
    v0.WindowCenter, v0.WindowWidth, v0.WindowCenterWidthExplanation = 40, 400, "SOFT"
    v1.WindowCenter, v1.WindowWidth = [-600, 300], [1500, 1800]
    data = make_dicom(arr, Modality="CT",
                      SharedFunctionalGroupsSequence=Sequence([_fg(PixelValueTransformationSequence=pvt)]),
                      PerFrameFunctionalGroupsSequence=Sequence([_fg(FrameVOILUTSequence=v0),
                                                                 _fg(FrameVOILUTSequence=v1)]))
    f0, f1 = load_image(data, frame=0), load_image(data, frame=1)
    assert float(f0.pixels[0, 0]) == 2 * 100 - 1024 and float(f1.pixels[0, 0]) == 2 * 200 - 1024
    assert f0.units == f1.units == "HU"
    assert [(w.name, w.center, w.width) for w in f0.windows[:1]] == [("SOFT", 40.0, 400.0)]
    assert [(w.center, w.width) for w in f1.windows[:2]] == [(-600.0, 1500.0), (300.0, 1800.0)]
    assert f0.metadata["Rescale Slope"] == "2" and f0.metadata["Rescale Intercept"] == "-1024"


# ----------------------------------------------------------------------------------------- metadata / privacy


def test_metadata_allowlist_and_withheld_categories() -> None:
    arr = np.zeros((16, 16), np.uint16)
    inner = Dataset()
    inner.PatientID = "NESTED-CANARY"
    inner.IssuerOfPatientID = "NESTED-ISSUER"
    data = make_dicom(
        arr, canary=True, Modality="DX", BodyPartExamined="CHEST", ViewPosition="PA", PixelSpacing=[0.15, 0.15],
        Manufacturer="ACME", SeriesDescription="free text here", StationName="STATION-CANARY",
        OperatorsName="Op^Canary", StudyID="STUDY-CANARY", StudyInstanceUID="1.2.3.4.5",
        OtherPatientIDsSequence=Sequence([inner]), BurnedInAnnotation="YES",
    )
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.add_new(0x00091010, "LO", "private canary")
    ds.add_new(0x60000010, "US", 16)
    ds.add_new(0x60003000, "OW", b"\x00" * 32)
    fp = io.BytesIO()
    ds.save_as(fp, enforce_file_format=True)
    img = load_image(fp.getvalue())
    md = img.metadata
    assert md["Modality"] == "DX" and md["Body Part Examined"] == "CHEST" and md["View Position"] == "PA"
    assert md["Pixel Spacing"] == "0.15 x 0.15 mm (row x column)"
    assert md["Manufacturer"] == "ACME" and md["Burned In Annotation"] == "YES"
    w = img.withheld
    assert list(w) == [c for c in WITHHELD_CATEGORIES if c in w]
    assert w["patient identity"] >= 2 + 1 + 2  # name, ID, birth date + sequence + 2 nested
    assert w["accession and study identifiers"] >= 2
    assert w["institution and staff"] >= 4  # institution, referring physician, station, operator
    assert w["dates and times"] >= 1
    assert w["UIDs"] >= 3
    assert w["descriptions and free text"] >= 1
    assert w["private tags"] >= 1
    assert w["overlays and curves"] == 2
    assert any(n.startswith("Burned In Annotation: YES — the pixels may show patient-identifying text")
               for n in img.notes)
    assert img.burned_in == "yes"
    text = repr(md) + repr(img.notes) + repr(img.windows)
    for secret in [*CANARY.values(), "NESTED-CANARY", "STATION-CANARY", "Op^Canary", "STUDY-CANARY",
                   "1.2.3.4.5", "free text", "private canary"]:
        assert secret not in text


def test_error_messages_never_quote_patient_data() -> None:
    arr = np.zeros((16, 16), np.uint16)
    bad = make_dicom(arr, canary=True)
    ds = pydicom.dcmread(io.BytesIO(bad))
    ds.Rows = 64  # header/data mismatch
    fp = io.BytesIO()
    ds.save_as(fp, enforce_file_format=True)
    data = fp.getvalue()
    for payload in (data, data[: len(data) // 2], data[:300]):
        with pytest.raises(MedimgError) as info:
            load_image(payload)
        msg = str(info.value)
        for secret in CANARY.values():
            assert secret not in msg
        assert info.value.__cause__ is None or isinstance(info.value.__cause__, MedimgError)


def test_pydicom_does_not_log_values(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    arr = np.zeros((16, 16), np.uint16)
    ds = pydicom.dcmread(io.BytesIO(make_dicom(arr, canary=True)))
    ds["PatientBirthDate"].value = "Canary-not-a-date"  # invalid DA: pydicom warns with the value if validating
    fp = io.BytesIO()
    old = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        ds.save_as(fp, enforce_file_format=True)
    finally:
        pydicom.config.settings.writing_validation_mode = old
    with caplog.at_level("DEBUG"):
        load_image(fp.getvalue())
    out = capsys.readouterr()
    logged = caplog.text + out.out + out.err
    assert "Canary" not in logged
    assert not pydicom.config.debugging


# ----------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("uid", "name"), [
    ("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level"),
    ("1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000"),
    ("1.2.840.10008.1.2.4.110", "unrecognised transfer syntax"),
    ("1.2.3.4.5.6.7", "unrecognised transfer syntax"),
])
def test_unsupported_transfer_syntax(uid: str, name: str) -> None:
    data = make_dicom(np.zeros((8, 8), np.uint16), transfer_syntax=uid)
    with pytest.raises(CompressionNotSupportedError) as info:
        load_image(data)
    msg = str(info.value)
    assert "compression not supported" in msg.lower()
    assert name in msg


def test_unsupported_photometric() -> None:
    data = make_dicom(np.zeros((8, 8), np.uint16), photometric="HSV")
    with pytest.raises(UnsupportedFormatError):
        load_image(data)


@pytest.mark.parametrize(("attrs", "what"), [
    ({"BitsAllocated": 12}, "inconsistent"),
    ({"BitsStored": 20}, "inconsistent"),
    ({"SamplesPerPixel": 2}, "samples"),
    ({"Rows": 0}, "not valid"),
    ({"NumberOfFrames": 0}, "frames"),
])
def test_inconsistent_pixel_description(attrs: dict, what: str) -> None:
    data = make_dicom(np.zeros((8, 8), np.uint16))
    ds = pydicom.dcmread(io.BytesIO(data))
    for k, v in attrs.items():
        setattr(ds, k, v)
    fp = io.BytesIO()
    ds.save_as(fp, enforce_file_format=True)
    with pytest.raises(CorruptFileError) as info:
        load_image(fp.getvalue())
    assert what in str(info.value)


def test_missing_rows_and_missing_pixel_data() -> None:
    data = make_dicom(np.zeros((8, 8), np.uint16))
    ds = pydicom.dcmread(io.BytesIO(data))
    del ds.Rows
    fp = io.BytesIO()
    ds.save_as(fp, enforce_file_format=True)
    with pytest.raises(CorruptFileError, match="Rows"):
        load_image(fp.getvalue())
    with pytest.raises(CorruptFileError, match="holds no image"):
        load_image(make_dicom(None))
