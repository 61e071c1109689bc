"""The one busy mechanism: bounded holders, BusyError after the wait, slots released on errors."""

from __future__ import annotations

import threading

import pytest

from medimg.errors import BusyError, MedimgError
from medimg.throttle import Throttle


def test_busy_after_timeout_and_released_on_error() -> None:
    t = Throttle(1, "testing")
    with t.slot(timeout=0):
        with pytest.raises(BusyError, match="busy testing"):
            t.acquire(timeout=0.05)
    with pytest.raises(RuntimeError):
        with t.slot(timeout=0):
            raise RuntimeError("boom")
    with t.slot(timeout=0):  # the failed block gave its slot back
        pass
    assert issubclass(BusyError, MedimgError)


def test_at_most_limit_holders() -> None:
    t = Throttle(2)
    inside, peak, lock, go = [0], [0], threading.Lock(), threading.Event()

    def work() -> None:
        with t.slot(timeout=5):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            go.wait(0.05)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert peak[0] == 2


def test_analyses_and_heat_maps_share_the_mechanism() -> None:
    """The replica pool and the app's analysis slots are both Throttles raising the same BusyError."""
    import torch

    from medimg.explain import replicas

    model = torch.nn.Linear(2, 2).eval()  # the pool holds its model weakly
    pool = replicas.ReplicaPool(model, max_replicas=1)
    assert isinstance(pool._slots, Throttle)
    with pool.borrow(timeout=0):
        with pytest.raises(BusyError):
            with pool.borrow(timeout=0.05):
                pass
    with pool.borrow(timeout=0):
        assert pool.created == 1
