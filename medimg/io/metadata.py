"""De-identified DICOM metadata: an allowlist of non-identifying attributes, and counts of what is withheld.

Nothing here logs, prints or raises with a tag's value. Values shown are display strings of the allowlisted
attributes only (:data:`SHOWN`); everything else present in the data set is counted per category in
``withheld`` and never read beyond its tag and VR (PS3.15 Annex E, Basic Application Level Confidentiality
Profile, is the model for the categories).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset

__all__ = ["SHOWN", "WITHHELD_CATEGORIES", "describe", "count_withheld", "clean_text"]

#: Allowlisted attributes: (keyword, label shown to the user). Labels are the DICOM attribute names.
SHOWN: tuple[tuple[str, str], ...] = (
    ("Modality", "Modality"),
    ("BodyPartExamined", "Body Part Examined"),
    ("ViewPosition", "View Position"),
    ("Laterality", "Laterality"),
    ("ImageLaterality", "Image Laterality"),
    ("PixelSpacing", "Pixel Spacing"),
    ("ImagerPixelSpacing", "Imager Pixel Spacing"),
    ("Rows", "Rows"),
    ("Columns", "Columns"),
    ("BitsAllocated", "Bits Allocated"),
    ("BitsStored", "Bits Stored"),
    ("PixelRepresentation", "Pixel Representation"),
    ("PhotometricInterpretation", "Photometric Interpretation"),
    ("TransferSyntaxUID", "Transfer Syntax"),
    ("NumberOfFrames", "Number of Frames"),
    ("Manufacturer", "Manufacturer"),
    ("ManufacturerModelName", "Manufacturer's Model Name"),
    ("SliceThickness", "Slice Thickness"),
    ("RescaleSlope", "Rescale Slope"),
    ("RescaleIntercept", "Rescale Intercept"),
    ("RescaleType", "Rescale Type"),
    ("BurnedInAnnotation", "Burned In Annotation"),
)
_SHOWN_KEYWORDS = frozenset(k for k, _ in SHOWN)

#: Categories of ``MedicalImage.withheld``, in display order.
WITHHELD_CATEGORIES: tuple[str, ...] = (
    "patient identity",
    "dates and times",
    "institution and staff",
    "UIDs",
    "accession and study identifiers",
    "descriptions and free text",
    "private tags",
    "overlays and curves",
    "other",
)

#: Longest display string for one attribute (a defence against free text hidden in a short attribute).
_MAX_TEXT = 64
#: Nesting depth and element count walked when counting withheld attributes (bounds the time on hostile files).
_MAX_DEPTH = 16
_MAX_ELEMENTS = 200_000

_STAFF_WORDS = ("Institution", "Physician", "Operator", "Station", "Department", "Performer", "Performing",
                "Requesting", "Referring", "Reading", "Author", "Verifying", "Interpreter", "Scheduled",
                "DeviceSerialNumber", "EntityTitle", "Person", "Organization", "Custodial",
                "Responsible")
_ACCESSION_KEYWORDS = frozenset({
    "AccessionNumber", "StudyID", "RequestedProcedureID", "ScheduledProcedureStepID",
    "PerformedProcedureStepID", "AdmissionID", "IssuerOfAccessionNumberSequence", "RequestAttributesSequence",
    "PlacerOrderNumberImagingServiceRequest", "FillerOrderNumberImagingServiceRequest",
    "OrderPlacerIdentifierSequence", "OrderFillerIdentifierSequence", "StudyIDIssuer", "ServiceEpisodeID",
    "VisitComments",
})
_TEXT_WORDS = ("Description", "Comment", "Text", "Protocol", "Label", "Remark", "Reason", "History",
               "Explanation", "Name", "Note", "Title", "Allerg")
_TEXT_VRS = frozenset({"LT", "ST", "UT", "UC"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})


def clean_text(value: object) -> str:
    """A display string of a header value.

    Parameters
    ----------
    value : object
        Any value (``str()`` is taken).

    Returns
    -------
    str
        Printable characters only, whitespace collapsed, at most 64 characters (longer text is cut and ends
        with an ellipsis).
    """
    text = str(value)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split())
    if len(text) > _MAX_TEXT:
        text = text[: _MAX_TEXT - 1] + "…"
    return text


def _number(value: object) -> str:
    x = float(value)  # type: ignore[arg-type]
    if not math.isfinite(x):
        raise ValueError("non-finite")
    return f"{x:.6g}"


def _values(value: object) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    if isinstance(value, Iterable):
        return list(value)
    return [value]


def _fmt_spacing(value: object) -> str:
    nums = [float(v) for v in _values(value)]  # type: ignore[arg-type]
    if not nums or any(not (math.isfinite(x) and x > 0) for x in nums):
        raise ValueError("spacing must be positive")
    vals = [_number(v) for v in nums]
    if len(vals) == 2:
        return f"{vals[0]} x {vals[1]} mm (row x column)"
    if len(vals) == 1:
        return f"{vals[0]} mm"
    raise ValueError("bad spacing")


def _format(keyword: str, value: object) -> str:
    """Display string of one allowlisted attribute; raises ValueError for unusable values."""
    if keyword == "TransferSyntaxUID":  # a name medimg itself chose (see medimg.io.dicom.TRANSFER_SYNTAXES)
        return str(value)
    if keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        return _fmt_spacing(value)
    if keyword == "SliceThickness":
        if not float(value) > 0:  # type: ignore[arg-type]
            raise ValueError("thickness must be positive")
        return f"{_number(value)} mm"
    if keyword in ("RescaleSlope", "RescaleIntercept"):
        return _number(value)
    if keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "NumberOfFrames"):
        return str(int(value))  # type: ignore[call-overload]
    if keyword == "PixelRepresentation":
        return {0: "unsigned", 1: "signed"}.get(int(value), "invalid")  # type: ignore[call-overload]
    if isinstance(value, bytes):
        raise ValueError("binary value")
    vals = [clean_text(v) for v in _values(value)]
    return clean_text(" \\ ".join(v for v in vals if v))


def describe(ds: Dataset, extra: dict[str, object] | None = None) -> dict[str, str]:
    """Allowlisted, non-identifying attributes of ``ds`` as display strings.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The data set (pixel data not needed).
    extra : dict of str to object, optional
        Values by keyword that override or complete ``ds`` (e.g. the Transfer Syntax name, or Pixel Spacing
        and Rescale Slope/Intercept taken from an Enhanced multi-frame functional group).

    Returns
    -------
    dict of str to str
        ``{label: value}`` for the attributes of :data:`SHOWN` that are present and readable, in that order;
        e.g. ``{"Modality": "CT", "Pixel Spacing": "0.7 x 0.7 mm (row x column)", ...}``. Empty values are
        left out. Values are cleaned by :func:`clean_text`.
    """
    extra = extra or {}
    out: dict[str, str] = {}
    for keyword, label in SHOWN:
        try:
            if keyword in extra:
                value = extra[keyword]
            elif keyword == "TransferSyntaxUID":
                continue
            elif keyword in ds:
                value = ds[keyword].value
            else:
                continue
            if value is None or value == "":
                continue
            text = _format(keyword, value)
        except Exception:  # an unreadable value is simply not shown
            continue
        if text:
            out[label] = text
    return out


def _category(tag: int, vr: str, keyword: str) -> str | None:
    """Withheld category of one element; None when it is shown or describes the pixels."""
    group, element = tag >> 16, tag & 0xFFFF
    if element == 0x0000 or group in (0xFFFE, 0xFFFC):  # group lengths, item delimiters, padding
        return None
    if group % 2:
        return "private tags"
    if 0x6000 <= group <= 0x60FF or 0x5000 <= group <= 0x50FF:
        return "overlays and curves"
    if group in (0x0028, 0x7FE0) or keyword in _SHOWN_KEYWORDS:
        return None
    if group in (0x0010, 0x0012, 0x0038) or keyword in ("OtherPatientIDs", "OtherPatientIDsSequence"):
        return "patient identity"
    if vr == "UI":
        return "UIDs"
    if vr in _DATE_VRS or keyword.endswith(("Date", "Time", "DateTime")):
        return "dates and times"
    if keyword in _ACCESSION_KEYWORDS or "Accession" in keyword or keyword.endswith("ID"):
        return "accession and study identifiers"
    if vr == "PN" or any(w in keyword for w in _STAFF_WORDS):
        return "institution and staff"
    if vr in _TEXT_VRS or any(w in keyword for w in _TEXT_WORDS):
        return "descriptions and free text"
    return "other"


def _vr_of(ds: Dataset, tag: int) -> str:
    try:
        raw = ds.get_item(tag, keep_deferred=True)
        vr = getattr(raw, "VR", None)
        if vr:
            return str(vr)
    except Exception:
        pass
    try:
        return str(dictionary_VR(tag))
    except Exception:
        return "UN"


def count_withheld(ds: Dataset, counts: dict[str, int] | None = None, *, depth: int = 0,
                   forced: str | None = None, _budget: list[int] | None = None) -> dict[str, int]:
    """Count the attributes of ``ds`` that are present but not shown, per category.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The data set (its ``file_meta`` is counted too at the top level). Sequences are walked: every
        nested element counts once in its own category (inside a private sequence, as "private tags").
    counts : dict of str to int, optional
        Counts to add to (a new dict when None).

    Returns
    -------
    dict of str to int
        ``{category: count}`` with only non-zero categories, in :data:`WITHHELD_CATEGORIES` order. Values
        are never read except to descend into sequences.
    """
    counts = {} if counts is None else counts
    budget = [_MAX_ELEMENTS] if _budget is None else _budget
    sources: list[Dataset] = [ds]
    if depth == 0 and getattr(ds, "file_meta", None) is not None:
        sources.insert(0, ds.file_meta)
    for source in sources:
        try:
            tags = list(source.keys())
        except Exception:
            continue
        for tag in tags:
            if budget[0] <= 0:
                break
            budget[0] -= 1
            tag = int(tag)
            vr = _vr_of(source, tag)
            keyword = keyword_for_tag(tag) or ""
            cat = forced or _category(tag, vr, keyword)
            if cat is not None:
                counts[cat] = counts.get(cat, 0) + 1
            if vr == "SQ" and depth < _MAX_DEPTH and (cat is not None or tag >> 16 in (0x0028,)):
                try:
                    items = list(source[tag].value or [])
                except Exception:
                    items = []
                nested_forced = forced or ("private tags" if cat == "private tags" else None)
                for item in items:
                    if isinstance(item, Dataset):
                        count_withheld(item, counts, depth=depth + 1, forced=nested_forced, _budget=budget)
    if depth == 0:
        counts = {c: counts[c] for c in WITHHELD_CATEGORIES if counts.get(c)}
    return counts
