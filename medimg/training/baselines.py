"""Classical baselines beside each CNN: HOG features + logistic regression or linear SVM (scikit-learn).

Histogram of oriented gradients (HOG): N. Dalal and B. Triggs, "Histograms of Oriented Gradients for Human
Detection", CVPR 2005. Each image is described by normalised histograms of gradient orientation in a grid
of cells; a linear classifier on these features is the standard pre-deep-learning baseline.

The regularisation strength C is chosen on the validation split (by validation AUROC); the test split is
touched once, to report metrics computed by :func:`medimg.evaluate.compute_metrics` exactly as for the CNNs.
No torch here: :func:`fit_baseline` imports :mod:`medimg.train` only to load a task's splits.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from skimage.feature import hog
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from medimg.evaluate import compute_metrics

__all__ = ["C_GRID", "MODELS", "hog_features", "make_classifier", "fit_baseline_arrays", "load_task_features",
           "fit_baseline"]

MODELS = ("logreg", "svm")
#: Regularisation grid per model (inverse strength; features are standardised, dimension ~1-2 thousand).
C_GRID: dict[str, tuple[float, ...]] = {"logreg": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0),
                                     "svm": (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)}


def hog_features(x: np.ndarray, pixels_per_cell: int | None = None, cells_per_block: int = 2,
                 orientations: int = 9) -> np.ndarray:
    """HOG descriptor of every image (``skimage.feature.hog``, L2-Hys block normalisation).

    Parameters
    ----------
    x : (N, C, H, W) or (N, H, W) float ndarray, C in {1, 3}
        Images in [0, 1]. Three-channel images use ``channel_axis`` (per pixel, the gradient of the channel
        with the largest magnitude, as in Dalal & Triggs).
    pixels_per_cell : int, optional
        Square cell side. Default ``max(4, min(H, W) // 8)``: an 8 x 8 grid of 8-px cells at 64 px (the
        scale of Dalal & Triggs' 8-px cells) and a 7 x 7 grid of 4-px cells at 28 px (8-px cells would leave
        only 3 x 3 cells, too coarse for MedMNIST).
    cells_per_block : int
        Square block side in cells (2 x 2 blocks with one-cell stride, Dalal & Triggs' choice).
    orientations : int
        Unsigned orientation bins over 0-180 degrees (9, Dalal & Triggs).

    Returns
    -------
    (N, D) float32 ndarray
        D = ``(cells_y - b + 1) * (cells_x - b + 1) * b * b * orientations``: 1764 at 64 px, 1296 at 28 px.

    Raises
    ------
    ValueError
        ``x`` is not 3-D or 4-D, has a channel count other than 1 or 3, is empty, or is smaller than a block.
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, H, W) or (N, C, H, W) images with C in (1, 3), got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("no images")
    h, w = x.shape[2:]
    ppc = pixels_per_cell if pixels_per_cell is not None else max(4, min(h, w) // 8)
    if min(h, w) < ppc * cells_per_block:
        raise ValueError(f"{h} x {w} images are smaller than one {cells_per_block} x {cells_per_block} block "
                         f"of {ppc}-px cells")
    kw: dict[str, Any] = dict(orientations=orientations, pixels_per_cell=(ppc, ppc),
                              cells_per_block=(cells_per_block, cells_per_block), block_norm="L2-Hys",
                              feature_vector=True)
    if x.shape[1] == 1:
        feats = [hog(im[0], **kw) for im in x]
    else:
        feats = [hog(np.moveaxis(im, 0, -1), channel_axis=-1, **kw) for im in x]
    return np.stack(feats).astype(np.float32)


def make_classifier(model: str, c: float, seed: int = 0) -> Pipeline:
    """StandardScaler + class-balanced linear classifier giving probabilities.

    ``"logreg"``: LogisticRegression (lbfgs; multinomial for K > 2). ``"svm"``: LinearSVC inside
    CalibratedClassifierCV (Platt sigmoid, 3-fold), since an SVM's margins are not probabilities.

    Raises
    ------
    ValueError
        Unknown ``model``.
    """
    if model == "logreg":
        clf: Any = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)
    elif model == "svm":
        clf = CalibratedClassifierCV(LinearSVC(C=c, class_weight="balanced", max_iter=5000, random_state=seed),
                                     method="sigmoid", cv=3)
    else:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    return make_pipeline(StandardScaler(), clf)


