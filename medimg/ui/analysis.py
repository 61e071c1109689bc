"""The Analyze workflow, one step per function, with results kept in this user's ``st.session_state`` only.

Per-patient data (the upload's bytes, the decoded image, predictions, heat maps) never goes into
``st.cache_data``, ``st.cache_resource`` or a module global: it lives in one dict in ``st.session_state``
(:data:`STATE_KEY`) that is cleared whenever a different file is uploaded, so two sessions never share it and a
session keeps at most a few results of its current file.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

import medimg
from medimg.io import MedicalImage, Window
from medimg.ui.resources import ModelOption, compute_slot, get_predictor
from medimg.viz import to_uint8

if TYPE_CHECKING:  # pragma: no cover
    from medimg.predict import Prediction
    from medimg.ui.session import Upload

__all__ = ["STATE_KEY", "CAM_METHODS", "Timed", "cam_methods", "clear", "decode", "predict", "explain", "overlay",
           "window_key"]

#: The one ``st.session_state`` entry holding this session's per-image results.
STATE_KEY = "medimg.analysis"
#: Results kept per kind for the current file (frames x windows x models x CAM methods the user tried).
_KEEP = 6

#: CAM methods offered in the app: label -> :func:`medimg.explain.cam` ``method``; Grad-CAM first (default).
CAM_METHODS: dict[str, str] = {
    "Grad-CAM": "gradcam",
    "HiResCAM": "hirescam",
    "Grad-CAM++": "gradcam++",
    "XGrad-CAM": "xgradcam",
    "LayerCAM": "layercam",
    "Eigen-CAM": "eigencam",
}


@dataclass(frozen=True)
class Timed:
    """A result and the wall time it took when it was computed.

    Attributes
    ----------
    value : object
    seconds : float
        Wall time of the computation (reported again, unchanged, when the result comes from session state).
    cached : bool
        True when this run reused the result.
    """

    value: Any
    seconds: float
    cached: bool = False


@dataclass
class _Store:
    upload_id: str = ""
    results: dict[str, OrderedDict[Hashable, Timed]] = field(default_factory=dict)


def _store(upload_id: str) -> _Store:
    s = st.session_state.get(STATE_KEY)
    if not isinstance(s, _Store) or s.upload_id != upload_id:
        s = _Store(upload_id=upload_id)
        st.session_state[STATE_KEY] = s
    return s


def _cached(upload_id: str, kind: str, key: Hashable, compute: Any) -> Timed:
    store = _store(upload_id)
    table = store.results.setdefault(kind, OrderedDict())
    if key in table:
        table.move_to_end(key)
        hit = table[key]
        return Timed(hit.value, hit.seconds, cached=True)
    t0 = time.perf_counter()
    value = compute()
    out = Timed(value, time.perf_counter() - t0)
    table[key] = out
    while len(table) > _KEEP:
        table.popitem(last=False)
    return out


def clear() -> None:
    """Forget this session's image and results (e.g. when the upload is removed)."""
    st.session_state.pop(STATE_KEY, None)


def window_key(window: Window | None) -> Hashable:
    """A hashable key of a display window (None = the model's own preprocessing window)."""
    if window is None:
        return None
    return (window.name, float(window.center), float(window.width), window.function)


def decode(upload: Upload, frame: int | None = None) -> Timed:
    """Decode an upload (in memory: ``upload.data``; nothing is written to disk).

    Parameters
    ----------
    upload : medimg.ui.session.Upload
        The session's current file (:func:`medimg.ui.session.current_upload`); its bytes are decoded in memory
        and the format is decided by content.
    frame : int, optional
        0-based frame of a multi-frame file; the first when None.

    Returns
    -------
    Timed
        ``value`` is the :class:`medimg.MedicalImage`.

    Raises
    ------
    medimg.MedimgError
        Unsupported, damaged or too-large files.
    """
    return _cached(upload.upload_id, "image", frame,
                   lambda: medimg.load_image(upload.data, frame=frame))


