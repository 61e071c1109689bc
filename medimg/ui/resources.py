"""Process-wide resources of the app: the weights folder, the model list and the cached Predictors.

Only objects that hold no patient data live here (models, specs, a concurrency limit). Everything about an
uploaded image lives in ``st.session_state`` (see :mod:`medimg.ui.analysis`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

import medimg
from medimg.errors import BusyError, SpecError
from medimg.spec import ModelSpec, load_spec
from medimg.throttle import Throttle

if TYPE_CHECKING:  # pragma: no cover
    from medimg.predict import Predictor

__all__ = ["WEIGHTS_ENV", "DEFAULT_MODEL_ENV", "MAX_CONCURRENT_ANALYSES", "ModelOption", "weights_dir",
           "available_models", "default_model", "get_predictor", "is_loaded", "device_hint", "device_label",
           "compute_slot"]

log = logging.getLogger("medimg.ui")

#: Environment variable naming the weights folder the app lists (default :data:`medimg.WEIGHTS_DIR`).
WEIGHTS_ENV = "MEDIMG_WEIGHTS"
#: Environment variable naming the model (spec file name, e.g. ``kermany_cxr_mobilenet_v2_224.json``) selected
#: when the user has not chosen one; by default :func:`default_model` picks the chest radiograph model.
DEFAULT_MODEL_ENV = "MEDIMG_DEFAULT_MODEL"
#: Analyses (predict + Grad-CAM) that may run at once in one server process; further ones wait, then get a
#: "busy" message instead of overloading the machine.
MAX_CONCURRENT_ANALYSES = max(1, int(os.environ.get("MEDIMG_MAX_CONCURRENT", "2")))


@dataclass(frozen=True)
class ModelOption:
    """One model the user can pick.

    Attributes
    ----------
    path : pathlib.Path
        The spec file ``<name>.json`` (a ``<name>.safetensors`` lies beside it).
    spec : ModelSpec or None
        The parsed spec; None when it could not be read (then ``error`` says why).
    error : str
        A user-safe reason the spec is unusable, or ``""``.
    """

    path: Path
    spec: ModelSpec | None
    error: str = ""

    @property
    def title(self) -> str:
        """The spec's title, or the file stem when the spec is unreadable."""
        return self.spec.title if self.spec is not None and self.spec.title else self.path.stem

    @property
    def eval_path(self) -> Path:
        """``<name>.eval.json`` beside the weights (the test-set EvalReport)."""
        return self.path.with_name(self.path.stem + ".eval.json")

    @property
    def log_path(self) -> Path:
        """``<name>.log.json`` beside the weights (per-epoch training log)."""
        return self.path.with_name(self.path.stem + ".log.json")


def weights_dir() -> Path:
    """The folder the app lists models from: ``$MEDIMG_WEIGHTS`` or :data:`medimg.WEIGHTS_DIR`.

    Returns
    -------
    pathlib.Path
    """
    env = os.environ.get(WEIGHTS_ENV, "").strip()
    return Path(env).expanduser() if env else medimg.WEIGHTS_DIR


def available_models(folder: str | Path | None = None) -> list[ModelOption]:
    """The models in ``folder`` (default :func:`weights_dir`), sorted by file name.

    Parameters
    ----------
    folder : path, optional

    Returns
    -------
    list of ModelOption
        Empty when the folder does not exist or holds no ``<name>.json`` + ``<name>.safetensors`` pair.
    """
    d = Path(folder) if folder is not None else weights_dir()
    if not d.is_dir():
        return []
    paths = medimg.list_weights(d)
    return list(_read_options(tuple(str(p) for p in paths), tuple(_stamp(Path(p)) for p in paths)))


@st.cache_resource(show_spinner=False, max_entries=8)
def _read_options(paths: tuple[str, ...], stamps: tuple[tuple[int, int], ...]) -> tuple[ModelOption, ...]:  # noqa: ARG001
    """The specs of ``paths``, read once per set of files and modification times (model metadata only, shared
    by every session; no patient data)."""
    out = []
    for p in map(Path, paths):
        try:
            out.append(ModelOption(p, load_spec(p)))
        except SpecError as err:
            out.append(ModelOption(p, None, str(err)))
    return tuple(out)


def default_model(options: list[ModelOption]) -> ModelOption | None:
    """The model selected before the user chooses one.

    ``$MEDIMG_DEFAULT_MODEL`` (a spec file name) when it is among ``options``; else the chest radiograph model
    (a spec whose modalities include CR or DX and body parts CHEST; the uploader's first image is most often a
    chest film): one trained on full-resolution films before a benchmark model trained on MedMNIST's 28 px
    images (``training["data"]`` ``"medmnist:<flag>"``, whatever size it upsamples them to), then the one with the
    largest input, then the first in file-name order; else the first usable option.

    Parameters
    ----------
    options : list of ModelOption

    Returns
    -------
    ModelOption or None
        None when ``options`` is empty.
    """
    if not options:
        return None
    wanted = os.environ.get(DEFAULT_MODEL_ENV, "").strip()
    for o in options:
        if wanted and o.path.name == wanted:
            return o
    usable = [o for o in options if o.spec is not None]
    chest = [o for o in usable if {"CR", "DX"} & set(o.spec.modalities) and "CHEST" in o.spec.body_parts]
    if chest:
        return max(chest, key=lambda o: (not _benchmark(o.spec), min(o.spec.preprocess.input_size),
                                         -options.index(o)))
    return usable[0] if usable else options[0]


