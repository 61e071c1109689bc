"""Helpers shared by the DICOM steps: the error for damaged files and tolerant attribute access.

:func:`_corrupt` builds the :class:`medimg.errors.CorruptFileError` every step raises (its message names the
problem and the fix, never a value). :func:`_get`, :func:`_int`, :func:`_floats` and :func:`_strings` read data
elements by keyword and treat absent, empty or unreadable values as missing; :func:`_fg_item` finds a functional
group macro for one frame in the Per-frame (5200,9230) or Shared (5200,9229) Functional Groups Sequence of
Enhanced multi-frame objects (PS3.3 C.7.6.16).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from medimg.errors import CorruptFileError
from medimg.io.metadata import clean_text


class _FrameOutOfRange(ValueError):
    """The ``frame`` argument is outside the file's frames (a programming error, not bad input)."""


def _corrupt(msg: str) -> CorruptFileError:
    return CorruptFileError(msg + " Export the image again from the source system (PACS or modality).")


# ------------------------------------------------------------------------------------------ attributes


def _get(ds: Dataset | None, keyword: str, default: Any = None) -> Any:
    """``ds.keyword`` or ``default`` when absent, empty or unreadable."""
    if ds is None:
        return default
    try:
        if keyword not in ds:
            return default
        value = ds[keyword].value
    except Exception:
        return default
    if value is None or value == "" or (isinstance(value, (list, tuple)) and not value):
        return default
    return value


def _int(ds: Dataset, keyword: str, tag: str, default: int | None = None) -> int:
    value = _get(ds, keyword, None)
    if value is None:
        if default is None:
            raise _corrupt(f"The DICOM header has no usable {_label(keyword)} {tag}, needed to read the image.")
        return default
    try:
        if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            value = value[0]
        return int(value)
    except Exception:
        raise _corrupt(f"The DICOM header's {_label(keyword)} {tag} is not a valid number.") from None


def _label(keyword: str) -> str:
    out = "".join(" " + ch if ch.isupper() else ch for ch in keyword).strip()
    return out.replace("Of ", "of ")


def _floats(value: Any) -> list[float]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        value = [value]
    out = []
    for v in value:
        try:
            out.append(float(v))
        except Exception:
            out.append(math.nan)
    return out


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        value = [value]
    return [clean_text(v) for v in value]


def _fg_item(header: Dataset, frame: int, sequence: str) -> Dataset | None:
    """First item of functional group macro ``sequence`` for ``frame``: Per-frame (5200,9230) before Shared
    (5200,9229) Functional Groups Sequence (PS3.3 C.7.6.16)."""
    for fg_keyword, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        groups = _get(header, fg_keyword)
        try:
            if groups is None or index >= len(groups):
                continue
            items = _get(groups[index], sequence)
            if items:
                return items[0]
        except Exception:
            continue
    return None
