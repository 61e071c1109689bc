"""Datasets and augmentation.

Sources: image folders with a ``MANIFEST.csv`` (columns ``path``, ``split``, ``label``; optional ``patient``),
MedMNIST through the ``medmnist`` package (any flag and size; it downloads on a user's machine), and arrays.
Every image goes through :func:`medimg.io.load_image` and :func:`medimg.preprocess.run` — the exact code the app
runs — once, and the [0, 1] results are cached in memory; augmentation (torchvision.transforms.v2) and
normalisation happen per sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from medimg.catalog import data_root, image_from_array, manifest_checksum, read_manifest
from medimg.errors import MedimgError
from medimg.io import load_image
from medimg.preprocess import run as preprocess_run
from medimg.spec import PreprocessConfig

__all__ = ["data_root", "read_manifest", "SplitArrays", "load_manifest_split", "load_medmnist_split",
           "medmnist_folds", "load_medmnist_fold_split",
           "image_from_array", "augmentation", "AugmentedDataset", "GlobalBatchSampler", "manifest_checksum"]


@dataclass(frozen=True)
class SplitArrays:
    """One preprocessed split held in memory.

    Attributes
    ----------
    x : (N, C, H, W) float32 tensor in [0, 1]
        Preprocessed images (before normalisation).
    y : (N,) int64 tensor
        Label indices into ``labels``.
    labels : tuple of str
    ids : list of str
        Image identifiers (relative paths or indices).
    masks : (N, 1, H, W) float32 tensor in {0, 1}, optional
        Expert lesion masks in the model-input frame (all zero for an image without a lesion); only when a task
        trains with mask supervision (:mod:`medimg.training.masks`).
    """

    x: torch.Tensor
    y: torch.Tensor
    labels: tuple[str, ...]
    ids: list[str]
    masks: torch.Tensor | None = None


def _stack(images: Sequence[np.ndarray]) -> torch.Tensor:
    arr = np.stack([im.transpose(2, 0, 1) for im in images]).astype(np.float32)
    return torch.from_numpy(arr)


def load_manifest_split(folder: str | Path, split: str, config: PreprocessConfig,
                        labels: Sequence[str] | None = None, limit: int | None = None,
                        rows: Sequence[dict[str, str]] | None = None) -> SplitArrays:
    """Load and preprocess one split of a MANIFEST.csv image folder.

    Parameters
    ----------
    folder : path
        Data set folder with ``MANIFEST.csv``.
    split : str
        ``"train"``, ``"val"`` or ``"test"``.
    config : PreprocessConfig
        The model's preprocessing.
    labels : sequence of str, optional
        Label order; sorted unique labels of the manifest by default.
    limit : int, optional
        Keep only ``limit`` rows of the split, evenly spaced through the manifest so every class is present
        (for quick checks).
    rows : sequence of dict, optional
        The manifest's rows when the caller re-assigned splits (cross-validation folds); read from
        ``folder/MANIFEST.csv`` by default.

    Raises
    ------
    medimg.errors.MedimgError
        An image cannot be decoded (the message names the manifest row).
    """
    folder = Path(folder)
    rows = list(rows) if rows is not None else read_manifest(folder)
    labels = tuple(labels) if labels is not None else tuple(sorted({r["label"] for r in rows}))
    index = {name: i for i, name in enumerate(labels)}
    rows = [r for r in rows if r["split"] == split]
    if limit is not None and limit < len(rows):
        rows = rows[:: len(rows) // limit][:limit]
    images, ys, ids = [], [], []
    for r in rows:
        try:
            img = load_image(folder / r["path"])
        except MedimgError as err:
            raise type(err)(f"{r['path']}: {err}") from err
        images.append(preprocess_run(img, config).image)
        ys.append(index[r["label"]])
        ids.append(r["path"])
    return SplitArrays(_stack(images), torch.tensor(ys, dtype=torch.int64), labels, ids)


def load_medmnist_split(flag: str, split: str, config: PreprocessConfig, size: int = 28,
                        root: str | Path | None = None, download: bool | None = None,
                        limit: int | None = None) -> SplitArrays:
    """Load a MedMNIST split through the ``medmnist`` package and preprocess it.

    Parameters
    ----------
    flag : str
        MedMNIST flag, e.g. ``"pneumoniamnist"``, ``"breastmnist"``, ``"bloodmnist"``.
    split : {"train", "val", "test"}
    config : PreprocessConfig
    size : {28, 64, 128, 224}
        MedMNIST+ image size.
    root : path, optional
        Folder holding the ``.npz``; ``data_root()/medmnist`` by default.
    download : bool, optional
        Let ``medmnist`` download (and MD5-check) the file; None (default): only when it is not in ``root`` yet
        (a user's first run at home downloads it; here the shared copy is read).
    limit : int, optional
        At most this many images, evenly spaced through the split (quick checks).

    Returns
    -------
    SplitArrays
        ``x`` (N, C, H, W) float32 in [0, 1]; ids are the indices in the official split.
    """
    import medmnist

    info = medmnist.INFO[flag]
    cls = getattr(medmnist, info["python_class"])
    root = Path(root) if root is not None else data_root() / "medmnist"
    if download is None:
        download = not (root / (f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz")).exists()
    ds = cls(split=split, root=str(root), download=download, size=size if size != 28 else None)
    labels = tuple(info["label"][str(i)] for i in range(len(info["label"])))
    index = np.arange(len(ds.imgs))
    if limit is not None and limit < len(index):
        index = index[:: len(index) // limit][:limit]
    images = [preprocess_run(image_from_array(ds.imgs[i]), config).image for i in index]
    y = torch.as_tensor(np.asarray(ds.labels).reshape(-1)[index], dtype=torch.int64)
    return SplitArrays(_stack(images), y, labels, [str(int(i)) for i in index])


def _medmnist_dataset(flag: str, split: str, root: str | Path | None = None, download: bool | None = None) -> Any:
    """The ``medmnist`` package's 28 px dataset object of one official split (downloads only when missing)."""
    import medmnist

    info = medmnist.INFO[flag]
    root = Path(root) if root is not None else data_root() / "medmnist"
    if download is None:
        download = not (root / f"{flag}.npz").exists()
    return getattr(medmnist, info["python_class"])(split=split, root=str(root), download=download)


def medmnist_folds(labels_train: np.ndarray, labels_val: np.ndarray, n_folds: int = 5,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Stratified cross-validation folds over a MedMNIST task's official training and validation images.

    The two official splits are pooled (the official test split is left out, so cross-validation never sees
    it) and dealt into ``n_folds`` folds of near-equal size and class mix by scikit-learn's
    ``StratifiedKFold(shuffle=True, random_state=seed)``. MedMNIST images are one per patient as released, so
    no grouping is needed.

    Parameters
    ----------
    labels_train, labels_val : (N,) int arrays
        Label indices of the official ``train`` and ``val`` splits, in file order.
    n_folds : int
        Number of folds (>= 2 and no larger than the smallest class).
    seed : int
        Shuffling seed; the same seed always gives the same folds.

    Returns
    -------
    dict
        ``{"train": (N_train,) int array, "val": (N_val,) int array}``: the fold (0 .. n_folds - 1) of each image
        of the two official splits.

    Raises
    ------
    ValueError
        ``n_folds`` < 2 or larger than the number of images in some class (from scikit-learn).
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.concatenate([np.asarray(labels_train).reshape(-1), np.asarray(labels_val).reshape(-1)])
    fold = np.empty(len(y), dtype=np.int64)
    for k, (_, held) in enumerate(StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
                                  .split(np.zeros(len(y)), y)):
        fold[held] = k
    n_train = len(np.asarray(labels_train).reshape(-1))
    return {"train": fold[:n_train], "val": fold[n_train:]}


def load_medmnist_fold_split(flag: str, split: str, config: PreprocessConfig, fold: int, n_folds: int = 5,
                             root: str | Path | None = None, download: bool | None = None,
                             limit: int | None = None) -> SplitArrays:
    """One split of cross-validation fold ``fold`` of a MedMNIST task (28 px), preprocessed with ``config``.

    Fold ``fold`` of :func:`medmnist_folds` is the held-out ``"test"`` split, fold ``(fold + 1) % n_folds`` the
    ``"val"`` split (checkpoint selection, temperature) and the other folds ``"train"``, as for the grouped folds
    of :func:`medimg.training.tasks.fold_splits`; over the ``n_folds`` runs every official training and
    validation image is held out exactly once and the official test split is never used.

    Parameters
    ----------
    flag : str
        MedMNIST flag, e.g. ``"breastmnist"``.
    split : {"train", "val", "test"}
        The cross-validation role, not the official split.
    config : PreprocessConfig
    fold : int
        0 .. n_folds - 1.
    n_folds : int
    root, download
        As :func:`load_medmnist_split`.
    limit : int, optional
        At most this many images, evenly spaced (quick checks).

    Returns
    -------
    SplitArrays
        ``x`` (N, C, H, W) float32 in [0, 1]; ids ``"<official split>/<index>"`` (e.g. ``"val/12"``).

    Raises
    ------
    ValueError
        ``split`` is not train/val/test or ``fold`` is outside 0 .. n_folds - 1.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold must be 0-{n_folds - 1}, got {fold}")
    import medmnist

    info = medmnist.INFO[flag]
    ds = {s: _medmnist_dataset(flag, s, root, download) for s in ("train", "val")}
    ys = {s: np.asarray(d.labels).reshape(-1) for s, d in ds.items()}
    folds = medmnist_folds(ys["train"], ys["val"], n_folds)
    want = {"test": {fold}, "val": {(fold + 1) % n_folds}}.get(split, set(range(n_folds)) - {fold, (fold + 1) % n_folds})
    picks = [(s, int(i)) for s in ("train", "val") for i in np.flatnonzero(np.isin(folds[s], list(want)))]
    if limit is not None and limit < len(picks):
        picks = picks[:: len(picks) // limit][:limit]
    images = [preprocess_run(image_from_array(ds[s].imgs[i]), config).image for s, i in picks]
    y = torch.as_tensor(np.asarray([ys[s][i] for s, i in picks]), dtype=torch.int64)
    labels = tuple(info["label"][str(i)] for i in range(len(info["label"])))
    return SplitArrays(_stack(images), y, labels, [f"{s}/{i}" for s, i in picks])


def _with(x: torch.Tensor, masks: tuple[torch.Tensor, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """``x`` alone, or ``(x, *masks)`` when a mask travels with the image through ``v2.Compose``."""
    return (x, *masks) if masks else x


class RandomGamma(torch.nn.Module):
    """Random gamma ``x ** g`` with ``log g`` uniform in ``[log lo, log hi]`` on [0, 1] tensors (exposure and
    detector response curves differ between sites)."""

    def __init__(self, lo: float = 0.7, hi: float = 1.4, p: float = 0.5) -> None:
        super().__init__()
        self.lo, self.hi, self.p = math.log(lo), math.log(hi), p

    def forward(self, x: torch.Tensor, *masks: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if torch.rand(()) >= self.p:
            return _with(x, masks)
        g = math.exp(self.lo + (self.hi - self.lo) * float(torch.rand(())))
        return _with(x.clamp(0.0, 1.0) ** g, masks)


def augmentation(modality: str = "radiograph", size: int = 128) -> v2.Transform:
    """Training augmentation on (C, H, W) float32 [0, 1] tensors (torchvision.transforms.v2), per modality.

    Parameters
    ----------
    modality : {"radiograph", "ultrasound", "mri", "microscopy"}
        ``radiograph``: rotations up to 10 degrees, shifts up to 8 %, zoom 0.85-1.15 (patient positioning),
        brightness/contrast jitter, random gamma and mild blur (exposure, detector and processing differences
        between sites); no horizontal flip (the heart is on the left).
        ``ultrasound``: as radiograph plus horizontal flips (probe orientation) and speckle-like multiplicative
        noise. ``mri``: horizontal flips (left/right hemispheres), rotations up to 15 degrees, contrast, gamma
        and blur (sequence and scanner differences). ``microscopy``: flips and 90-degree rotations (a cell has
        no up), stain variation (hue, saturation, brightness, contrast) and mild blur (focus).
    size : int
        Input side in pixels; below 64 px blur is left out (it would erase a 28 px image's detail).

    Raises
    ------
    ValueError
        Unknown modality.
    """
    small = size < 64
    blur = [] if small else [v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.2))], p=0.25)]
    if modality == "radiograph":
        return v2.Compose([v2.RandomAffine(degrees=10, translate=(0.08, 0.08), scale=(0.85, 1.15)),
                           v2.ColorJitter(brightness=0.25, contrast=0.25), RandomGamma(0.7, 1.4), *blur])
    if modality == "ultrasound":
        return v2.Compose([v2.RandomHorizontalFlip(),
                           v2.RandomAffine(degrees=10, translate=(0.08, 0.08), scale=(0.85, 1.15)),
                           v2.ColorJitter(brightness=0.25, contrast=0.25), RandomGamma(0.7, 1.4),
                           SpeckleNoise(0.15, p=0.3), *blur])
    if modality == "mri":
        return v2.Compose([v2.RandomHorizontalFlip(),
                           v2.RandomAffine(degrees=15, translate=(0.08, 0.08), scale=(0.85, 1.15)),
                           v2.ColorJitter(brightness=0.2, contrast=0.3), RandomGamma(0.7, 1.4), *blur])
    if modality == "microscopy":
        return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), RandomRot90(),
                           v2.RandomAffine(degrees=0, translate=(0.05, 0.05), scale=(0.9, 1.1)),
                           v2.ColorJitter(brightness=0.15, contrast=0.15, saturation=0.15, hue=0.03), *blur])
    raise ValueError(f"unknown modality {modality!r}; use radiograph, ultrasound, mri or microscopy")


class SpeckleNoise(torch.nn.Module):
    """Multiplicative noise ``x * (1 + s * n)``, ``n ~ N(0, 1)`` per pixel, ``s`` uniform in [0, sigma]: a crude
    model of ultrasound speckle differences between machines and gain settings."""

    def __init__(self, sigma: float = 0.15, p: float = 0.3) -> None:
        super().__init__()
        self.sigma, self.p = sigma, p

    def forward(self, x: torch.Tensor, *masks: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if torch.rand(()) >= self.p:
            return _with(x, masks)
        s = self.sigma * float(torch.rand(()))
        return _with((x * (1.0 + s * torch.randn_like(x))).clamp(0.0, 1.0), masks)


class RandomRot90(torch.nn.Module):
    """Rotate by a random multiple of 90 degrees (exact, no interpolation) — for orientation-free images."""

    def forward(self, x: torch.Tensor, *masks: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        k = int(torch.randint(0, 4, ()))
        rotated = tuple(tv_tensors.wrap(torch.rot90(m, k, dims=(-2, -1)), like=m) for m in masks)
        return _with(torch.rot90(x, k, dims=(-2, -1)), rotated)


class AugmentedDataset(Dataset):
    """(x, y) pairs from a :class:`SplitArrays`, augmented then normalised by the spec's mean/std.

    The augmentation of sample ``i`` in epoch ``e`` is drawn from an RNG seeded by ``(seed, e, i)``, so it is
    the same whichever process or worker loads the sample (1 process or N under torchrun give the same data).
    Call :meth:`set_epoch` at the start of each epoch.
    """

    def __init__(self, arrays: SplitArrays, config: PreprocessConfig, transform: v2.Transform | None = None,
                 seed: int = 0):
        self.x, self.y, self.transform = arrays.x, arrays.y, transform
        self.masks = arrays.masks
        self.mean = torch.tensor(config.mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(config.std, dtype=torch.float32).view(-1, 1, 1)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        """``(x, y)``, or ``(x, y, mask)`` when the split has masks: the mask takes the image's geometric
        augmentation (flips, affine, 90-degree turns; nearest-neighbour) and none of its intensity changes."""
        x = self.x[i]
        mask = tv_tensors.Mask(self.masks[i]) if self.masks is not None else None
        if self.transform is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + int(i))
                if mask is None:
                    x = self.transform(x)
                else:
                    x, mask = self.transform(x, mask)
                x = x.clamp_(0.0, 1.0)
        x = (x - self.mean) / self.std
        if mask is None:
            return x, self.y[i]
        return x, self.y[i], mask.as_subclass(torch.Tensor)


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Seeded global batches split across ranks: rank ``r`` of ``w`` gets ``batch[r::w]``.

    With N processes the union of the ranks' batches at each step is exactly the single-process batch, so
    data-parallel training sees the same data as one process (the basis of the 1-vs-N equivalence test).

    Parameters
    ----------
    n : int
        Dataset length.
    batch_size : int
        Global batch size (must be divisible by ``world_size``).
    seed : int
    rank, world_size : int
    labels : (n,) int tensor, optional
        Class of each sample. When given, every epoch draws ``n`` indices *with replacement*, each class with
        equal probability and uniformly within it (class-balanced re-sampling: a class of 32 images among 3,809
        is seen about as often as the largest one; Buda et al., "A systematic study of the class imbalance
        problem in convolutional neural networks", Neural Networks 106, 2018). Without it, a permutation.

    Raises
    ------
    ValueError
        ``batch_size`` not divisible by ``world_size``, or ``labels`` not of length ``n``.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 labels: torch.Tensor | None = None) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by the {world_size} processes")
        if labels is not None and len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} samples")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world_size
        self.epoch = 0
        self.sample_weights: torch.Tensor | None = None
        if labels is not None:
            counts = torch.bincount(labels.long())
            self.sample_weights = 1.0 / counts[labels.long()].double()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self):  # noqa: ANN204
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        if self.sample_weights is None:
            perm = torch.randperm(self.n, generator=g).tolist()
        else:
            perm = torch.multinomial(self.sample_weights, self.n, replacement=True, generator=g).tolist()
        for b in range(len(self)):
            batch = perm[b * self.batch_size : (b + 1) * self.batch_size]
            yield batch[self.rank :: self.world]
