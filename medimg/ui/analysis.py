"""The Analyze workflow, one step per function, with results kept in this user's ``st.session_state`` only.

Per-patient data (the upload's bytes, the decoded image, predictions, heat maps) never goes into
``st.cache_data``, ``st.cache_resource`` or a module global: it lives in one dict in ``st.session_state``
(:data:`STATE_KEY`) that is cleared whenever a different file is uploaded, so two sessions never share it and a
session keeps at most a few results of its current file.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

import medimg
from medimg.io import MedicalImage, Window
from medimg.ui.resources import ModelOption, compute_slot, get_predictor
from medimg.ui.session import memo

if TYPE_CHECKING:  # pragma: no cover
    from medimg.predict import Prediction
    from medimg.ui.session import Upload

__all__ = ["STATE_KEY", "CONFIRM_KEY", "READS_KEY", "CAM_METHODS", "ALPHA_KEY", "DEFAULT_ALPHA",
           "VIEWER_FRAGMENT_KEY", "Timed", "OverlayBase", "HeatLayer", "cam_methods", "clear", "decode", "predict",
           "explain", "overlay", "overlay_base", "overlay_base_for", "viewer_panel", "window_key", "model_id", "state_key", "upload_label", "confirmation",
           "record_confirmation", "Read", "record_read", "read_for", "reads_table", "image_number"]

#: The one ``st.session_state`` entry holding this session's per-image results.
STATE_KEY = "medimg.analysis"
#: ``st.session_state`` entry of the confirmed warnings: (model, image, frame) -> failed check names confirmed.
CONFIRM_KEY = "medimg.confirmations"
#: ``st.session_state`` entry of the clinician's own reads (read-first mode), in the order recorded.
READS_KEY = "medimg.reads"
#: ``st.session_state`` entry numbering the images of this session (upload id -> 1, 2, ...).
_NUMBERS_KEY = "medimg.image_numbers"
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


def _cached(upload_id: str, kind: str, key: Hashable, compute: Any) -> Timed:
    value, seconds, cached = memo(STATE_KEY, upload_id, kind, key, compute, _KEEP)
    return Timed(value, seconds, cached)


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
            return predictor.predict(image, window=window)  # stability: :func:`stability`, after the result

    return _cached(upload.upload_id, "prediction",
                   (str(option.path), image.frame_index, window_key(window)), run)


def stability(upload: Upload, option: ModelOption, prediction: Prediction) -> Timed:
    """The prediction's stability under the model's test-time augmentation views, computed after the result and
    heat map are on the page (it is shown under them; a batch of views costs more than the prediction itself).

    Returns
    -------
    Timed
        ``value`` is a :class:`medimg.uncertainty.Uncertainty`, or None when the model has no TTA views.
    """
    predictor = get_predictor(option.path)

    def run() -> Any:
        with compute_slot():
            return predictor.uncertainty(prediction.preprocessed, prediction.label_index)

    digest = hashlib.blake2b(np.ascontiguousarray(prediction.preprocessed.model_input).tobytes(),
                             digest_size=16).hexdigest()
    return _cached(upload.upload_id, "stability", (str(option.path), digest, prediction.label_index), run)


def with_uncertainty(prediction: Prediction, uncertainty: Any) -> Prediction:
    """``prediction`` with its :attr:`~medimg.Prediction.uncertainty` filled in (a new object; the cached one is
    not changed)."""
    from dataclasses import replace

    return replace(prediction, uncertainty=uncertainty)


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


@dataclass(frozen=True)
class OverlayBase:
    """What a heat-map overlay needs that does not depend on its opacity: the display image and the heat map on
    the same (downsampled) grid, the heat map already quantised to the colour map's 256 entries.

    Moving the opacity slider only calls :meth:`blend` (a table look-up, a few ms for a 1024 px image); the
    resampling of the heat map onto the image grid and the display conversion are done once per image, model,
    frame, window, method and class (:func:`overlay_base_for`).

    Attributes
    ----------
    display : (h, w) or (h, w, 3) ndarray
        uint8 (the viewer's rendered image; a gray image rendered as RGB is kept as one channel), or float32 in
        [0, 1] for a float display image.
    index : (h, w) uint8 ndarray
        The heat map on the display grid as colour-map indices (``rint(clip(heat, 0, 1) * 255)``, as
        :func:`medimg.explain.overlay` does).
    colormap : str
        A matplotlib colour-map name.
    """

    display: np.ndarray
    index: np.ndarray
    colormap: str = "jet"

    def blend(self, alpha: float) -> np.ndarray:
        """The heat map blended over the display image at opacity ``alpha``.

        Parameters
        ----------
        alpha : float in [0, 1]
            Weight of the colour map: ``(1 - alpha) * display + alpha * colormap(heat)``.

        Returns
        -------
        (h, w, 3) uint8 ndarray
            Bit for bit what :func:`medimg.explain.overlay` gives for ``display / 255`` (then rounded to uint8).

        Raises
        ------
        medimg.explain.ExplainError
            ``alpha`` outside [0, 1], or an unknown colour map.
        """
        from medimg import explain as ex
        from medimg.explain.overlay import colormap_lut

        a = float(alpha)
        if not 0.0 <= a <= 1.0:
            raise ex.ExplainError(f"alpha must be in [0, 1], got {alpha}.")
        if self.display.dtype != np.uint8:  # a float display: the arithmetic of medimg.explain.overlay per pixel
            rgb = ex.overlay(self.display, self.index.astype(np.float32) / np.float32(255.0), alpha=a,
                             colormap=self.colormap)
            return (rgb * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
        colour = colormap_lut(self.colormap) * np.float32(a)  # (256, 3), as medimg.explain.overlay weights it
        # uint8 display: every (heat index, display value) pair blended once, then one look-up per pixel
        shade = np.clip(np.arange(256, dtype=np.float32) / np.float32(255.0), 0.0, 1.0) * np.float32(1.0 - a)
        table = colour[:, None, :] + shade[None, :, None]  # (heat index, display value, RGB)
        np.clip(table, 0.0, 1.0, out=table)
        table = (table * np.float32(255.0) + np.float32(0.5)).astype(np.uint8).reshape(256 * 256, 3)
        index = self.index.astype(np.intp) << 8
        if self.display.ndim == 2:
            return np.take(table, index | self.display, axis=0)
        return np.stack([np.take(table[:, c], index | self.display[..., c]) for c in range(3)], axis=-1)


def overlay_base(display: np.ndarray, cam_result: Any, colormap: str = "jet",
                 max_side: int = 1024) -> OverlayBase:
    """The opacity-independent part of :func:`overlay` (see :class:`OverlayBase`).

    Parameters
    ----------
    display, cam_result, colormap, max_side
        As for :func:`overlay`.

    Returns
    -------
    OverlayBase
    """
    from medimg.viz import to_uint8

    if display.dtype == np.uint8:
        if display.ndim == 3 and np.array_equal(display[..., 0], display[..., 1]) and \
                np.array_equal(display[..., 0], display[..., 2]):
            display = display[..., 0]  # gray shown as RGB: blend one channel
        if max(display.shape[:2]) > max_side:  # the browser gets at most max_side pixels: blend at that size
            display = to_uint8(display.astype(np.float32) * np.float32(1 / 255), max_side)
    else:
        display = np.asarray(display, dtype=np.float32)
        if display.ndim == 3 and display.shape[2] == 1:
            display = display[..., 0]
        if max(display.shape[:2]) > max_side:
            display = to_uint8(display, max_side)
    heat = np.asarray(cam_result.heatmap_original(tuple(display.shape[:2])), dtype=np.float32)
    index = np.rint(np.clip(np.nan_to_num(heat), 0.0, 1.0) * 255.0).astype(np.uint8)
    display.flags.writeable = False
    index.flags.writeable = False
    return OverlayBase(display=display, index=index, colormap=colormap)


def overlay_base_for(upload: Upload, display: np.ndarray, cam_result: Any, colormap: str = "jet",
                     max_side: int = 1024) -> Timed:
    """:func:`overlay_base`, kept in this session's results (a rerun for another reason, or the class explained
    and back, does not resample the heat map again).

    The key is the content itself (the displayed pixels and the heat map with its geometry), so a result is
    reused only for the same model output on the same image, frame and window.

    Returns
    -------
    Timed
        ``value`` is the :class:`OverlayBase`.
    """
    def digest(a: np.ndarray) -> str:
        return hashlib.blake2b(np.ascontiguousarray(a).data, digest_size=16).hexdigest()

    key = (digest(display), display.shape, str(display.dtype), digest(cam_result.heatmap),
           tuple(cam_result.input_size), str(cam_result.geometry), getattr(cam_result, "roi", None), colormap,
           int(max_side))
    return _cached(upload.upload_id, "overlay", key, lambda: overlay_base(display, cam_result, colormap, max_side))


def overlay(display: np.ndarray, cam_result: Any, alpha: float, colormap: str = "jet",
            max_side: int = 1024) -> Timed:
    """Blend the heat map, mapped back to the original image size, over the display image.

    Parameters
    ----------
    display : (H0, W0) or (H0, W0, 3) float32 ndarray in [0, 1], or uint8 ndarray
        The original image as shown (``image.display(window)``, or the viewer's rendered uint8 image; a gray
        image rendered as RGB is blended as one channel).
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
        ``value`` is the (h, w, 3) uint8 ndarray (the original image's grid, downsampled to at most
        ``max_side``); not cached (the opacity-independent part can be: :func:`overlay_base_for`).
    """
    t0 = time.perf_counter()
    out = overlay_base(display, cam_result, colormap, max_side).blend(alpha)
    return Timed(out, time.perf_counter() - t0)


@dataclass(frozen=True)
class HeatLayer:
    """The heat map drawn in the viewer's second panel, as the page's run computed it (everything but the opacity).

    Attributes
    ----------
    base : OverlayBase
        The display image and the heat map on its grid (:func:`overlay_base_for`).
    relative : bool
        The heat map was min-max scaled per image (the colour bar says so).
    method : str
        The method's label (``"Grad-CAM"``).
    target : str
        The class explained (``"every class"`` for a class-agnostic method).
    """

    base: OverlayBase
    relative: bool
    method: str
    target: str


#: Widget key of the heat-map opacity slider (one opacity for the session, a display choice only).
ALPHA_KEY = "cam-alpha"
#: Opacity the heat map starts with.
DEFAULT_ALPHA = 0.4
#: Key of the :func:`viewer_panel` fragment.
VIEWER_FRAGMENT_KEY = "medimg-viewer-panel"


def viewer_panel(image_rgb: np.ndarray, heat: HeatLayer | None, *, uid: str, image_title: str,
                 shape: tuple[int, int], pixels: np.ndarray, integral: bool,
                 report_heat: list[Any] | None = None) -> None:
    """The viewer figure (the image and, with a result, its heat map beside it) and the heat-map opacity slider.

    Drawn by a Streamlit fragment: moving the opacity slider reruns only the fragment (one blend, one JPEG
    encoding, the figure sent again), not the page, so the prediction, the heat map's computation and the other
    panels are not touched. The figure is built once per page run; an opacity change replaces only the heat-map
    panel's image (:func:`medimg.ui.viewer.set_heat_image`). A box selection in the figure (a region window)
    reruns the whole page (:func:`medimg.ui.viewer.show_panel`).

    Parameters
    ----------
    image_rgb : (h, w, 3) uint8 ndarray
        The displayed image (:func:`medimg.ui.viewer.render`).
    heat : HeatLayer, optional
        The heat map to draw beside the image; None draws the image alone (no slider).
    uid : str
        The upload's id (keys of the figure and its controls).
    image_title : str
        The image panel's title (the window).
    shape : (int, int)
        Rows and columns of the original image (the axes are in its pixels).
    pixels : ndarray
        The image's modality values (for a region window).
    integral : bool
        Window values are whole numbers (:func:`medimg.ui.viewer.integral_units`).
    report_heat : list, optional
        The report's ``[overlay, relative, (method, class)]``: its overlay is set to the one drawn, so the report
        downloaded after moving the slider shows the heat map as it is on screen.
    """
    _viewer_fragment(_PanelFigure(image_rgb, heat, image_title, shape, uid), heat, uid=uid, pixels=pixels,
                     integral=integral, report_heat=report_heat)


class _PanelFigure:
    """The viewer figure of one page run: built on first use, then only its heat-map image is replaced."""

    def __init__(self, image_rgb: np.ndarray, heat: HeatLayer | None, image_title: str, shape: tuple[int, int],
                 uid: str) -> None:
        self.args = (image_rgb, heat, image_title, tuple(shape), uid)
        self.figure: Any = None

    def with_heat(self, blended: np.ndarray | None) -> Any:
        """The figure with ``blended`` as its heat-map panel (the image alone when None)."""
        from medimg.ui import viewer

        image_rgb, heat, image_title, shape, uid = self.args
        if blended is None or heat is None:
            return viewer.panel_figure(image_rgb, None, image_title=image_title, revision=uid, shape=shape)
        if self.figure is None:
            self.figure = viewer.panel_figure(image_rgb, blended, relative=heat.relative, image_title=image_title,
                                              heat_title=f"{heat.method} for {heat.target}", revision=uid,
                                              shape=shape)
            return self.figure
        return viewer.set_heat_image(self.figure, blended)


@st.fragment(key=VIEWER_FRAGMENT_KEY)
def _viewer_fragment(panel: _PanelFigure, heat: HeatLayer | None, *, uid: str, pixels: np.ndarray,
                     integral: bool, report_heat: list[Any] | None) -> None:
    from medimg.ui import viewer
    from medimg.ui.errors import guard

    figure_slot = st.container()
    blended = None
    if heat is not None:
        _, right = st.columns(2)  # under the heat-map panel
        alpha = right.slider("Heat-map opacity", 0.0, 1.0, DEFAULT_ALPHA, 0.05, key=ALPHA_KEY)
        with guard("drawing the heat map", stop=False):
            blended = heat.base.blend(alpha)
        if blended is not None and report_heat is not None:
            report_heat[0] = blended
    with figure_slot:
        viewer.show_panel(panel.with_heat(blended), uid, pixels, integral)


# ------------------------------------------------------------------------------------ keys and labels


def model_id(option: ModelOption | None) -> str:
    """A key part naming the model: its spec file name (``"none"`` without a model)."""
    return option.path.name if option is not None else "none"


def state_key(kind: str, option: ModelOption | None, upload: Upload, frame: int | None) -> str:
    """Widget / state key of a choice about one model, one image and one frame.

    Every state a user confirms or chooses about a result (the "Analyse anyway" confirmation, the class a heat
    map explains, a read) is keyed by all three, so a choice never carries over to another model or file.

    Returns
    -------
    str
        ``"{kind}-{model}-{upload id}-{frame}"`` (frame ``0`` for single-frame files).
    """
    return f"{kind}-{model_id(option)}-{upload.upload_id}-{0 if frame is None else int(frame)}"


_MODALITY_WORDS = {"CR": "radiograph", "DX": "radiograph", "MR": "MRI", "US": "ultrasound", "CT": "CT",
                   "SM": "micrograph", "XC": "photograph", "OT": "image", "MG": "mammogram"}


def upload_label(option: ModelOption | None) -> str:
    """The uploader's label, from the selected model's spec (what kind of image it expects).

    E.g. ``"Chest radiograph (CR, DX) for Chest X-ray: normal vs pneumonia ...: DICOM, PNG, JPEG or TIFF"``.
    """
    tail = "DICOM, PNG, JPEG or TIFF (the type is read from the content, so any file name works)"
    if option is None or option.spec is None:
        return f"Image: {tail}"
    spec = option.spec
    part = spec.body_parts[0].capitalize() if spec.body_parts else ""
    kind = next((_MODALITY_WORDS[m] for m in spec.modalities if m in _MODALITY_WORDS), "image")
    what = f"{part} {kind}".strip() if part else kind
    what = what[:1].upper() + what[1:]
    mods = f" ({', '.join(spec.modalities)})" if spec.modalities else ""
    return f"{what}{mods} for the model \"{option.title}\": {tail}"


# ------------------------------------------------------------------------------------ confirmations


def _confirmations() -> dict[tuple[str, str, int], frozenset[str]]:
    table = st.session_state.get(CONFIRM_KEY)
    if not isinstance(table, dict):
        table = {}
        st.session_state[CONFIRM_KEY] = table
    return table


def confirmation(option: ModelOption | None, upload: Upload, frame: int | None,
                 failed: frozenset[str]) -> tuple[bool, int | None]:
    """Whether the user confirmed these failed checks for this model, image and frame.

    Parameters
    ----------
    option, upload, frame
        The model, the file and the 0-based frame (None for single-frame files).
    failed : frozenset of str
        Names of the failed checks now shown.

    Returns
    -------
    (bool, int or None)
        ``(True, None)`` when confirmed for this frame; ``(True, f)`` when another frame ``f`` (0-based) of the
        same file was confirmed with the same model and the same failed checks (a multi-frame file is confirmed
        once, not per frame); ``(False, None)`` otherwise. A different model never inherits a confirmation.
    """
    table = _confirmations()
    mid, uid, fr = model_id(option), upload.upload_id, 0 if frame is None else int(frame)
    if table.get((mid, uid, fr)) == failed:
        return True, None
    for (m, u, f), names in table.items():
        if m == mid and u == uid and names == failed:
            return True, f
    return False, None


def record_confirmation(option: ModelOption | None, upload: Upload, frame: int | None, failed: frozenset[str],
                        confirmed: bool) -> None:
    """Store (or withdraw) the confirmation of ``failed`` for this model, image and frame."""
    table = _confirmations()
    key = (model_id(option), upload.upload_id, 0 if frame is None else int(frame))
    if confirmed:
        table[key] = failed
    else:
        for k in [k for k, v in table.items() if k[:2] == key[:2] and v == failed]:
            table.pop(k, None)


# ------------------------------------------------------------------------------------ read first


@dataclass(frozen=True)
class Read:
    """A clinician's own read of one image, recorded before the model's output was shown.

    Attributes
    ----------
    model : str
        Spec file name of the model it is compared with.
    model_title : str
    image : int
        The image's number in this session (1, 2, ...); never the file name.
    frame : int
        0-based frame.
    label : str
        The class the clinician chose.
    confidence : int
        The clinician's confidence in percent (50-100).
    model_label : str
        The model's class, filled in when revealed.
    model_probability : float
        The model's calibrated probability of its class.
    """

    model: str
    model_title: str
    image: int
    frame: int
    label: str
    confidence: int
    model_label: str = ""
    model_probability: float = float("nan")

    @property
    def agrees(self) -> bool:
        """The clinician and the model chose the same class."""
        return self.label == self.model_label


def image_number(upload: Upload) -> int:
    """This session's number of an image (1 for the first uploaded, ...), used instead of any file name."""
    numbers = st.session_state.get(_NUMBERS_KEY)
    if not isinstance(numbers, dict):
        numbers = {}
        st.session_state[_NUMBERS_KEY] = numbers
    return numbers.setdefault(upload.upload_id, len(numbers) + 1)


