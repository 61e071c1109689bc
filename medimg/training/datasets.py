"""User data sets: an image or DICOM folder with a CSV of labels (path, label, optional split and patient).

Without a split column the rows are split by :func:`grouped_split`, patient-grouped when a patient column is
given, so no patient is in training and evaluation both. Every image goes through :func:`medimg.io.load_image`
and :func:`medimg.preprocess.run`, the exact code the app runs. Error messages name the CSV row's path (a
training-side tool on the user's own files) but never DICOM header values: patient IDs read from headers are
kept only as :func:`hash_patient_id` digests, in memory.
"""

from __future__ import annotations

import csv
import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import torch

from medimg.errors import DatasetError, MedimgError, UnsupportedFormatError
from medimg.io import load_image
from medimg.preprocess import run as preprocess_run
from medimg.spec import PreprocessConfig
from medimg.training.data import SplitArrays, _stack

__all__ = ["DatasetError", "read_label_csv", "grouped_split", "hash_patient_id", "dicom_patient_hash",
           "load_csv_split", "SPLITS", "DICOM_PATIENT_COL"]

#: Split names written by :func:`grouped_split`, in the order of its ``fractions``.
SPLITS = ("train", "val", "test")
#: ``patient_col`` value that :func:`load_csv_split` reads from the DICOM headers when the CSV lacks it.
DICOM_PATIENT_COL = "PatientID"
#: Number of StratifiedGroupKFold folds that :func:`grouped_split` deals out to the splits (5 % resolution).
N_FOLDS = 20


def hash_patient_id(raw: str) -> str:
    """Group key of a patient ID: first 12 hex digits of sha256 of the stripped UTF-8 text (pseudonymous, not
    anonymous: a short ID space can be enumerated; the digest only lives in memory, to group images)."""
    return hashlib.sha256(raw.strip().encode("utf-8")).hexdigest()[:12]


def _unsafe(path: str) -> bool:
    """Whether a CSV path is absolute or climbs out of the folder (POSIX or Windows spelling)."""
    posix, win = PurePosixPath(path), PureWindowsPath(path)
    return posix.is_absolute() or bool(win.drive or win.root) or ".." in posix.parts or ".." in win.parts


def read_label_csv(csv_path: str | Path, path_col: str = "path", label_col: str = "label",
                   split_col: str = "split", patient_col: str | None = None) -> list[dict[str, str]]:
    """Read and validate a CSV of image labels.

    Parameters
    ----------
    csv_path : path
        UTF-8 CSV with a header row (an Excel byte-order mark is accepted).
    path_col, label_col, split_col, patient_col : str
        Columns: image path relative to the data set folder and label (required), split (optional: rows carry
        none when absent) and patient (required when not None). Present columns need non-empty cells.

    Returns
    -------
    list of dict
        One dict per row, in file order, column -> value, whitespace stripped; all-empty rows skipped.

    Raises
    ------
    DatasetError
        A required column is missing (named, with the columns found); a path is empty, absolute or has ``..``;
        a path is listed twice (``./`` normalised); an empty label, split or patient cell. Messages name the
        row's path (or line number).
    """
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        found = [c.strip() for c in reader.fieldnames or []]
        required = [path_col, label_col] + ([patient_col] if patient_col is not None else [])
        for col in required:
            if col not in found:
                raise DatasetError(f"{Path(csv_path).name}: column {col!r} is missing; columns found: {found}.")
        raw = [(reader.line_num, r) for r in reader]
    rows: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for line, r in raw:
        row = {k.strip(): (v or "").strip() for k, v in r.items()
               if isinstance(k, str) and isinstance(v, str | None)}
        if not any(row.values()):
            continue
        path = row[path_col]
        if not path:
            raise DatasetError(f"line {line}: the {path_col!r} cell is empty.")
        if _unsafe(path):
            raise DatasetError(f"{path}: paths must be relative to the data set folder, without '..'.")
        key = PurePosixPath(path.replace("\\", "/")).as_posix()
        if key in seen:
            raise DatasetError(f"{path}: listed twice (also as {seen[key]!r}); each image must appear once.")
        seen[key] = path
        for col in (label_col, patient_col, split_col if split_col in found else None):
            if col is not None and not row.get(col):
                raise DatasetError(f"{path}: the {col!r} cell is empty.")
        rows.append(row)
    return rows