def _benchmark(spec: ModelSpec) -> bool:
    """Whether the spec's model was trained on a MedMNIST benchmark (28 px images, ``"medmnist:<flag>"``)."""
    data = (spec.training or {}).get("data", "")
    return isinstance(data, str) and data.startswith("medmnist:")


def _stamp(path: Path) -> tuple[int, int]:
    """Modification times of the spec and its weights: a retrained model reloads."""
    try:
        return path.stat().st_mtime_ns, path.with_suffix(".safetensors").stat().st_mtime_ns
    except OSError:
        return 0, 0


#: Devices of the models loaded in this process, by resolved spec path (no patient data: model metadata).
_LOADED: dict[str, str] = {}


@st.cache_resource(max_entries=4, show_spinner="Loading the model ...")
def _load_predictor(spec_path: str, stamp: tuple[int, int]) -> Predictor:  # noqa: ARG001 - stamp is the cache key
    import torch

    from medimg.predict import Predictor

    # Threads for the server's concurrency: MAX_CONCURRENT_ANALYSES analyses share the cores; more intra-op
    # threads than cores per analysis oversubscribes the CPU and makes every session slower.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // MAX_CONCURRENT_ANALYSES))
    predictor = Predictor.from_spec(spec_path)
    _LOADED[spec_path] = predictor.device.type
    return predictor


def is_loaded(spec_path: str | Path) -> bool:
    """Whether this process has already loaded the model of ``spec_path`` (cheap; loads nothing)."""
    return str(Path(spec_path).resolve()) in _LOADED


def device_hint() -> tuple[str, str]:
    """Where the network will run, without importing torch or loading a model.

    A CUDA device is assumed when the NVIDIA driver exposes a GPU (``/proc/driver/nvidia/gpus``) and
    ``CUDA_VISIBLE_DEVICES`` does not hide it; :func:`device_label` gives the exact answer once a model is loaded.

    Returns
    -------
    (str, str)
        ``("GPU (CUDA)", "green")`` or ``("CPU", "gray")``.
    """
    if _LOADED:
        return ("GPU (CUDA)", "green") if "cuda" in _LOADED.values() else ("CPU", "gray")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = Path("/proc/driver/nvidia/gpus")
    try:
        has_gpu = gpus.is_dir() and any(gpus.iterdir())
    except OSError:
        has_gpu = False
    if has_gpu and visible not in ("", "-1"):
        return "GPU (CUDA)", "green"
    return "CPU", "gray"


def get_predictor(spec_path: str | Path) -> Predictor:
    """The shared :class:`medimg.Predictor` for one spec, loaded once per process (``st.cache_resource``).

    The Predictor is shared by every session and is never mutated (inference uses no hooks; Grad-CAM runs on
    private replicas inside :mod:`medimg.explain`).

    Parameters
    ----------
    spec_path : path
        ``<name>.json``; the cache is keyed by its resolved path and the files' modification times.

    Returns
    -------
    medimg.Predictor

    Raises
    ------
    medimg.errors.SpecError, medimg.errors.WeightsError
    """
    p = Path(spec_path).resolve()
    return _load_predictor(str(p), _stamp(p))


def device_label(predictor: Predictor) -> tuple[str, str]:
    """Badge text and colour for where the network runs.

    Returns
    -------
    (str, str)
        ``("GPU (CUDA)", "green")`` or ``("CPU", "gray")``; the GPU name is appended when known.
    """
    if predictor.device.type == "cuda":
        try:
            import torch

            name = torch.cuda.get_device_name(predictor.device)
        except Exception:  # noqa: BLE001 - a name is cosmetic
            name = ""
        return (f"GPU (CUDA): {name}" if name else "GPU (CUDA)"), "green"
    return "CPU", "gray"


@st.cache_resource
def analysis_throttle() -> Throttle:
    """The process-wide :class:`medimg.throttle.Throttle` of analyses (``$MEDIMG_MAX_CONCURRENT``, default 2)."""
    return Throttle(MAX_CONCURRENT_ANALYSES, "analysing other images")


class compute_slot:  # noqa: N801 - used like a function: ``with compute_slot(): ...``
    """Context manager limiting concurrent analyses in this process (a slot of :func:`analysis_throttle`).

    Parameters
    ----------
    timeout : float
        Seconds to wait for a free slot.

    Raises
    ------
    medimg.errors.BusyError
        No slot frees up within ``timeout``.
    """

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._throttle = analysis_throttle()

    def __enter__(self) -> compute_slot:
        self._throttle.acquire(self.timeout)
        return self

    def __exit__(self, *exc: object) -> None:
        self._throttle.release()


#: The one busy error (kept under this name for the pages' imports).
ServerBusyError = BusyError
