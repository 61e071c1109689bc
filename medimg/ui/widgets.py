"""Widgets and renderers of the Analyze page: frame and window pickers, metadata, gate, steps, timings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from medimg.io import MedicalImage, Window
from medimg.viz import probability_bars, to_uint8

if TYPE_CHECKING:  # pragma: no cover
    from medimg.gate import GateVerdict
    from medimg.predict import Prediction
    from medimg.spec import ModelSpec

__all__ = ["CUSTOM_WINDOW", "frame_picker", "window_picker", "show_image", "show_metadata", "show_gate",
           "show_prediction", "show_cam_note", "show_steps", "step_pixels", "show_timings", "format_seconds",
           "show_uncertainty", "uncertainty_text"]

#: Label of the custom center/width option of :func:`window_picker`.
CUSTOM_WINDOW = "Custom center / width"
#: Longest side, in pixels, of images sent to the browser.
DISPLAY_MAX_SIDE = 1024


def frame_picker(image: MedicalImage, key: str) -> int | None:
    """A frame slider for a multi-frame image.

    Parameters
    ----------
    image : MedicalImage
        Any frame of the file (``n_frames`` is read).
    key : str
        Widget key; make it depend on the upload so a new file starts at frame 1.

    Returns
    -------
    int or None
        0-based frame index, or None for a single-frame image.
    """
    if image.n_frames <= 1:
        return None
    shown = st.slider("Frame", 1, int(image.n_frames), 1, key=key,
                      help=f"This file holds {image.n_frames} frames; each is analysed separately.")
    return int(shown) - 1


def _describe(w: Window) -> str:
    kind = "VOI LUT" if w.lut is not None else w.function.lower().replace("_", " ")
    return f"{w.name} (center {w.center:g}, width {w.width:g}, {kind})"


def window_picker(image: MedicalImage, key: str) -> Window:
    """Window/level controls: the image's presets (from the DICOM header) and custom center/width sliders.

    Parameters
    ----------
    image : MedicalImage
    key : str
        Prefix of the widget keys; make it depend on the upload.

    Returns
    -------
    Window
        The chosen window, in the image's modality units (``image.units``).
    """
    presets = list(image.windows) or [image.default_window]
    labels = [_describe(w) for w in presets] + [CUSTOM_WINDOW]
    choice = st.selectbox("Window / level", range(len(labels)), format_func=lambda i: labels[i], key=f"{key}-preset",
                          help="Presets come from the file's header (Window Center/Width (0028,1050)/(0028,1051), "
                               "VOI LUT); the first one is the default.")
    if choice < len(presets):
        return presets[choice]
    finite = image.pixels[np.isfinite(image.pixels)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    if hi - lo < 1.0:
        hi = lo + 1.0
    base = presets[0]
    integral = float(hi - lo) >= 16
    step = 1.0 if integral else (hi - lo) / 200.0
    center0 = float(np.clip(base.center, lo, hi))
    width0 = float(np.clip(base.width, step, hi - lo))
    if integral:
        lo, hi, center0, width0 = float(np.floor(lo)), float(np.ceil(hi)), float(round(center0)), float(round(width0))
        width0 = max(width0, 1.0)
    c1, c2 = st.columns(2)
    center = c1.slider(f"Center ({image.units})", lo, hi, center0, step=step, key=f"{key}-center")
    width = c2.slider(f"Width ({image.units})", step, max(hi - lo, step), width0, step=step, key=f"{key}-width")
    return Window(center=float(center), width=max(float(width), 1.0) if integral else float(width), name="custom",
                  function="LINEAR")


def show_image(image: MedicalImage, window: Window, caption: str = "") -> np.ndarray:
    """Show the image as displayed through ``window`` and return that display image.

    Returns
    -------
    (H, W) or (H, W, 3) float32 ndarray in [0, 1]
        ``image.display(window)`` at full resolution (what heat maps are laid over).
    """
    display = image.display(window)
    st.image(to_uint8(display, DISPLAY_MAX_SIDE), caption=caption or None, width="stretch")
    return display


def show_metadata(image: MedicalImage) -> None:
    """The de-identified metadata table, the receipt of what was withheld, and decode notes."""
    rows, cols = image.shape[:2]
    facts = {"Format": image.format.upper(), "Size (rows x columns)": f"{rows} x {cols}", "Values": image.units}
    if "Photometric Interpretation" not in image.metadata:
        facts["Photometric Interpretation"] = image.photometric
    if image.n_frames > 1:
        facts["Frame"] = f"{image.frame_index + 1} of {image.n_frames}"
    facts.update({str(k): str(v) for k, v in image.metadata.items()})
    st.dataframe({"Attribute": list(facts), "Value": list(facts.values())}, hide_index=True, width="stretch")
    withheld = {k: int(v) for k, v in image.withheld.items() if int(v) > 0}
    if withheld:
        total = sum(withheld.values())
        parts = ", ".join(f"{cat}: {n}" for cat, n in sorted(withheld.items()))
        st.caption(f":material/shield_lock: **Withheld:** {total} attribute(s) were not shown or kept, by "
                   f"category: {parts}.")
    else:
        st.caption(":material/shield_lock: **Withheld:** no identifying attributes were found in this file.")
    for note in image.notes:
        icon = ":material/warning:" if "burned" in note.lower() else ":material/info:"
        st.info(note, icon=icon)


def show_gate(verdict: GateVerdict) -> None:
    """Failed applicability checks as warnings with their reasons, or a short confirmation."""
    failures = verdict.failures
    if failures:
        for c in failures:
            st.warning(f"**Check failed ({c.name}):** {c.reason}", icon=":material/report:")
    else:
        names = ", ".join(c.name for c in verdict.checks) or "none"
        st.success(f"Applicability checks passed ({names}).", icon=":material/task_alt:")


def show_prediction(prediction: Prediction, spec: ModelSpec | None) -> None:
    """The predicted label, the calibrated probabilities (plotly bars) and the device that ran the network."""
    p = float(prediction.probs[prediction.label_index])
    st.markdown(f"**Model output: {prediction.label}** ({p:.1%})")
    threshold = spec.threshold if spec is not None else None
    positive = (spec.labels[spec.positive_label]
                if spec is not None and threshold is not None and spec.positive_label is not None else None)
    st.plotly_chart(probability_bars(prediction.probabilities, highlight=prediction.label, threshold=threshold,
                                     threshold_label=positive), key="probabilities")
    device = "GPU (CUDA)" if prediction.device == "cuda" else "CPU"
    st.caption(f":material/memory: Ran on **{device}**. Probabilities are temperature-calibrated.")
    show_uncertainty(prediction)


def uncertainty_text(prediction: Prediction) -> tuple[str, bool] | None:
    """One sentence on the answer's stability under the model's test-time augmentation views, and whether it
    is unstable (see :meth:`medimg.uncertainty.Uncertainty.is_unstable`); None without TTA."""
    u = prediction.uncertainty
    if u is None:
        return None
    n = len(u.views)
    agree = round(u.agreement * n)
    base = (f"Stability: {agree} of {n} slightly changed copies of the image (small shifts and zooms"
            f"{', mirror images' if any('flip' in v or 'rot' in v for v in u.views) else ''}) give the same answer; "
            f"the probability of **{prediction.label}** varies by ±{u.std[prediction.label_index]:.1%} "
            f"(1 SD) between them.")
    if u.is_unstable():
        return ("**Unstable answer.** " + base + " Small changes to the image change the output: treat it as "
                "uncertain.", True)
    return base, False


def show_uncertainty(prediction: Prediction) -> None:
    """The stability sentence of :func:`uncertainty_text` (a warning when the answer is unstable)."""
    text = uncertainty_text(prediction)
    if text is None:
        return
    msg, unstable = text
    if unstable:
        st.warning(msg, icon=":material/help:")
    else:
        st.caption(":material/balance: " + msg)


def show_cam_note(method_label: str, target_label: str, gate_passed: bool) -> None:
    """How to read the heat map (relative scale, not a lesion map), and the gate warning beside it."""
    st.caption(f"{method_label} for **{target_label}**, over the original image as displayed. Colours are "
               "**relative**: each map is min–max scaled on its own, so red means 'most important in this image', "
               "not an absolute amount, and maps of different images are not comparable. A heat map shows what "
               "influenced the model, not where disease is.")
    if not gate_passed:
        st.warning("The applicability checks failed for this image (see above).", icon=":material/report:")


def _displayable(step_image: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(step_image, dtype=np.float32)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if name == "normalise":  # not in [0, 1]: min-max for display only
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return x


def _letterbox(u8: np.ndarray, fill: int = 251) -> np.ndarray:
    """Pad a uint8 image to a square with the page's background grey, so step thumbnails line up."""
    rows, cols = u8.shape[:2]
    side = max(rows, cols)
    out = np.full((side, side) + u8.shape[2:], fill, dtype=np.uint8)
    r0, c0 = (side - rows) // 2, (side - cols) // 2
    out[r0 : r0 + rows, c0 : c0 + cols] = u8
    return out


