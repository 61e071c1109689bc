"""The current image of a session, kept across pages.

Streamlit forgets a widget's value when its page is not drawn, so an ``st.file_uploader`` on Analyze is empty
again after the user visits the dashboard. The uploaded bytes are therefore copied once into this session's
``st.session_state`` (:data:`UPLOAD_KEY`) as an :class:`Upload`, and every page (Analyze, the saliency lab,
Inside the CNN) reads them from there. The bytes stay in memory, in this session only; the file name is never
kept; the upload is forgotten when the user removes it or the session ends.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import streamlit as st

if TYPE_CHECKING:  # pragma: no cover
    from streamlit.runtime.uploaded_file_manager import UploadedFile

__all__ = ["UPLOAD_KEY", "UPLOADER_KEY", "Upload", "current_upload", "remember_upload", "forget_upload",
           "upload_widget", "memo", "memo_has"]

#: ``st.session_state`` entry holding this session's :class:`Upload`.
UPLOAD_KEY = "medimg.current_upload"
#: ``st.session_state`` entry: (the uploader's file id, the Upload id it gave), so reruns skip re-hashing.
_FILE_ID_KEY = "medimg.current_upload.file_id"
#: Widget key of the uploader on Analyze (AppTests upload through it).
UPLOADER_KEY = "medimg.upload"


@dataclass(frozen=True, eq=False)
class Upload:
    """One uploaded file, in memory.

    Attributes
    ----------
    upload_id : str
        32 hex digits: BLAKE2b-128 of the bytes. Keys every result computed for this file (the same bytes
        uploaded again are the same image; a different file never shares results).
    data : bytes
        The file's content; never written to disk. The file name is not kept.
    """

    upload_id: str
    data: bytes

    @property
    def size(self) -> int:
        """Size of the file in bytes."""
        return len(self.data)

    @classmethod
    def from_bytes(cls, data: bytes) -> Upload:
        """Wrap ``data`` (the id is its BLAKE2b-128 digest)."""
        return cls(hashlib.blake2b(data, digest_size=16).hexdigest(), bytes(data))


def current_upload() -> Upload | None:
    """This session's current image file, or None when nothing is uploaded."""
    up = st.session_state.get(UPLOAD_KEY)
    return up if isinstance(up, Upload) else None


def remember_upload(uploaded: UploadedFile | bytes) -> Upload:
    """Make ``uploaded`` the session's current image (replacing any other, whose results are then dropped)."""
    old = current_upload()
    file_id = None if isinstance(uploaded, bytes | bytearray) else getattr(uploaded, "file_id", None)
    if old is not None and file_id is not None and st.session_state.get(_FILE_ID_KEY) == (file_id, old.upload_id):
        return old  # the same uploader file as on the last run: no need to hash its bytes again
    data = uploaded if isinstance(uploaded, bytes | bytearray) else uploaded.getvalue()
    up = Upload.from_bytes(bytes(data))
    if file_id is not None:
        st.session_state[_FILE_ID_KEY] = (file_id, up.upload_id)
    if old is not None and old.upload_id == up.upload_id:
        return old
    st.session_state[UPLOAD_KEY] = up
    return up


def forget_upload() -> None:
    """Forget the session's image (the Analyze page's results go with it: they are keyed by its id)."""
    st.session_state.pop(UPLOAD_KEY, None)


def _uploader_changed() -> None:
    """The user changed the uploader: a removed file (the x button) is forgotten at once."""
    if st.session_state.get(UPLOADER_KEY) is None:
        forget_upload()


def upload_widget(label: str, help: str | None = None) -> Upload | None:  # noqa: A002 - Streamlit's name
    """The uploader, backed by the session's current image.

    A file chosen in the uploader becomes the current image. When the page is drawn again after another page
    (the uploader is then empty), the current image stays, with a line saying so and a button to remove it.

    Parameters
    ----------
    label : str
        The uploader's label (e.g. from the selected model's modality).
    help : str, optional

    Returns
    -------
    Upload or None
    """
    uploaded = st.file_uploader(label, type=None, accept_multiple_files=False, key=UPLOADER_KEY, help=help,
                                on_change=_uploader_changed)
    if uploaded is not None:
        return remember_upload(uploaded)
    up = current_upload()
    if up is not None:
        c1, c2 = st.columns([4, 1])
        c1.caption(f"Current image: {up.size / 1e6:.2f} MB, kept in memory for this session "
                   f"(upload another file to replace it).")
        if c2.button("Remove image", key="medimg.remove-upload", icon=":material/delete:"):
            forget_upload()
            st.rerun()
    return up


# --------------------------------------------------------------------------------------------------------------
# The per-session memo of the pages' results


@dataclass
class _Memo:
    scope: str = ""
    tables: dict[str, OrderedDict[Hashable, tuple[Any, float]]] = field(default_factory=dict)


def _memo_store(state_key: str, scope: str) -> _Memo:
    m = st.session_state.get(state_key)
    if not isinstance(m, _Memo) or m.scope != scope:
        m = _Memo(scope=scope)
        st.session_state[state_key] = m
    return m


def memo(state_key: str, scope: str, kind: str, key: Hashable, compute: Callable[[], Any],
         keep: int = 8) -> tuple[Any, float, bool]:
    """This session's memo of a page's results (never ``st.cache_data``: they are about a patient's image).

    Parameters
    ----------
    state_key : str
        The ``st.session_state`` entry of the page's memo.
    scope : str
        What the results belong to (the upload's id): a different scope drops every table of ``state_key``.
    kind : str
        The table (``"prediction"``, ``"cam"``, ...); each keeps its ``keep`` most recent results.
    key : hashable
        Everything the result depends on (model path, frame, window, method, ...).
    compute : callable
        Run, and timed, when ``key`` is not in the table.

    Returns
    -------
    (value, seconds, cached)
        ``seconds``: wall time of the computation (the stored one when ``cached``).
    """
    table = _memo_store(state_key, scope).tables.setdefault(kind, OrderedDict())
    if key in table:
        table.move_to_end(key)
        value, seconds = table[key]
        return value, seconds, True
    t0 = time.perf_counter()
    value = compute()
    seconds = time.perf_counter() - t0
    table[key] = (value, seconds)
    while len(table) > keep:
        table.popitem(last=False)
    return value, seconds, False


def memo_has(state_key: str, scope: str, kind: str, key: Hashable) -> bool:
    """Whether :func:`memo` holds ``key`` (e.g. to offer a slow computation behind a button only when needed)."""
    m = st.session_state.get(state_key)
    return isinstance(m, _Memo) and m.scope == scope and key in m.tables.get(kind, {})

