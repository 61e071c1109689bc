"""Mutation fuzzing of load_image in a subprocess (a crash in a C/Rust decoder cannot take pytest down)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from io_helpers import make_dicom, pil_bytes, pydicom_file
from PIL import Image

WORKER = Path(__file__).with_name("fuzz_worker.py")
REPO = Path(__file__).resolve().parents[2]
DICOM_FIXTURES = ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                  "JPGExtended.dcm", "SC_rgb_jpeg_dcmtk.dcm", "OBXXXX1A_rle.dcm", "image_dfl.dcm", "CT_small.dcm",
                  "emri_small_jpeg_2k_lossless.dcm", "SC_ybr_full_422_uncompressed.dcm", "vlut_04.dcm"]


def _fixtures(tmp: Path) -> list[str]:
    paths = [str(pydicom_file(n)) for n in DICOM_FIXTURES]
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    ramp = (np.arange(48 * 64) % 4096).astype(np.uint16).reshape(48, 64)
    frames = [Image.fromarray(np.full((16, 16), v, np.uint8)) for v in (10, 200)]
    raster = {
        "l.png": pil_bytes(Image.fromarray(arr), "PNG"),
        "i16.png": pil_bytes(Image.fromarray(ramp), "PNG"),
        "rgba.png": pil_bytes(Image.fromarray(np.dstack([arr, arr, arr, arr])), "PNG"),
        "rgb.jpg": pil_bytes(Image.fromarray(np.dstack([arr, arr // 2, 255 - arr])), "JPEG"),
        "anim.gif": pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "pages.tif": pil_bytes(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        "synthetic.dcm": make_dicom(np.arange(32 * 32, dtype=np.int16).reshape(32, 32), Modality="CT",
                                    RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400),
    }
    for name, data in raster.items():
        (tmp / name).write_bytes(data)
        paths.append(str(tmp / name))
    return paths


def _run(tmp: Path, seed: int, count: int, timeout: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(WORKER), str(seed), str(count), *_fixtures(tmp)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)
    last = [line for line in proc.stderr.splitlines() if line.startswith("mutant ")][-1:]
    assert proc.returncode == 0, f"worker died (rc {proc.returncode}) at {last}: {proc.stderr[-2000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n[io fuzz seed {seed}] {report['outcomes']}; slowest {report['slowest_s']:.2f} s "
          f"({report['slowest']}); RSS growth {report['rss_growth_mb']:.0f} MB")
    return report


def _assert_clean(report: dict, count: int) -> None:
    assert report["n"] == count
    assert report["raw"] == [], f"untyped exceptions: {report['raw']}"
    assert report["bad"] == [], f"bad outputs: {report['bad']}"
    assert set(report["outcomes"]) <= {"ok", "CorruptFileError", "CompressionNotSupportedError",
                                       "ImageTooLargeError", "UnsupportedFormatError"}
    assert report["slowest_s"] < 5.0
    assert report["rss_growth_mb"] < 512


def test_fuzz_short(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _run(tmp_path, seed=20240601, count=100, timeout=600)
    with capsys.disabled():
        print(f"[io fuzz short] {report['outcomes']}")
    _assert_clean(report, 100)
    assert report["outcomes"].get("ok", 0) > 0  # the mutations are not all fatal: decoding paths are exercised


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzz_long(tmp_path: Path, seed: int) -> None:
    report = _run(tmp_path, seed=seed, count=2000, timeout=3600)
    _assert_clean(report, 2000)
