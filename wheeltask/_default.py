"""The module-level API: a lazily created default scheduler."""

from __future__ import annotations

import datetime
import os
import threading
from collections.abc import Callable
from typing import Any

from ._errors import SchedulerShutdown
from ._group import TaskGroup
from ._handle import TaskHandle
from ._scheduler import Scheduler, check_scheduler_options

__all__ = ["configure", "get_scheduler", "group", "post_task", "wait_and_exit"]

_lock = threading.Lock()
_default: Scheduler | None = None
_options: dict[str, Any] = {}
_exited = False


def get_scheduler() -> Scheduler:
    """The default scheduler behind ``wheeltask.post_task``, created on first use.

    Raises:
        SchedulerShutdown: ``wait_and_exit()`` has already shut it down.
    """
    global _default
    s = _default
    if s is not None:
        return s
    with _lock:
        if _default is None:
            if _exited:
                raise SchedulerShutdown(
                    "wheeltask.wait_and_exit() has shut down the default scheduler"
                )
            _default = Scheduler(**_options)
        return _default


def configure(**scheduler_options: Any) -> None:
    """Set the default scheduler's options (those of ``Scheduler``).

    Call it before the first ``post_task``; options are validated at once.

    Raises:
        RuntimeError: the default scheduler already exists.
        TypeError, ValueError: a bad option (nothing is changed).
    """
    global _options
    opts = check_scheduler_options(**scheduler_options)
    with _lock:
        if _default is not None or _exited:
            raise RuntimeError(
                "wheeltask.configure() must be called before the default scheduler is first used"
            )
        _options = {k: v for k, v in opts.items() if k in scheduler_options}


def post_task(
    cb: Callable[..., object],
    /,
    *args: Any,
    delay: float | datetime.timedelta | None = None,
    interval: float | datetime.timedelta | None = None,
    **options: Any,
) -> TaskHandle:
    """``get_scheduler().post_task(...)``: see ``Scheduler.post_task``."""
    return get_scheduler().post_task(cb, *args, delay=delay, interval=interval, **options)


def group() -> TaskGroup:
    """``get_scheduler().group()``: a :class:`TaskGroup` on the default scheduler."""
    return get_scheduler().group()


def wait_and_exit(timeout: float | None = None) -> bool:
    """Shut the default scheduler down, waiting for the tasks already posted.

    Interval tasks stop; one-shot tasks still run, delayed ones at their time. When
    ``timeout`` seconds pass first, what has not started is cancelled and False is
    returned. Afterwards ``post_task`` raises ``SchedulerShutdown``. Idempotent; a
    no-op (True) if the default scheduler was never used.
    """
    global _exited
    with _lock:
        s = _default
        _exited = True
    if s is None:
        return True
    return s.shutdown(wait=True, timeout=timeout)


def _swap_default(new: Scheduler | None, exited: bool = False) -> tuple[Scheduler | None, bool]:
    """For ``wheeltask.testing``: install another default scheduler; return the old."""
    global _default, _exited
    with _lock:
        old = (_default, _exited)
        _default, _exited = new, exited
    return old


def _after_fork_child() -> None:
    global _default, _lock
    _lock = threading.Lock()
    _default = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)
