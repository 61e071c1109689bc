"""The training lab (educators): build the classic small CNN, train it live, compare it with HOG + SVM and the
shipped model of the task on the same test split.

The lesson of the founding documents: (convolution -> ReLU -> max-pooling) two or three times, then fully
connected layers, trained with cross-entropy and Adam on PneumoniaMNIST-28 or BreastMNIST-28.

How it runs on a shared server
------------------------------
- Training runs in a **background worker thread**, never in the script run: the page only polls the job (an
  ``st.fragment`` re-run every second draws the curves), so no session waits for another.
- **One job per session** (a new one stops the old) and a **server-wide capacity**: :data:`MAX_WORKERS` jobs
  train at once (``$MEDIMG_LAB_WORKERS``, default 1), :data:`MAX_QUEUED` more wait in a queue
  (``$MEDIMG_LAB_QUEUE``, default 2); beyond that the user gets a "busy" message.
- **CPU threads capped**: each worker sets ``torch.set_num_threads(LAB_THREADS)`` for its own thread
  (``$MEDIMG_LAB_THREADS``; default half the cores, at least 1), so it leaves cores to the analyses.
- **Nothing on disk**: data are read through the CLI's loaders (:func:`medimg.training.tasks.load_task_split`)
  into memory, the model and results live in the job object in the session's state; no checkpoint, no log file.
- **Cancelled when the session ends**: the worker checks between batches that its session is still connected
  (``Runtime.is_active_session``; without a Streamlit runtime, that the page polled within
  :data:`IDLE_CANCEL_S`), and a stop button sets the same flag.

Why not :func:`medimg.training.loop.train`: it writes weights, spec, report and checkpoints to disk and runs to the
end without a way to stream epochs or stop. The lab's loop (:func:`train_lab_model`) reuses its pieces instead:
the task loaders, :class:`medimg.training.data.GlobalBatchSampler` (seeded batches), the registry's
:class:`medimg.models.SmallCNN`, the class-weighted cross-entropy, and
:func:`medimg.evaluate.compute_metrics`; the optimiser is plain Adam (Kingma & Ba 2015), as the lesson teaches
(the CLI uses AdamW with a cosine schedule). This is the only serving-side module that imports
``medimg.training``, and only inside functions.

The MedMNIST splits and the HOG + SVM baseline are public benchmark data, not patient data: they are cached per
process (:data:`_DATA`, :data:`_BASELINES`, :data:`_SHIPPED`) so a second run starts at once.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import streamlit as st

from medimg import viz
from medimg import viz_teaching as vt
from medimg.errors import BusyError, SpecError
from medimg.throttle import Throttle
from medimg.ui.resources import available_models

__all__ = ["LAB_TASKS", "MAX_WORKERS", "MAX_QUEUED", "LAB_THREADS", "IDLE_CANCEL_S", "JOB_KEY", "LabConfig",
           "LabResult", "LabJob", "LabServer", "lab_server", "train_lab_model", "session_job", "start", "config_form",
           "live_panel", "results_section", "STATES"]

log = logging.getLogger("medimg.ui.train_lab")

#: Data sets of the lab: task key (of :data:`medimg.training.tasks.TASKS`) -> title.
LAB_TASKS: dict[str, str] = {"pneumoniamnist": "PneumoniaMNIST: chest X-ray, normal vs pneumonia (28 px)",
                             "breastmnist": "BreastMNIST: breast ultrasound, normal/benign vs malignant (28 px)"}
#: Jobs training at once in this server process.
MAX_WORKERS = max(1, int(os.environ.get("MEDIMG_LAB_WORKERS", "1")))
#: Jobs waiting for a worker; one more gets a "busy" message.
MAX_QUEUED = max(0, int(os.environ.get("MEDIMG_LAB_QUEUE", "2")))
#: torch intra-op threads of one training worker.
LAB_THREADS = max(1, int(os.environ.get("MEDIMG_LAB_THREADS", str(max(1, (os.cpu_count() or 1) // 2)))))
#: Without a Streamlit runtime (tests, bare mode), a job whose page has not polled for this long is cancelled.
IDLE_CANCEL_S = float(os.environ.get("MEDIMG_LAB_IDLE_S", "300"))
#: ``st.session_state`` entry of this session's job.
JOB_KEY = "medimg.lab.job"
#: Job states, in order; the last three are final.
STATES = ("queued", "loading", "training", "testing", "comparing", "done", "stopped", "failed")
_FINAL = ("done", "stopped", "failed")
#: ``st.session_state`` entry: which stage of the job the full page last drew.
_DRAWN_KEY = "medimg.lab.drawn"
#: Size of the lab's images (MedMNIST 28 x 28).
SIZE = 28


# --------------------------------------------------------------------------------------------------------------
# Configuration and results


@dataclass(frozen=True)
class LabConfig:
    """What the student chose.

    Attributes
    ----------
    task : str
        A key of :data:`LAB_TASKS`.
    depth : int
        Convolution -> ReLU -> max-pool blocks, 2 or 3.
    width : int
        Filters of the first convolution (doubled in each block), 4-64.
    kernel : int
        Convolution kernel side: 3, 5 or 7.
    epochs : int
        1-30.
    batch_size : int
        8-256 (clipped to the training images).
    lr : float
        Adam learning rate, 1e-5 .. 1e-1.
    flip, rotation, crop : bool
        Augmentation: horizontal flips; rotations up to 10 degrees; random crops of 85-100 % of the area resized
        back to 28 px.
    limit : int or None
        Use only the first N images of each split (a quick run); None = all.
    seed : int
        Weights, batch order and augmentation draws.
    """

    task: str = "pneumoniamnist"
    depth: int = 3
    width: int = 16
    kernel: int = 3
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    flip: bool = False
    rotation: bool = False
    crop: bool = False
    limit: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.task not in LAB_TASKS:
            problems.append(f"task {self.task!r} (choose {', '.join(LAB_TASKS)})")
        if self.depth not in (2, 3):
            problems.append(f"depth {self.depth} (2 or 3 blocks)")
        if not 4 <= self.width <= 64:
            problems.append(f"width {self.width} (4-64 filters)")
        if self.kernel not in (3, 5, 7):
            problems.append(f"kernel {self.kernel} (3, 5 or 7)")
        if not 1 <= self.epochs <= 30:
            problems.append(f"epochs {self.epochs} (1-30)")
        if not 8 <= self.batch_size <= 256:
            problems.append(f"batch size {self.batch_size} (8-256)")
        if not 1e-5 <= self.lr <= 1e-1:
            problems.append(f"learning rate {self.lr:g} (1e-5 to 0.1)")
        if self.limit is not None and self.limit < 16:
            problems.append(f"image limit {self.limit} (at least 16, or none)")
        if problems:
            raise SpecError("The training lab cannot use " + "; ".join(problems) + ".")

    @property
    def augmentations(self) -> list[str]:
        """Names of the chosen augmentations."""
        return [n for n, on in (("flip", self.flip), ("rotation", self.rotation), ("crop", self.crop)) if on]

    def describe(self) -> str:
        """One line: the network and the training set-up."""
        chans = " -> ".join(str(self.width * 2**b) for b in range(self.depth))
        aug = ", ".join(self.augmentations) or "none"
        return (f"{self.depth} x (conv {self.kernel}x{self.kernel} -> ReLU -> max-pool), filters {chans}, then "
                f"fully connected; cross-entropy + Adam (lr {self.lr:g}), batch {self.batch_size}, "
                f"{self.epochs} epoch(s), augmentation: {aug}")


@dataclass
class LabResult:
    """What a finished (or stopped) run measured on the test split.

    Attributes
    ----------
    labels : tuple of str
    positive_label : int or None
    metrics : dict
        :func:`medimg.evaluate.compute_metrics` of the small CNN (``accuracy``, ``sensitivity`` = recall,
        ``ppv`` = precision, ``confusion_matrix`` ...).
    filters : (F, k, k) float32 ndarray
        The learned first-layer filters.
    epochs : int
        Epochs completed.
    n : dict of str to int
        Images per split.
    load_seconds : float
        Reading and preprocessing the splits (0 when they were cached).
    epoch_seconds : list of float
        Wall time of each epoch (training + validation).
    baseline : dict or None
        HOG + SVM on the same split (``metrics``, ``C``, ``fit_seconds``); None until computed or on failure.
    shipped : dict or None
        The shipped model of the task on the same test split (``name``, ``title``, ``architecture``,
        ``input_size``, ``metrics``); None when absent.
    notes : list of str
        Why a comparison is missing, in words.
    """

    labels: tuple[str, ...]
    positive_label: int | None
    metrics: dict[str, Any]
    filters: np.ndarray
    epochs: int
    n: dict[str, int]
    load_seconds: float
    epoch_seconds: list[float]
    baseline: dict[str, Any] | None = None
    shipped: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------------
# The training loop (no Streamlit)


_DATA: dict[tuple[str, int | None], dict[str, Any]] = {}
_BASELINES: dict[tuple[str, int | None, int], dict[str, Any]] = {}
_SHIPPED: dict[tuple[str, int | None, str, int, int], dict[str, Any]] = {}
_CACHE_LOCK = threading.Lock()


class _Stopped(Exception):
    """The run was asked to stop (button, new run, or the session ended)."""


def _load_splits(config: LabConfig) -> tuple[dict[str, Any], float]:
    """The task's train/val/test splits at 28 px through the CLI's loader; cached per process (public data)."""
    from medimg.training.tasks import get_task, load_task_split, preprocess_config

    key = (config.task, config.limit)
    with _CACHE_LOCK:
        hit = _DATA.get(key)
    if hit is not None:
        return hit, 0.0
    t0 = time.perf_counter()
    task = get_task(config.task)
    pp = preprocess_config(config.task, SIZE)
    splits = {s: _first(load_task_split(config.task, s, pp, config.limit), config.limit)
              for s in ("train", "val", "test")}
    labels = splits["train"].labels
    pos = labels.index(task.positive) if task.positive in labels and len(labels) == 2 else None
    data = {"splits": splits, "pp": pp, "labels": tuple(labels), "positive": pos}
    with _CACHE_LOCK:
        _DATA[key] = data
    return data, time.perf_counter() - t0


def _first(arrays: Any, limit: int | None) -> Any:
    """The first ``limit`` images of a split (the MedMNIST loader reads whole splits)."""
    from medimg.training.data import SplitArrays

    if limit is None or len(arrays.y) <= limit:
        return arrays
    return SplitArrays(arrays.x[:limit], arrays.y[:limit], arrays.labels, list(arrays.ids[:limit]))


def augment_batch(x: Any, config: LabConfig, generator: Any) -> Any:
    """The chosen augmentations of one batch, a different random draw per image, in one resampling pass.

    Parameters
    ----------
    x : (N, C, H, W) float32 tensor in [0, 1]
        Training images (before normalisation); not modified.
    config : LabConfig
        ``flip``: mirror left-right with probability 1/2; ``rotation``: rotate by an angle uniform in
        [-10, 10] degrees; ``crop``: keep a random square region of 85-100 % of the area, resized back.
    generator : torch.Generator
        The draws (seeded per epoch: the same run gives the same batches).

    Returns
    -------
    (N, C, H, W) float32 tensor in [0, 1]
        ``x`` itself when no augmentation is chosen. One affine warp per image (``affine_grid`` +
        bilinear ``grid_sample``, zeros outside the image, as torchvision's rotation fills): per-image
        torchvision transforms cost ~3 ms per 28 px image on a CPU core, several times the training step.
    """
    import torch
    import torch.nn.functional as F

    if not config.augmentations:
        return x
    n = x.shape[0]
    u = torch.rand((n, 4), generator=generator)
    angle = (u[:, 0] * 2 - 1) * math.radians(10) if config.rotation else torch.zeros(n)
    scale = torch.sqrt(0.85 + 0.15 * u[:, 1]) if config.crop else torch.ones(n)
    shift = (u[:, 2:] * 2 - 1) * (1 - scale)[:, None] if config.crop else torch.zeros(n, 2)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if config.flip else torch.ones(n)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)  # (N, 2, 3): output -> input coords
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp_(0.0, 1.0)


def _evaluate(model: Any, x: Any, y: Any, pp: Any, weight: Any, batch: int = 512) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy, accuracy and softmax probabilities of ``model`` on a [0, 1] split."""
    import torch
    import torch.nn.functional as F

    mean = torch.tensor(pp.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(pp.std, dtype=torch.float32).view(1, -1, 1, 1)
    model.eval()
    logits = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            logits.append(model((x[i : i + batch] - mean) / std))
        z = torch.cat(logits)
        loss = float(F.cross_entropy(z, y, weight=weight))
        probs = torch.softmax(z.double(), dim=1).numpy()
    acc = float((probs.argmax(1) == y.numpy()).mean())
    return loss, acc, probs


def train_lab_model(config: LabConfig, on_epoch: Callable[[dict[str, float]], None] | None = None,
                    on_batch: Callable[[int, int, int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None,
                    on_phase: Callable[[str], None] | None = None) -> tuple[Any, LabResult]:
    """Build the small CNN, train it with cross-entropy and Adam, and test it (in memory; nothing on disk).

    Parameters
    ----------
    config : LabConfig
    on_epoch : callable, optional
        Called after each epoch with ``{"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
        "seconds"}`` (losses: mean class-weighted cross-entropy in nats; accuracies: fractions).
    on_batch : callable, optional
        ``on_batch(epoch, batch, n_batches)`` after each optimiser step.
    should_stop : callable, optional
        Polled before every batch; True stops the run after the current batch. The test split is still
        evaluated when at least one epoch finished.
    on_phase : callable, optional
        ``on_phase(state)`` with ``"loading"``, ``"training"``, ``"testing"``.

    Returns
    -------
    (torch.nn.Module, LabResult)
        The trained :class:`medimg.models.SmallCNN` (eval mode) and the test-split result (no comparisons yet).

    Raises
    ------
    _Stopped
        Stopped before the first epoch finished.
    SpecError
        Invalid configuration.
    """
    import torch
    import torch.nn.functional as F

    from medimg.evaluate import compute_metrics
    from medimg.explain.teaching import first_layer_filters
    from medimg.models import SmallCNN
    from medimg.training.data import GlobalBatchSampler

    stop = should_stop or (lambda: False)
    if on_phase:
        on_phase("loading")
    data, load_s = _load_splits(config)
    tr, va, te = data["splits"]["train"], data["splits"]["val"], data["splits"]["test"]
    labels, pp = data["labels"], data["pp"]
    k = len(labels)
    torch.manual_seed(config.seed)
    model = SmallCNN(pp.in_chans, k, width=config.width, depth=config.depth, kernel_size=config.kernel)
    counts = torch.bincount(tr.y, minlength=k).float()
    weight = counts.sum() / (k * counts.clamp(min=1))  # inverse class frequency, as the CLI's training
    mean = torch.tensor(pp.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(pp.std, dtype=torch.float32).view(1, -1, 1, 1)
    sampler = GlobalBatchSampler(len(tr.y), min(config.batch_size, len(tr.y)), config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    if on_phase:
        on_phase("training")
    epoch_s: list[float] = []
    done = 0
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        n_batches = len(sampler)
        for b, idx in enumerate(sampler, start=1):
            if stop():
                break
            xb = (augment_batch(tr.x[idx], config, gen) - mean) / std
            yb = tr.y[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
            if on_batch:
                on_batch(epoch, b, n_batches)
        else:
            val_loss, val_acc, _ = _evaluate(model, va.x, va.y, pp, weight)
            epoch_s.append(time.perf_counter() - t0)
            done = epoch
            if on_epoch:
                on_epoch({"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
                          "val_loss": val_loss, "val_accuracy": val_acc, "seconds": epoch_s[-1]})
            if not stop():
                continue
        break
    if done == 0:
        raise _Stopped()
    if on_phase:
        on_phase("testing")
    _, _, probs = _evaluate(model, te.x, te.y, pp, weight)
    metrics = compute_metrics(te.y.numpy(), probs, data["positive"])
    result = LabResult(labels=labels, positive_label=data["positive"], metrics=metrics,
                       filters=first_layer_filters(model), epochs=done,
                       n={s: len(data["splits"][s].y) for s in ("train", "val", "test")}, load_seconds=load_s,
                       epoch_seconds=epoch_s)
    return model.eval(), result


def hog_svm_baseline(config: LabConfig) -> dict[str, Any]:
    """HOG + linear SVM (:mod:`medimg.training.baselines`) on the lab's own splits, C chosen on validation.

    Cached per process by task, image limit and seed (public benchmark data).

    Returns
    -------
    dict
        :func:`medimg.training.baselines.fit_baseline_arrays` output (``metrics``, ``C``, ``fit_seconds``).
    """
    from medimg.training.baselines import fit_baseline_arrays, hog_features

    key = (config.task, config.limit, config.seed)
    with _CACHE_LOCK:
        hit = _BASELINES.get(key)
    if hit is not None:
        return hit
    data, _ = _load_splits(config)
    t0 = time.perf_counter()
    feats = {s: (hog_features(np.asarray(a.x)), np.asarray(a.y)) for s, a in data["splits"].items()}
    out = fit_baseline_arrays(feats["train"], feats["val"], feats["test"], "svm", data["positive"],
                              n_classes=len(data["labels"]), seed=config.seed)
    out["seconds"] = time.perf_counter() - t0
    with _CACHE_LOCK:
        _BASELINES[key] = out
    return out


def shipped_on_split(config: LabConfig, folder: Any = None) -> dict[str, Any] | None:
    """The shipped model of the lab's task (trained by ``medimg train``) on the same test split.

    The test images are the lab's (the same images, in the same order); the shipped model sees them through its
    own preprocessing, as the app and ``medimg evaluate`` feed it. When the model's stored test report lists every
    one of the lab's images (by id, with the same labels), its calibrated probabilities are taken from there
    without running the network (instant, and exactly what the model gives: the integration tests check it);
    otherwise a model trained at another input size (the PneumoniaMNIST model upsamples the 28 px images to 224 px)
    or with another window or geometry gets the split read again at its size. The result is kept per process,
    task, subset and model file.

    Parameters
    ----------
    config : LabConfig
    folder : path, optional
        Weights folder (default the app's, :func:`medimg.ui.weights_dir`).

    Returns
    -------
    dict or None
        ``name``, ``title``, ``architecture``, ``input_size`` and ``metrics``
        (:func:`medimg.evaluate.compute_metrics` of its calibrated probabilities); None when no model of this task
        is installed. A model at the lab's size is preferred (it needs no second pass over the images), then the
        first by file name.
    """
    from dataclasses import replace as dc_replace

    import torch

    from medimg.evaluate import compute_metrics
    from medimg.predict import Predictor
    from medimg.training.tasks import load_task_split

    candidates = [o for o in available_models(folder) if o.spec is not None
                  and o.spec.training.get("config", {}).get("task") == config.task]
    if not candidates:
        return None
    option = sorted(candidates, key=lambda o: (tuple(o.spec.preprocess.input_size) != (SIZE, SIZE),
                                               o.path.name))[0]
    stamp = (option.path.stat().st_mtime_ns, option.path.with_suffix(".safetensors").stat().st_mtime_ns)
    key = (config.task, config.limit, str(option.path.resolve()), *stamp)
    with _CACHE_LOCK:
        hit = _SHIPPED.get(key)
    if hit is not None:
        return hit
    data, _ = _load_splits(config)
    te = data["splits"]["test"]
    report_path = option.path.with_name(f"{option.path.stem}.eval.json")
    if report_path.exists():
        # the model's stored test report holds its calibrated probability for every test image (the integration
        # tests check the model reproduces them): pick the lab's images by id instead of running the network
        from medimg.evaluate import EvalReport

        rep = EvalReport.load(report_path)
        row = {str(i): k for k, i in enumerate(rep.ids)}
        if rep.split == "test" and all(str(i) in row for i in te.ids):
            idx = [row[str(i)] for i in te.ids]
            if np.array_equal(np.asarray(rep.y_true)[idx], te.y.numpy()):
                out = {"name": option.path.stem, "title": option.title, "architecture": option.spec.architecture,
                       "input_size": tuple(option.spec.preprocess.input_size),
                       "metrics": compute_metrics(te.y.numpy(), np.asarray(rep.probs)[idx], data["positive"],
                                                  option.spec.threshold)}
                with _CACHE_LOCK:
                    _SHIPPED[key] = out
                return out
    pred = Predictor.from_spec(option.path, device="cpu")
    pp = pred.spec.preprocess
    if dc_replace(pp, mean=data["pp"].mean, std=data["pp"].std) != data["pp"]:
        # another size, channel count, window or geometry: the same images through the model's own preprocessing
        own = _first(load_task_split(config.task, "test", pp, config.limit), config.limit)
        if list(own.ids) != list(te.ids):
            raise RuntimeError("the shipped model's preprocessing selected other test images than the lab's")
        te = own
    mean = torch.tensor(pp.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(pp.std, dtype=torch.float32).view(1, -1, 1, 1)
    probs = pred.predict_proba(((te.x - mean) / std).contiguous())
    out = {"name": option.path.stem, "title": option.title, "architecture": option.spec.architecture,
           "input_size": tuple(pp.input_size),
           "metrics": compute_metrics(te.y.numpy(), probs, data["positive"], option.spec.threshold)}
    with _CACHE_LOCK:
        _SHIPPED[key] = out
    return out


# --------------------------------------------------------------------------------------------------------------
# Jobs and the server-wide worker pool


class LabJob:
    """One training run of one session, run by a :class:`LabServer` worker thread.

    Read it through :meth:`snapshot` (a consistent copy); change it only through :meth:`stop` and
    :meth:`touch`.
    """

    def __init__(self, config: LabConfig, session_id: str | None) -> None:
        self.config = config
        self.session_id = session_id
        self.state = "queued"
        self.history: list[dict[str, float]] = []
        self.progress: tuple[int, int, int] = (0, 0, 0)  # epoch, batch, batches per epoch
        self.result: LabResult | None = None
        self.error = ""
        self.stop_reason = ""
        self.created = time.monotonic()
        self.started: float | None = None
        self.finished: float | None = None
        self.last_seen = time.monotonic()
        self.model: Any = None
        self.threads_used = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- called by the page
    def stop(self, reason: str = "stopped by the user") -> None:
        """Ask the worker to stop after the current batch."""
        with self._lock:
            if not self.stop_reason:
                self.stop_reason = reason
        self._stop.set()

    def touch(self) -> None:
        """The page polled this job (keeps it alive when there is no Streamlit runtime to ask)."""
        self.last_seen = time.monotonic()

    @property
    def final(self) -> bool:
        """True once the job is done, stopped or failed."""
        return self.state in _FINAL

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the job's state for drawing: ``state``, ``history``, ``progress``, ``result``,
        ``error``, ``stop_reason``, ``elapsed`` (s since start), ``config``."""
        with self._lock:
            now = self.finished or time.monotonic()
            return {"state": self.state, "history": [dict(h) for h in self.history], "progress": self.progress,
                    "result": self.result, "error": self.error, "stop_reason": self.stop_reason,
                    "elapsed": (now - self.started) if self.started else 0.0, "config": self.config}

    # -- called by the worker
    def _set(self, **kw: Any) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, v)

    def _add_epoch(self, row: Mapping[str, float]) -> None:
        with self._lock:
            self.history.append(dict(row))

    def _session_alive(self) -> bool:
        if self.session_id is not None:
            try:
                from streamlit.runtime import Runtime

                if Runtime.exists():
                    return bool(Runtime.instance().is_active_session(self.session_id))
            except Exception:  # noqa: BLE001 - no runtime API: fall back to the polling heartbeat
                pass
        return time.monotonic() - self.last_seen < IDLE_CANCEL_S

    def _abandoned(self) -> bool:
        """Nobody will look at this run any more: its session ended or it was replaced by a new run."""
        self._should_stop()
        return self.stop_reason in ("the session ended", "a new run was started")

    def _should_stop(self) -> bool:
        if self._stop.is_set():
            return True
        if not self._session_alive():
            self.stop("the session ended")
            return True
        return False


class LabServer:
    """The process-wide pool of training workers: a capacity, a short queue, one job per session.

    Parameters
    ----------
    workers : int
        Jobs training at once.
    queued : int
        Jobs allowed to wait for a worker.
    threads : int
        ``torch.set_num_threads`` of each worker thread.
    """

    def __init__(self, workers: int = MAX_WORKERS, queued: int = MAX_QUEUED, threads: int = LAB_THREADS) -> None:
        self.workers, self.queued, self.threads = max(1, workers), max(0, queued), max(1, threads)
        self._slots = Throttle(self.workers, "training other users' networks")
        self._lock = threading.Lock()
        self._jobs: dict[str, LabJob] = {}  # live (not final) jobs by session

    def live_jobs(self) -> list[LabJob]:
        """Jobs queued or running now."""
        with self._lock:
            return [j for j in self._jobs.values() if not j.final]

    def submit(self, config: LabConfig, session_id: str | None) -> LabJob:
        """Start a run for one session (stopping that session's previous run).

        Raises
        ------
        BusyError
            :attr:`workers` runs are training and :attr:`queued` are waiting already.
        """
        key = session_id or f"anonymous-{id(config)}-{time.monotonic()}"
        with self._lock:
            old = self._jobs.get(key)
            if old is not None and not old.final:
                old.stop("a new run was started")
            live = [j for k, j in self._jobs.items() if not j.final and k != key]
            if len(live) >= self.workers + self.queued:
                raise BusyError(f"The training lab is busy: {len(live)} run(s) are training or waiting "
                                      f"(the server allows {self.workers} at a time and {self.queued} waiting). "
                                      "Please try again in a few minutes.")
            job = LabJob(config, session_id)
            self._jobs[key] = job
        threading.Thread(target=self._run, args=(job,), name="medimg-lab", daemon=True).start()
        return job

    def _run(self, job: LabJob) -> None:
        import torch

        while True:  # queued: wait for a worker, but leave when stopped
            try:
                self._slots.acquire(timeout=0.5)
                break
            except BusyError:
                if job._should_stop():
                    job._set(state="stopped", finished=time.monotonic())
                    return
        try:
            job._set(state="loading", started=time.monotonic())
            torch.set_num_threads(self.threads)  # this thread only (OpenMP: per-thread), not the analyses'
            job._set(threads_used=torch.get_num_threads())
            model, result = train_lab_model(job.config, on_epoch=job._add_epoch,
                                            on_batch=lambda e, b, n: job._set(progress=(e, b, n)),
                                            should_stop=job._should_stop, on_phase=lambda s: job._set(state=s))
            job._set(model=model, result=result)
            stopped = job._stop.is_set()
            if not job._abandoned():  # a run the user stopped is still tested and compared
                job._set(state="comparing")
                self._compare(job, result)
            job._set(state="stopped" if stopped or job._stop.is_set() else "done", finished=time.monotonic())
        except _Stopped:
            job._set(state="stopped", finished=time.monotonic())
        except Exception as err:  # noqa: BLE001 - shown as a safe message, logged without data
            from medimg.errors import MedimgError

            log.exception("training lab run failed")
            msg = str(err) if isinstance(err, MedimgError) else "The training run failed; the error was logged."
            job._set(state="failed", error=msg, finished=time.monotonic())
        finally:
            self._slots.release()

    @staticmethod
    def _compare(job: LabJob, result: LabResult) -> None:
        cfg = replace(job.config)
        try:
            sh = shipped_on_split(cfg)
            if sh is None:
                result.notes.append("No shipped model of this task is installed, so it is not compared.")
            result.shipped = sh
        except Exception:  # noqa: BLE001
            log.exception("shipped-model comparison failed")
            result.notes.append("The shipped model could not be evaluated on this split.")
        if job._abandoned():
            return
        try:
            result.baseline = hog_svm_baseline(cfg)
        except Exception:  # noqa: BLE001
            log.exception("HOG + SVM baseline failed")
            result.notes.append("The HOG + SVM baseline could not be fitted on this split.")


@st.cache_resource
def lab_server() -> LabServer:
    """The process-wide :class:`LabServer` (``st.cache_resource``: one per server, shared by all sessions)."""
    return LabServer()


# --------------------------------------------------------------------------------------------------------------
# The page's pieces


def _session_id() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else None


def session_job() -> LabJob | None:
    """This session's latest job (running or finished), or None; polling it keeps it alive."""
    job = st.session_state.get(JOB_KEY)
    if isinstance(job, LabJob):
        job.touch()
        return job
    return None


def _warm_imports() -> None:
    """Import everything the worker needs, here in the script thread, before the worker starts.

    A module imported in a worker thread is briefly visible half-initialised to other threads; plotly looks up
    optional modules (pandas) through ``sys.modules`` while building figures, and failed on a half-imported
    pandas when a run started. After the first run these imports cost nothing.
    """
    import pandas  # noqa: F401
    import torch  # noqa: F401
    import torchvision.transforms.v2  # noqa: F401

    import medimg.evaluate  # noqa: F401
    import medimg.explain.teaching  # noqa: F401
    import medimg.models  # noqa: F401
    import medimg.predict  # noqa: F401
    import medimg.training.baselines  # noqa: F401
    import medimg.training.data  # noqa: F401
    import medimg.training.tasks  # noqa: F401

    try:
        import medmnist  # noqa: F401
    except ImportError:  # pragma: no cover - the loader reports it
        pass


def start(config: LabConfig) -> LabJob:
    """Start a run for this session (its previous run is stopped).

    Raises
    ------
    BusyError
        The server's training capacity and queue are full.
    """
    with st.spinner("Preparing the training code ..."):
        _warm_imports()
    job = lab_server().submit(config, _session_id())
    st.session_state[JOB_KEY] = job
    return job


def config_form() -> LabConfig | None:
    """The network and training choices, in a form; returns the config when "Train" was pressed, else None.

    Raises
    ------
    SpecError
        A value outside the lab's bounds (the widgets prevent it).
    """
    with st.form("lab-config", border=True):
        task = st.selectbox("Data set", list(LAB_TASKS), format_func=LAB_TASKS.__getitem__, key="lab-task")
        c1, c2, c3 = st.columns(3)
        depth = c1.radio("Convolution blocks", (2, 3), index=1, horizontal=True, key="lab-depth",
                         help="Each block: convolution -> ReLU -> 2x2 max-pooling (the last block pools globally).")
        width = c2.select_slider("Filters in the first block", (4, 8, 16, 32, 64), value=16, key="lab-width",
                                 help="Doubled in every further block.")
        kernel = c3.radio("Kernel size", (3, 5, 7), index=0, horizontal=True, key="lab-kernel")
        c4, c5, c6 = st.columns(3)
        epochs = c4.number_input("Epochs", 1, 30, 5, key="lab-epochs")
        batch = c5.select_slider("Batch size", (16, 32, 64, 128, 256), value=64, key="lab-batch")
        lr = c6.select_slider("Adam learning rate", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2), value=1e-3, key="lab-lr",
                              format_func=lambda v: f"{v:g}")
        st.markdown("**Augmentation** (training images only)")
        a1, a2, a3, a4 = st.columns(4)
        flip = a1.checkbox("Horizontal flip", key="lab-flip")
        rotation = a2.checkbox("Rotation (±10°)", key="lab-rotation")
        crop = a3.checkbox("Random crop (85–100 %)", key="lab-crop")
        limit = int(a4.number_input("Images per split (0 = all)", 0, 100_000, 0, step=100, key="lab-limit",
                                    help="A quick run on the first N images of each split."))
        go = st.form_submit_button("Train", icon=":material/play_arrow:", type="primary")
    if not go:
        return None
    return LabConfig(task=task, depth=int(depth), width=int(width), kernel=int(kernel), epochs=int(epochs),
                     batch_size=int(batch), lr=float(lr), flip=flip, rotation=rotation, crop=crop,
                     limit=limit or None)


def _status_line(snap: Mapping[str, Any]) -> str:
    state, (epoch, batch, n) = snap["state"], snap["progress"]
    cfg: LabConfig = snap["config"]
    if state == "queued":
        return "Waiting for a free training worker (the server trains one network at a time) ..."
    if state == "loading":
        return "Reading and preprocessing the images (the first run on this server takes longest) ..."
    if state == "training":
        return f"Training: epoch {epoch} of {cfg.epochs}, batch {batch} of {n} ({snap['elapsed']:.0f} s)"
    if state == "testing":
        return "Testing on the held-out test split ..."
    if state == "comparing":
        return "Comparing with the shipped model and fitting HOG + SVM on the same split (once per server) ..."
    if state == "done":
        train_s = sum(h.get("seconds", 0.0) for h in snap["history"])
        return (f"Done: {len(snap['history'])} epoch(s) in {train_s:.1f} s of training ({snap['elapsed']:.0f} s "
                "with reading the data, testing and the comparisons).")
    if state == "stopped":
        return f"Stopped ({snap['stop_reason'] or 'stopped'}) after {len(snap['history'])} epoch(s)."
    return f"Failed: {snap['error']}"


def _progress_fraction(snap: Mapping[str, Any]) -> float:
    cfg: LabConfig = snap["config"]
    epoch, batch, n = snap["progress"]
    if snap["state"] in _FINAL or snap["state"] in ("testing", "comparing"):
        return 1.0
    if not n:
        return 0.0
    return min(1.0, ((epoch - 1) + batch / n) / cfg.epochs)


def _draw_live(job: LabJob) -> dict[str, Any]:
    snap = job.snapshot()
    st.progress(_progress_fraction(snap), text=_status_line(snap))
    st.caption(snap["config"].describe())
    if not job.final:
        if st.button("Stop training", key="lab-stop", icon=":material/stop_circle:"):
            job.stop()
            snap = job.snapshot()
    st.plotly_chart(vt.lab_curves_figure(snap["history"]), key="lab-curves")
    if snap["history"]:
        last = snap["history"][-1]
        st.caption(f"Epoch {int(last['epoch'])}: training loss {last['train_loss']:.3f}, validation loss "
                   f"{last['val_loss']:.3f}, validation accuracy {last['val_accuracy']:.1%} "
                   f"({last['seconds']:.1f} s per epoch).")
    return snap


def live_panel() -> None:
    """The run's progress, its loss and accuracy curves per epoch, and a stop button; re-drawn every second
    (an ``st.fragment``) while the run is active, so only this part of the page re-runs."""
    job = session_job()
    if job is None:
        st.info("Choose a network above and press **Train**. Training runs in the background: you can watch "
                "the curves, stop it, or leave the page.", icon=":material/model_training:")
        return
    if job.final:
        _draw_live(job)
        return

    def poll() -> None:
        j = session_job()
        if j is None:
            return
        _draw_live(j)
        # the whole page once the test results exist, and again at the end: draw the results below
        stage = (id(j), j.result is not None, j.final)
        if (j.result is not None or j.final) and st.session_state.get(_DRAWN_KEY) != stage:
            st.session_state[_DRAWN_KEY] = stage
            st.rerun()

    st.fragment(poll, run_every=1.0)()


def _metrics_row(name: str, m: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": name, "accuracy": m.get("accuracy"), "precision": m.get("ppv"), "recall": m.get("sensitivity"),
            "AUROC": m.get("auroc")}


def results_section(job: LabJob) -> None:
    """Test-split results of a finished or stopped run: confusion matrix, accuracy/precision/recall, the learned
    first-layer filters and the comparison with HOG + SVM and the shipped model."""
    snap = job.snapshot()
    res: LabResult | None = snap["result"]
    if res is None:
        if snap["state"] == "failed":
            st.error(snap["error"])
        return
    pos = res.positive_label
    positive = res.labels[pos] if pos is not None else "positive"
    st.subheader("Test split")
    m = res.metrics
    c = st.columns(4)
    c[0].metric("Accuracy", f"{m['accuracy']:.1%}")
    c[1].metric(f"Precision (PPV, {positive})", f"{m.get('ppv', float('nan')):.1%}")
    c[2].metric(f"Recall (sensitivity, {positive})", f"{m.get('sensitivity', float('nan')):.1%}")
    c[3].metric("AUROC", f"{m.get('auroc', float('nan')):.3f}")
    left, right = st.columns(2, gap="large")
    with left:
        cm_fig = viz.confusion_matrix_figure(m["confusion_matrix"], res.labels)
        cm_fig.update_layout(title=f"Confusion matrix, test split ({res.n['test']} images)")
        st.plotly_chart(cm_fig, key="lab-cm")
    with right:
        st.plotly_chart(vt.filter_grid_figure(res.filters, title=f"Learned first-layer filters "
                                                                 f"({len(res.filters)} of {res.filters.shape[1]} x "
                                                                 f"{res.filters.shape[2]})"), key="lab-filters")
    st.caption(f"{res.n['test']} test images, {res.n['train']} training images; {res.epochs} epoch(s), "
               f"{np.mean(res.epoch_seconds):.1f} s per epoch on {lab_server().threads} CPU thread(s)"
               + (f"; reading the data took {res.load_seconds:.1f} s." if res.load_seconds else "."))
    st.subheader("Beside the classical baseline and the shipped model")
    rows = [_metrics_row("this small CNN", m)]
    if res.baseline is not None:
        rows.append(_metrics_row(f"HOG + SVM (C = {res.baseline['C']:g})", res.baseline["metrics"]))
    if res.shipped is not None:
        size = res.shipped.get("input_size", (SIZE, SIZE))
        at = f" ({size[0]} px)" if tuple(size) != (SIZE, SIZE) else ""
        rows.append(_metrics_row(f"shipped {res.shipped['architecture']}{at}", res.shipped["metrics"]))
    st.dataframe({"Model": [r["name"] for r in rows],
                  "Accuracy": [f"{r['accuracy']:.1%}" for r in rows],
                  "Precision (PPV)": [f"{r['precision']:.1%}" if r["precision"] is not None else "n/a" for r in rows],
                  "Recall (sensitivity)": [f"{r['recall']:.1%}" if r["recall"] is not None else "n/a" for r in rows],
                  "AUROC": [f"{r['AUROC']:.3f}" if r["AUROC"] is not None else "n/a" for r in rows]},
                 hide_index=True, width="stretch")
    st.plotly_chart(vt.model_comparison_figure(rows), key="lab-compare")
    for note in res.notes:
        st.caption(note)
    if snap["state"] == "comparing":
        st.caption("The HOG + SVM baseline is still being fitted ...")
    st.caption("Same test split for all three. HOG + SVM: histograms of oriented gradients (Dalal & Triggs 2005) "
               "and a linear SVM, C chosen on the validation split. The shipped model was trained longer, with "
               "more augmentation, from the command line (`medimg train`)"
               + (f", and sees these {SIZE} px images enlarged to its {res.shipped['input_size'][0]} px input."
                  if res.shipped is not None and tuple(res.shipped.get("input_size", (SIZE, SIZE))) != (SIZE, SIZE)
                  else "."))
