"""Helpers for tests that use real threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll ``predicate`` (every millisecond) until it is true; fail after ``timeout``."""
    end = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"not true within {timeout} s: {predicate}")
        pause.wait(0.001)
