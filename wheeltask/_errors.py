"""Exceptions raised by wheeltask; all importable from ``wheeltask``."""

from __future__ import annotations

__all__ = [
    "DuplicateTask",
    "QueueFull",
    "Retry",
    "SchedulerShutdown",
    "TaskCancelled",
    "TaskTimeout",
    "WheeltaskError",
]


class WheeltaskError(Exception):
    """Base class of every exception wheeltask raises on its own account."""


class TaskCancelled(WheeltaskError):
    """The task was cancelled before it finished (by ``cancel()`` or a shutdown).

    The message says who cancelled it.
    """


class TaskTimeout(WheeltaskError):
    """A run exceeded its own ``timeout``.

    Deliberately not a ``TimeoutError``: that one means a *wait* timed out.
    """


class QueueFull(WheeltaskError):
    """The run queue is full (``on_full="raise"``) or ``max_pending`` timers are held."""


class SchedulerShutdown(WheeltaskError, RuntimeError):
    """The scheduler is shutting down or shut down and takes no new tasks."""


class DuplicateTask(WheeltaskError):
    """A task with the same ``key`` is still pending (``on_duplicate="raise"``)."""


class Retry(WheeltaskError):
    """Raised by a callback to ask for another attempt.

    Args:
        delay: seconds to wait before the next attempt; None uses the task's backoff.
    """

    def __init__(self, delay: float | None = None) -> None:
        super().__init__("retry requested" if delay is None else f"retry requested in {delay} s")
        self.delay = delay
