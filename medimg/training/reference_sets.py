"""Reference image sets for fitting and measuring the applicability gate: what it must refuse (out of scope)
and what it should report on (near scope). Streamed one image at a time; seeded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medimg.catalog import data_root, read_manifest
from medimg.io import load_image
from medimg.io.image import MedicalImage, Window

__all__ = ["SYNTHETIC_KINDS", "synthetic_images", "Unreadable", "out_of_scope_sets", "near_scope_sets"]

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
