"""Fixtures for the medimg.io tests; builders live in io_helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from io_helpers import dicom_root


@pytest.fixture(scope="session")
def dicom_dir() -> Path:
    """``<data_root>/dicom``; skips when the shared data folder is missing."""
    root = dicom_root()
    if not (root / "MANIFEST.csv").is_file():
        pytest.skip(f"shared DICOM data not found at {root} (set MEDIMG_DATA)")
    return root


@pytest.fixture(scope="session", autouse=True)
def warm_decoders() -> None:
    """Import the decoder plugins once so that the first timed load does not pay for imports (~1.5 s)."""
    from medimg.io import load_image

    for name in ("CT_small.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                 "JPGExtended.dcm", "SC_rgb_jpeg.dcm"):
        try:
            from pydicom.data import get_testdata_file

            path = get_testdata_file(name, read=False)
            if path:
                load_image(Path(str(path)).read_bytes())
        except Exception:
            pass


