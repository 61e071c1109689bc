"""Uploads stay in memory: load_image writes no file (cwd and the temp dir are watched)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from io_helpers import make_dicom, pil_bytes, pydicom_file
from PIL import Image

from medimg.errors import MedimgError
from medimg.io import load_image


def _listing(*roots: Path) -> set[str]:
    out: set[str] = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            out.update(os.path.join(dirpath, n) for n in dirnames + filenames)
    return out


def test_load_image_writes_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    for var in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.setenv(var, str(tmp))
    arr = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    inputs = [
        make_dicom(arr, canary=True),
        pydicom_file("MR_small_jp2klossless.dcm").read_bytes(),
        pydicom_file("image_dfl.dcm").read_bytes(),
        pydicom_file("SC_rgb_jpeg_dcmtk.dcm").read_bytes(),
        pil_bytes(Image.fromarray(arr), "PNG"),
        pil_bytes(Image.fromarray((arr % 256).astype(np.uint8)), "JPEG"),
        pil_bytes(Image.fromarray((arr % 256).astype(np.uint8)), "TIFF"),
        make_dicom(arr)[:500],
        b"%PDF-1.4 not an image" * 5,
    ]
    before = _listing(cwd, tmp)
    for data in inputs:
        try:
            load_image(data)
        except MedimgError:
            pass
    assert _listing(cwd, tmp) == before
