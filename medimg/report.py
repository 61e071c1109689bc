"""The report of one analysis: a one-page PDF and a JSON, built in memory (never written on the server).

:func:`build_report` gathers what a reader needs to judge the output -- the de-identified thumbnail, the display
window, the prediction with its calibrated probabilities, the applicability verdicts, the stability under
test-time augmentation, the heat map with its method and scale, the model's name, spec and sha256, the medimg
version, the timings and the not-for-diagnostic-use notice -- and nothing that identifies the patient: no header
text beyond an allowlist (modality, body part, view position, photometric interpretation, size), no file name,
no dates of the study. The thumbnail is left out when the pixels may carry identifying text
(:attr:`medimg.MedicalImage.burned_in` "yes" or "likely"). :func:`to_pdf` and :func:`to_json` return bytes for a
download button.

No Streamlit and no torch here.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["NOTICE", "Report", "build_report", "to_json", "to_pdf", "thumbnail_png", "IMAGE_FIELDS"]

#: The notice on every report.
NOTICE = ("Not for diagnostic use. For research, education and model review only. The output has not been "
          "validated for clinical decisions; a qualified clinician must read every image.")
#: Image attributes a report may carry (labels of :attr:`medimg.MedicalImage.metadata`).
IMAGE_FIELDS: tuple[str, ...] = ("Modality", "Body Part Examined", "View Position", "Photometric Interpretation")
#: Longest side of the report's images, in pixels.
THUMB_SIDE = 256


@dataclass(frozen=True)
class Report:
    """Everything a report shows; JSON-ready except the two PNGs.

    Attributes
    ----------
    created_utc : str
        ISO 8601 time the report was made (not a time of the study).
    medimg_version : str
    model : dict
        ``name``, ``title``, ``architecture``, ``labels``, ``intended_use``, ``weights_sha256`` (the spec's),
        ``spec_sha256`` (of the spec file's bytes), ``temperature``, ``threshold``.
    image : dict
        ``format``, ``rows``, ``columns``, ``frame``, ``frames``, ``burned_in`` and the :data:`IMAGE_FIELDS`
        present.
    display : dict
        ``window`` (name), ``center``, ``width``, ``units``, ``function``, ``inverted``.
    prediction : dict
        ``label``, ``probabilities`` {label: p} (temperature-calibrated), ``device``.
    applicability : list of dict
        ``name``, ``passed``, ``reason`` of every check (gate and header checks); ``passed_all``.
    stability : dict or None
        ``views``, ``agreement`` (0..1), ``sd_of_label`` (1 SD of the label's probability), ``unstable``.
    heat_map : dict or None
        ``method``, ``target``, ``scale`` and ``colormap``.
    timings : dict of str to float
        Seconds per step.
    thumbnail_png, heat_png : bytes or None
        PNGs at most :data:`THUMB_SIDE` px; ``thumbnail_png`` is None when the pixels may show identifying text
        (then ``thumbnail_note`` says so).
    """

    created_utc: str
    medimg_version: str
    model: dict[str, Any]
    image: dict[str, Any]
    display: dict[str, Any]
    prediction: dict[str, Any]
    applicability: dict[str, Any]
    stability: dict[str, Any] | None
    heat_map: dict[str, Any] | None
    timings: dict[str, float]
    thumbnail_png: bytes | None = field(default=None, repr=False)
    heat_png: bytes | None = field(default=None, repr=False)
    thumbnail_note: str = ""
    notice: str = NOTICE


def thumbnail_png(rgb: np.ndarray, max_side: int = THUMB_SIDE) -> bytes:
    """A PNG of ``rgb`` ((H, W, 3) or (H, W) uint8, or float in [0, 1]) whose longest side is at most ``max_side``.

    Only pixels are encoded: no text chunks, no metadata.
    """
    from PIL import Image

    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    im = Image.fromarray(a)
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def _grade_fields(prediction: Any) -> dict[str, Any]:
    """``bethesda_grade`` and ``grade_probabilities`` of a six-class Bethesda prediction
    (:func:`medimg.screening.grade_of`); empty for any other model."""
    from medimg.screening import grade_of

    grade = grade_of(prediction.probs, prediction.labels)
    return {} if grade is None else {"bethesda_grade": grade[0], "grade_probabilities": grade[1]}


def build_report(*, image: Any, window: Any, inverted: bool, prediction: Any, spec: Any,
                 spec_path: str | Path | None, checks: Sequence[Any], display_rgb: np.ndarray | None,
                 heat_rgb: np.ndarray | None = None, heat_method: str = "", heat_target: str = "",
                 heat_relative: bool = True, timings: Mapping[str, float] | None = None) -> Report:
    """Gather one analysis into a :class:`Report`.

    Parameters
    ----------
    image : medimg.MedicalImage
        The analysed frame (only non-identifying fields are read).
    window : medimg.Window
        The display window.
    inverted : bool
        The display was inverted by the user.
    prediction : medimg.Prediction
    spec : medimg.ModelSpec
    spec_path : path, optional
        The spec file, hashed (sha256) to identify the exact spec.
    checks : sequence of GateCheck-like (name, passed, reason)
        Every applicability verdict shown (the gate's and the header checks).
    display_rgb : (H, W, 3) uint8 ndarray, optional
        The image as displayed (without overlays); left out when ``image.burned_in`` is "yes" or "likely".
    heat_rgb : (h, w, 3) float [0, 1] or uint8 ndarray, optional
        The heat map blended over the image; left out with the thumbnail for the same reason.
    heat_method, heat_target : str
        E.g. ``"Grad-CAM"``, ``"pneumonia"``.
    heat_relative : bool
        The map is min-max scaled per image.
    timings : mapping of step to seconds

    Returns
    -------
    Report
    """
    import medimg

    burned = getattr(image, "burned_in", "unknown")
    withhold = burned in ("yes", "likely")
    note = ("Thumbnail and heat map left out: the pixels may show identifying text (burned-in annotation)."
            if withhold else "")
    spec_sha = ""
    if spec_path is not None:
        try:
            spec_sha = hashlib.sha256(Path(spec_path).read_bytes()).hexdigest()
        except OSError:
            spec_sha = ""
    md = getattr(image, "metadata", {}) or {}
    rows, cols = image.shape[:2]
    img = {"format": image.format, "rows": int(rows), "columns": int(cols), "frame": int(image.frame_index) + 1,
           "frames": int(image.n_frames), "burned_in": burned, "units": image.units}
    img.update({k: str(md[k]) for k in IMAGE_FIELDS if k in md})
    u = getattr(prediction, "uncertainty", None)
    stability = None
    if u is not None:
        stability = {"views": list(u.views), "agreement": float(u.agreement),
                     "sd_of_label": float(u.std[prediction.label_index]), "unstable": bool(u.is_unstable())}
    checks_out = [{"name": str(c.name), "passed": bool(c.passed), "reason": str(c.reason)} for c in checks]
    return Report(
        created_utc=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        medimg_version=str(getattr(medimg, "__version__", "")),
        model={"name": spec.name, "title": spec.title, "architecture": spec.architecture,
               "labels": list(spec.labels), "intended_use": spec.intended_use,
               "weights_sha256": str(getattr(spec, "sha256", "") or ""), "spec_sha256": spec_sha,
               "temperature": _finite(spec.temperature), "threshold": spec.threshold},
        image=img,
        display={"window": str(window.name), "center": float(window.center), "width": float(window.width),
                 "units": image.units, "function": "VOI LUT" if window.lut is not None else window.function,
                 "inverted": bool(inverted)},
        prediction={"label": prediction.label,
                    "probabilities": {k: float(v) for k, v in prediction.probabilities.items()},
                    "calibration": "temperature scaling (Guo et al. 2017)", "device": prediction.device,
                    **_grade_fields(prediction)},
        applicability={"passed_all": all(c["passed"] for c in checks_out), "checks": checks_out},
        stability=stability,
        heat_map=None if not heat_method else {
            "method": heat_method, "target": heat_target, "colormap": "jet",
            "scale": "relative: min-max per image (red = most important in this image, not an amount)"
            if heat_relative else "global scale"},
        timings={str(k): round(float(v), 4) for k, v in (timings or {}).items()},
        thumbnail_png=None if withhold or display_rgb is None else thumbnail_png(display_rgb),
        heat_png=None if withhold or heat_rgb is None else thumbnail_png(heat_rgb),
        thumbnail_note=note,
    )


def to_json(report: Report) -> bytes:
    """The report as UTF-8 JSON; the PNGs as ``data:image/png;base64`` strings."""
    d = asdict(report)
    for k in ("thumbnail_png", "heat_png"):
        v = d.pop(k)
        d[k.replace("_png", "")] = None if v is None else "data:image/png;base64," + base64.b64encode(v).decode()
    return json.dumps(d, indent=2, ensure_ascii=False).encode("utf-8")


_LATIN1 = {"–": "-", "—": "-", "±": "+/-", "…": "...", "’": "'", "‘": "'", "“": '"', "”": '"', "≥": ">=",
           "≤": "<=", "×": "x", "µ": "u"}


def _t(text: object) -> str:
    s = str(text)
    for a, b in _LATIN1.items():
        s = s.replace(a, b)
    return s.encode("latin-1", "replace").decode("latin-1")


def to_pdf(report: Report) -> bytes:
    """The report as a one-page A4 PDF (fpdf2, core fonts), built in memory.

    Returns
    -------
    bytes
        ``%PDF-...``; no file is written.
    """
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=False)
    pdf.set_margins(12, 10, 12)
    pdf.set_title("medimg analysis report")
    pdf.set_creator(f"medimg {report.medimg_version}")
    pdf.add_page()
    w = pdf.w - 24

    def heading(text: str) -> None:
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(w, 5.5, _t(text), new_x="LMARGIN", new_y="NEXT")

    def line(text: str, size: float = 8.0, style: str = "") -> None:
        pdf.set_font("Helvetica", style, size)
        pdf.multi_cell(w, 3.8, _t(text), new_x="LMARGIN", new_y="NEXT")

    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(w, 7, "medimg analysis report", new_x="LMARGIN", new_y="NEXT")
    pdf.set_fill_color(255, 236, 204)
    pdf.set_font("Helvetica", "B", 8.5)
    pdf.multi_cell(w, 4.2, _t(report.notice), border=1, fill=True, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)
    m = report.model
    line(f"Model: {m['title']} ({m['name']}, {m['architecture']}). Intended use: {m['intended_use']}")
    line(f"Weights sha256 {m['weights_sha256'] or 'n/a'}; spec sha256 {m['spec_sha256'] or 'n/a'}. "
         f"medimg {report.medimg_version}. Report made {report.created_utc}.", 7)

    # images side by side
    top = pdf.get_y() + 1
    side = 62.0
    x = 12.0
    for png, caption in ((report.thumbnail_png, "Image as displayed"), (report.heat_png, "Heat map")):
        if png is None:
            continue
        pdf.image(io.BytesIO(png), x=x, y=top, w=side, h=side, keep_aspect_ratio=True)
        pdf.set_xy(x, top + side + 0.5)
        pdf.set_font("Helvetica", "", 7)
        pdf.cell(side, 3.5, _t(caption), align="C")
        x += side + 6
    if report.thumbnail_png is None and report.heat_png is None:
        pdf.set_xy(12, top)
        line(report.thumbnail_note or "No image in this report.", 8, "I")
        pdf.set_y(top + 8)
    else:
        pdf.set_y(top + side + 5)

    d = report.display
    img = report.image
    heading("Image and display")
    desc = ", ".join(f"{k} {img[k]}" for k in IMAGE_FIELDS if k in img)
    line(f"{img['format'].upper()} {img['rows']} x {img['columns']} (rows x columns), frame {img['frame']} of "
         f"{img['frames']}{'; ' + desc if desc else ''}. Burned-in text: {img['burned_in']}.")
    line(f"Display window: {d['window']}, center {d['center']:g}, width {d['width']:g} {d['units']} "
         f"({d['function']}){', inverted for display' if d['inverted'] else ''}.")
    if report.thumbnail_note:
        line(report.thumbnail_note, 8, "I")

    p = report.prediction
    heading(f"Model output: {p['label']} ({p['probabilities'][p['label']]:.1%})")
    probs = "; ".join(f"{k} {v:.1%}" for k, v in p["probabilities"].items())
    line(f"Calibrated probabilities ({p['calibration']}): {probs}. Ran on {p['device'].upper()}.")
    if "bethesda_grade" in p:
        grades = "; ".join(f"{k} {v:.1%}" for k, v in p["grade_probabilities"].items())
        line(f"Bethesda grade: {p['bethesda_grade']} ({grades}; low-grade = ASC-US + LSIL, high-grade = ASC-H + HSIL "
             "+ SCC).")
    s = report.stability
    if s is not None:
        line(f"Stability: {round(s['agreement'] * len(s['views']))} of {len(s['views'])} test-time augmentation "
             f"views agree; the label's probability varies by +/-{s['sd_of_label']:.1%} (1 SD)"
             + (". UNSTABLE: treat the output as uncertain." if s["unstable"] else "."))

    a = report.applicability
    heading("Applicability checks: " + ("all passed" if a["passed_all"] else "SOME FAILED (the user confirmed)"))
    for c in a["checks"][:10]:
        line(f"[{'pass' if c['passed'] else 'FAIL'}] {c['name']}: {c['reason']}", 7.5)

    hm = report.heat_map
    if hm is not None:
        heading("Heat map")
        line(f"{hm['method']} for class '{hm['target']}', colormap {hm['colormap']}; scale {hm['scale']}. A heat "
             "map shows what influenced the model, not where disease is.")
    if report.timings:
        heading("Timings")
        line("; ".join(f"{k} {v * 1000:.0f} ms" if v < 1 else f"{k} {v:.2f} s" for k, v in report.timings.items()),
             7.5)
    pdf.set_y(-14)
    pdf.set_font("Helvetica", "I", 7)
    pdf.multi_cell(w, 3.4, _t("No patient identifiers or file names are included. " + report.notice),
                   new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
