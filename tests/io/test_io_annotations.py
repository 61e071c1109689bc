"""Burned-in text, overlay planes (60xx), Patient's Age and negative renditions read from the DICOM header."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from io_helpers import make_dicom

from medimg.io import load_image
from medimg.io.dicom.annotations import age_years, is_negative


def _with(data: bytes, **attrs: object) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    for k, v in attrs.items():
        setattr(ds, k, v)
    fp = io.BytesIO()
    ds.save_as(fp, enforce_file_format=True)
    return fp.getvalue()


# ------------------------------------------------------------------------------------------ burned-in text


def test_ultrasound_without_burned_in_no_is_flagged(shared_data: Path) -> None:
    """OBXXXX1A shows the patient ID, date and time in its pixels; its header has no Burned In Annotation."""
    img = load_image(shared_data / "dicom" / "other" / "OBXXXX1A_rle_2frame.dcm")
    assert img.burned_in == "likely"
    warning = next(w for w in img.display_warnings if "burned into the pixels" in w)
    assert "ultrasound" in warning and "pixels were not" in warning
    assert warning in img.notes


@pytest.mark.parametrize(("attrs", "state"), [
    ({}, "likely"),  # make_dicom writes Secondary Capture
    ({"BurnedInAnnotation": "NO"}, "no"),
    ({"BurnedInAnnotation": "YES"}, "yes"),
    ({"Modality": "US"}, "likely"),
    ({"Modality": "CT", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"}, "unknown"),
    ({"Modality": "CT", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "BurnedInAnnotation": "NO"}, "no"),
])
def test_burned_in_states(attrs: dict, state: str) -> None:
    arr = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    img = load_image(make_dicom(arr, **attrs))
    assert img.burned_in == state
    flagged = any("burned" in w.lower() for w in img.display_warnings)
    assert flagged == (state in ("yes", "likely"))


def test_ct_with_burned_in_no_has_no_warning(shared_data: Path) -> None:
    img = load_image(shared_data / "dicom" / "ct" / "eCT_Supplemental.dcm")
    assert img.burned_in == "no" and not img.display_warnings


# ------------------------------------------------------------------------------------------ overlays


def test_overlay_plane_is_read_on_the_image_grid() -> None:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("MR-SIEMENS-DICOM-WithOverlays.dcm")
    if path is None:
        pytest.skip("pydicom-data's MR-SIEMENS-DICOM-WithOverlays.dcm is not installed")
    img = load_image(path)
    ref = pydicom.dcmread(path).overlay_array(0x6000).astype(bool)
    assert len(img.overlays) == 1
    ov = img.overlays[0]
    assert ov.group == 0x6000 and ov.kind == "G"
    assert ov.mask.shape == img.shape[:2] and ov.mask.dtype == bool
    np.testing.assert_array_equal(ov.mask, ref)
    assert any("overlay plane" in n for n in img.notes)


def _overlay_dicom(origin: tuple[int, int], o_rows: int = 8, o_cols: int = 8) -> tuple[bytes, np.ndarray]:
    arr = np.zeros((32, 32), dtype=np.uint16)
    ds = pydicom.dcmread(io.BytesIO(make_dicom(arr)))
    bits = np.zeros((o_rows, o_cols), dtype=np.uint8)
    bits[0, :] = 1
    bits[:, 0] = 1
    packed = np.packbits(bits.ravel(), bitorder="little").tobytes()
    ds.add_new(0x60000010, "US", o_rows)
    ds.add_new(0x60000011, "US", o_cols)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", list(origin))
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60000022, "LO", "OVERLAY-CANARY")
    ds.add_new(0x60003000, "OW", packed + b"\0" * (len(packed) % 2))
    fp = io.BytesIO()
    ds.save_as(fp, enforce_file_format=True)
    return fp.getvalue(), bits.astype(bool)


def test_overlay_origin_and_clipping() -> None:
    data, bits = _overlay_dicom((5, 11))  # 1-based (row, column)
    img = load_image(data)
    mask = img.overlays[0].mask
    np.testing.assert_array_equal(mask[4:12, 10:18], bits)
    assert mask.sum() == bits.sum()
    data, bits = _overlay_dicom((29, 29))  # runs past the bottom-right corner: clipped
    mask = load_image(data).overlays[0].mask
    np.testing.assert_array_equal(mask[28:, 28:], bits[:4, :4])
    assert "OVERLAY-CANARY" not in repr(load_image(data))


# ------------------------------------------------------------------------------------------ age, polarity


@pytest.mark.parametrize(("value", "years"), [("005Y", 5), ("018M", 1), ("062", 62), ("097Y", 90), ("010W", 0),
                                              ("bad", None), (None, None)])
def test_age_years(value: str | None, years: int | None) -> None:
    ds = pydicom.Dataset()
    if value is not None:
        ds.PatientAge = value
    assert age_years(ds) == years


def test_age_is_kept_coarse_and_never_shown() -> None:
    arr = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    img = load_image(make_dicom(arr, PatientAge="093Y"))
    assert img.patient_age_years == 90
    assert "093Y" not in repr(img.metadata) and "Age" not in " ".join(img.metadata)


@pytest.mark.parametrize(("pi", "sign", "shape", "negative"), [
    ("MONOCHROME2", 1, None, True), ("MONOCHROME2", -1, None, False), ("MONOCHROME1", 1, "INVERSE", False),
    ("MONOCHROME1", -1, None, True), ("MONOCHROME2", None, None, False),
])
def test_negative_rendition(pi: str, sign: int | None, shape: str | None, negative: bool) -> None:
    ds = pydicom.Dataset()
    ds.Modality = "DX"
    if sign is not None:
        ds.PixelIntensityRelationshipSign = sign
    if shape is not None:
        ds.PresentationLUTShape = shape
    assert is_negative(ds, pi) is negative
    ds.Modality = "CT"
    assert is_negative(ds, pi) is False
