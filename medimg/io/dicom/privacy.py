"""Privacy settings for pydicom, applied when :mod:`medimg.io.dicom` is imported (PS3.15 Annex E in mind).

pydicom's reading validation is set to IGNORE on import (its warnings quote element values, patient names
included, and are logged). Every record of pydicom's logger is dropped by a filter, and the logger tree is set
above CRITICAL so that child loggers (``pydicom.pixels...``, ``pydicom.filereader``) drop theirs at the source;
:func:`_quiet_pydicom` turns pydicom's debug mode off and re-applies that level at every load. The package's
``__init__`` imports this module first, so the settings take effect on ``import medimg.io.dicom``, before any
file is read.
"""

from __future__ import annotations

import logging

import pydicom
import pydicom.config

# pydicom must never warn or log with element values (PS3.15 Annex E in mind): no value validation on read.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


class _DropPydicomRecords(logging.Filter):
    """Drop every record of pydicom's logger: with debugging on, pydicom logs raw element bytes (names,
    IDs, dates) and its warnings can quote values. A server that handles patient data keeps none of them."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: ARG002
        return False


_PYDICOM_LOGGER = logging.getLogger("pydicom")
if not any(isinstance(f, _DropPydicomRecords) for f in _PYDICOM_LOGGER.filters):
    _PYDICOM_LOGGER.addFilter(_DropPydicomRecords())
# Records of child loggers (pydicom.pixels..., pydicom.filereader) skip the parent's logger filters; they inherit
# its level, though: a level above CRITICAL drops them at the source (re-applied at every load, since
# ``pydicom.config.debug(True)`` lowers it).
_SILENT = logging.CRITICAL + 10
_PYDICOM_LOGGER.setLevel(_SILENT)


def _quiet_pydicom() -> None:
    """Turn pydicom's debug mode off again (someone may have called ``pydicom.config.debug(True)``) and silence
    pydicom's logger tree."""
    if pydicom.config.debugging:
        pydicom.config.debugging = False
    if _PYDICOM_LOGGER.level != _SILENT:
        _PYDICOM_LOGGER.setLevel(_SILENT)
