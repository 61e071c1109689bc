"""Typed errors of medimg.

Every error raised on purpose by medimg is a :class:`MedimgError`. Its message is written for a clinician:
it names what is wrong with the input and what to do about it, and it never contains patient data (names,
IDs, dates, file names) or a traceback. Pages show ``str(err)`` with ``st.error`` and nothing else.
"""

from __future__ import annotations

__all__ = [
    "MedimgError",
    "UnsupportedFormatError",
    "CorruptFileError",
    "CompressionNotSupportedError",
    "ImageTooLargeError",
    "WeightsError",
    "SpecError",
    "PreprocessError",
    "ModelInputError",
    "ExplainError",
    "BusyError",
    "DatasetError",
    "ReportError",
    "CaseError",
]


class MedimgError(Exception):
    """Base class of every error medimg raises on purpose; the message is safe to show to a user."""

    #: short category shown as a heading in the app
    title = "The image could not be analysed"


class UnsupportedFormatError(MedimgError):
    """The bytes are not a DICOM, PNG, JPEG, TIFF, GIF or BMP image (decided by content, not by name)."""

    title = "Unsupported file type"


class CorruptFileError(MedimgError):
    """The file claims a supported format but is truncated, inconsistent or undecodable."""

    title = "The file is damaged or incomplete"


class CompressionNotSupportedError(MedimgError):
    """The DICOM transfer syntax (0002,0010) is not one medimg can decode (or is not allowed)."""

    title = "Compression not supported"


class ImageTooLargeError(MedimgError):
    """Declared or decoded size is over the limits that protect the server (decompression bombs)."""

    title = "Image too large"


class WeightsError(MedimgError):
    """A weights file is missing, not a valid ``.safetensors`` file, fails its sha256, or does not fit the
    architecture named in its spec."""

    title = "Model weights could not be loaded"


class SpecError(MedimgError):
    """A ModelSpec JSON sidecar is missing fields or holds invalid values."""

    title = "Model specification is invalid"


class PreprocessError(MedimgError):
    """The image cannot be turned into the model input the spec asks for."""

    title = "The image cannot be prepared for the model"


class ModelInputError(MedimgError):
    """A tensor given to a model does not have the shape, dtype or value range the spec requires."""

    title = "Invalid model input"


class ExplainError(MedimgError, ValueError):
    """An explanation cannot be computed as asked (unknown method, bad target class, bad layer output)."""

    title = "The explanation could not be computed"


class BusyError(MedimgError):
    """The server's capacity for this kind of work stayed taken for the whole wait (analyses, heat maps,
    training-lab runs: one :class:`medimg.throttle.Throttle` mechanism raises it everywhere)."""

    title = "The server is busy"


class DatasetError(MedimgError, ValueError):
    """The CSV or the data set folder is inconsistent: a missing column, an unsafe or duplicate path, an
    empty value, a missing file, a patient in two splits. Also a ``ValueError``."""

    title = "The data set could not be read"


class ReportError(MedimgError):
    """A report or log file beside the weights cannot be read."""

    title = "Test-set report could not be read"


class CaseError(MedimgError):
    """A test-set case cannot be opened (data set not found, unknown id)."""

    title = "The test image could not be opened"
