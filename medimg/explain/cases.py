"""Test-set cases for reviewers: open the images of an EvalReport by their ids, explain many at once, and score
maps against expert lesion masks over a whole split.

The images are the public test sets the models were evaluated on (``$MEDIMG_DATA``), located from the spec's
``training.data`` (``shared/data/<folder>`` or ``medmnist:<flag>``) and the report's per-image ``ids``. No user
upload is involved. Nothing here imports the training workshop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import CaseError
from medimg.explain.localisation import (
    LocalisationSummary,
    energy_inside,
    mask_to_input,
    pointing_hit,
    summarise_localisation,
)
from medimg.explain.maps import cam_batch, cam_layer_of
from medimg.explain.methods import method_name
from medimg.io import MedicalImage, load_image
from medimg.preprocess import Preprocessed
from medimg.preprocess import run as preprocess_run

__all__ = ["CaseError", "dataset_folder", "cases_available", "load_case", "case_inputs", "has_masks",
           "LocalisationReview", "mask_localisation", "centre_prior"]

Progress = Callable[[float, str], None]


def _root(root: str | Path | None) -> Path:
    from medimg.catalog import data_root

    return Path(root) if root is not None else data_root()


def dataset_folder(spec: Any, root: str | Path | None = None) -> tuple[str, Path] | None:
    """Where the model's evaluation images are.

    Parameters
    ----------
    spec : medimg.ModelSpec
        ``spec.training["data"]``: ``"shared/data/<folder>"`` (an image folder with a ``MANIFEST.csv``) or
        ``"medmnist:<flag>"`` (the official ``<flag>.npz``).
    root : path, optional
        The data folder (default ``$MEDIMG_DATA``).

    Returns
    -------
    (kind, path) or None
        ``("folder", <root>/<folder>)`` or ``("medmnist", <root>/medmnist/<flag>.npz)``; None when the spec does
        not say or the data is not on this machine.
    """
    data = str((getattr(spec, "training", None) or {}).get("data", "") or "")
    base = _root(root)
    if data.startswith("medmnist:"):
        p = base / "medmnist" / f"{data.split(':', 1)[1]}.npz"
        return ("medmnist", p) if p.is_file() else None
    if data:
        folder = base / Path(data).name
        return ("folder", folder) if (folder / "MANIFEST.csv").is_file() else None
    return None


def cases_available(spec: Any, root: str | Path | None = None) -> bool:
    """Whether the model's test images can be opened here."""
    return dataset_folder(spec, root) is not None


def load_case(spec: Any, case_id: str, split: str = "test", root: str | Path | None = None) -> MedicalImage:
    """One evaluation image by its report id.

    Parameters
    ----------
    spec : medimg.ModelSpec
    case_id : str
        An ``EvalReport.ids`` entry: a path relative to the data set folder, or a MedMNIST index.
    split : str
        The report's split (MedMNIST arrays are per split).
    root : path, optional

    Returns
    -------
    MedicalImage

    Raises
    ------
    CaseError
        The data set is not here, the id is unknown or escapes the data folder.
    """
    where = dataset_folder(spec, root)
    if where is None:
        raise CaseError("The model's test images are not on this server (set MEDIMG_DATA to the data folder).")
    kind, path = where
    if kind == "medmnist":
        from medimg.catalog import image_from_array

        try:
            with np.load(path) as z:
                arr = z[f"{split}_images"]
                return image_from_array(arr[int(case_id)])
        except (KeyError, ValueError, IndexError) as err:
            raise CaseError(f"Case {case_id!r} is not in the {split} split of {path.name}.") from err
    p = (path / case_id).resolve()
    if path.resolve() not in p.parents or not p.is_file():
        raise CaseError(f"Case {case_id!r} is not a file of the {path.name} data set.")
    return load_image(p.read_bytes())


def case_inputs(spec: Any, case_ids: Sequence[str], split: str = "test",
                root: str | Path | None = None) -> list[Preprocessed]:
    """Preprocessed evaluation images (the spec's own preprocessing), in the order of ``case_ids``.

    Returns
    -------
    list of Preprocessed
        ``model_input`` (C, H, W) float32 normalised; ``image`` (H, W, C) float32 in [0, 1].

    Raises
    ------
    CaseError
        As in :func:`load_case`.
    """
    return [preprocess_run(load_case(spec, c, split, root), spec.preprocess) for c in case_ids]


def has_masks(spec: Any, root: str | Path | None = None) -> bool:
    """Whether the model's data set ships expert lesion masks (a ``mask`` column in its manifest, e.g. BUSI)."""
    where = dataset_folder(spec, root)
    if where is None or where[0] != "folder":
        return False
    with open(where[1] / "MANIFEST.csv", encoding="utf-8") as fh:
        header = fh.readline()
    return "mask" in [h.strip() for h in header.split(",")]


