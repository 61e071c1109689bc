"""What a header says about reading the pixels: burned-in text, overlay planes, age band, negative rendition.

- :func:`burned_in_state`: Burned In Annotation (0028,0301), and the image kinds that usually carry identifying
  text in the pixels when the header does not say "NO" (ultrasound, secondary capture, endoscopy, photographs,
  scanned documents; PS3.15 Annex E E.1.1: the Basic Profile assumes such text may be present).
- :func:`read_overlays`: overlay planes in repeating groups 60xx (PS3.3 C.9.2; Overlay Rows/Columns
  (60xx,0010)/(60xx,0011), Overlay Origin (60xx,0050), Overlay Bits Allocated/Position (60xx,0100)/(60xx,0102),
  Overlay Data (60xx,3000), multi-frame overlays (60xx,0015)/(60xx,0051)). Descriptions and labels are never read.
- :func:`age_years`: Patient's Age (0010,1010) (Age String, PS3.5 6.2 "AS") in whole years, capped at 90.
- :func:`is_negative`: a projection radiograph whose Pixel Intensity Relationship Sign (0028,1041) contradicts
  its Photometric Interpretation (PS3.3 C.8.11.3.1.2 / C.7.6.3.1.2).

Nothing here logs, prints or puts a value in a message.
"""

from __future__ import annotations

import re

import numpy as np
from pydicom.dataset import Dataset

from medimg.io.dicom.common import _get
from medimg.io.image import Overlay

__all__ = ["BURNED_IN_RISK_MODALITIES", "BURNED_IN_RISK_SOP_PREFIXES", "burned_in_state", "burned_in_note",
           "read_overlays", "age_years", "is_negative", "MAX_OVERLAYS"]

#: Modalities (0008,0060) whose images usually show identifying text in the pixels unless the header says NO:
#: ultrasound, external-camera photography, other, endoscopy, general microscopy, slide microscopy, document,
#: ophthalmic photography, intravascular ultrasound, X-ray angiography (screen captures with annotations).
BURNED_IN_RISK_MODALITIES = frozenset({"US", "XC", "OT", "ES", "GM", "SM", "DOC", "OP", "IVUS", "SC"})
#: SOP Class UID (0008,0016) prefixes with the same risk: Secondary Capture (1.2.840.10008.5.1.4.1.1.7[.x]),
#: Ultrasound Image / Multi-frame (…1.1.6.x, …1.1.3.1), VL photographic and endoscopic (…1.1.77.1.x).
BURNED_IN_RISK_SOP_PREFIXES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.7",
    "1.2.840.10008.5.1.4.1.1.6.",
    "1.2.840.10008.5.1.4.1.1.3.1",
    "1.2.840.10008.5.1.4.1.1.77.1",
)
#: Most overlay planes read (the standard allows 16: groups 6000..601E).
MAX_OVERLAYS = 16

_KIND_TEXT = {
    "US": "ultrasound", "XC": "photograph", "OT": "'other' modality", "ES": "endoscopy", "GM": "microscopy",
    "SM": "slide microscopy", "DOC": "scanned document", "OP": "ophthalmic photograph",
    "IVUS": "intravascular ultrasound", "SC": "secondary capture",
}


def _risk_kind(header: Dataset) -> str | None:
    modality = str(_get(header, "Modality", "") or "").strip().upper()
    sop = str(_get(header, "SOPClassUID", "") or "").strip()
    if modality in BURNED_IN_RISK_MODALITIES:
        return _KIND_TEXT[modality]
    if sop.startswith(BURNED_IN_RISK_SOP_PREFIXES[0]) or "ConversionType" in header:
        return "secondary capture"
    if any(sop.startswith(p) for p in BURNED_IN_RISK_SOP_PREFIXES[1:3]):
        return "ultrasound"
    if sop.startswith(BURNED_IN_RISK_SOP_PREFIXES[3]):
        return "visible-light photograph"
    return None


