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

__all__ = ["Task", "TASKS", "get_task", "load_task_split"]


@dataclass(frozen=True)
class Task:
    """A training task: where its data is and what its model is for."""

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
        domain="paediatric chest radiographs (28 px)"),
    "breastmnist": Task(
        folder=None, medmnist_flag="breastmnist", title="BreastMNIST benchmark (28 px)", modality="ultrasound",
        intended_use="Benchmark model (MedMNIST v2 BreastMNIST, 28 x 28). Not for diagnostic use.",
        modalities=("US",), body_parts=("BREAST",), positive="malignant",
        domain="breast ultrasound images (28 px)", oos_exclude=("busi",)),
}


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
    if task.medmnist_flag:
        return mdata.load_medmnist_split(task.medmnist_flag, split, config)
    if task.csv:
        from medimg.training.datasets import load_csv_split

        return load_csv_split(Path(task.csv).parent, task.csv, split, config, labels=task.labels, limit=limit,
                              patient_col=task.patient_col)
    return mdata.load_manifest_split(mdata.data_root() / task.folder, split, config, labels=task.labels, limit=limit)