def predict(upload: Upload, option: ModelOption, image: MedicalImage, window: Window | None = None) -> Timed:
    """Calibrated prediction and applicability gate for the current image.

    Parameters
    ----------
    upload : medimg.ui.session.Upload
        Identifies the current file (its ``upload_id`` keys the session's results).
    option : ModelOption
        The selected model.
    image : MedicalImage
        The decoded frame.
    window : Window, optional
        A display window to feed the network instead of the spec's; None uses the spec's preprocessing.

    Returns
    -------
    Timed
        ``value`` is the :class:`medimg.Prediction`.
    """
    predictor = get_predictor(option.path)

    def run() -> Prediction:
        with compute_slot():
            return predictor.predict(image, window=window)

    return _cached(upload.upload_id, "prediction",
                   (str(option.path), image.frame_index, window_key(window)), run)


def cam_methods() -> dict[str, str]:
    """CAM methods to offer: label -> method id accepted by :func:`medimg.explain.cam` (Grad-CAM first).

    :data:`CAM_METHODS` restricted to the ids :data:`medimg.explain.METHODS` implements.
    """
    from medimg.explain import METHODS

    return {label: mid for label, mid in CAM_METHODS.items() if mid in METHODS}


def explain(upload: Upload, option: ModelOption, prediction: Prediction, method: str = "gradcam",
            target: int | None = None) -> Timed:
    """Heat map of the prediction (Grad-CAM family), min-max scaled per image.

    Parameters
    ----------
    upload : medimg.ui.session.Upload
    option : ModelOption
    prediction : medimg.Prediction
        Its ``preprocessed`` input is explained.
    method : str
        A value of :func:`cam_methods`.
    target : int, optional
        Class index to explain; the predicted class when None.

    Returns
    -------
    Timed
        ``value`` is a :class:`medimg.explain.CamResult` (``heatmap`` (H, W) float32 in [0, 1] at the model input
        size, ``heatmap_original(shape)`` on the original image).
    """
    from medimg import explain as ex

    predictor = get_predictor(option.path)
    tgt = prediction.label_index if target is None else int(target)

    def run() -> Any:
        with compute_slot():
            return ex.cam(predictor, prediction.preprocessed, target=tgt, method=method, scale="relative")

    digest = hashlib.blake2b(np.ascontiguousarray(prediction.preprocessed.model_input).tobytes(),
                             digest_size=16).hexdigest()
    key = (str(option.path), digest, method, tgt)
    return _cached(upload.upload_id, "cam", key, run)


def overlay(display: np.ndarray, cam_result: Any, alpha: float, colormap: str = "jet",
            max_side: int = 1024) -> Timed:
    """Blend the heat map, mapped back to the original image size, over the display image.

    Parameters
    ----------
    display : (H0, W0) or (H0, W0, 3) float32 ndarray in [0, 1]
        ``image.display(window)``: the original image as shown.
    cam_result : medimg.explain.CamResult
    alpha : float in [0, 1]
        Heat-map opacity.
    colormap : str
    max_side : int
        Larger images are downsampled (aspect kept) to this longest side first: the figure sent to the browser
        is no larger, and the heat map is mapped onto the same grid.

    Returns
    -------
    Timed
        ``value`` is the (h, w, 3) float ndarray in [0, 1] (the original image's grid, downsampled to at most
        ``max_side``); not cached (cheap, changes with the slider).
    """
    from medimg import explain as ex

    t0 = time.perf_counter()
    if max(display.shape[:2]) > max_side:  # the browser gets at most max_side pixels: blend at that size
        display = to_uint8(display, max_side).astype(np.float32) / np.float32(255.0)
    heat = cam_result.heatmap_original(tuple(display.shape[:2]))
    rgb = ex.overlay(display, heat, alpha=float(alpha), colormap=colormap)
    return Timed(rgb, time.perf_counter() - t0)
