"""The training tasks: where each task's data is, what its model is for, and how a split is loaded.

Part of the workshop (:mod:`medimg.training`): serving code never imports it. A model's spec carries what serving
needs of its task (labels, modalities, body parts, intended use, the domain named in the gate's reasons).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medimg.errors import SpecError
from medimg.spec import PreprocessConfig
from medimg.training import data as mdata
from medimg.uncertainty import VIEWS_BY_MODALITY

__all__ = ["Task", "TASKS", "CRIC_NEGATIVE", "get_task", "preprocess_config", "load_task_split", "split_fold_key", "fold_splits",
           "check_groups"]


@dataclass(frozen=True)
class Task:
    """A training task: where its data is and what its model is for.

    ``group_col`` names the manifest column whose groups (a scan's slices, a slide image's cells) must never be in
    two splits (checked on every load); ``n_folds`` > 0 means the task has cross-validation folds
    (``<task>::fold=K``, see :func:`load_task_split`): the manifest's ``fold`` column for a folder task (grouped
    folds), stratified folds of the official training and validation images for a MedMNIST task
    (:func:`medimg.training.data.medmnist_folds`; the official test split is never in a fold).
    """

    folder: str | None
    title: str
    intended_use: str
    modality: str = "radiograph"
    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    positive: str | None = None
    labels: tuple[str, ...] | None = None
    medmnist_flag: str | None = None
    in_chans: int = 1
    geometry: str = "stretch"
    domain: str = "images"
    oos_exclude: tuple[str, ...] = ()
    csv: str | None = None
    patient_col: str | None = None
    group_col: str | None = None
    n_folds: int = 0
    window: str = "default"
    roi: str = "none"


TASKS: dict[str, Task] = {
    "kermany-cxr": Task(
        folder="kermany-cxr",
        title="Chest X-ray: normal vs pneumonia",
        intended_use=(
            "Research and education: flags pneumonia-like opacities on a frontal paediatric chest radiograph "
            "(trained on Kermany et al. 2018, children aged 1-5). Not for diagnostic use."
        ),
        modalities=("CR", "DX"),
        body_parts=("CHEST", "THORAX", "LUNG"),
        positive="pneumonia",
        labels=("normal", "pneumonia"),
        domain="paediatric chest radiographs",
    ),
    "busi": Task(
        folder="busi", title="Breast ultrasound: normal / benign / malignant", modality="ultrasound",
        intended_use=(
            "Research and education: classifies a B-mode breast ultrasound image as normal, benign or malignant "
            "(trained on BUSI, Al-Dhabyani et al. 2020, women aged 25-75, one centre). Not for diagnostic use."
        ),
        modalities=("US",), body_parts=("BREAST",), labels=("normal", "benign", "malignant"), geometry="pad",
        domain="breast ultrasound images", oos_exclude=("busi",),
    ),
    "brain-mri": Task(
        folder="brain-mri", title="Brain MRI: glioma / meningioma / pituitary / no tumour", modality="mri",
        intended_use=(
            "Research and education: classifies a 2-D brain MR slice (any plane, T1-weighted contrast-enhanced "
            "in most training images) as glioma, meningioma, pituitary tumour or no tumour (Bhuvaji et al. 2020). "
            "Not for diagnostic use."
        ),
        modalities=("MR",), body_parts=("BRAIN", "HEAD"),
        labels=("glioma_tumor", "meningioma_tumor", "pituitary_tumor", "no_tumor"), geometry="pad",
        domain="brain MR slices", oos_exclude=("brain-mri", "mr"),
    ),
    "pbc-blood": Task(
        folder="pbc-blood", title="Blood cell type (8 classes), peripheral blood smear", modality="microscopy",
        intended_use=(
            "Research and education: names the type of the centred cell in a May Grunwald-Giemsa stained "
            "peripheral blood smear image (Acevedo et al. 2020, CellaVision DM96, 360 x 363 px). "
            "Not for diagnostic use."
        ),
        modalities=("SM", "XC", "OT"), body_parts=("BLOOD",), in_chans=3,
        labels=("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil",
                "platelet"),
        domain="blood smear microscopy images", oos_exclude=("pbc-blood",),
    ),
    "pneumoniamnist": Task(
        folder=None, medmnist_flag="pneumoniamnist", title="PneumoniaMNIST benchmark (28 px)",
        intended_use="Benchmark model (MedMNIST v2 PneumoniaMNIST, 28 x 28). Not for diagnostic use.",
        modalities=("CR", "DX"), body_parts=("CHEST", "THORAX", "LUNG"), positive="pneumonia",
        domain="paediatric chest radiographs (28 px)", n_folds=5),
    "breastmnist": Task(
        folder=None, medmnist_flag="breastmnist", title="BreastMNIST benchmark (28 px)", modality="ultrasound",
        intended_use="Benchmark model (MedMNIST v2 BreastMNIST, 28 x 28). Not for diagnostic use.",
        modalities=("US",), body_parts=("BREAST",), positive="malignant",
        domain="breast ultrasound images (28 px)", oos_exclude=("busi",), n_folds=5),
    # augmentation and TTA views of axial brain slices ("mri": left/right flips, rotations, contrast, gamma)
    "head-ct": Task(
        folder="head-ct", title="Head CT: intracranial haemorrhage vs normal", modality="mri",
        intended_use=(
            "Research and education: flags intracranial haemorrhage on one axial non-contrast head CT slice shown "
            "in a brain window (trained on Kitamura's 200-slice Head CT set, about 20 scans; grey input). "
            "Not for diagnostic use."
        ),
        modalities=("CT",), body_parts=("HEAD", "BRAIN", "SKULL"), positive="hemorrhage",
        labels=("normal", "hemorrhage"), geometry="pad", domain="head CT slices (brain window)",
        oos_exclude=("head-ct",), group_col="id_block10", n_folds=5,
        # the training slices are 8-bit brain-window exports cut tightly round the head: a CT in HU is shown to the
        # network in the brain window (40/80) and, like them, cut to the head (no air, table or head rest)
        window="HU 40/80", roi="foreground",
    ),
    "cric-cervix": Task(
        folder="cric-cervix", title="Cervical cytology (Pap smear cell): 6 Bethesda classes", modality="microscopy",
        intended_use=(
            "Research and education: names the Bethesda class of the centred cell (nucleus) of a Papanicolaou-"
            "stained conventional smear crop (CRIC Cervix, Rezende et al. 2021; 96 x 96 px at the source "
            "resolution); NILM vs abnormal is the screening view. Not for diagnostic use."
        ),
        modalities=("SM", "XC", "OT"), body_parts=("CERVIX",), in_chans=3,
        labels=("NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC"), domain="Pap smear cell crops",
        oos_exclude=("cric-cervix",), group_col="image_id",
    ),
}

#: The negative (screening) class of the cervical cytology task.
CRIC_NEGATIVE = "NILM"


def split_fold_key(task_key: str) -> tuple[str, int | None]:
    """``"head-ct::fold=2"`` -> ``("head-ct", 2)``; any other key -> ``(key, None)``.

    Raises
    ------
    medimg.errors.SpecError
        A fold key of a task without folds, or a fold outside 0 .. n_folds - 1.
    """
    base, sep, rest = task_key.partition("::fold=")
    if not sep or base not in TASKS:
        return task_key, None
    task = TASKS[base]
    if not task.n_folds:
        raise SpecError(f"task {base!r} has no cross-validation folds (tasks with folds: "
                        f"{', '.join(k for k, t in TASKS.items() if t.n_folds)})")
    if not rest.isdigit() or not 0 <= int(rest) < task.n_folds:
        raise SpecError(f"fold must be 0-{task.n_folds - 1}, got {rest!r} (in task {task_key!r})")
    return base, int(rest)


def fold_splits(rows: list[dict[str, str]], fold: int, n_folds: int) -> list[dict[str, str]]:
    """Copies of manifest rows with ``split`` set for cross-validation fold ``fold``.

    Fold ``fold`` is the test split, fold ``(fold + 1) % n_folds`` the validation split (checkpoint selection,
    temperature, gate) and the remaining folds train; over the ``n_folds`` runs every image is tested once.
    The manifest's ``fold`` column keeps each group whole, so the splits do too.
    """
    val = (fold + 1) % n_folds
    names = {fold: "test", val: "val"}
    return [{**r, "split": names.get(int(r["fold"]), "train")} for r in rows]


def check_groups(rows: list[dict[str, str]], group_col: str) -> None:
    """Fail closed when a group (``group_col`` value) has rows in two splits.

    Raises
    ------
    medimg.errors.SpecError
        Names the first group found in two splits.
    """
    seen: dict[str, str] = {}
    for r in rows:
        first = seen.setdefault(r[group_col], r["split"])
        if first != r["split"]:
            raise SpecError(f"{group_col} {r[group_col]} is in the {first!r} and {r['split']!r} splits (leakage); "
                            "fix the manifest's split column")


def get_task(task_key: str) -> Task:
    """The :data:`TASKS` entry, or a task read from a CSV of labels.

    Parameters
    ----------
    task_key : str
        A key of :data:`TASKS`, or ``"csv:<path of labels.csv>"`` (image or DICOM files relative to the CSV's
        folder; columns ``path``, ``label`` and optionally ``split``; see :func:`medimg.training.datasets.load_csv_split`),
        optionally followed by ``"::patient=<column>"`` (patient-grouped splits when the CSV has no ``split``
        column; ``PatientID`` reads it, hashed, from the DICOM headers) and ``"::modality=<m>"`` (augmentation
        and TTA views: radiograph, ultrasound, mri, microscopy) and ``"::channels=3"``.

    Raises
    ------
    medimg.errors.SpecError
        Unknown task key, or an unknown modality or channel count in a ``csv:`` key.
    """
    if task_key in TASKS:
        return TASKS[task_key]
    base, _ = split_fold_key(task_key)
    if base != task_key:
        return TASKS[base]
    if task_key.startswith("csv:"):
        path, *opts = task_key[4:].split("::")
        kv = dict(o.split("=", 1) for o in opts if "=" in o)
        modality, channels = kv.get("modality", "radiograph"), kv.get("channels", "1")
        if modality not in VIEWS_BY_MODALITY:
            raise SpecError(f"unknown modality {modality!r}; known: {', '.join(VIEWS_BY_MODALITY)} "
                            f"(in task {task_key!r})")
        if channels not in ("1", "3"):
            raise SpecError(f"channels must be 1 or 3, got {channels!r} (in task {task_key!r})")
        return Task(folder=None, csv=path, patient_col=kv.get("patient"), modality=modality,
                    in_chans=int(channels), title=f"Custom task ({Path(path).parent.name})",
                    intended_use="Research model trained on a user's labelled folder. Not for diagnostic use.",
                    domain=f"the images of {Path(path).parent.name}")
    raise SpecError(f"unknown task {task_key!r}; known: {', '.join(TASKS)} or csv:<labels.csv>")


def preprocess_config(task_key: str, size: int, mean: tuple[float, ...] | None = None,
                      std: tuple[float, ...] | None = None) -> PreprocessConfig:
    """The preprocessing of a model of this task at ``size`` px: the task's channels, window, region of interest
    and geometry.

    Parameters
    ----------
    task_key : str
    size : int
        Square input side in pixels.
    mean, std : tuple of float, optional
        Normalisation per channel; 0.5 / 0.25 for each of the task's channels by default.

    Raises
    ------
    medimg.errors.SpecError
        Unknown task, or a size or normalisation :class:`PreprocessConfig` refuses.
    """
    task = get_task(task_key)
    mean = tuple(mean) if mean else (0.5,) * task.in_chans
    std = tuple(std) if std else (0.25,) * task.in_chans
    return PreprocessConfig(input_size=(size, size), in_chans=len(mean), mean=mean, std=std, geometry=task.geometry,
                            window=task.window, roi=task.roi)


def load_task_split(task_key: str, split: str, config: PreprocessConfig, limit: int | None = None) -> mdata.SplitArrays:
    """One split of a :data:`TASKS` entry, preprocessed with ``config`` (the model's spec.preprocess).

    Parameters
    ----------
    task_key : str
        Key of :data:`TASKS`, e.g. ``"kermany-cxr"``.
    split : {"train", "val", "test"}
    config : PreprocessConfig
    limit : int, optional
        At most this many images, evenly spaced (quick checks; image-folder tasks only).

    Returns
    -------
    medimg.training.data.SplitArrays
        ``x`` (N, C, H, W) float32 in [0, 1], ``y`` (N,) int64.
    """
    task = get_task(task_key)
    base, fold = split_fold_key(task_key)
    if task.medmnist_flag:
        if fold is not None:
            return mdata.load_medmnist_fold_split(task.medmnist_flag, split, config, fold, task.n_folds, limit=limit)
        return mdata.load_medmnist_split(task.medmnist_flag, split, config, limit=limit)
    if task.csv:
        from medimg.training.datasets import load_csv_split

        return load_csv_split(Path(task.csv).parent, task.csv, split, config, labels=task.labels, limit=limit,
                              patient_col=task.patient_col)
    if task.group_col is None and fold is None:
        return mdata.load_manifest_split(mdata.data_root() / task.folder, split, config, labels=task.labels,
                                         limit=limit)
    return _load_grouped_split(mdata.data_root() / task.folder, task, split, config, fold, limit)


def _load_grouped_split(folder: Path, task: Task, split: str, config: PreprocessConfig, fold: int | None,
                        limit: int | None) -> mdata.SplitArrays:
    """A split of a manifest whose groups must stay whole (checked), or of cross-validation fold ``fold``."""
    rows = mdata.read_manifest(folder)
    if fold is not None:
        rows = fold_splits(rows, fold, task.n_folds)
    if task.group_col:
        check_groups(rows, task.group_col)
    return mdata.load_manifest_split(folder, split, config, labels=task.labels, limit=limit, rows=rows)
