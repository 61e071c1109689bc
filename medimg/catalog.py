"""Where the data sets are, and how their manifests read. numpy only (no torch): serving code may use it too
(the reviewers' case gallery opens test images by the ids stored in an EvalReport).

Data sets are read from ``$MEDIMG_DATA``, by default ``../shared/data`` next to the repository; nothing is ever
copied into the repository.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import numpy as np

from medimg.io.image import MedicalImage, Window

__all__ = ["DATA_ENV", "data_root", "read_manifest", "manifest_checksum", "image_from_array"]

#: Environment variable naming the folder of the data sets.
DATA_ENV = "MEDIMG_DATA"


def data_root() -> Path:
    """Folder of the shared data sets: ``$MEDIMG_DATA`` or ``../shared/data`` next to the repository."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


def read_manifest(folder: str | Path) -> list[dict[str, str]]:
    """Rows of ``folder/MANIFEST.csv`` as dicts (``path`` relative to ``folder``, ``split``, ``label``, ...).

    Raises
    ------
    FileNotFoundError
        The folder has no ``MANIFEST.csv``.
    """
    with open(Path(folder) / "MANIFEST.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def manifest_checksum(folder: str | Path) -> str:
    """sha256 of the MANIFEST.csv (which lists each image's MD5): one checksum for the whole data set."""
    return hashlib.sha256((Path(folder) / "MANIFEST.csv").read_bytes()).hexdigest()


def image_from_array(pixels: np.ndarray) -> MedicalImage:
    """Wrap an 8-bit (H, W) or (H, W, 3) array (e.g. a MedMNIST image) as a MedicalImage with a 0..255 window.

    Parameters
    ----------
    pixels : (H, W) or (H, W, 3) array of values in 0..255

    Returns
    -------
    MedicalImage
        float32 pixels, ``format="array"``, units ``"8-bit"``.
    """
    arr = np.asarray(pixels, dtype=np.float32)
    return MedicalImage(pixels=arr, format="array", photometric="RGB" if arr.ndim == 3 else "MONOCHROME2",
                        windows=(Window(127.5, 255.0, "stored range (0-255)", "LINEAR_EXACT"),), units="8-bit")