def _allocate(fractions: tuple[float, float, float], k: int) -> list[int]:
    """Whole numbers of ``k`` folds per split, proportional to ``fractions`` (largest remainder), each split
    with a positive fraction getting at least one fold."""
    exact = [f * k for f in fractions]
    counts = [int(e) for e in exact]
    for i in sorted(range(3), key=lambda i: counts[i] - exact[i])[: k - sum(counts)]:
        counts[i] += 1
    for i in range(3):
        if fractions[i] > 0 and counts[i] == 0:
            counts[i] += 1
            counts[int(np.argmax(counts))] -= 1
    return counts


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or min(fr) < 0 or fr[0] <= 0 or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be 3 non-negative numbers (train > 0) summing to 1, got {fractions}")
    return fr  # type: ignore[return-value]


def _split_images(y: np.ndarray, fr: tuple[float, float, float], seed: int) -> np.ndarray:
    """Per-image stratified split with two ``train_test_split`` cuts (test, then val from the rest)."""
    from sklearn.model_selection import train_test_split

    n = len(y)
    out = np.full(n, SPLITS[0], dtype=object)
    rest = np.arange(n)
    for name, f in ((SPLITS[2], fr[2]), (SPLITS[1], fr[1])):
        size = max(1, round(f * n)) if f > 0 and n >= 3 else round(f * n)
        if size == 0 or size >= len(rest):
            continue
        try:
            rest, taken = train_test_split(rest, test_size=size, random_state=seed, stratify=y[rest])
        except ValueError:  # a class too small to stratify: fall back to a plain random cut
            rest, taken = train_test_split(rest, test_size=size, random_state=seed)
        out[taken] = name
    return out


