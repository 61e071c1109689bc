"""medimg.datasets: CSV-labelled image and DICOM folders, CSV validation, patient-grouped splits."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medimg.catalog import data_root
from medimg.errors import CorruptFileError, MedimgError, UnsupportedFormatError
from medimg.spec import PreprocessConfig
from medimg.training.datasets import (
    SPLITS,
    DatasetError,
    dicom_patient_hash,
    grouped_split,
    hash_patient_id,
    load_csv_split,
    read_label_csv,
)

CFG32 = PreprocessConfig(input_size=(32, 32))


def _write_csv(path: Path, header: list[str], rows: list[list[str]], bom: bool = False) -> Path:
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _png(path: Path, value: int, size: tuple[int, int] = (20, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path)


def _dicom_bytes(patient_id: str, value: int, preamble: bool = True, n: int = 24) -> bytes:
    """A small MONOCHROME2 12-bit image, Explicit VR Little Endian, constant ``value``, the given PatientID."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[patient_id, str(value)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = patient_id, "OT"
    ds.Rows = ds.Columns = n
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = np.full((n, n), value, dtype=np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=preamble)
    return buf.getvalue()


# ---------------------------------------------------------------- image folder + CSV with a split column


@pytest.fixture
def png_set(tmp_path: Path) -> tuple[Path, Path]:
    rows = [["imgs/a.png", "cat", "train"], ["imgs/b.png", "dog", "train"], ["imgs/c.png", "cat", "test"],
            ["imgs/d.png", "bird", "val"], ["imgs/e.png", "dog", "train"], ["imgs/f.png", "dog", "test"]]
    for i, r in enumerate(rows):
        _png(tmp_path / r[0], 20 + 40 * i)
    return tmp_path, _write_csv(tmp_path / "labels.csv", ["path", "label", "split"], rows)


def test_png_folder_labels_shapes_order(png_set: tuple[Path, Path]) -> None:
    folder, csv_path = png_set
    tr = load_csv_split(folder, csv_path, "train", CFG32)
    assert tr.ids == ["imgs/a.png", "imgs/b.png", "imgs/e.png"]
    assert tr.labels == ("bird", "cat", "dog")  # sorted over all splits, not just train
    assert tr.y.tolist() == [1, 2, 2] and str(tr.y.dtype) == "torch.int64"
    assert tuple(tr.x.shape) == (3, 1, 32, 32) and str(tr.x.dtype) == "torch.float32"
    # constant images: 8-bit stored range window -> value / 255; CSV order kept
    assert np.allclose(tr.x.mean(dim=(1, 2, 3)).numpy(), np.array([20, 60, 180]) / 255, atol=2e-3)
    te = load_csv_split(folder, csv_path, "test", CFG32, labels=("dog", "cat", "bird"))
    assert te.ids == ["imgs/c.png", "imgs/f.png"] and te.y.tolist() == [1, 0]
    three = load_csv_split(folder, csv_path, "train", PreprocessConfig(input_size=(16, 16), in_chans=3,
                                                                        mean=(0.5,) * 3, std=(0.25,) * 3))
    assert tuple(three.x.shape) == (3, 3, 16, 16)
    assert load_csv_split(folder, csv_path, "train", CFG32, limit=2).ids == ["imgs/a.png", "imgs/b.png"]


def test_unknown_label_and_split_are_errors(png_set: tuple[Path, Path]) -> None:
    folder, csv_path = png_set
    with pytest.raises(DatasetError, match=r"imgs/d\.png.*'bird'"):
        load_csv_split(folder, csv_path, "val", CFG32, labels=("cat", "dog"))
    with pytest.raises(DatasetError, match=r"'holdout'.*\['test', 'train', 'val'\]"):
        load_csv_split(folder, csv_path, "holdout", CFG32)


def test_unreadable_files_name_the_row(png_set: tuple[Path, Path]) -> None:
    folder, csv_path = png_set
    (folder / "imgs" / "b.png").write_text("not an image, just text\n")
    with pytest.raises(UnsupportedFormatError, match=r"^imgs/b\.png: "):
        load_csv_split(folder, csv_path, "train", CFG32)
    (folder / "imgs" / "c.png").write_bytes((folder / "imgs" / "a.png").read_bytes()[:45])  # signature, IHDR, part of IDAT
    with pytest.raises(CorruptFileError, match=r"^imgs/c\.png: "):
        load_csv_split(folder, csv_path, "test", CFG32)
    (folder / "imgs" / "d.png").unlink()
    with pytest.raises(DatasetError, match=r"not found.*imgs/d\.png"):
        load_csv_split(folder, csv_path, "val", CFG32)