def centre_prior(shape: tuple[int, int]) -> np.ndarray:
    """A centred Gaussian map (sigma = a quarter of each side): the 'lesions are imaged in the middle' baseline.

    Returns
    -------
    (H, W) float64 ndarray in (0, 1]
    """
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-(((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2) / 2)


@dataclass(frozen=True, eq=False)
class LocalisationReview:
    """One CAM method against the expert masks of a split.

    Attributes
    ----------
    method : str
    layer : str
    split : str
    summary : LocalisationSummary
        Pointing game and energy inside the mask of the method.
    centre : LocalisationSummary
        The same for :func:`centre_prior` (a map that knows nothing about the image).
    ids : list of str
        Cases scored (images with a non-empty mask), in manifest order.
    hits : (n,) bool ndarray
    energy : (n,) float64 ndarray
        Share of the map inside the mask, per case.
    area : (n,) float64 ndarray
        Mask area fraction (chance), per case.
    targets : list of int
        Class explained per case (the true class).
    """

    method: str
    layer: str
    split: str
    summary: LocalisationSummary
    centre: LocalisationSummary
    ids: list[str]
    hits: np.ndarray
    energy: np.ndarray
    area: np.ndarray
    targets: list[int]

    def worst(self, k: int = 8) -> list[int]:
        """Indices of the ``k`` cases with the least energy inside the mask (misses first)."""
        order = np.lexsort((np.nan_to_num(self.energy, nan=-1.0), self.hits.astype(int)))
        return [int(i) for i in order[:k]]


def mask_localisation(predictor: Any, method: str = "gradcam", layer: str | None = None, split: str = "test",
                      root: str | Path | None = None, progress: Progress | None = None, batch_size: int = 16,
                      limit: int | None = None, tolerance: int = 0) -> LocalisationReview:
    """Pointing game and energy inside the expert mask of one method over a split (Zhang et al. 2018; Wang et al.
    2020), beside a centre-prior baseline.

    Parameters
    ----------
    predictor : medimg.predict.Predictor
        The model whose data set has masks (:func:`has_masks`).
    method : str
    layer : str, optional
        Default the spec's CAM layer.
    split : str
    root : path, optional
    progress : callable, optional
        ``progress(fraction in [0, 1], text)`` after each batch.
    batch_size : int
        Images per batched CAM pass.
    limit : int, optional
        Score only the first ``limit`` cases (tests).
    tolerance : int
        Mask dilation for the pointing game, in pixels.

    Returns
    -------
    LocalisationReview
        Each case's map explains its *true* class; masks go through the model's own preprocessing.

    Raises
    ------
    CaseError
        The data set or its masks are not here.

    References
    ----------
    .. [1] Zhang et al., "Top-down neural attention by excitation backprop", IJCV 2018 (pointing game).
    .. [2] Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
       CVPR Workshops 2020 (energy-based pointing game).
    """
    from medimg.catalog import read_manifest

    spec = predictor.spec
    m = method_name(method)
    if not has_masks(spec, root):
        raise CaseError("This model's data set has no expert masks.")
    _, folder = dataset_folder(spec, root)  # type: ignore[misc]
    rows = [r for r in read_manifest(folder) if r.get("split") == split and r.get("mask")]
    labels = list(spec.labels)
    rows = [r for r in rows if r.get("label") in labels]
    if limit is not None:
        rows = rows[: int(limit)]
    ids, masks, targets, xs = [], [], [], []
    n = len(rows)
    maps = []
    layer_name = layer or cam_layer_of(spec)
    for start in range(0, n, batch_size):
        chunk = rows[start : start + batch_size]
        bx, bt = [], []
        for r in chunk:
            mk = mask_to_input(load_image((folder / r["mask"]).read_bytes()).pixels, spec.preprocess)
            if not mk.any():
                continue
            pre = preprocess_run(load_image((folder / r["path"]).read_bytes()), spec.preprocess)
            ids.append(r["path"])
            masks.append(mk)
            bx.append(pre.model_input)
            bt.append(labels.index(r["label"]))
        if bx:
            maps.append(cam_batch(predictor, np.stack(bx), bt, method=m, layer=layer_name, batch_size=batch_size))
            targets.extend(bt)
            xs.extend([None] * len(bx))
        if progress is not None:
            progress(min(1.0, (start + len(chunk)) / max(n, 1)), f"{min(start + len(chunk), n)} of {n} images")
    if not ids:
        raise CaseError(f"No {split} image of this data set has a non-empty mask.")
    heat = np.concatenate(maps)
    mask_arr = np.stack(masks)
    summary = summarise_localisation(heat, mask_arr, tolerance)
    prior = centre_prior(heat.shape[1:])
    centre = summarise_localisation(np.repeat(prior[None], len(ids), 0), mask_arr, tolerance)
    hits = np.array([pointing_hit(h, mk, tolerance) for h, mk in zip(heat, mask_arr, strict=True)])
    energy = np.array([energy_inside(h, mk) for h, mk in zip(heat, mask_arr, strict=True)])
    area = mask_arr.reshape(len(ids), -1).mean(axis=1).astype(np.float64)
    return LocalisationReview(m, layer_name, split, summary, centre, ids, hits, energy, area, targets)
