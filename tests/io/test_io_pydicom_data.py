"""Every DICOM in the offline `pydicom-data` package: decoded, or refused with a typed medimg error."""

from __future__ import annotations

import importlib.metadata as md
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from medimg.errors import MedimgError
from medimg.io import load_image


def _files() -> list[Path]:
    try:
        files = md.files("pydicom-data") or []
    except md.PackageNotFoundError:
        return []
    return sorted(Path(f.locate()) for f in files if str(f).endswith(".dcm"))


FILES = _files()
#: Files that are broken on purpose in pydicom's reference set (named so by pydicom's own tests).
KNOWN_BROKEN = ("too_short", "_bad", "truncated", "no_meta")


@pytest.mark.skipif(not FILES, reason="pydicom-data is not installed")
def test_every_pydicom_data_file_decodes_or_gives_a_typed_error() -> None:
    outcomes: Counter[str] = Counter()
    syntaxes_ok: set[str] = set()
    worst = 0.0
    for path in FILES:
        t0 = time.perf_counter()
        try:
            img = load_image(path)
        except MedimgError as err:
            outcomes[type(err).__name__] += 1
            assert any(k in path.name.lower() for k in KNOWN_BROKEN) or type(err).__name__ in (
                "CompressionNotSupportedError", "CorruptFileError", "ImageTooLargeError", "UnsupportedFormatError"
            ), path.name
        else:
            outcomes["ok"] += 1
            assert np.isfinite(img.pixels).all(), path.name
            assert img.pixels.ndim in (2, 3), path.name
            d = img.display()
            assert d.min() >= 0.0 and d.max() <= 1.0, path.name
            syntaxes_ok.add(img.metadata.get("Transfer Syntax", "?"))
        worst = max(worst, time.perf_counter() - t0)
    print(f"[pydicom-data] {len(FILES)} files: {dict(outcomes)}; worst {worst:.2f} s; "
          f"syntaxes decoded: {sorted(syntaxes_ok)}")
    assert outcomes["ok"] >= 0.8 * len(FILES)
    assert worst < 5.0