def _split_groups(y: np.ndarray, groups: np.ndarray, fr: tuple[float, float, float], seed: int) -> np.ndarray:
    """Patient-grouped stratified split: StratifiedGroupKFold folds dealt out to the splits."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups.tolist()))
    needed = sum(f > 0 for f in fr)
    if n_groups < needed:
        raise DatasetError(f"{n_groups} patient(s) cannot fill {needed} splits without sharing a patient.")
    k = min(N_FOLDS, n_groups)
    fold = np.empty(len(y), dtype=np.int64)
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has fewer members than n_splits"
        warnings.simplefilter("ignore", UserWarning)
        for i, (_, held) in enumerate(sgkf.split(np.zeros(len(y)), y, groups)):
            fold[held] = i
    classes, yi = np.unique(y.astype(str), return_inverse=True)
    per_fold = np.zeros((k, len(classes)))
    np.add.at(per_fold, (fold, yi), 1.0)
    owner = _deal(per_fold, fr, _allocate(fr, k))
    return np.array(SPLITS, dtype=object)[owner[fold]]


def _deal(per_fold: np.ndarray, fr: tuple[float, float, float], counts: list[int]) -> np.ndarray:
    """Split index (0, 1, 2) of each fold. The smaller splits pick first, greedily, the fold that brings their
    running per-class counts closest to ``fraction * class total`` (errors scaled by class totals, so a rare
    class weighs as much as a common one); train keeps the rest. (k, C) counts -> (k,) int64."""
    total = per_fold.sum(axis=0)
    scale = np.maximum(total, 1.0)
    owner = np.zeros(len(per_fold), dtype=np.int64)
    free = list(range(len(per_fold)))
    for j in sorted((1, 2), key=lambda j: counts[j]):
        cur = np.zeros_like(total)
        for m in range(1, counts[j] + 1):
            goal = total * fr[j] * m / counts[j]
            best = min(free, key=lambda f: float((np.abs(cur + per_fold[f] - goal) / scale).sum()))
            free.remove(best)
            owner[best], cur = j, cur + per_fold[best]
    return owner


def grouped_split(rows: Sequence[dict[str, str]], patient_col: str | None,
                  fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0,
                  label_col: str = "label") -> list[dict[str, str]]:
    """Assign ``split`` = train / val / test to every row, patient-grouped and stratified by label.

    With ``patient_col``: scikit-learn's ``StratifiedGroupKFold`` (shuffled, ``random_state=seed``) cuts the
    rows into ``min(20, n_patients)`` folds of whole patients with label distributions close to the whole
    set's; the folds are dealt to the splits in proportion to ``fractions`` (at least one fold per positive
    fraction), val and test greedily taking the folds that bring their label counts closest to their share.
    Not ``GroupShuffleSplit``: it ignores labels, so a rare class can vanish from val or test. Fractions hold to
    about one fold (5 % with 20+ patients), less exactly when patients have very unequal image counts.
    Without ``patient_col``: ``train_test_split`` stratified by label (plain random when a class is too small)
    cuts test, then val from the rest, with exact fractions.

    Parameters
    ----------
    rows : sequence of dict
        Rows as from :func:`read_label_csv`; not modified.
    patient_col, label_col : str
        Patient column (None: split per image) and the column stratified on.
    fractions : (float, float, float)
        Train, val, test shares; non-negative, train positive, summing to 1. A zero leaves that split empty.
    seed : int
        The same rows, fractions and seed always give the same assignment.

    Returns
    -------
    list of dict
        Copies of ``rows`` in the same order, each with ``"split"`` set to one of :data:`SPLITS`.

    Raises
    ------
    ValueError
        Bad ``fractions``.
    DatasetError
        Fewer patients than non-empty splits, or an empty patient value.
    """
    fr = _check_fractions(fractions)
    if not rows:
        return []
    y = np.array([r[label_col] for r in rows], dtype=object)
    if patient_col is None:
        names = _split_images(y, fr, seed)
    else:
        groups = np.array([r.get(patient_col, "") for r in rows], dtype=object)
        if not all(groups):
            raise DatasetError(f"{patient_col!r} is empty for some rows; every image needs a patient.")
        names = _split_groups(y, groups, fr, seed)
    return [{**r, "split": str(s)} for r, s in zip(rows, names, strict=True)]


def dicom_patient_hash(path: str | Path, row_path: str | None = None) -> str:
    """:func:`hash_patient_id` of a DICOM file's PatientID (0010,0020), read without the pixel data.

    ``path`` is the file (preamble optional); ``row_path`` the name for messages (the file name by default).
    Returns 12 lowercase hex digits.

    Raises
    ------
    UnsupportedFormatError
        The file is not DICOM.
    medimg.errors.CorruptFileError
        The header cannot be read.
    DatasetError
        No or an empty PatientID. No message ever contains a header value.
    """
    import pydicom

    from medimg.errors import CorruptFileError
    from medimg.io.sniff import looks_like_raw_dicom

    where = row_path if row_path is not None else Path(path).name
    with open(path, "rb") as fh:
        head = fh.read(4096)
    preamble = head[128:132] == b"DICM"
    if not preamble and not looks_like_raw_dicom(head):
        raise UnsupportedFormatError(f"{where}: not a DICOM file, so it has no PatientID; add a patient column "
                                     "to the CSV.")
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=not preamble, specific_tags=["PatientID"])
        raw = str(ds.get("PatientID", "") or "")
    except Exception:
        raise CorruptFileError(f"{where}: the DICOM header cannot be read.") from None
    if not raw.strip():
        raise DatasetError(f"{where}: the DICOM header has no PatientID; add a patient column to the CSV.")
    return hash_patient_id(raw)


def _check_files(folder: Path, rows: Sequence[dict[str, str]], path_col: str) -> None:
    """Fail before any decoding when files listed in the CSV are missing (names up to 5 of them)."""
    missing = [r[path_col] for r in rows if not (folder / r[path_col]).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} file(s) listed in the CSV not found under {folder}: "
                           f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")


def load_csv_split(folder: str | Path, csv_path: str | Path, split: str, config: PreprocessConfig,
                   labels: Sequence[str] | None = None, limit: int | None = None, path_col: str = "path",
                   label_col: str = "label", split_col: str = "split", patient_col: str | None = None,
                   seed: int = 0, fractions: Sequence[float] = (0.7, 0.1, 0.2)) -> SplitArrays:
    """Load and preprocess one split of an image or DICOM folder labelled by a CSV.

    Parameters
    ----------
    folder, csv_path : path
        Data set folder (CSV paths are relative to it) and the CSV (:func:`read_label_csv`). Files: PNG, JPEG,
        TIFF, GIF, BMP or DICOM, ``.dcm`` or any or no extension (the format is decided by content).
    split : str
        Split to load, e.g. ``"train"``, ``"val"``, ``"test"``.
    config : PreprocessConfig
        The model's preprocessing.
    labels : sequence of str, optional
        Label order; the sorted unique labels of the whole CSV (all splits) by default.
    limit : int, optional
        Keep only ``limit`` rows of the split, evenly spaced through the CSV (quick checks).
    path_col, label_col, split_col, patient_col : str
        Columns. Without ``split_col`` in the CSV, :func:`grouped_split` (``fractions``, ``seed``) splits all
        rows, so train, val and test calls with the same arguments are disjoint. ``patient_col="PatientID"``
        absent from the CSV is read, hashed, from each DICOM header. With a split column and a patient
        column (or header PatientID), a patient in two splits is an error.

    Returns
    -------
    SplitArrays
        ``x`` (N, C, H, W) float32 in [0, 1], ``y`` (N,) int64 indices into ``labels``, ``labels``, and
        ``ids`` the CSV paths, in CSV order.

    Raises
    ------
    DatasetError
        CSV problems (see :func:`read_label_csv`), a label not in ``labels``, no row in ``split``, missing
        files, patient leakage between the CSV's splits.
    medimg.errors.MedimgError
        An image cannot be decoded: the :func:`medimg.io.load_image` error type, message prefixed by the CSV
        row's path.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    folder = Path(folder)
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        columns = [c.strip() for c in next(csv.reader(fh), [])]
    from_header = patient_col == DICOM_PATIENT_COL and patient_col not in columns
    rows = read_label_csv(csv_path, path_col, label_col, split_col, None if from_header else patient_col)
    if from_header:
        _check_files(folder, rows, path_col)
        rows = [{**r, patient_col: dicom_patient_hash(folder / r[path_col], r[path_col])} for r in rows]
    if split_col in columns:
        if patient_col is not None:
            first: dict[str, dict[str, str]] = {}
            for r in rows:
                other = first.setdefault(r[patient_col], r)
                if other[split_col] != r[split_col]:
                    raise DatasetError(f"{r[path_col]}: same patient as {other[path_col]} but in split "
                                       f"{r[split_col]!r}, not {other[split_col]!r} (patient leakage).")
        key = split_col
    else:
        rows, key = grouped_split(rows, patient_col, fractions, seed, label_col), "split"
    labels = tuple(labels) if labels is not None else tuple(sorted({r[label_col] for r in rows}))
    index = {name: i for i, name in enumerate(labels)}
    chosen = [r for r in rows if r[key] == split]
    if not chosen:
        raise DatasetError(f"no rows in split {split!r}; splits found: {sorted({r[key] for r in rows})}.")
    if limit is not None and limit < len(chosen):
        chosen = chosen[:: max(1, len(chosen) // limit)][:limit]
    for r in chosen:
        if r[label_col] not in index:
            raise DatasetError(f"{r[path_col]}: label {r[label_col]!r} is not one of {list(labels)}.")
    _check_files(folder, chosen, path_col)
    images, ys = [], []
    for r in chosen:
        try:
            img = load_image(folder / r[path_col])
        except MedimgError as err:
            raise type(err)(f"{r[path_col]}: {err}") from err
        images.append(preprocess_run(img, config).image)
        ys.append(index[r[label_col]])
    return SplitArrays(_stack(images), torch.tensor(ys, dtype=torch.int64), labels, [r[path_col] for r in chosen])
