"""Turning errors into clear, safe messages: never a traceback, a file name or patient data in the page."""

from __future__ import annotations

import logging
from types import TracebackType

import streamlit as st

from medimg.errors import MedimgError

__all__ = ["GENERIC_MESSAGE", "guard", "error_text"]

log = logging.getLogger("medimg.ui")

#: What the user sees after an unexpected exception (the details go nowhere: only the type is logged).
GENERIC_MESSAGE = ("Something went wrong while {stage}. The problem has been logged without any image data. "
                   "Please try again, or try another file.")


def error_text(err: BaseException, stage: str = "processing the request") -> str:
    """The message shown for ``err``.

    Parameters
    ----------
    err : BaseException
    stage : str
        What the app was doing, e.g. ``"reading the file"``; used only for unexpected errors.

    Returns
    -------
    str
        ``"<title>: <message>"`` for a :class:`medimg.MedimgError` (its message is written to be safe to
        show), otherwise a generic message that reveals nothing about the exception.
    """
    if isinstance(err, MedimgError):
        return f"{err.title}: {err}"
    return GENERIC_MESSAGE.format(stage=stage)


class guard:  # noqa: N801 - used like a function: ``with guard("reading the file"): ...``
    """Context manager that shows any error of its block as ``st.error`` instead of a traceback.

    A :class:`medimg.MedimgError` is shown as ``st.error(f"{err.title}: {err}")``. Any other exception is
    shown as a generic message and logged with its *type only* (never its message, which may hold a file name
    or metadata). Streamlit's own control flow (``st.stop``, reruns) passes through untouched.

    Parameters
    ----------
    stage : str
        What the block does, for the generic message (``"analysing the image"``).
    stop : bool
        After showing the error, stop the script run (``st.stop()``), so nothing below depends on a
        half-finished result. With ``stop=False`` check :attr:`failed` instead.

    Attributes
    ----------
    failed : bool
        True when the block raised.
    error : BaseException or None

    Examples
    --------
    >>> with guard("reading the file"):  # doctest: +SKIP
    ...     image = load_image(data)
    """

    def __init__(self, stage: str = "processing the request", stop: bool = True) -> None:
        self.stage = stage
        self.stop = stop
        self.failed = False
        self.error: BaseException | None = None

    def __enter__(self) -> guard:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # success, or st.stop()/rerun/KeyboardInterrupt (BaseException): let it through
        self.failed, self.error = True, exc
        if not isinstance(exc, MedimgError):
            log.error("unexpected %s while %s", type(exc).__name__, self.stage)
        st.error(error_text(exc, self.stage), icon=":material/error:")
        if self.stop:
            st.stop()
        return True
