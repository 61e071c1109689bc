"""The one busy mechanism: a bounded number of holders per kind of work, and a clear "busy" error after a wait.

The server runs analyses (prediction, gate), heat maps (on private model replicas) and training-lab runs for many
sessions at once on a few CPU cores. Each kind of work takes a slot of its :class:`Throttle`; a caller that waits
longer than its timeout gets :class:`medimg.errors.BusyError` ("the server is busy"), shown as a message, rather
than overloading the machine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from medimg.errors import BusyError

__all__ = ["Throttle", "BusyError"]


class Throttle:
    """At most ``limit`` holders at once.

    Parameters
    ----------
    limit : int >= 1
    what : str
        The work, as the busy message names it (e.g. ``"analysing other images"``).

    Notes
    -----
    Thread-safe; a slot is released when its ``with`` block ends, also on an exception.
    """

    def __init__(self, limit: int, what: str = "working for other users") -> None:
        self.limit = max(1, int(limit))
        self.what = what
        self._sem = threading.BoundedSemaphore(self.limit)

    def acquire(self, timeout: float | None = 60.0) -> None:
        """Take a slot, waiting at most ``timeout`` seconds (0: do not wait; None: wait for ever).

        Raises
        ------
        BusyError
            No slot freed up in time.
        """
        ok = self._sem.acquire(blocking=timeout != 0, timeout=None if not timeout else timeout)
        if not ok:
            raise BusyError(f"The server is busy {self.what} ({self.limit} at a time). Please try again in a "
                            "moment.")

    def release(self) -> None:
        """Give a slot back."""
        self._sem.release()

    @contextmanager
    def slot(self, timeout: float | None = 60.0) -> Iterator[None]:
        """``with throttle.slot(): ...`` holds one slot for the block.

        Raises
        ------
        BusyError
            No slot freed up within ``timeout`` seconds.
        """
        self.acquire(timeout)
        try:
            yield
        finally:
            self.release()