def burned_in_state(header: Dataset) -> str:
    """Whether the pixels may show identifying text, from the header.

    Parameters
    ----------
    header : pydicom.dataset.Dataset

    Returns
    -------
    {"yes", "likely", "unknown", "no"}
        ``"yes"``: Burned In Annotation (0028,0301) is YES. ``"no"``: it is NO. ``"likely"``: absent or another
        value, and the image is ultrasound, secondary capture or another kind in
        :data:`BURNED_IN_RISK_MODALITIES` / :data:`BURNED_IN_RISK_SOP_PREFIXES`. ``"unknown"``: otherwise.

    References
    ----------
    DICOM PS3.3 C.7.6.1 (General Image Module, Burned In Annotation (0028,0301)); PS3.15 Annex E (Basic Application
    Level Confidentiality Profile: burned-in text must be removed or the image withheld).
    """
    flag = str(_get(header, "BurnedInAnnotation", "") or "").strip().upper()
    if flag == "YES":
        return "yes"
    if flag == "NO":
        return "no"
    return "likely" if _risk_kind(header) is not None else "unknown"


def burned_in_note(header: Dataset, state: str) -> str | None:
    """The warning shown beside the image for ``state`` ("yes" or "likely"), else None."""
    if state == "yes":
        return ("Burned In Annotation: YES — the pixels may show patient-identifying text (name, ID, dates). "
                "The header was de-identified, the pixels were not.")
    if state == "likely":
        kind = _risk_kind(header) or "this kind of image"
        article = "an" if kind[:1] in "aeiou" else "a"
        return (f"Identifying text may be burned into the pixels: this is {article} {kind} image and its header does not "
                "state Burned In Annotation (0028,0301) 'NO'. Such images often show the patient's name, ID, date "
                "and time in the picture. The header was de-identified, the pixels were not.")
    return None


def read_overlays(header: Dataset, rows: int, cols: int, frame: int) -> tuple[Overlay, ...]:
    """Overlay planes (60xx) that apply to ``frame``, placed on the image grid.

    Parameters
    ----------
    header : pydicom.dataset.Dataset
        The data set read up to the pixel data (Overlay Data (60xx,3000) precedes it).
    rows, cols : int
        The image's Rows and Columns (0028,0010)/(0028,0011).
    frame : int
        0-based image frame; a multi-frame overlay applies from Image Frame Origin (60xx,0051) (1-based) for
        Number of Frames in Overlay (60xx,0015) frames.

    Returns
    -------
    tuple of Overlay
        At most :data:`MAX_OVERLAYS`; an unreadable or oversized plane is skipped (overlays are advisory).

    References
    ----------
    DICOM PS3.3 C.9.2 (Overlay Plane Module), PS3.5 8.1.2 (overlay data encoding).
    """
    out: list[Overlay] = []
    groups = sorted({int(t) >> 16 for t in header.keys() if 0x6000 <= (int(t) >> 16) <= 0x601E
                     and (int(t) >> 16) % 2 == 0})
    for group in groups[:MAX_OVERLAYS]:
        try:
            if (group << 16 | 0x3000) not in header:
                continue
            o_rows = int(header[group << 16 | 0x0010].value)
            o_cols = int(header[group << 16 | 0x0011].value)
            if not (0 < o_rows <= 8192 and 0 < o_cols <= 8192):
                continue
            n_frames = int(header[group << 16 | 0x0015].value) if (group << 16 | 0x0015) in header else 1
            first = int(header[group << 16 | 0x0051].value) if (group << 16 | 0x0051) in header else 1
            index = frame - (first - 1) if n_frames > 1 else 0
            if n_frames > 1 and not 0 <= index < n_frames:
                continue
            if n_frames <= 1 and frame > 0 and (group << 16 | 0x0015) in header:
                continue
            origin = [int(v) for v in header[group << 16 | 0x0050].value] if (group << 16 | 0x0050) in header \
                else [1, 1]
            kind = str(_get_tag(header, group << 16 | 0x0040) or "G").strip().upper()[:1] or "G"
            raw = header[group << 16 | 0x3000].value
            if not isinstance(raw, (bytes, bytearray)):
                continue
            bits = np.unpackbits(np.frombuffer(bytes(raw), dtype=np.uint8), bitorder="little")
            per_frame = o_rows * o_cols
            start = index * per_frame
            if bits.size < start + per_frame:
                continue
            plane = bits[start : start + per_frame].reshape(o_rows, o_cols).astype(bool)
            mask = np.zeros((rows, cols), dtype=bool)
            r0, c0 = origin[0] - 1, origin[1] - 1  # Overlay Origin is 1-based (row, column)
            sr, sc = max(0, -r0), max(0, -c0)
            dr, dc = max(0, r0), max(0, c0)
            h = min(o_rows - sr, rows - dr)
            w = min(o_cols - sc, cols - dc)
            if h <= 0 or w <= 0:
                continue
            mask[dr : dr + h, dc : dc + w] = plane[sr : sr + h, sc : sc + w]
            if mask.any():
                out.append(Overlay(group=group, mask=mask, kind="R" if kind == "R" else "G"))
        except Exception:  # an overlay is advisory: a damaged one is skipped, never fatal
            continue
    return tuple(out)


