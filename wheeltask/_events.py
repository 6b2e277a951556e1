"""Scheduler-wide events: what ``Scheduler.subscribe`` listeners receive."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from ._handle import TaskHandle

__all__ = ["EVENTS", "RUN_EVENTS", "Event", "Listeners", "check_events"]

logger = logging.getLogger("wheeltask")

#: Every event kind, in the order a task may meet them.
EVENTS: Final = (
    "posted",
    "rejected",
    "started",
    "retried",
    "succeeded",
    "failed",
    "timed_out",
    "expired",
    "missed",
    "cancelled",
)
#: The kinds emitted around a run (listening to one makes every run take the full path).
RUN_EVENTS: Final = frozenset({"started", "retried", "succeeded", "failed", "timed_out"})


@final
@dataclasses.dataclass(frozen=True)
class Event:
    """Something that happened to a task, as a listener receives it.

    Attributes:
        kind: one of :data:`EVENTS`.
        handle: the task's handle.
        time: the scheduler's clock (seconds) when it happened.
        result: "succeeded": what the callback returned.
        exception: "failed", "retried" and "timed_out": the exception of the attempt
            (``TaskTimeout`` for a timeout); "rejected": the exception the poster got;
            "expired": the ``TaskCancelled`` a one-shot task ends with.
        delay: "retried": seconds until the next attempt.
        reason: "cancelled", "rejected", "expired" and "missed": why, in words.
        count: "missed": how many firings were skipped at once; otherwise 1.
    """

    kind: str
    handle: TaskHandle
    time: float
    result: object = None
    exception: BaseException | None = None
    delay: float | None = None
    reason: str | None = None
    count: int = 1


def check_events(events: object) -> frozenset[str]:
    """Validate the ``events`` argument of ``subscribe``; None means every kind."""
    if events is None:
        return frozenset(EVENTS)
    if isinstance(events, str):
        events = (events,)
    if not isinstance(events, Iterable):
        raise TypeError(f"events must be an iterable of event names or None, got {events!r}")
    kinds = list(events)
    unknown = [k for k in kinds if k not in EVENTS]
    if unknown or not kinds:
        raise ValueError(
            f"events must name some of {', '.join(EVENTS)}; got {kinds!r}"
            + (f" (unknown: {', '.join(map(repr, unknown))})" if unknown else "")
        )
    return frozenset(kinds)


class Listeners:
    """The subscriptions of one scheduler: for each kind, a tuple of listeners.

    Read without a lock on every emit point (one dict lookup); replaced whole, under
    the owner's lock, when someone subscribes or unsubscribes.
    """

    __slots__ = ("by_kind", "subs")

    def __init__(self) -> None:
        self.subs: list[tuple[Callable[[Event], object], frozenset[str]]] = []
        self.by_kind: dict[str, tuple[Callable[[Event], object], ...]] = {}

    def rebuild(self) -> None:
        self.by_kind = {
            kind: tuple(fn for fn, kinds in self.subs if kind in kinds) for kind in EVENTS
        }

    def emit(self, event: Event) -> None:
        """Call every listener of the event's kind; what one raises is logged only."""
        for fn in self.by_kind.get(event.kind, ()):
            try:
                fn(event)
            except Exception:
                logger.exception(
                    "event listener %r raised on %s of %r", fn, event.kind, event.handle
                )
