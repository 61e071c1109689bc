"""Reference image sets for fitting and measuring the applicability gate: what it must refuse (out of scope)
and what it should report on (near scope), and the near-domain sets a gate is fitted against (adult chest films
for the paediatric chest X-ray models, split by patient into a half to fit on and a half to report on).
Streamed one image at a time; seeded.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medimg.catalog import data_root, read_manifest
from medimg.io import load_image
from medimg.io.image import MedicalImage, Window

__all__ = ["SYNTHETIC_KINDS", "synthetic_images", "Unreadable", "out_of_scope_sets", "near_scope_sets",
           "ADULT_MIN_AGE", "split_by_patient", "adult_cxr_rows", "fit_reference_sets", "report_reference_sets"]

log = logging.getLogger(__name__)

#: Synthetic kinds made by :func:`synthetic_images`.
SYNTHETIC_KINDS = ("photo-like colour textures", "colour gradients", "noise", "blank")

_RGB8 = (Window(127.5, 255.0, "stored range (0-255)", "LINEAR_EXACT"),)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], channels: int) -> np.ndarray:
    """Sum of random fields at several scales (1/f-like, as natural images are), in [0, 1]."""
    from skimage.transform import resize

    out = np.zeros((*shape, channels), np.float64)
    for cells, weight in ((4, 1.0), (16, 0.5), (64, 0.25), (shape[0], 0.12)):
        coarse = rng.normal(size=(cells, cells, channels))
        out += weight * resize(coarse, (*shape, channels), order=3, mode="reflect", anti_aliasing=False)
    out -= out.min()
    return out / max(out.max(), 1e-9)


def synthetic_images(kind: str, n: int, seed: int = 0, size: tuple[int, int] = (256, 256)) -> Iterator[MedicalImage]:
    """Seeded synthetic out-of-scope images (8-bit, like an uploaded PNG/JPEG).

    Parameters
    ----------
    kind : one of :data:`SYNTHETIC_KINDS`
        ``photo-like colour textures``: multi-scale colour fields with a few bright shapes (a stand-in for
        natural photographs); ``colour gradients``: linear colour ramps in random directions; ``noise``:
        grayscale uniform or Gaussian noise; ``blank``: constant gray images.
    n : int
    seed : int
    size : (rows, columns)
    """
    rng = np.random.default_rng([seed, SYNTHETIC_KINDS.index(kind)])
    rows, cols = size
    rr, cc = np.mgrid[0:rows, 0:cols] / np.array([rows, cols]).reshape(2, 1, 1)
    for i in range(n):
        if kind == "photo-like colour textures":
            x = _smooth_field(rng, size, 3)
            for _ in range(rng.integers(1, 5)):
                r0, c0, rad = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.25)
                disk = (rr - r0) ** 2 + (cc - c0) ** 2 < rad**2
                x[disk] = 0.5 * x[disk] + 0.5 * rng.uniform(0, 1, 3)
        elif kind == "colour gradients":
            angle = rng.uniform(0, 2 * np.pi)
            t = (np.cos(angle) * rr + np.sin(angle) * cc)
            t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
            a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
            x = a * (1 - t[..., None]) + b * t[..., None] + rng.normal(0, 0.01, (rows, cols, 3))
        elif kind == "noise":
            x = rng.uniform(0, 1, size) if i % 2 == 0 else rng.normal(0.5, 0.2, size)
        elif kind == "blank":
            x = np.full(size, float(rng.choice([0.0, 0.5, 1.0, rng.uniform()])))
        else:
            raise ValueError(f"unknown synthetic kind {kind!r}; one of {SYNTHETIC_KINDS}")
        pix = np.round(np.clip(x, 0, 1) * 255).astype(np.float32)
        yield MedicalImage(pixels=pix, format="png", photometric="RGB" if pix.ndim == 3 else "MONOCHROME2",
                           windows=_RGB8, units="8-bit")


@dataclass(frozen=True)
class Unreadable:
    """Placeholder a reference set yields for a file the loader could not read (counted, with the reason)."""

    reason: str


def _load_files(paths: list[Path], label: str) -> Iterator[MedicalImage | Unreadable]:
    for p in paths:
        try:
            yield load_image(p)
        except Exception as err:  # noqa: BLE001 - a reference set skips what the loader cannot read, and says so
            log.warning("%s: skipped a file the loader could not read (%s: %s)", label, type(err).__name__, err)
            yield Unreadable(f"{type(err).__name__}: {err}"[:200])


def _manifest_sample(folder: Path, n: int, seed: int, split: str = "test") -> list[Path]:
    rows = [r for r in read_manifest(folder) if r["split"] == split]
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(rows))[:n]
    return [folder / rows[i]["path"] for i in sorted(idx)]


def out_of_scope_sets(root: str | Path | None = None, n: int = 100, seed: int = 0,
                      exclude: tuple[str, ...] = ()) -> Iterator[tuple[str, Iterator[MedicalImage | Unreadable]]]:
    """Named out-of-scope image sets, streamed (one image in memory at a time).

    Synthetic sets (see :func:`synthetic_images`) and, when the shared data is present, a seeded random
    sample of ``n`` test images of brain MRI (``brain-mri``), breast ultrasound (``busi``) and blood-cell
    microscopy (``pbc-blood``), and every CT and MR DICOM in ``dicom/ct`` and ``dicom/mr``. A file the loader
    cannot read is yielded as an :class:`Unreadable` with the reason.

    Parameters
    ----------
    root : path, optional
        The shared data folder; :func:`medimg.catalog.data_root` by default.
    n : int
        Images per set (synthetic sets: ``n // 2``, blank: 10).
    exclude : tuple of str
        Sets that are in scope for the model being checked: folder names (``"busi"``, ``"brain-mri"``,
        ``"pbc-blood"``) or DICOM sub-folders (``"ct"``, ``"mr"``).
    """
    root = Path(root) if root is not None else data_root()
    for kind in SYNTHETIC_KINDS:
        yield f"synthetic: {kind}", synthetic_images(kind, 10 if kind == "blank" else max(n // 2, 1), seed)
    for folder, title in (("brain-mri", "brain MRI (JPEG)"), ("busi", "breast ultrasound (PNG)"),
                          ("pbc-blood", "blood-cell microscopy (JPEG)")):
        if folder not in exclude and (root / folder / "MANIFEST.csv").exists():
            yield title, _load_files(_manifest_sample(root / folder, n, seed), title)
    for sub, title in (("ct", "CT (DICOM)"), ("mr", "MR (DICOM)")):
        files = sorted((root / "dicom" / sub).glob("*.dcm"))
        if files and sub not in exclude:
            yield title, _load_files(files, title)


def near_scope_sets(root: str | Path | None = None, task_key: str = "kermany-cxr",
                    ) -> Iterator[tuple[str, Iterator[MedicalImage | Unreadable]]]:
    """Images close to a task's training domain, reported but not counted as refusals.

    Chest tasks: the adult chest DICOMs (``dicom/cxr``); brain MRI: the MR DICOMs (``dicom/mr``); other tasks:
    none.
    """
    root = Path(root) if root is not None else data_root()
    sub, title = {"kermany-cxr": ("cxr", "adult chest radiographs (DICOM)"),
                  "pneumoniamnist": ("cxr", "adult chest radiographs (DICOM)"),
                  "brain-mri": ("mr", "MR (DICOM)")}.get(task_key, (None, ""))
    files = sorted((root / "dicom" / sub).glob("*.dcm")) if sub else []
    if files:
        yield title, _load_files(files, title)


#: Age (years) from which a patient of ``adult-cxr`` counts as an adult (the reference set the chest models refuse).
ADULT_MIN_AGE = 18

#: Tasks fitted against the adult chest films, and what the gate calls them.
_ADULT_CXR_TASKS = ("kermany-cxr", "pneumoniamnist")
ADULT_CXR_NAME = "adult chest radiographs"


def split_by_patient(rows: list[dict[str, str]], seed: int = 0, fit_fraction: float = 0.5,
                     patient_col: str = "patient") -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Seeded, deterministic split of manifest rows into a "fit" and a "report" part, whole patients only.

    Patients are ordered by the SHA-256 of ``"<seed>:<patient>"`` and the first ``round(fit_fraction * P)`` of
    the ``P`` patients go to the fit part: the result depends only on the seed and the set of patients (not on
    row order), and no patient is in both parts.

    Parameters
    ----------
    rows : list of dict
        Manifest rows with a ``patient_col`` column.
    seed : int
    fit_fraction : float in [0, 1]
        Share of patients in the fit part.
    patient_col : str

    Returns
    -------
    (fit, report) : tuple of list of dict
        The rows of each part, in their original order.

    Raises
    ------
    ValueError
        A row without a patient, or ``fit_fraction`` outside [0, 1].
    """
    if not 0.0 <= fit_fraction <= 1.0:
        raise ValueError(f"fit_fraction must be in [0, 1], got {fit_fraction}")
    patients = {r.get(patient_col, "") for r in rows}
    if "" in patients:
        raise ValueError(f"every row needs a {patient_col!r} value")
    order = sorted(patients, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    fit_patients = set(order[: round(fit_fraction * len(order))])
    return ([r for r in rows if r[patient_col] in fit_patients], [r for r in rows if r[patient_col] not in fit_patients])


def adult_cxr_rows(part: str, root: str | Path | None = None, seed: int = 0,
                   min_age: int = ADULT_MIN_AGE) -> list[dict[str, str]]:
    """Rows of ``adult-cxr`` (NIH ChestX-ray14 test films, one per patient) for one part of the patient split.

    Parameters
    ----------
    part : {"fit", "report", "young"}
        ``fit`` / ``report``: the patients aged ``min_age`` or more, split by :func:`split_by_patient`;
        ``young``: those younger (children and adolescents; reported only, never fitted on: some are within a
        paediatric model's population).
    root : path, optional
        The shared data folder; :func:`medimg.catalog.data_root` by default.
    seed : int
    min_age : int
        Years.

    Returns
    -------
    list of dict
        Empty when the data set is absent.
    """
    folder = (Path(root) if root is not None else data_root()) / "adult-cxr"
    if not (folder / "MANIFEST.csv").exists():
        return []
    rows = read_manifest(folder)

    def age(r: dict[str, str]) -> float:
        try:
            return float(r.get("age", ""))
        except ValueError:
            return float("nan")

    if part == "young":
        return [r for r in rows if age(r) < min_age]
    if part not in ("fit", "report"):
        raise ValueError(f"part must be 'fit', 'report' or 'young', got {part!r}")
    fit, report = split_by_patient([r for r in rows if age(r) >= min_age], seed=seed)
    return fit if part == "fit" else report


def _adult_cxr_images(part: str, root: str | Path | None, seed: int, limit: int | None,
                      title: str) -> Iterator[MedicalImage | Unreadable]:
    folder = (Path(root) if root is not None else data_root()) / "adult-cxr"
    rows = adult_cxr_rows(part, root, seed)
    if limit is not None and limit < len(rows):
        rows = rows[:: max(len(rows) // limit, 1)][:limit]
    return _load_files([folder / r["path"] for r in rows], title)


def fit_reference_sets(task_key: str, root: str | Path | None = None, seed: int = 0, limit: int | None = None,
                       ) -> Iterator[tuple[str, Iterator[MedicalImage | Unreadable]]]:
    """Near-domain images a task's gate is fitted to refuse (:class:`medimg.ood.ReferenceDiscriminator`).

    Chest tasks (``kermany-cxr``, ``pneumoniamnist``): the fit half of the adult films of ``adult-cxr``
    (:func:`adult_cxr_rows`), named ``"adult chest radiographs"``; other tasks, or no shared data: none.

    Parameters
    ----------
    task_key : str
    root : path, optional
    seed : int
        Seed of the patient split.
    limit : int, optional
        At most this many images, evenly spaced (quick checks and tests).
    """
    if task_key in _ADULT_CXR_TASKS and adult_cxr_rows("fit", root, seed):
        yield ADULT_CXR_NAME, _adult_cxr_images("fit", root, seed, limit, ADULT_CXR_NAME)


def report_reference_sets(task_key: str, root: str | Path | None = None, seed: int = 0, limit: int | None = None,
                          ) -> Iterator[tuple[str, str, Iterator[MedicalImage | Unreadable]]]:
    """The held-out counterparts of :func:`fit_reference_sets`, to measure refusal rates on images not fitted on.

    Yields ``(kind, title, images)``: kind ``"out_of_scope"`` for the report half of the adult films (patients
    aged 18 or more, none in the fit half), ``"near_scope"`` for the NIH films of younger patients (reported only).
    """
    if task_key not in _ADULT_CXR_TASKS:
        return
    if adult_cxr_rows("report", root, seed):
        title = f"{ADULT_CXR_NAME} (NIH JPEG, report half, aged {ADULT_MIN_AGE}+)"
        yield "out_of_scope", title, _adult_cxr_images("report", root, seed, limit, title)
    if adult_cxr_rows("young", root, seed):
        title = f"chest radiographs of patients aged under {ADULT_MIN_AGE} (NIH JPEG)"
        yield "near_scope", title, _adult_cxr_images("young", root, seed, limit, title)