def step_pixels(step_image: np.ndarray, name: str, side: int = 384) -> np.ndarray:
    """A preprocessing step's image for display as its real pixels.

    Parameters
    ----------
    step_image : (H, W, C) float ndarray
        :attr:`medimg.preprocess.Step.image`.
    name : str
        The step's name (``"normalise"`` is min-max scaled for display).
    side : int
        Images up to this many pixels on a side (the network input) are enlarged by an integer factor with
        nearest-neighbour repetition, so each pixel stays a visible square and is never smoothed; larger ones
        (the original image) are downsampled to it.

    Returns
    -------
    (h, w) or (h, w, 3) uint8 ndarray
    """
    from medimg.viz_teaching import enlarge_nearest

    x = _displayable(step_image, name)
    return enlarge_nearest(x, side) if max(x.shape[:2]) <= side else to_uint8(x, side)


def show_steps(prediction: Prediction, per_row: int = 5) -> None:
    """"What the network saw": each preprocessing step's image (real pixels, size printed) with its description."""
    steps = prediction.preprocessed.steps
    for start in range(0, len(steps), per_row):
        cols = st.columns(per_row)
        for col, step in zip(cols, steps[start : start + per_row], strict=False):
            with col:
                st.image(_letterbox(step_pixels(step.image, step.name)), width="stretch")
                st.markdown(f"**{step.name}**")
                extra = " (shown min–max scaled)" if step.name == "normalise" else ""
                rows, cols_ = step.image.shape[:2]
                st.caption(f"{step.description}{extra} · {rows} x {cols_} px")


def format_seconds(s: float) -> str:
    """``0.0123`` -> ``"12 ms"``, ``1.5`` -> ``"1.50 s"``."""
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def show_timings(timings: Mapping[str, tuple[float, bool]]) -> None:
    """Table of wall times per step.

    Parameters
    ----------
    timings : mapping of step -> (seconds, cached)
        ``cached``: the result was reused from this session (the time is from when it was computed).
    """
    st.dataframe({"Step": list(timings),
                  "Time": [format_seconds(s) for s, _ in timings.values()],
                  "This run": ["reused" if c else "computed" for _, c in timings.values()]},
                 hide_index=True, width="stretch")
