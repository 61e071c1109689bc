"""Every real DICOM in ../shared/data/dicom: decodes as the MANIFEST says, in modality units, displayed the PACS way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from io_helpers import TIME_LIMIT_S, manifest_rows, measure

from medimg.errors import CompressionNotSupportedError, CorruptFileError
from medimg.io import load_image
from medimg.io.dicom import CT_PRESETS

GOOD = [r for r in manifest_rows() if r["category"] in ("cxr", "ct", "mr", "radiograph", "other")]
MALFORMED = [r for r in manifest_rows() if r["category"] == "malformed"]


def _load(dicom_dir: Path, rel: str, frame: int | None = None):
    return load_image((dicom_dir / rel).read_bytes(), frame=frame)


@pytest.mark.parametrize("row", GOOD, ids=[r["file"] for r in GOOD])
def test_every_good_file_loads_as_the_manifest_says(dicom_dir: Path, row: dict[str, str]) -> None:
    data = (dicom_dir / row["file"]).read_bytes()
    img, elapsed, peak = measure(lambda: load_image(data))
    assert not isinstance(img, Exception), f"{row['file']}: {img!r}"
    rows, cols, frames = int(row["rows"]), int(row["cols"]), int(row["frames"])
    is_color = row["photometric"] not in ("MONOCHROME1", "MONOCHROME2")
    assert img.shape == ((rows, cols, 3) if is_color else (rows, cols))
    assert img.pixels.dtype == np.float32
    assert np.isfinite(img.pixels).all()
    assert img.n_frames == frames and img.frame_index == 0
    assert img.format == "dicom"
    assert img.windows, "a default window is always provided"
    disp = img.display()
    assert disp.shape == img.shape and disp.dtype == np.float32
    assert 0.0 <= float(disp.min()) and float(disp.max()) <= 1.0
    assert float(disp.std()) > 0.02, "the default window shows something"
    assert img.metadata["Rows"] == str(rows) and img.metadata["Columns"] == str(cols)
    assert img.metadata["Number of Frames"] == str(frames)
    assert img.metadata["Transfer Syntax"] == row["transfer_syntax"]
    if row["modality"]:
        assert img.metadata["Modality"] == row["modality"]
    assert elapsed < TIME_LIMIT_S
    assert peak < 256 * 2**20


@pytest.mark.parametrize("row", [r for r in GOOD if r["photometric"] == "MONOCHROME1"],
                         ids=lambda r: r["file"])
def test_monochrome1_is_inverted_for_display(dicom_dir: Path, row: dict[str, str]) -> None:
    img = _load(dicom_dir, row["file"])
    assert img.invert is True
    disp = img.display()
    corr = np.corrcoef(disp.ravel().astype(np.float64), img.pixels.ravel().astype(np.float64))[0, 1]
    assert corr < -0.9  # high stored value (little attenuation, lung) -> dark on screen


def test_rg1_lung_dark_mediastinum_bright(dicom_dir: Path) -> None:
    img = _load(dicom_dir, "cxr/RG1_UNCR.dcm")
    disp = img.display()
    r, c = disp.shape
    lung = float(disp[int(r * 0.3) : int(r * 0.6), int(c * 0.2) : int(c * 0.35)].mean())
    mediastinum = float(disp[int(r * 0.3) : int(r * 0.6), int(c * 0.45) : int(c * 0.55)].mean())
    assert mediastinum > lung + 0.1  # measured 0.87 vs 0.64 with the header window 15000/30000


@pytest.mark.parametrize("row", [r for r in GOOD if r["photometric"] == "MONOCHROME2"], ids=lambda r: r["file"])
def test_monochrome2_is_not_inverted(dicom_dir: Path, row: dict[str, str]) -> None:
    assert _load(dicom_dir, row["file"]).invert is False


def test_ct_is_in_hounsfield_units(dicom_dir: Path) -> None:
    img = _load(dicom_dir, "ct/CT1_UNC.dcm")
    assert img.units == "HU"
    p = img.pixels
    # outside the reconstruction circle: stored -2000 + intercept -1024
    assert float(p[0, 0]) == pytest.approx(-3024.0)
    fov = p[p > -2500]
    assert -1030 < float(np.percentile(fov, 1)) < -950  # air ~ -1000 HU (measured -988)
    assert -900 < float(np.median(p[256:320, 128:192])) < -700  # lung parenchyma (measured -832)
    assert -100 < float(np.median(p[220:300, 220:300])) < 150  # mediastinum / soft tissue (measured 87)
    assert img.metadata["Rescale Intercept"] == "-1024"


def test_ct_presets_follow_header_windows(dicom_dir: Path) -> None:
    img = _load(dicom_dir, "malformed/bad_sequence.dcm")  # CT with two header windows and explanations
    names = [w.name for w in img.windows]
    assert names[:2] == ["WINDOW1", "WINDOW2"]
    assert (img.windows[0].center, img.windows[0].width) == (40.0, 350.0)
    assert (img.windows[1].center, img.windows[1].width) == (450.0, 1500.0)
    presets = [(w.name, w.center, w.width) for w in img.windows[2 : 2 + len(CT_PRESETS)]]
    assert presets == [(n, c, w) for n, c, w in CT_PRESETS]
    assert names[-1] == "full range"
    assert len(img.windows) == 2 + len(CT_PRESETS) + 1


def test_ct_without_header_window_defaults_to_soft_tissue_then_presets(dicom_dir: Path) -> None:
    """A CT without a header window opens on the soft-tissue preset (40/400 HU), not the full range."""
    img = _load(dicom_dir, "ct/CT1_UNC.dcm")
    assert (img.default_window.name, img.default_window.center, img.default_window.width) == ("soft tissue", 40, 400)
    assert [w.name for w in img.windows[:-1]] == [n for n, _, _ in CT_PRESETS]
    full = img.windows[-1]
    lo, hi = float(img.pixels.min()), float(img.pixels.max())
    assert full.name == "full range"
    assert full.center == pytest.approx((lo + hi) / 2)
    assert full.width == pytest.approx(hi - lo)
    lung = next(w for w in img.windows if w.name == "lung")
    assert (lung.center, lung.width) == (-600.0, 1500.0)


def test_header_window_is_default(dicom_dir: Path) -> None:
    img = _load(dicom_dir, "radiograph/RG2_RLE.dcm")
    assert (img.windows[0].center, img.windows[0].width) == (511.0, 1024.0)
    assert img.default_window is img.windows[0]
    assert img.windows[-1].name == "full range"
    assert img.units == "stored value"


def test_header_window_outside_the_data_is_not_the_default(dicom_dir: Path) -> None:
    """JPEG2KLossless_1s_1f_u_16_16 stores 32744..65535 but its header window is 2725/5310: a white frame."""
    img = _load(dicom_dir, "cxr/JPEG2KLossless_1s_1f_u_16_16.dcm")
    assert img.windows[0].name == "full range"
    assert (2725.0, 5310.0) in [(w.center, w.width) for w in img.windows]
    assert any("outside this image's values" in n for n in img.notes)
    assert float(img.display().std()) > 0.05
    # said prominently (beside the image), with what a PACS shows and the numbers that explain it
    warning = next(w for w in img.display_warnings if "outside this image's values" in w)
    assert "blank white frame" in warning and "32744 to 65535" in warning and "unsigned" in warning
    assert "center 2725, width 5310" in warning
    # Pixel Intensity Relationship Sign +1 with MONOCHROME2: a negative rendition, flagged, not silently changed
    assert img.negative and not img.invert
    assert any("negative" in w for w in img.display_warnings)


def test_non_ct_modality_gets_no_ct_presets(dicom_dir: Path) -> None:
    img = _load(dicom_dir, "mr/MR1_UNC.dcm")
    assert not {n for n, _, _ in CT_PRESETS} & {w.name for w in img.windows}


def test_enhanced_ct_uses_functional_groups(dicom_dir: Path) -> None:
    """eCT_Supplemental keeps Rescale (-1024) and the VOI window (49/102) in the Shared Functional Groups."""
    img = _load(dicom_dir, "ct/eCT_Supplemental.dcm")
    assert img.units == "HU"
    assert float(img.pixels.min()) == pytest.approx(-1024.0)  # stored min 0
    assert float(img.pixels.max()) == pytest.approx(1196.0 - 1024.0)
    assert (img.windows[0].center, img.windows[0].width) == (49.0, 102.0)
    assert img.metadata["Pixel Spacing"].startswith("0.388672 x 0.388672")


@pytest.mark.parametrize("other", ["CT1_RLE.dcm", "CT1_JPLL.dcm", "CT1_JLSL.dcm", "CT1_J2KR.dcm"])
def test_ct1_lossless_syntaxes_are_pixel_identical(dicom_dir: Path, other: str) -> None:
    ref = _load(dicom_dir, "ct/CT1_UNC.dcm")
    img = _load(dicom_dir, f"ct/{other}")
    np.testing.assert_array_equal(img.pixels, ref.pixels)
    assert [(w.center, w.width) for w in img.windows] == [(w.center, w.width) for w in ref.windows]


@pytest.mark.parametrize("other", ["emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm"])
def test_emri_lossless_all_frames_identical(dicom_dir: Path, other: str) -> None:
    ref_data = (dicom_dir / "mr/emri_small.dcm").read_bytes()
    data = (dicom_dir / f"mr/{other}").read_bytes()
    n = load_image(ref_data).n_frames
    assert n == 10
    for k in range(n):
        a, b = load_image(ref_data, frame=k), load_image(data, frame=k)
        assert a.frame_index == b.frame_index == k
        np.testing.assert_array_equal(b.pixels, a.pixels)


def test_rg1_lossy_j2k_is_close_to_uncompressed(dicom_dir: Path) -> None:
    ref = _load(dicom_dir, "cxr/RG1_UNCR.dcm").pixels
    lossy = _load(dicom_dir, "cxr/RG1_J2KI.dcm")
    diff = np.abs(lossy.pixels - ref)
    assert not np.array_equal(lossy.pixels, ref)
    assert float(diff.mean()) < 0.01 * float(ref.max())
    assert np.corrcoef(lossy.pixels.ravel(), ref.ravel())[0, 1] > 0.995
    assert any("lossy" in n for n in lossy.notes)


def test_frame_selection_gives_different_frames(dicom_dir: Path) -> None:
    data = (dicom_dir / "mr/emri_small.dcm").read_bytes()
    f0, f5 = load_image(data), load_image(data, frame=5)
    assert (f0.frame_index, f5.frame_index) == (0, 5)
    assert not np.array_equal(f0.pixels, f5.pixels)
    np.testing.assert_array_equal(load_image(data, frame=0).pixels, f0.pixels)
    with pytest.raises(ValueError):
        load_image(data, frame=10)
    with pytest.raises(ValueError):
        load_image(data, frame=-1)


def test_enhanced_ct_second_frame(dicom_dir: Path) -> None:
    data = (dicom_dir / "ct/eCT_Supplemental.dcm").read_bytes()
    a, b = load_image(data, frame=0), load_image(data, frame=1)
    assert b.frame_index == 1 and b.n_frames == 2
    assert not np.array_equal(a.pixels, b.pixels)
    assert b.units == "HU"


def test_palette_colour_ultrasound_becomes_rgb(dicom_dir: Path) -> None:
    import pydicom
    from pydicom.pixels import apply_color_lut

    path = dicom_dir / "other/OBXXXX1A_rle_2frame.dcm"
    img = load_image(path.read_bytes(), frame=1)
    assert img.photometric == "RGB" and img.is_color and img.shape == (600, 800, 3)
    ds = pydicom.dcmread(path)
    ref = apply_color_lut(ds.pixel_array[1], ds)
    np.testing.assert_array_equal(img.pixels, ref.astype(np.float32))
    # not a gray image in disguise
    assert float(np.abs(img.pixels[..., 0] - img.pixels[..., 2]).max()) > 0
    disp = img.display()
    assert 0 <= disp.min() and disp.max() <= 1


def test_jpeg_baseline_8bit_cxr(dicom_dir: Path) -> None:
    rel = next(r["file"] for r in GOOD if r["file"].startswith("cxr/siim_"))
    img = _load(dicom_dir, rel)
    assert img.shape == (1024, 1024)
    assert 0 <= img.pixels.min() and img.pixels.max() <= 255


def test_12_bit_jpeg_extended_and_jpeg_ls_near_lossless_agree_with_rle(dicom_dir: Path) -> None:
    rle = _load(dicom_dir, "radiograph/RG2_RLE.dcm").pixels
    for rel in ("radiograph/RG2_JLSN.dcm", "radiograph/RG2_JPLY_fixed.dcm"):
        px = _load(dicom_dir, rel).pixels
        assert px.shape == rle.shape
        assert np.corrcoef(px.ravel(), rle.ravel())[0, 1] > 0.98
        assert float(px.max()) < 1024  # 10-bit data stays 10-bit


@pytest.mark.parametrize("row", MALFORMED, ids=[r["file"] for r in MALFORMED])
def test_malformed_files_give_typed_errors(dicom_dir: Path, row: dict[str, str]) -> None:
    data = (dicom_dir / row["file"]).read_bytes()
    outcome, elapsed, peak = measure(lambda: load_image(data))
    if row["file"].endswith("bad_sequence.dcm"):
        assert not isinstance(outcome, Exception), repr(outcome)
        assert outcome.shape == (512, 512) and np.isfinite(outcome.pixels).all()
        assert outcome.units == "HU"
    else:
        assert isinstance(outcome, (CorruptFileError, CompressionNotSupportedError)), repr(outcome)
        msg = str(outcome)
        assert "Export" in msg and "Traceback" not in msg and "RuntimeError" not in msg
    assert elapsed < TIME_LIMIT_S
    assert peak < 256 * 2**20


def test_burned_in_annotation_no_is_not_a_note(dicom_dir: Path) -> None:
    img = _load(dicom_dir, "cxr/dx_image.dcm")
    assert img.metadata.get("Burned In Annotation") == "NO"
    assert not any("Burned In" in n for n in img.notes)


def test_metadata_withholds_identity(dicom_dir: Path) -> None:
    img = _load(dicom_dir, "ct/CT1_UNC.dcm")
    assert img.withheld.get("patient identity", 0) >= 1
    assert img.withheld.get("UIDs", 0) >= 3
    assert img.withheld.get("dates and times", 0) >= 1
    assert img.withheld.get("private tags", 0) >= 1
    import pydicom

    ds = pydicom.dcmread(dicom_dir / "ct/CT1_UNC.dcm", stop_before_pixels=True)
    secrets = [str(ds.get(k, "")) for k in ("PatientName", "PatientID", "StudyDate", "InstitutionName",
                                              "StudyInstanceUID", "AccessionNumber")]
    shown = " ".join(img.metadata.values()) + " ".join(img.notes)
    for s in secrets:
        if len(s) >= 4:
            assert s not in shown