# ---------------------------------------------------------------- CSV validation


def test_read_label_csv_strips_and_validates(tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "l.csv", [" path ", "label", "patient"],
                   [[" x/1.png ", " pos ", " p1 "], ["", "", ""], ["x/2.png", "neg", "p2"]], bom=True)
    rows = read_label_csv(p, patient_col="patient")
    assert rows == [{"path": "x/1.png", "label": "pos", "patient": "p1"},
                    {"path": "x/2.png", "label": "neg", "patient": "p2"}]
    with pytest.raises(DatasetError, match=r"'subject' is missing; columns found: \['path', 'label', 'patient'\]"):
        read_label_csv(p, patient_col="subject")
    with pytest.raises(ValueError, match=r"'diagnosis' is missing"):  # DatasetError is a ValueError too
        read_label_csv(p, label_col="diagnosis")


@pytest.mark.parametrize("bad", ["../outside.png", "x/../../outside.png", "/etc/passwd", "C:\\data\\x.png",
                                 "..\\outside.png"])
def test_paths_escaping_the_folder_are_rejected(tmp_path: Path, bad: str) -> None:
    p = _write_csv(tmp_path / "l.csv", ["path", "label"], [["ok.png", "a"], [bad, "b"]])
    with pytest.raises(DatasetError, match="relative to the data set folder") as err:
        read_label_csv(p)
    assert bad in str(err.value)


def test_duplicates_and_empty_cells_are_rejected(tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "d.csv", ["path", "label"], [["a.png", "x"], ["b.png", "y"], ["./a.png", "y"]])
    with pytest.raises(DatasetError, match=r"\./a\.png: listed twice \(also as 'a\.png'\)"):
        read_label_csv(p)
    p = _write_csv(tmp_path / "e.csv", ["path", "label", "split"], [["a.png", "x", "train"], ["b.png", "", "test"]])
    with pytest.raises(DatasetError, match=r"b\.png: the 'label' cell is empty"):
        read_label_csv(p)
    p = _write_csv(tmp_path / "s.csv", ["path", "label", "split"], [["a.png", "x", ""]])
    with pytest.raises(DatasetError, match=r"a\.png: the 'split' cell is empty"):
        read_label_csv(p)
    p = _write_csv(tmp_path / "n.csv", ["path", "label"], [["a.png", "x"], ["", "y"]])
    with pytest.raises(DatasetError, match=r"line 3: the 'path' cell is empty"):
        read_label_csv(p)


def test_patient_in_two_csv_splits_is_leakage(png_set: tuple[Path, Path]) -> None:
    folder, _ = png_set
    p = _write_csv(folder / "leak.csv", ["path", "label", "split", "patient"],
                   [["imgs/a.png", "cat", "train", "p1"], ["imgs/b.png", "dog", "train", "p2"],
                    ["imgs/c.png", "cat", "test", "p1"]])
    with pytest.raises(DatasetError, match=r"imgs/c\.png: same patient as imgs/a\.png.*leakage"):
        load_csv_split(folder, p, "train", CFG32, patient_col="patient")


# ---------------------------------------------------------------- grouped_split