def _reads() -> dict[str, Read]:
    reads = st.session_state.get(READS_KEY)
    if not isinstance(reads, dict):
        reads = {}
        st.session_state[READS_KEY] = reads
    return reads


def record_read(option: ModelOption, upload: Upload, frame: int | None, label: str, confidence: int,
                prediction: Prediction) -> Read:
    """Record the clinician's read (before the reveal) with the model's answer beside it; kept in this session
    only, keyed by model, image and frame (a second read of the same replaces the first)."""
    p = float(prediction.probs[prediction.label_index])
    read = Read(model=model_id(option), model_title=option.title, image=image_number(upload),
                frame=0 if frame is None else int(frame), label=str(label), confidence=int(confidence),
                model_label=prediction.label, model_probability=p)
    _reads()[state_key("read", option, upload, frame)] = read
    return read


def read_for(option: ModelOption | None, upload: Upload, frame: int | None) -> Read | None:
    """The read recorded for this model, image and frame, or None."""
    return _reads().get(state_key("read", option, upload, frame))


def reads_table() -> dict[str, list[Any]]:
    """This session's reads vs the model, as columns for ``st.dataframe`` (no file names, nothing stored
    elsewhere)."""
    rows = list(_reads().values())
    return {
        "Image": [r.image for r in rows],
        "Frame": [r.frame + 1 for r in rows],
        "Model": [r.model_title for r in rows],
        "Your read": [r.label for r in rows],
        "Your confidence": [f"{r.confidence} %" for r in rows],
        "Model output": [r.model_label for r in rows],
        "Model probability": [f"{r.model_probability:.1%}" for r in rows],
        "Agree": ["yes" if r.agrees else "no" for r in rows],
    }


