"""Waiting in tests for something another thread or process does."""
from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(cond: Callable[[], object], timeout: float, every: float = 0.01) -> bool:
    """Poll `cond` until it is true (True) or `timeout` seconds have passed (False)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(every)
    return True