def _patient_rows(n_patients: int = 90, seed: int = 7) -> list[dict[str, str]]:
    """Patients with 1-6 images each and a patient-level label, classes 60/30/10 %."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = rng.choice(["normal", "pneumonia", "tb"], p=[0.6, 0.3, 0.1])
        rows += [{"path": f"p{p}/{k}.png", "label": str(label), "pid": f"P{p:03d}"}
                 for k in range(int(rng.integers(1, 7)))]
    return rows


@pytest.mark.parametrize("seed", range(5))
def test_grouped_split_keeps_patients_together_and_stratifies(seed: int) -> None:
    rows = _patient_rows()
    before = [dict(r) for r in rows]
    out = grouped_split(rows, "pid", seed=seed)
    assert rows == before  # input untouched
    assert [r["path"] for r in out] == [r["path"] for r in rows]
    splits_of: dict[str, set[str]] = {}
    for r in out:
        splits_of.setdefault(r["pid"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())
    n = len(out)
    overall = Counter(r["label"] for r in rows)
    for name, frac in zip(SPLITS, (0.7, 0.1, 0.2), strict=True):
        part = [r for r in out if r["split"] == name]
        assert abs(len(part) / n - frac) < 0.05, (name, len(part), n)
        counts = Counter(r["label"] for r in part)
        assert set(counts) == set(overall), (name, counts)  # every class in every split
        for label, c in overall.items():
            assert abs(counts[label] / len(part) - c / n) < 0.08, (name, label, counts)


def test_grouped_split_is_deterministic_and_seeded() -> None:
    rows = _patient_rows()
    a = [r["split"] for r in grouped_split(rows, "pid", seed=3)]
    assert a == [r["split"] for r in grouped_split(rows, "pid", seed=3)]
    assert a != [r["split"] for r in grouped_split(rows, "pid", seed=4)]
    b = [r["split"] for r in grouped_split(rows, None, seed=3)]
    assert b == [r["split"] for r in grouped_split(rows, None, seed=3)]


def test_per_image_split_exact_fractions_and_stratified() -> None:
    rows = [{"path": f"{i}.png", "label": "pos" if i % 4 == 0 else "neg"} for i in range(200)]
    out = grouped_split(rows, None, seed=1)
    sizes = Counter(r["split"] for r in out)
    assert sizes == {"train": 140, "val": 20, "test": 40}
    for name in SPLITS:
        part = [r for r in out if r["split"] == name]
        assert sum(r["label"] == "pos" for r in part) == len(part) // 4  # exactly 25 % positive
    rare = [*rows, {"path": "lone.png", "label": "rare"}]  # a class of 1 cannot be stratified: plain cut
    assert Counter(r["split"] for r in grouped_split(rare, None, seed=1)) == {"train": 141, "val": 20, "test": 40}


def test_other_fractions_and_bad_inputs() -> None:
    rows = _patient_rows(60)
    out = grouped_split(rows, "pid", fractions=(0.8, 0.0, 0.2), seed=0)
    assert {r["split"] for r in out} == {"train", "test"}
    half = Counter(r["split"] for r in grouped_split(rows, "pid", fractions=(0.5, 0.25, 0.25)))
    assert abs(half["train"] / len(rows) - 0.5) < 0.1
    with pytest.raises(ValueError, match="summing to 1"):
        grouped_split(rows, "pid", fractions=(0.7, 0.2, 0.2))
    two = [{"path": f"{i}.png", "label": "a", "pid": f"P{i % 2}"} for i in range(6)]
    with pytest.raises(DatasetError, match="2 patient"):
        grouped_split(two, "pid")
    with pytest.raises(DatasetError, match="empty"):
        grouped_split([{**two[0], "pid": ""}, *two[1:]], "pid")


# ---------------------------------------------------------------- DICOM folder, PatientID from the header


@pytest.fixture
def dicom_set(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """16 DICOMs of 8 patients (2 each): .dcm files, files without extension, raw files without preamble."""
    patient_of, rows = {}, []
    for i in range(16):
        pid = f"RAW-PATIENT-{i // 2:02d}"
        name = f"dcm/{i:02d}.dcm" if i % 3 == 0 else f"dcm/{i:02d}"
        (tmp_path / "dcm").mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(_dicom_bytes(pid, 200 * i + 100, preamble=i % 4 != 1))
        patient_of[name] = pid
        rows.append([name, "pos" if (i // 2) % 2 else "neg"])
    return tmp_path, _write_csv(tmp_path / "labels.csv", ["path", "label"], rows), patient_of


def test_dicom_folder_grouped_by_header_patient_id(dicom_set: tuple[Path, Path, dict[str, str]]) -> None:
    folder, csv_path, patient_of = dicom_set
    parts = {s: load_csv_split(folder, csv_path, s, CFG32, patient_col="PatientID", seed=2,
                               fractions=(0.5, 0.25, 0.25)) for s in SPLITS}
    ids = [i for p in parts.values() for i in p.ids]
    assert sorted(ids) == sorted(patient_of)  # every image in exactly one split
    pats = {s: {patient_of[i] for i in p.ids} for s, p in parts.items()}
    assert not (pats["train"] & pats["val"] or pats["train"] & pats["test"] or pats["val"] & pats["test"])
    for p in parts.values():
        assert p.labels == ("neg", "pos") and tuple(p.x.shape)[1:] == (1, 32, 32)
        means = p.x.mean(dim=(1, 2, 3)).numpy()
        assert np.all(np.diff(means) > 0)  # CSV order: pixel value rises with the row index
    # same call again: same assignment
    again = load_csv_split(folder, csv_path, "train", CFG32, patient_col="PatientID", seed=2,
                           fractions=(0.5, 0.25, 0.25))
    assert again.ids == parts["train"].ids


def test_hashed_patient_ids_never_equal_the_raw_id(dicom_set: tuple[Path, Path, dict[str, str]]) -> None:
    folder, _, patient_of = dicom_set
    for name, raw in patient_of.items():
        h = dicom_patient_hash(folder / name)
        assert h == hash_patient_id(raw) and h != raw and raw not in h
        assert len(h) == 12 and int(h, 16) >= 0
    assert len({dicom_patient_hash(folder / n) for n in patient_of}) == 8


def test_dicom_errors_name_the_row_not_header_values(tmp_path: Path) -> None:
    (tmp_path / "bad.dcm").write_bytes(_dicom_bytes("SECRET-ID-77", 500)[:-300])  # truncated pixel data
    _png(tmp_path / "pic.png", 9)
    (tmp_path / "anon.dcm").write_bytes(_dicom_bytes("", 500))
    p = _write_csv(tmp_path / "l.csv", ["path", "label", "split"], [["bad.dcm", "a", "test"]])
    with pytest.raises(MedimgError, match=r"^bad\.dcm: ") as err:
        load_csv_split(tmp_path, p, "test", CFG32)
    assert "SECRET" not in str(err.value)
    p = _write_csv(tmp_path / "m.csv", ["path", "label"], [["pic.png", "a"], ["bad.dcm", "b"]])
    with pytest.raises(UnsupportedFormatError, match=r"pic\.png: not a DICOM file"):
        load_csv_split(tmp_path, p, "train", CFG32, patient_col="PatientID")
    p = _write_csv(tmp_path / "gone.csv", ["path", "label"], [["bad.dcm", "a"], ["gone.dcm", "b"]])
    with pytest.raises(DatasetError, match=r"not found.*gone\.dcm"):  # checked before any header is read
        load_csv_split(tmp_path, p, "train", CFG32, patient_col="PatientID")
    with pytest.raises(DatasetError, match=r"anon\.dcm: the DICOM header has no PatientID"):
        dicom_patient_hash(tmp_path / "anon.dcm", "anon.dcm")
    p = _write_csv(tmp_path / "q.csv", ["path", "label"], [["bad.dcm", "a"]])
    with pytest.raises(DatasetError, match=r"'subject' is missing"):  # only PatientID is read from headers
        load_csv_split(tmp_path, p, "train", CFG32, patient_col="subject")


# ---------------------------------------------------------------- real data


def test_real_dicoms_at_64px(tmp_path: Path) -> None:
    src = data_root() / "dicom" / "cxr"
    if not src.is_dir():
        pytest.skip(f"no real DICOMs at {src}")
    files = [f.name for f in sorted(src.glob("*.dcm"), key=lambda f: f.stat().st_size)[:3]]  # smallest: fast
    if len(files) < 2:
        pytest.skip("fewer than 2 real DICOMs")
    p = _write_csv(tmp_path / "real.csv", ["path", "label", "split"],
                   [[f, "a" if i % 2 else "b", "test"] for i, f in enumerate(files)])
    cfg = PreprocessConfig(input_size=(64, 64))
    out = load_csv_split(src, p, "test", cfg)
    assert out.ids == files and tuple(out.x.shape) == (len(files), 1, 64, 64)
    x = out.x.numpy()
    assert np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0 and x.std() > 0.01
    assert out.y.tolist() == [1 if i % 2 == 0 else 0 for i in range(len(files))]


def test_medmnist_split_honours_limit(shared_data: Path) -> None:
    """``limit`` takes evenly spaced images of a MedMNIST split (ids are the official indices), as for folders."""
    from medimg.spec import PreprocessConfig
    from medimg.training.tasks import load_task_split

    cfg = PreprocessConfig(input_size=(28, 28), in_chans=1, mean=(0.5,), std=(0.25,))
    full = load_task_split("breastmnist", "val", cfg)
    part = load_task_split("breastmnist", "val", cfg, limit=10)
    assert len(part.y) == 10 and part.x.shape == (10, 1, 28, 28)
    idx = [int(i) for i in part.ids]
    assert idx == sorted(idx) and idx[0] == 0 and idx[-1] > len(full.y) // 2
    assert part.y.tolist() == full.y[idx].tolist()
