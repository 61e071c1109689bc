"""ModelSpec: the JSON sidecar that travels with every weights file. Pure Python (no torch, no numpy).

Like torchvision's ``Weights.transforms()`` and timm's ``pretrained_cfg``, the spec owns everything that must
match between training and serving: labels, architecture, input size and channels, preprocessing, normalisation,
temperature, decision threshold, Grad-CAM target layer, and the sha256 of the weights it describes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimg.errors import SpecError

__all__ = ["PreprocessConfig", "ModelSpec", "load_spec", "save_spec", "spec_task", "parse_hu_window", "ROIS"]

GEOMETRIES = ("stretch", "pad", "crop")
INTENSITIES = ("none", "percentile", "equalize")
#: Region of interest before the geometry step: the whole image, or the bounding box of its largest bright
#: component (:func:`medimg.preprocess.foreground_box`; e.g. the head on a CT slice, without air and head rest).
ROIS = ("none", "foreground")


def parse_hu_window(window: str) -> tuple[float, float] | None:
    """``"HU 40/80"`` -> ``(40.0, 80.0)`` (Window Center, Window Width in HU); any other value -> None.

    Raises
    ------
    SpecError
        A value starting with ``"HU "`` that is not ``"HU <center>/<width>"`` with a width >= 1.
    """
    if not window.startswith("HU "):
        return None
    try:
        center, width = (float(v) for v in window[3:].split("/"))
    except ValueError as err:
        raise SpecError(f"window {window!r} must read 'HU <center>/<width>', e.g. 'HU 40/80'.") from err
    if not width >= 1:  # PS3.3 C.11.2.1.2: Window Width >= 1
        raise SpecError(f"window {window!r}: the width must be at least 1 HU.")
    return center, width


@dataclass(frozen=True)
class PreprocessConfig:
    """How a MedicalImage becomes the network input (see :func:`medimg.preprocess.run`).

    Attributes
    ----------
    input_size : (int, int)
        (rows, columns) of the model input, in pixels.
    in_chans : int
        1 (grayscale) or 3 (RGB) network input channels.
    window : str
        ``"default"``: the image's default display window (DICOM header window, stored range for 8-bit raster);
        ``"full range"``: data min..max; ``"HU <center>/<width>"`` (e.g. ``"HU 40/80"``, the brain window):
        that window for images in HU (CT after the Modality LUT), the default window for any other image (an 8-bit
        export is already windowed).
    roi : {"none", "foreground"}
        ``foreground``: the geometry step sees only the bounding box of the image's largest bright component
        (:func:`medimg.preprocess.foreground_box`), e.g. the head without the air and head rest around it.
    geometry : {"stretch", "pad", "crop"}
        ``stretch``: resize to ``input_size`` ignoring aspect ratio (what the training images had);
        ``pad``: keep aspect, pad with zeros; ``crop``: keep aspect, centre-crop the long side.
    intensity : {"none", "percentile", "equalize"}
        Extra intensity scaling after the window: none, 0.5-99.5 percentile stretch, or CLAHE.
    mean, std : tuple of float
        Per-channel normalisation applied to the [0, 1] image: ``(x - mean) / std``.
    """

    input_size: tuple[int, int] = (128, 128)
    in_chans: int = 1
    window: str = "default"
    geometry: str = "stretch"
    intensity: str = "none"
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    roi: str = "none"

    def __post_init__(self) -> None:
        rows, cols = self.input_size
        if rows < 8 or cols < 8:
            raise SpecError(f"input_size {self.input_size} is too small (at least 8 x 8).")
        if self.in_chans not in (1, 3):
            raise SpecError(f"in_chans must be 1 or 3, got {self.in_chans}.")
        if self.geometry not in GEOMETRIES:
            raise SpecError(f"geometry must be one of {GEOMETRIES}, got {self.geometry!r}.")
        if self.intensity not in INTENSITIES:
            raise SpecError(f"intensity must be one of {INTENSITIES}, got {self.intensity!r}.")
        if self.roi not in ROIS:
            raise SpecError(f"roi must be one of {ROIS}, got {self.roi!r}.")
        if self.window not in ("default", "full range") and parse_hu_window(self.window) is None:
            raise SpecError(f"window must be 'default', 'full range' or 'HU <center>/<width>', got {self.window!r}.")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise SpecError("mean and std need one value per input channel.")
        if any(s <= 0 for s in self.std):
            raise SpecError("std values must be positive.")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to serve one weights file, stored as ``<name>.json`` beside ``<name>.safetensors``.

    Attributes
    ----------
    name : str
        File stem, e.g. ``"kermany_cxr_mobilenet_v2_224"``.
    title : str
        Human-readable model name for the model picker.
    architecture : str
        Registry name for :func:`medimg.models.create_model`.
    labels : tuple of str
        Class names in output order.
    preprocess : PreprocessConfig
    intended_use : str
        What the model is for (shown on every page).
    modalities, body_parts : tuple of str
        DICOM Modality (0008,0060) and Body Part Examined (0018,0015) values the model was trained on
        (empty = not checked).
    positive_label : int or None
        Index of the positive class for binary metrics (sensitivity, PPV ...); None for multi-class.
    temperature : float
        Temperature T of calibrated probabilities ``softmax(logits / T)`` (Guo et al. 2017), > 0.
    threshold : float or None
        Probability of ``positive_label`` at or above which the positive class is predicted; None = argmax.
    cam_layer : str
        Dotted module path of the Grad-CAM target layer, e.g. ``"layer4"``.
    sha256 : str
        Hex digest of the ``.safetensors`` file; loading fails closed on a mismatch.
    training : dict
        Command, data source and checksum, seed, epochs, wall time, ...
    metrics : dict
        Test-set metrics (the EvalReport summary).
    gate : dict
        Applicability-gate parameters fitted on the validation split (see :mod:`medimg.predict`).
    tta : tuple of str
        Test-time augmentation views (names from :data:`medimg.uncertainty.VIEWS`) whose spread the Predictor
        reports as uncertainty; empty = none.
    """

    name: str
    title: str
    architecture: str
    labels: tuple[str, ...]
    preprocess: PreprocessConfig
    intended_use: str = ""
    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    positive_label: int | None = None
    temperature: float = 1.0
    threshold: float | None = None
    cam_layer: str = ""
    sha256: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    tta: tuple[str, ...] = ()
    format_version: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.labels, str) or not all(isinstance(x, str) and x for x in self.labels):
            raise SpecError("labels must be a list of non-empty strings.")
        if len(set(self.labels)) != len(self.labels):
            raise SpecError(f"labels must be distinct, got {list(self.labels)}.")
        if len(self.labels) < 2:
            raise SpecError(f"A model needs at least two labels, got {list(self.labels)}.")
        if not self.temperature > 0:
            raise SpecError(f"temperature must be > 0, got {self.temperature}.")
        if self.positive_label is not None and not 0 <= self.positive_label < len(self.labels):
            raise SpecError(f"positive_label {self.positive_label} is not a label index.")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise SpecError(f"threshold must be in (0, 1), got {self.threshold}.")

    @property
    def num_classes(self) -> int:
        """Number of output classes (= len(labels))."""
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        """Build from :meth:`to_dict` output; raises :class:`SpecError` on missing or invalid fields."""
        try:
            d = dict(d)
            pp = dict(d.pop("preprocess"))
            pp["input_size"] = tuple(pp["input_size"])
            pp["mean"] = tuple(pp["mean"])
            pp["std"] = tuple(pp["std"])
            known = {f.name for f in dataclasses.fields(cls)}
            d = {k: v for k, v in d.items() if k in known}
            for key in ("labels", "modalities", "body_parts", "tta"):
                if key in d:
                    if isinstance(d[key], str):
                        raise SpecError(f"{key} must be a list of strings, not a single string.")
                    d[key] = tuple(d[key])
            return cls(preprocess=PreprocessConfig(**pp), **d)
        except SpecError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise SpecError(f"The model specification is incomplete or malformed ({type(err).__name__}: {err}).") from err

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with some fields changed (the spec is frozen)."""
        return dataclasses.replace(self, **changes)


def load_spec(path: str | Path) -> ModelSpec:
    """Read a ModelSpec JSON file.

    Raises
    ------
    SpecError
        File missing, not JSON, or fields missing/invalid.
    """
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise SpecError(f"The model specification {p.name} is missing.") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SpecError(f"The model specification {p.name} is not valid JSON.") from err
    if not isinstance(raw, dict):
        raise SpecError(f"The model specification {p.name} is not a JSON object.")
    return ModelSpec.from_dict(raw)


def save_spec(spec: ModelSpec, path: str | Path) -> None:
    """Write ``spec`` as indented JSON (UTF-8)."""
    Path(path).write_text(json.dumps(spec.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")


def spec_task(spec: ModelSpec) -> str:
    """The training task a spec was trained on (``spec.training["config"]["task"]``), e.g. ``"kermany-cxr"``.

    Raises
    ------
    SpecError
        The spec names no task (it cannot be evaluated or have its gate fitted on a data split; nothing falls
        back to another task's data).
    """
    config = spec.training.get("config") if isinstance(spec.training, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(task, str) or not task:
        raise SpecError(f"The specification of {spec.name} names no training task (training.config.task), so "
                        "there is no data split to evaluate it on; add the task it was trained on.")
    return task