def _get_tag(ds: Dataset, tag: int) -> object:
    try:
        return ds[tag].value if tag in ds else None
    except Exception:
        return None


_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$")


def age_years(header: Dataset) -> int | None:
    """Patient's Age (0010,1010) in whole years, capped at 90; None when absent or not an Age String.

    ``"005Y"`` -> 5, ``"018M"`` -> 1, ``"062"`` (no unit, read as years) -> 62, ``"097Y"`` -> 90.

    References
    ----------
    DICOM PS3.5 6.2 (Value Representation AS: nnnD, nnnW, nnnM or nnnY).
    """
    value = _get(header, "PatientAge")
    if value is None:
        return None
    m = _AGE.match(str(value))
    if m is None:
        return None
    n, unit = int(m.group(1)), (m.group(2) or "Y")
    years = {"D": n / 365.25, "W": n * 7 / 365.25, "M": n / 12.0, "Y": float(n)}[unit]
    return min(int(years), 90)


#: Modalities of projection radiography, where Pixel Intensity Relationship Sign says which way is bright.
_PROJECTION = frozenset({"CR", "DX", "MG", "IO", "RG", "PX"})


def is_negative(header: Dataset, photometric: str) -> bool:
    """True when a projection radiograph's header says its rendition is a negative.

    Pixel Intensity Relationship Sign (0028,1041) +1 means higher stored values are more X-ray beam intensity
    (less attenuation: lung, air); -1 means higher values are less intensity (bone). A conventional rendition
    shows attenuation bright, so +1 goes with MONOCHROME1 (or Presentation LUT Shape INVERSE) and -1 with
    MONOCHROME2. A mismatch shows lungs white and the mediastinum black.

    Parameters
    ----------
    header : pydicom.dataset.Dataset
    photometric : str
        Photometric Interpretation after decoding (``"MONOCHROME1"`` or ``"MONOCHROME2"``).

    References
    ----------
    DICOM PS3.3 C.8.11.3.1.2 (DX Image Module), C.7.6.3.1.2 (Photometric Interpretation), C.11.6.
    """
    modality = str(_get(header, "Modality", "") or "").strip().upper()
    if modality not in _PROJECTION:
        return False
    try:
        sign = int(_get(header, "PixelIntensityRelationshipSign", 0) or 0)
    except Exception:
        return False
    if sign not in (-1, 1):
        return False
    shape = str(_get(header, "PresentationLUTShape", "") or "").strip().upper()
    # the same rule as the display (MedicalImage.invert): MONOCHROME1 or Presentation LUT Shape INVERSE invert
    # once (DX requires INVERSE with MONOCHROME1: it restates the inversion, it does not undo it)
    bright_high = not (photometric == "MONOCHROME1" or shape == "INVERSE")  # high values shown bright
    # conventional: attenuation (low beam intensity) bright. sign -1: high values = low intensity -> bright_high
    return bright_high != (sign == -1)