def fit_baseline_arrays(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                        test: tuple[np.ndarray, np.ndarray], model: str = "logreg",
                        positive_label: int | None = None, c_grid: tuple[float, ...] | None = None,
                        n_classes: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Choose C on validation, then report test metrics of the model fitted on train at that C.

    Parameters
    ----------
    train, val, test : tuple of ((N, D) float ndarray, (N,) int ndarray)
        Features and label indices 0..K-1; K is taken from the training labels.
    model : {"logreg", "svm"}
    positive_label : int, optional
        Positive class index for binary metrics (see :func:`medimg.evaluate.compute_metrics`).
    c_grid : tuple of float, optional
        Candidate C values; :data:`C_GRID` ``[model]`` by default. Ties go to the smaller C.
    n_classes : int, optional
        K; ``max(train labels) + 1`` by default.
    seed : int

    Returns
    -------
    dict
        ``metrics`` (test, from compute_metrics), ``C``, ``val_auroc`` ({C: AUROC}), ``fit_seconds`` (wall)
        and ``fit_cpu_seconds`` (this process's CPU time, the cost on an idle core).
        The chosen model is the one already fitted on train during selection (refitting it on the same
        data at the same C would give the same model); the test split is used only after C is fixed.

    Raises
    ------
    ValueError
        Unknown model, empty grid, fewer than two training classes, or mismatched lengths.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    grid = tuple(sorted(c_grid if c_grid is not None else C_GRID[model]))
    if not grid:
        raise ValueError("empty C grid")
    for name, (xs, ys) in (("train", train), ("val", val), ("test", test)):
        if len(xs) != len(ys) or len(xs) == 0:
            raise ValueError(f"{name}: {len(xs)} feature rows but {len(ys)} labels")
    k = n_classes if n_classes is not None else int(np.max(train[1])) + 1
    if len(np.unique(train[1])) < 2:
        raise ValueError("training labels hold fewer than two classes")
    t0, cpu0 = time.perf_counter(), time.process_time()
    best, best_auc, scores = None, -math.inf, {}
    for c in grid:
        pipe = make_classifier(model, c, seed).fit(train[0], train[1])
        auc = compute_metrics(val[1], _probs(pipe, val[0], k), positive_label).get("auroc", float("nan"))
        scores[c] = auc
        if not math.isnan(auc) and auc > best_auc:
            best, best_auc = (c, pipe), auc
    if best is None:  # validation AUROC undefined (a class absent): fall back to the middle of the grid
        c = grid[len(grid) // 2]
        best = (c, make_classifier(model, c, seed).fit(train[0], train[1]))
    metrics = compute_metrics(test[1], _probs(best[1], test[0], k), positive_label)
    return {"metrics": metrics, "C": best[0], "val_auroc": scores, "fit_seconds": time.perf_counter() - t0,
            "fit_cpu_seconds": time.process_time() - cpu0}


def _probs(pipe: Pipeline, x: np.ndarray, k: int) -> np.ndarray:
    """(N, k) probabilities, with zero columns for classes missing from the training labels."""
    p = pipe.predict_proba(x)
    out = np.zeros((len(x), k))
    out[:, pipe.classes_] = p
    return out


def load_task_features(task_key: str, size: int | None = None) -> dict[str, Any]:
    """Load a task's train/val/test splits at ``size`` px and extract HOG features.

    Parameters
    ----------
    task_key : str
        Key of :data:`medimg.training.tasks.TASKS`.
    size : int, optional
        Square input side; 28 for the MedMNIST tasks, 64 for the full-resolution sets by default.

    Returns
    -------
    dict
        ``{"train"|"val"|"test": ((N, D) float32, (N,) int64)}`` plus ``labels``, ``positive_label``
        (index or None), ``size`` and ``load_seconds`` (decoding, preprocessing and HOG).

    Raises
    ------
    ValueError
        Unknown task.
    """
    from medimg.training.tasks import TASKS, load_task_split, preprocess_config

    if task_key not in TASKS:
        raise ValueError(f"unknown task {task_key!r}; expected one of {sorted(TASKS)}")
    t0 = time.perf_counter()
    task = TASKS[task_key]
    size = size or (28 if task.medmnist_flag else 64)
    cfg = preprocess_config(task_key, size)
    out: dict[str, Any] = {}
    for s in ("train", "val", "test"):
        arr = load_task_split(task_key, s, cfg)
        out[s] = (hog_features(np.asarray(arr.x)), np.asarray(arr.y))
        labels = arr.labels
    out.update(labels=list(labels), size=size, load_seconds=time.perf_counter() - t0,
               positive_label=labels.index(task.positive) if task.positive in labels and len(labels) == 2 else None)
    return out


def fit_baseline(task_key: str, model: str = "logreg", size: int | None = None, seed: int = 0,
                 data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a task's splits, extract HOG (:func:`load_task_features`) and fit one baseline.

    Parameters
    ----------
    task_key : str
        Key of :data:`medimg.training.tasks.TASKS`.
    model : {"logreg", "svm"}
    size : int, optional
        Square input side; 28 for the MedMNIST tasks, 64 for the full-resolution sets by default.
    seed : int
    data : dict, optional
        ``load_task_features(task_key, size)`` already computed (to fit both models on one load).

    Returns
    -------
    dict
        As :func:`fit_baseline_arrays`, plus ``task``, ``model``, ``size``, ``feature_dim``, ``n`` (per split),
        ``labels``, ``load_seconds`` and ``seconds`` (loading, HOG and fitting; module imports excluded).

    Raises
    ------
    ValueError
        Unknown task or model.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    data = data if data is not None else load_task_features(task_key, size)
    out = fit_baseline_arrays(data["train"], data["val"], data["test"], model, data["positive_label"],
                              n_classes=len(data["labels"]), seed=seed)
    out.update(task=task_key, model=model, size=data["size"], feature_dim=int(data["train"][0].shape[1]),
               n={s: len(data[s][1]) for s in ("train", "val", "test")}, labels=data["labels"],
               positive_label=data["positive_label"], load_seconds=data["load_seconds"], seconds=data["load_seconds"] + out["fit_seconds"])
    return out
