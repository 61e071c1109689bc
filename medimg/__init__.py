"""medimg: deep-learning analysis of medical images for clinicians, educators and reviewers.

The public API (pages and users import only these, plus ``medimg.ui`` in the app):

- :func:`load_image` -> :class:`MedicalImage` (DICOM, PNG, JPEG, TIFF; decided by content)
- :func:`preprocess` (the named steps to the model input), :class:`PreprocessConfig`
- :class:`ModelSpec`, :func:`load_spec`, :func:`list_weights`
- :func:`create_model`, :func:`list_models`, :func:`load_model`
- :class:`Predictor`, :class:`Prediction`
- :class:`EvalReport`
- :class:`MedimgError`
"""

from __future__ import annotations

from pathlib import Path

from medimg.errors import MedimgError
from medimg.io import MedicalImage, Window, load_image
from medimg.preprocess import run as preprocess
from medimg.spec import ModelSpec, PreprocessConfig, load_spec

__version__ = "0.1.0"

__all__ = ["MedicalImage", "Window", "load_image", "preprocess", "PreprocessConfig", "ModelSpec", "load_spec",
           "list_weights", "create_model", "list_models", "load_model", "Predictor", "Prediction", "EvalReport",
           "MedimgError", "WEIGHTS_DIR"]

#: The shipped weights folder (``<repo>/weights``).
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def list_weights(folder: str | Path | None = None) -> list[Path]:
    """Spec files (``<name>.json`` with a ``<name>.safetensors`` beside it) in ``folder``, sorted by name.

    Parameters
    ----------
    folder : path, optional
        Defaults to :data:`WEIGHTS_DIR`.
    """
    d = Path(folder) if folder is not None else WEIGHTS_DIR
    return sorted(p for p in d.glob("*.json")
                  if not p.name.endswith((".eval.json", ".log.json", ".ckpt.json")) and p.with_suffix(".safetensors").exists())


def __getattr__(name: str):  # noqa: ANN202 - lazy torch-dependent names keep `import medimg` light
    if name in ("create_model", "list_models", "load_model"):
        from medimg import models

        return getattr(models, name)
    if name == "EvalReport":  # scikit-learn is slow to import: only pages that need it pay for it
        from medimg.evaluate import EvalReport

        return EvalReport
    if name in ("Predictor", "Prediction"):
        from medimg import predict

        return getattr(predict, name)
    raise AttributeError(f"module 'medimg' has no attribute {name!r}")