# ------------------------------------------------------------------------------------ cine


def cine_frames(upload: Upload, n_frames: int, settings: Any, max_frames: int = 120,
                max_side: int = 384) -> list[np.ndarray]:
    """Every frame (up to ``max_frames``) rendered through one window, downsampled for the cine figure.

    Parameters
    ----------
    upload : medimg.ui.session.Upload
    n_frames : int
        Frames in the file.
    settings : medimg.ui.viewer.ViewerSettings
        The window, invert and overlay choices; the same for every frame.
    max_frames, max_side : int
        Bounds on the work and on what is sent to the browser.

    Returns
    -------
    list of (h, w, 3) uint8 ndarray
        Kept in this session's results (keyed by the settings), never in a process-wide cache.
    """
    from medimg.ui.viewer import render
    from medimg.viz import to_uint8

    def run() -> list[np.ndarray]:
        out = []
        for f in range(min(int(n_frames), max_frames)):
            img = medimg.load_image(upload.data, frame=f)
            rgb = render(img, settings)
            out.append(to_uint8(rgb.astype(np.float32) / np.float32(255.0), max_side)
                       if max(rgb.shape[:2]) > max_side else rgb)
        shapes = {a.shape for a in out}
        if len(shapes) > 1:  # frames of different sizes cannot share one figure
            out = [a for a in out if a.shape == out[0].shape]
        return out

    key = (window_key(settings.window), bool(settings.invert), bool(settings.overlays), max_frames, max_side)
    return _cached(upload.upload_id, "cine", key, run).value
