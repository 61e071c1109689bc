"""Widgets and renderers of the Analyze page: frame and window pickers, metadata, gate, steps, timings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from medimg.io import MedicalImage, Window
from medimg.viz import probability_bars, to_uint8

if TYPE_CHECKING:  # pragma: no cover
    from medimg.gate import GateVerdict
    from medimg.predict import Prediction
    from medimg.spec import ModelSpec

__all__ = ["CUSTOM_WINDOW", "frame_picker", "window_picker", "show_image", "show_metadata", "show_gate",
           "show_prediction", "show_cam_note", "show_steps", "outline_box", "step_pixels", "show_timings", "format_seconds",
           "show_uncertainty", "uncertainty_text", "grade_text", "header_checks_for", "show_model_suggestion", "confirm_warnings",
           "READ_FIRST_KEY", "read_first", "show_agreement", "show_reads_table", "report_downloads"]

#: ``st.session_state`` key of the read-first mode toggle (a preference of the user, not about an image).
READ_FIRST_KEY = "medimg.read-first"

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
    pixels = {"no": "The header states the pixels carry no burned-in annotation.",
              "yes": "**The pixels are not de-identified:** the header says they show identifying text.",
              "likely": "**The pixels are not de-identified:** images of this kind often show identifying text.",
              }.get(image.burned_in, "The pixels themselves were not checked for burned-in text.")
    if withheld:
        total = sum(withheld.values())
        parts = ", ".join(f"{cat}: {n}" for cat, n in sorted(withheld.items()))
        st.caption(f":material/shield_lock: **Withheld:** {total} header attribute(s) were not shown or kept, by "
                   f"category: {parts}. {pixels}")
    else:
        st.caption(":material/shield_lock: **Withheld:** no identifying header attributes were found in this "
                   f"file. {pixels}")
    for note in image.notes:
        icon = ":material/warning:" if "burned" in note.lower() else ":material/info:"
        st.info(note, icon=icon)


def show_gate(verdict: GateVerdict, extra: tuple = ()) -> None:
    """Failed applicability checks as warnings with their reasons, or a short confirmation.

    Parameters
    ----------
    verdict : GateVerdict
    extra : tuple of GateCheck-like
        Further checks shown with the gate's (the header checks of :func:`header_checks_for`).
    """
    checks = tuple(verdict.checks) + tuple(extra)
    failures = [c for c in checks if not c.passed]
    if failures:
        for c in failures:
            st.warning(f"**Check failed ({c.name}):** {c.reason}", icon=":material/report:")
    else:
        names = ", ".join(c.name for c in checks) or "none"
        st.success(f"Applicability checks passed ({names}).", icon=":material/task_alt:")


def show_prediction(prediction: Prediction, spec: ModelSpec | None) -> Any:
    """The predicted label, the calibrated probabilities (plotly bars) and the device that ran the network.

    Returns
    -------
    streamlit placeholder
        Where the stability sentence goes: shown here when ``prediction.uncertainty`` is set, else filled later
        with :func:`show_uncertainty` (``slot=``) once it is computed.
    """
    p = float(prediction.probs[prediction.label_index])
    st.markdown(f"**Model output: {prediction.label}** ({p:.1%})")
    grade = grade_text(prediction)
    if grade:
        st.markdown(grade)
    threshold = spec.threshold if spec is not None else None
    positive = (spec.labels[spec.positive_label]
                if spec is not None and threshold is not None and spec.positive_label is not None else None)
    st.plotly_chart(probability_bars(prediction.probabilities, highlight=prediction.label, threshold=threshold,
                                     threshold_label=positive), key="probabilities")
    device = "GPU (CUDA)" if prediction.device == "cuda" else "CPU"
    st.caption(f":material/memory: Ran on **{device}**. Probabilities are temperature-calibrated.")
    slot = st.empty()
    if prediction.uncertainty is not None:
        show_uncertainty(prediction, slot)
    return slot


def grade_text(prediction: Prediction) -> str | None:
    """For a six-class Bethesda model, the called grade (NILM / low-grade / high-grade) and each grade's
    probability (the sum of its classes' calibrated probabilities, :func:`medimg.screening.grade_of`); None for
    any other model."""
    from medimg.screening import grade_of

    grade = grade_of(prediction.probs, prediction.labels)
    if grade is None:
        return None
    parts = " · ".join(f"{n} {v:.1%}" for n, v in grade[1].items())
    return f"**Bethesda grade: {grade[0]}** ({parts}; low-grade = ASC-US + LSIL, high-grade = ASC-H + HSIL + SCC)"


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


def show_uncertainty(prediction: Prediction, slot: Any = None) -> None:
    """The stability sentence of :func:`uncertainty_text` (a warning when the answer is unstable), in ``slot``
    (a placeholder of :func:`show_prediction`) or here."""
    text = uncertainty_text(prediction)
    if text is None:
        return
    msg, unstable = text
    if slot is not None:
        with slot.container():
            show_uncertainty(prediction)
        return
    if unstable:
        st.warning(msg, icon=":material/help:")
    else:
        st.caption(":material/balance: " + msg)


def show_cam_note(method_label: str, target_label: str, gate_passed: bool, empty: bool = False,
                  class_agnostic: bool = False, grid: tuple[int, int] | None = None) -> None:
    """How to read the heat map (relative scale, not a lesion map, its resolution), and the gate warning beside it.

    An *empty* map (no positive evidence for the class, :attr:`medimg.explain.CamResult.empty`) is reported as
    "no region raises <class>" instead of being drawn; a class-agnostic method (Eigen-CAM) is not said to explain
    a class.
    """
    if empty:
        st.warning(f"{method_label}: **no region raises {target_label}**. The map has no positive evidence for this "
                   "class, so no heat map is drawn (a uniform colour would look like a real map).",
                   icon=":material/block:")
        return
    what = f"{method_label} (class-agnostic: the same map for every class)" if class_agnostic else \
        f"{method_label} for **{target_label}**"
    cells = f" The map is upsampled from a {grid[0]} x {grid[1]} grid of cells." if grid else ""
    st.caption(f"{what}, over the original image as displayed. Colours are "
               "**relative**: each map is min–max scaled on its own, so red means 'most important in this image', "
               "not an absolute amount, and maps of different images are not comparable. A heat map shows what "
               f"influenced the model, not where disease is.{cells}")
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


#: ``st.session_state`` entry of the step thumbnails' PNG encodings (digest of the step image -> PNG bytes).
_STEP_PNG_KEY = "medimg.widgets.step-png"


def _step_png(step_image: np.ndarray, name: str, keep: int = 12, box: tuple[int, int, int, int] | None = None,
              source: tuple[int, int] | None = None) -> bytes:
    """The letterboxed real-pixel thumbnail of a step as PNG bytes, encoded once per session and image (a rerun
    that leaves the prediction unchanged, e.g. a slider, sends the same bytes again without encoding them);
    ``box`` (in ``source`` pixels) is outlined (:func:`outline_box`)."""
    import hashlib
    import io

    from PIL import Image

    arr = np.ascontiguousarray(step_image)
    key = (name, arr.shape, str(arr.dtype), hashlib.blake2b(arr.data, digest_size=16).hexdigest(), box, source)
    store = st.session_state.setdefault(_STEP_PNG_KEY, {})
    if key in store:
        store[key] = store.pop(key)
        return store[key]
    buf = io.BytesIO()
    picture = step_pixels(step_image, name)
    if box is not None and source is not None:
        picture = outline_box(picture, box, source)
    Image.fromarray(_letterbox(picture)).save(buf, format="PNG", compress_level=1)
    store[key] = buf.getvalue()
    while len(store) > keep:
        store.pop(next(iter(store)))
    return store[key]


def _letterbox(u8: np.ndarray, fill: int = 251) -> np.ndarray:
    """Pad a uint8 image to a square with the page's background gray, so step thumbnails line up."""
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


def outline_box(picture: np.ndarray, box: tuple[int, int, int, int], source: tuple[int, int],
                colour: tuple[int, int, int] = (255, 210, 0)) -> np.ndarray:
    """``picture`` with the outline of ``box`` drawn on it (the region of interest the network sees).

    Parameters
    ----------
    picture : (h, w) or (h, w, 3) uint8 ndarray
        A display of the whole source image at any size.
    box : (r0, r1, c0, c1) tuple of int
        Half-open rows and columns in source pixels (:attr:`medimg.preprocess.Geometry.box`).
    source : (int, int)
        (rows, columns) of the source image.

    Returns
    -------
    (h, w, 3) uint8 ndarray
        A copy, 2 px outline (1 px on pictures under 200 px).
    """
    from PIL import Image, ImageDraw

    u8 = np.asarray(picture, dtype=np.uint8)
    img = Image.fromarray(u8.reshape(u8.shape[:2]) if u8.ndim == 2 or u8.shape[2] == 1 else u8).convert("RGB")
    w, h = img.size
    sr, sc = h / source[0], w / source[1]
    ImageDraw.Draw(img).rectangle((int(box[2] * sc), int(box[0] * sr), min(w - 1, int((box[3] - 1) * sc)),
                                   min(h - 1, int((box[1] - 1) * sr))),
                                  outline=colour, width=2 if min(h, w) >= 200 else 1)
    return np.asarray(img)


def show_steps(prediction: Prediction, per_row: int = 5) -> None:
    """"What the network saw": each preprocessing step's image (real pixels, size printed) with its description;
    a region of interest (``spec.preprocess.roi``) is outlined on the full-size ``channels`` step."""
    steps = prediction.preprocessed.steps
    geometry = prediction.preprocessed.geometry
    for start in range(0, len(steps), per_row):
        cols = st.columns(per_row)
        for col, step in zip(cols, steps[start : start + per_row], strict=False):
            with col:
                box = geometry.box if step.name == "channels" and geometry is not None else None
                st.image(_step_png(step.image, step.name, box=box, source=geometry.source if box else None),
                         width="stretch")
                st.markdown(f"**{step.name}**")
                extra = " (shown min–max scaled)" if step.name == "normalise" else ""
                rows, cols_ = step.size  # the step's real output size (a full-size step keeps only a preview)
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


# ------------------------------------------------------------------------------------ header checks, confirmation


def header_checks_for(image: MedicalImage, option: Any, prediction: Prediction) -> tuple:
    """:func:`medimg.header_checks.check_header` for the selected model, minus any check the gate already made."""
    from medimg.header_checks import check_header

    if option is None or option.spec is None:
        return ()
    done = {c.name for c in prediction.gate.checks}
    return tuple(c for c in check_header(image, option.spec) if c.name not in done)


def show_model_suggestion(image: MedicalImage, option: Any) -> None:
    """Offer the model that fits the image better than the selected one, with a button that selects it.

    A DICOM whose header (Modality, Body Part Examined, age) fits another model better
    (:func:`medimg.header_checks.suggest_model`) gets that model; a colour image under a grayscale model, or a
    grayscale image under a colour model, gets the models of its kind when there are at most three (a raster
    image says nothing else about what it shows).
    """
    from medimg.header_checks import suggest_model
    from medimg.ui.resources import available_models
    from medimg.ui.sidebar import choose_model

    if option is None or option.spec is None:
        return
    others = [o for o in available_models() if o.spec is not None and o.path.name != option.path.name]
    if image.format == "dicom":
        better = suggest_model(image, option.spec, [o.spec for o in others])
        offered = [o for o in others if better is not None and o.spec.name == better.name]
        md = image.metadata
        said = ", ".join(f"{k} {md[k]}" for k in ("Modality", "Body Part Examined") if k in md) or "its header"
        text = f"This image's header ({said}) fits **{better.title}** better than the selected model." if offered \
            else ""
    else:
        colour = bool(image.is_color)
        wanted = 3 if colour else 1
        offered = [o for o in others if o.spec.preprocess.in_chans == wanted]
        if option.spec.preprocess.in_chans == wanted or not 0 < len(offered) <= 3:
            return
        kind = "in colour" if colour else "grayscale"
        text = (f"This image is {kind}; the selected model was trained on "
                f"{'grayscale' if colour else 'colour'} images. Models for {kind} images: "
                + ", ".join(f"**{o.title}**" for o in offered) + ".")
    if not offered:
        return
    which = "it" if len(offered) == 1 else "one"
    st.info(f"{text} Choose {which} here or in the sidebar's model picker.", icon=":material/swap_horiz:")
    cols = st.columns(len(offered))
    for col, o in zip(cols, offered, strict=True):
        col.button(f"Use {o.title}", key=f"use-model-{o.path.stem}", on_click=choose_model, args=(o.path.name,),
                   icon=":material/swap_horiz:")


def confirm_warnings(option: Any, upload: Any, frame: int | None, verdict: GateVerdict, extra: tuple = ()) -> bool:
    """The "Analyse anyway" confirmation, keyed by model, image and frame.

    A confirmation never carries over to another model or another file. A further frame of the same file with the
    same model and the same failed checks is confirmed already (a caption says for which frame).

    Returns
    -------
    bool
        True when every check passed or the user confirmed the warnings.
    """
    from medimg.ui import analysis

    failed = frozenset(c.name for c in (*verdict.checks, *extra) if not c.passed)
    if not failed:
        return True
    ok, carried = analysis.confirmation(option, upload, frame, failed)
    checked = st.checkbox("Analyse anyway: I have read the warnings above", value=ok,
                          key=analysis.state_key("anyway", option, upload, frame),
                          help="The model may not apply to this image; the warnings stay beside the result. The "
                               "confirmation is for this model and this file only.")
    analysis.record_confirmation(option, upload, frame, failed, checked)
    if checked and carried is not None:
        st.caption(f":material/done_all: Confirmed for frame {carried + 1} of this file with the same warnings "
                   "and model.")
    if not checked:
        st.info("The result is hidden until you confirm you have read the warnings.", icon=":material/visibility_off:")
    return bool(checked)


# ------------------------------------------------------------------------------------ read first


def read_first(option: Any, upload: Any, frame: int | None, prediction: Prediction) -> bool:
    """Read-first mode (against automation bias): the clinician records a class and a confidence before the
    model's output is revealed.

    Returns
    -------
    bool
        True when the output may be shown (mode off, or this model/image/frame already read).
    """
    from medimg.ui import analysis

    on = st.toggle("Read first, then reveal", key=READ_FIRST_KEY,
                   help="Record your own read before seeing the model's output; the page then shows whether you "
                        "agree. Reads stay in this browser session only.")
    if not on or analysis.read_for(option, upload, frame) is not None:
        return True
    labels = list(prediction.labels)
    with st.form(key=analysis.state_key("read-form", option, upload, frame)):
        st.markdown("**Your read** (the model's output is hidden until you record it)")
        label = st.radio("Class", labels, index=None, horizontal=True,
                         key=analysis.state_key("read-class", option, upload, frame))
        confidence = st.slider("Your confidence (%)", 50, 100, 70, 5,
                               key=analysis.state_key("read-confidence", option, upload, frame))
        submitted = st.form_submit_button("Record my read and reveal", icon=":material/visibility:")
    if submitted and label is not None:
        analysis.record_read(option, upload, frame, label, int(confidence), prediction)
        st.rerun()
    if submitted:
        st.warning("Choose a class first.", icon=":material/touch_app:")
    st.info("The model's output and heat map are hidden until you record your read.",
            icon=":material/visibility_off:")
    return False


def show_agreement(read: Any) -> None:
    """After the reveal: whether the clinician's read and the model agree."""
    if read is None:
        return
    if read.agrees:
        st.success(f"You read **{read.label}** ({read.confidence} % confident); the model agrees "
                   f"({read.model_label}, {read.model_probability:.1%}).", icon=":material/handshake:")
    else:
        st.warning(f"You read **{read.label}** ({read.confidence} % confident); the model says "
                   f"**{read.model_label}** ({read.model_probability:.1%}). Disagreement is a reason to look again, "
                   "not to defer to the model.", icon=":material/call_split:")


def show_reads_table() -> None:
    """The session's reads vs the model, for the clinician's own review (nothing leaves the session)."""
    from medimg.ui import analysis

    table = analysis.reads_table()
    if not table["Image"]:
        return
    n = len(table["Image"])
    agree = table["Agree"].count("yes")
    with st.expander(f"Your reads this session: {agree} of {n} agree with the model", expanded=False):
        st.dataframe(table, hide_index=True, width="stretch")
        st.caption(":material/lock: Kept in this browser session only; never stored or sent anywhere.")


# ------------------------------------------------------------------------------------ report


def report_downloads(upload: Any, option: Any, image: MedicalImage, settings: Any, prediction: Prediction,
                     header_checks: tuple, heat: tuple | None, timings: Mapping[str, tuple[float, bool]]) -> None:
    """Download buttons for the one-page PDF and the JSON report (built in memory, see :mod:`medimg.report`).

    Parameters
    ----------
    heat : (overlay, relative, (method, target)) or None
        The blended heat map, whether it is min-max scaled per image, and its method label and class.
    """
    from dataclasses import replace

    def build() -> Any:  # run only when a button is clicked (Streamlit's deferred download data)
        from medimg import report
        from medimg.ui.viewer import render

        plain = render(image, replace(settings, overlays=False))  # overlays may hold text: never in a report
        method, target = ("", "") if heat is None else heat[2]
        return report, report.build_report(
            image=image, window=settings.window, inverted=settings.invert, prediction=prediction,
            spec=option.spec, spec_path=option.path, checks=(*prediction.gate.checks, *header_checks),
            display_rgb=plain, heat_rgb=None if heat is None else heat[0], heat_method=method, heat_target=target,
            heat_relative=True if heat is None else heat[1], timings={k: v for k, (v, _) in timings.items()})

    def pdf() -> bytes:
        report, rep = build()
        return report.to_pdf(rep)

    def json_bytes() -> str:
        report, rep = build()
        return report.to_json(rep)

    st.subheader("Report")
    c1, c2 = st.columns(2)
    c1.download_button("Download PDF report", pdf, file_name="medimg-report.pdf",
                       mime="application/pdf", icon=":material/picture_as_pdf:", key="medimg.report-pdf")
    c2.download_button("Download JSON report", json_bytes, file_name="medimg-report.json",
                       mime="application/json", icon=":material/data_object:", key="medimg.report-json")
    st.caption("One page: thumbnail, display window, calibrated probabilities, applicability checks, stability, "
               "heat map with its method and scale, model and version, timings. No patient identifiers or file "
               "name; the thumbnail is left out when the pixels may show identifying text.")
