"""Lookup tables and display windows: Modality LUT, VOI LUT / Window Center-Width, and the CT presets.

:func:`_modality` reads a frame's Modality LUT: Rescale Slope/Intercept (0028,1053)/(0028,1052) or the Modality
LUT Sequence (0028,3000) (PS3.3 C.11.1), or the Pixel Value Transformation Sequence (0028,9145) of Enhanced
objects (C.7.6.16.2.9). :func:`_windows_from` reads VOI LUT Sequence (0028,3010) items and Window Center/Width
(0028,1050)/(0028,1051) pairs with their explanations and VOI LUT Function (0028,1056) (PS3.3 C.11.2);
:func:`_lut` decodes one LUT item (LUT Descriptor (0028,3002), LUT Data (0028,3006)); :func:`_misses` spots a
header window that would show a blank frame. :data:`CT_PRESETS` are added for CT in HU. MONOCHROME1 and
Presentation LUT Shape (2050,0020) (PS3.3 C.7.6.3.1.2, C.11.6) become ``MedicalImage.invert`` in
:mod:`medimg.io.dicom.decode`.
"""

from __future__ import annotations

import math

import numpy as np
from pydicom.dataset import Dataset

from medimg.io.dicom.common import _corrupt, _fg_item, _floats, _get, _strings
from medimg.io.image import Window
from medimg.io.metadata import clean_text

#: CT display presets in HU, (name, Window Center, Window Width); added after the header's windows, or first
#: (soft tissue is then the default) when the header has no usable window. The head CT ones (brain, subdural,
#: stroke, bone (head)) are those of haemorrhage reading.
CT_PRESETS: tuple[tuple[str, float, float], ...] = (
    ("soft tissue", 40.0, 400.0),
    ("lung", -600.0, 1500.0),
    ("mediastinum", 50.0, 350.0),
    ("bone", 400.0, 1800.0),
    ("brain", 40.0, 80.0),
    ("subdural", 75.0, 215.0),
    ("stroke", 40.0, 40.0),
    ("bone (head)", 600.0, 2800.0),
)


def _lut(item: Dataset, signed: bool) -> tuple[int, int, np.ndarray]:
    """(first mapped, bits per entry, table float32) of a LUT item (LUT Descriptor (0028,3002), LUT Data
    (0028,3006)); PS3.3 C.11.1.1 / C.11.2.1.1."""
    desc = [int(v) for v in item["LUTDescriptor"].value]
    if len(desc) != 3:
        raise ValueError("LUT Descriptor must have 3 values")
    n_entries, first, bits = desc
    n_entries = n_entries or 65536
    if signed and first > 32767:  # descriptor read as US for a signed image (PS3.3 C.11.1.1)
        first -= 65536
    elem = item["LUTData"]
    raw = elem.value
    if isinstance(raw, (bytes, bytearray)):
        little = True
        try:
            little = bool(item.original_encoding[1]) if item.original_encoding[1] is not None else True
        except Exception:
            pass
        table = np.frombuffer(bytes(raw)[: 2 * n_entries], dtype="<u2" if little else ">u2")
    else:
        table = np.asarray(list(raw), dtype=np.float64)
    if table.size < n_entries or table.size == 0:
        raise ValueError("LUT Data shorter than its descriptor")
    table = np.asarray(table[:n_entries], dtype=np.float32)
    if not np.all(np.isfinite(table)):
        raise ValueError("non-finite LUT")
    if bits < 1 or bits > 16:
        bits = 16
    top = float(table.max()) if table.size else 0.0
    if top >= 2**bits:  # descriptor bits too small for the data: scale by what the data needs
        bits = int(math.ceil(math.log2(top + 1)))
    return first, bits, table


def _modality(header: Dataset, frame: int, enhanced: bool) -> tuple[str, float, float, tuple | None, str | None]:
    """Modality LUT of ``frame``: (kind, slope, intercept, lut, rescale type); kind "lut", "rescale" or "none".

    Enhanced objects: Pixel Value Transformation Sequence (0028,9145) in the functional groups (PS3.3
    C.7.6.16.2.9); others: Modality LUT Sequence (0028,3000) or Rescale Slope/Intercept (0028,1053)/(0028,1052)
    (PS3.3 C.11.1).
    """
    signed = _get(header, "PixelRepresentation", 0) == 1
    source: Dataset | None = None
    if enhanced:
        source = _fg_item(header, frame, "PixelValueTransformationSequence")
    if source is None:
        seq = _get(header, "ModalityLUTSequence")
        if seq:
            try:
                first, bits, table = _lut(seq[0], signed)
                return "lut", 1.0, 0.0, (first, bits, table), _get(seq[0], "ModalityLUTType")
            except Exception:
                pass
        source = header
    if "RescaleSlope" not in source and "RescaleIntercept" not in source:
        return "none", 1.0, 0.0, None, None
    slope = _floats(_get(source, "RescaleSlope", 1.0))[:1] or [1.0]
    intercept = _floats(_get(source, "RescaleIntercept", 0.0))[:1] or [0.0]
    s, b = slope[0], intercept[0]
    if not (math.isfinite(s) and math.isfinite(b)) or s == 0.0 or abs(s) > 1e12 or abs(b) > 1e12:
        raise _corrupt("The DICOM Rescale Slope/Intercept (0028,1053)/(0028,1052) are not valid numbers.")
    rtype = _get(source, "RescaleType")
    return "rescale", s, b, None, (clean_text(rtype) if rtype is not None else None)


def _windows_from(source: Dataset, signed_lut: bool, notes: list[str], prefix: str) -> list[Window]:
    """VOI LUT Sequence (0028,3010) items then Window Center/Width (0028,1050)/(0028,1051) of ``source``."""
    out: list[Window] = []
    seq = _get(source, "VOILUTSequence")
    for i, item in enumerate(seq or []):
        try:
            first, bits, table = _lut(item, signed_lut)
        except Exception:
            notes.append("A VOI LUT in the header is unreadable and was ignored.")
            continue
        name = clean_text(_get(item, "LUTExplanation", "") or "") or f"{prefix}VOI LUT {i + 1}"
        out.append(Window(center=first + len(table) / 2.0, width=float(max(len(table), 1)), name=name,
                          function="LINEAR", lut=(first, bits, table)))
    centers = _floats(_get(source, "WindowCenter"))
    widths = _floats(_get(source, "WindowWidth"))
    names = _strings(_get(source, "WindowCenterWidthExplanation"))
    function = str(_get(source, "VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    skipped = False
    for i in range(min(len(centers), len(widths))):
        c, w = centers[i], widths[i]
        if not (math.isfinite(c) and math.isfinite(w)) or w <= 0 or abs(c) > 1e12 or w > 1e12:
            skipped = True
            continue
        name = names[i] if i < len(names) and names[i] else f"{prefix}header {i + 1}"
        out.append(Window(center=c, width=w, name=name, function=function))
    if skipped or len(centers) != len(widths):
        notes.append("A display window in the header is invalid and was ignored.")
    return out


def _misses(window: Window, full: Window) -> bool:
    """True when ``window`` maps every value of the image (range of ``full``) to the same display value."""
    lo, hi = window.center - window.width / 2.0, window.center + window.width / 2.0
    data_lo, data_hi = full.center - full.width / 2.0, full.center + full.width / 2.0
    return hi <= data_lo or lo >= data_hi
