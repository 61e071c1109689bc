"""The PDF/JSON report: one page, every field the issue lists, built in memory, and no PHI from a canary DICOM."""

from __future__ import annotations

import io
import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

import medimg
from medimg import report
from medimg.io import load_image

CANARIES = ("CANARY^PATIENT", "CANARY-ID-123", "CANARY-ACC-9", "CANARY GENERAL HOSPITAL", "19010203", "20240229",
            "CANARY-FILE-NAME", "CANARY-OVERLAY")


def _canary_dicom(burned_in: str | None = "NO") -> bytes:
    """A chest CR with identifying attributes everywhere (name, IDs, dates, institution, overlay text)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.11"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "CANARY^PATIENT", "CANARY-ID-123", "19010203"
    ds.AccessionNumber, ds.InstitutionName = "CANARY-ACC-9", "CANARY GENERAL HOSPITAL"
    ds.StudyDate = ds.SeriesDate = "20240229"
    ds.StudyDescription = "CANARY study"
    ds.PatientAge = "004Y"
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", "PA"
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    rows, cols = 96, 80
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    rr, cc = np.mgrid[0:rows, 0:cols]
    ds.PixelData = (2000 + 1500 * np.sin(rr / 9.0) * np.cos(cc / 7.0)).astype(np.uint16).tobytes()
    ds.add_new(0x60000022, "LO", "CANARY-OVERLAY")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _pdf_text(pdf: bytes) -> str:
    """Every byte of the PDF with its Flate streams inflated (text in a compressed stream is found too)."""
    parts = [pdf.decode("latin-1")]
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            parts.append(zlib.decompress(m.group(1)).decode("latin-1"))
        except zlib.error:
            pass
    return "\n".join(parts)


def _assert_no_canary(text: str, where: str) -> None:
    low = text.lower()
    found = [c for c in CANARIES if c.lower() in low] + (["canary"] if "canary" in low else [])
    assert not found, f"{found} in {where}"


@pytest.fixture(scope="module")
def analysed(tiny_spec_path: Path) -> tuple:
    from medimg.predict import Predictor

    pred = Predictor.from_spec(tiny_spec_path)
    image = load_image(_canary_dicom())
    prediction = pred.predict(image)
    return pred, image, prediction


def _report(analysed: tuple, image=None, **kw) -> report.Report:  # noqa: ANN001
    pred, img, prediction = analysed
    img = image or img
    rgb = np.repeat((img.display() * 255).astype(np.uint8)[..., None], 3, axis=2)
    heat = np.random.default_rng(0).random((*img.shape[:2], 3)).astype(np.float32)
    return report.build_report(image=img, window=img.default_window, inverted=False, prediction=prediction,
                               spec=pred.spec, spec_path=kw.pop("spec_path", None), checks=prediction.gate.checks,
                               display_rgb=rgb, heat_rgb=heat, heat_method="Grad-CAM",
                               heat_target=prediction.label, timings={"predict": 0.01, "Grad-CAM": 1.5}, **kw)


def test_pdf_and_json_hold_no_canary(analysed: tuple, tiny_spec_path: Path) -> None:
    rep = _report(analysed, spec_path=tiny_spec_path)
    pdf = report.to_pdf(rep)
    assert pdf.startswith(b"%PDF-")
    _assert_no_canary(_pdf_text(pdf), "the PDF")
    _assert_no_canary(report.to_json(rep).decode("utf-8"), "the JSON")
    assert rep.thumbnail_png is not None and rep.heat_png is not None  # Burned In Annotation NO: thumbnail kept


def test_pdf_is_one_page_with_every_field(analysed: tuple, tiny_spec_path: Path) -> None:
    rep = _report(analysed, spec_path=tiny_spec_path)
    pdf = report.to_pdf(rep)
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1
    text = _pdf_text(pdf)
    pred = analysed[0]
    for needle in ("Not for diagnostic use", pred.spec.title, pred.spec.sha256, rep.model["spec_sha256"],
                   f"medimg {medimg.__version__}", "Calibrated probabilities", "Applicability checks",
                   "Grad-CAM", "relative: min-max per image", "Display window", "Timings"):
        assert needle in text, needle


def test_json_fields(analysed: tuple, tiny_spec_path: Path) -> None:
    rep = _report(analysed, spec_path=tiny_spec_path)
    d = json.loads(report.to_json(rep))
    assert abs(sum(d["prediction"]["probabilities"].values()) - 1) < 1e-6
    assert d["model"]["weights_sha256"] == analysed[0].spec.sha256
    assert len(d["model"]["spec_sha256"]) == 64 and d["medimg_version"] == medimg.__version__
    assert d["display"]["window"] and d["display"]["units"]
    assert d["heat_map"]["method"] == "Grad-CAM" and "relative" in d["heat_map"]["scale"]
    assert d["thumbnail"].startswith("data:image/png;base64,")
    assert d["notice"] == report.NOTICE
    assert set(d["image"]) <= {"format", "rows", "columns", "frame", "frames", "burned_in", "units",
                               *report.IMAGE_FIELDS}


def test_thumbnail_left_out_when_pixels_may_carry_text(analysed: tuple) -> None:
    img = load_image(_canary_dicom(burned_in="YES"))
    rep = _report(analysed, image=img)
    assert rep.thumbnail_png is None and rep.heat_png is None and "burned-in" in rep.thumbnail_note
    assert "burned-in" in _pdf_text(report.to_pdf(rep))


def test_report_writes_no_file(analysed: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    writes: list[str] = []
    real_open = builtins.open

    def guarded(file, mode="r", *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if any(c in str(mode) for c in "wax+"):
            writes.append(str(mode))
        return real_open(file, mode, *a, **k)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(builtins, "open", guarded)
    rep = _report(analysed)
    report.to_pdf(rep)
    report.to_json(rep)
    monkeypatch.setattr(builtins, "open", real_open)
    assert not writes and not any(tmp_path.iterdir())


def test_bethesda_prediction_carries_its_grade(analysed: tuple) -> None:
    """A six-class cervical cytology prediction names its Bethesda grade (the most probable sum of its classes)
    in the JSON and the PDF; the two-class report has no grade."""
    import dataclasses

    pred, img, prediction = analysed
    labels = ("NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC")
    probs = np.array([0.40, 0.05, 0.05, 0.25, 0.20, 0.05])  # NILM is the top class, high-grade the top grade
    bethesda = dataclasses.replace(prediction, labels=labels, probs=probs, label_index=0, label="NILM",
                                   logits=np.log(probs).astype(np.float32))
    rep = report.build_report(image=img, window=img.default_window, inverted=False, prediction=bethesda,
                              spec=pred.spec.replace(labels=labels, positive_label=None), spec_path=None,
                              checks=prediction.gate.checks, display_rgb=None)
    d = json.loads(report.to_json(rep))
    assert d["prediction"]["bethesda_grade"] == "high-grade"
    assert d["prediction"]["grade_probabilities"] == pytest.approx({"NILM": 0.40, "low-grade": 0.10,
                                                                    "high-grade": 0.50})
    pdf = _pdf_text(report.to_pdf(rep)).replace("\\(", "(")  # PDF strings escape parentheses
    assert "Bethesda grade: high-grade (NILM 40.0%; low-grade 10.0%; high-grade 50.0%" in pdf
    plain = json.loads(report.to_json(_report(analysed)))
    assert "bethesda_grade" not in plain["prediction"] and "grade_probabilities" not in plain["prediction"]
