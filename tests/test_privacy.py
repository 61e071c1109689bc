"""Privacy: a canary DICOM's identity never reaches logs, output, metadata, errors or disk."""

from __future__ import annotations

import builtins
import io
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.errors import MedimgError
from medimg.io import load_image
from medimg.predict import Predictor

CANARIES = ("CANARY^PATIENT", "CANARY-ID-123", "CANARY-ACC-9", "CANARY GENERAL HOSPITAL", "CANARY^REFERRER",
            "19010203", "20240229", "CANARY-FILE-NAME")


def _assert_clean(text: str, where: str) -> None:
    low = text.lower()
    found = [c for c in CANARIES if c.lower() in low] + (["canary"] if "canary" in low else [])
    assert not found, f"{found} found in {where}: ...{text[max(0, low.find(found[0].lower()) - 80):][:200]}..."


def canary_dicom(rows: int = 96, cols: int = 80) -> bytes:
    """A small CR chest image carrying identifying attributes, built in memory."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2", "1.2.826.0.1.3680043.8.498.3"
    ds.PatientName = "CANARY^PATIENT"
    ds.PatientID = "CANARY-ID-123"
    ds.PatientBirthDate = "19010203"
    ds.AccessionNumber = "CANARY-ACC-9"
    ds.InstitutionName = "CANARY GENERAL HOSPITAL"
    ds.ReferringPhysicianName = "CANARY^REFERRER"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240229"
    ds.StudyDescription = "CANARY study description"
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", "PA"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    rr, cc = np.mgrid[0:rows, 0:cols]
    px = (2000 + 1500 * np.sin(rr / 9.0) * np.cos(cc / 7.0)).astype(np.uint16)
    ds.PixelData = px.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def pred(tiny_spec_path: Path) -> Predictor:
    return Predictor.from_spec(tiny_spec_path, device="cpu")


@pytest.fixture
def pydicom_debug_on():
    """pydicom debug logging forced on (it logs element values); restored afterwards."""
    import pydicom.config

    lg = logging.getLogger("pydicom")
    state = (lg.level, list(lg.handlers), pydicom.config.debugging)
    pydicom.config.debug(True)
    yield
    lg.setLevel(state[0])
    lg.handlers[:] = state[1]
    pydicom.config.debugging = state[2]


def _cam(pred: Predictor, prediction) -> np.ndarray | None:  # noqa: ANN001
    try:
        from medimg.explain import cam
    except ImportError:
        return None
    return cam(pred, prediction.preprocessed).heatmap


def _pipeline(pred: Predictor, data: bytes) -> list[str]:
    """load -> predict -> CAM on bytes; returns the user-visible strings produced on the way."""
    torch.set_num_threads(1)
    image = load_image(data)
    r = pred.predict(image)
    heat = _cam(pred, r)
    if heat is not None:
        assert np.all(np.isfinite(heat))
    return [repr(image), str(image.metadata), str(image.withheld), str(image.notes), repr(r.gate),
            str(r.gate.as_dict()), str(r.probabilities), str([s.description for s in r.preprocessed.steps])]


def test_canary_never_in_logs_output_or_results(pred: Predictor, pydicom_debug_on: None,
                                                 caplog: pytest.LogCaptureFixture,
                                                 capsys: pytest.CaptureFixture) -> None:
    data = canary_dicom()
    assert b"CANARY^PATIENT" in data  # the canary is really in the file
    with caplog.at_level(logging.DEBUG):
        logging.getLogger().setLevel(logging.DEBUG)
        shown = _pipeline(pred, data)
    image = load_image(data)
    assert image.metadata.get("Modality") == "CR"  # non-identifying attributes are still shown
    for i, s in enumerate(shown):
        _assert_clean(s, f"result string {i}")
    for rec in caplog.records:
        _assert_clean(rec.getMessage(), f"log record of {rec.name}")
    _assert_clean(caplog.text, "captured log")
    out = capsys.readouterr()
    _assert_clean(out.out, "stdout")
    _assert_clean(out.err, "stderr")


def test_canary_never_in_error_messages(pydicom_debug_on: None, caplog: pytest.LogCaptureFixture,
                                        capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    data = canary_dicom()
    broken = [data[:n] for n in (132, 200, 300, 400, len(data) - 2000, len(data) - 1)]
    pix = data.rfind(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data
    broken.append(data[:pix + 8] + b"\xff\xff\xff\x7f" + data[pix + 12 :])  # absurd pixel length
    bad_vr = bytearray(data)
    name_at = data.find(b"CANARY^PATIENT")
    bad_vr[name_at - 4 : name_at - 2] = b"\xff\xff"  # corrupt the PatientName length
    broken.append(bytes(bad_vr))
    # a file named after the canary, loaded by path
    named = tmp_path / "CANARY-FILE-NAME.dcm"
    named.write_bytes(data[: len(data) // 2])
    errors = []
    with caplog.at_level(logging.DEBUG):
        for b in broken:
            try:
                load_image(b)
            except MedimgError as err:
                errors.append(err)
        try:
            load_image(named)
        except MedimgError as err:
            errors.append(err)
    assert len(errors) >= len(broken) - 2  # nearly all of these must fail (typed)
    for err in errors:
        _assert_clean(str(err), f"error message {type(err).__name__}")
        _assert_clean(repr(err), "error repr")
    _assert_clean(caplog.text, "captured log")
    out = capsys.readouterr()
    _assert_clean(out.out + out.err, "stdout/stderr")


def test_canary_loaded_from_a_named_file_keeps_no_file_name(tmp_path: Path) -> None:
    p = tmp_path / "CANARY-FILE-NAME.dcm"
    p.write_bytes(canary_dicom())
    image = load_image(p)
    _assert_clean(repr(image) + str(image.metadata) + str(image.notes), "image loaded from a named file")


def test_withheld_receipt_counts_identity(tmp_path: Path) -> None:
    image = load_image(canary_dicom())
    w = image.withheld
    assert w.get("patient identity", 0) >= 3  # PatientName, PatientID, PatientBirthDate
    assert w.get("accession and study identifiers", 0) >= 1  # AccessionNumber
    assert w.get("institution and staff", 0) >= 2  # InstitutionName, ReferringPhysicianName
    assert w.get("dates and times", 0) >= 3  # Study/Series/Content Date
    assert all(isinstance(v, int) and v > 0 for v in w.values())


class _WriteAttempt(AssertionError):
    pass


def _is_write(mode: object) -> bool:
    return isinstance(mode, str) and any(c in mode for c in "wax+")


def _snapshot(root: Path, limit: int = 20000) -> set[str]:
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            seen.add(os.path.join(dirpath, n))
            if len(seen) > limit:
                return seen
    return seen


def test_no_file_written_while_analysing_an_upload(pred: Predictor, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    data = canary_dicom()
    _pipeline(pred, data)  # warm up: lazy imports, replica pools
    home, cwd, tmp = (tmp_path / d for d in ("home", "cwd", "tmp"))
    for d in (home, cwd, tmp):
        d.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.chdir(cwd)
    attempts: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file, mode="r", *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if _is_write(mode):
            attempts.append(f"open({file!r}, {mode!r})")
            raise _WriteAttempt(attempts[-1])
        return real_open(file, mode, *a, **k)

    def guarded_os_open(path, flags, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC):
            attempts.append(f"os.open({path!r}, {flags})")
            raise _WriteAttempt(attempts[-1])
        return real_os_open(path, flags, *a, **k)

    before = {d: _snapshot(d) for d in (home, cwd, tmp)}
    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    try:
        for _ in range(2):
            _pipeline(pred, data)
    finally:
        monkeypatch.setattr(builtins, "open", real_open)
        monkeypatch.setattr(io, "open", real_open)
        monkeypatch.setattr(os, "open", real_os_open)
    assert not attempts
    for d, snap in before.items():
        assert _snapshot(d) == snap, f"new files under {d.name}: {sorted(_snapshot(d) - snap)[:5]}"
