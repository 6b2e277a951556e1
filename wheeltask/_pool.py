"""Bounded worker pool: threads that grow on demand and shrink when idle.

The pool knows nothing of timers. It runs *work items*: objects with four methods
(see :class:`WorkItem`), and keeps the counts the scheduler reports. It shares one lock
with its owner, so that a task's state and the pool's counts change together: the
``*_locked`` methods must be called with that lock held.

Hand-off is a ``queue.SimpleQueue`` (a C queue: ~0.1 us per put/get, against ~2.5 us for
``queue.Queue``); the bound on waiting items is enforced here, with the lock.
"""

from __future__ import annotations

import collections
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Final, Literal, Protocol, cast

from ._errors import QueueFull, SchedulerShutdown

__all__ = ["InlinePool", "OnFull", "WheeltaskThread", "WorkItem", "WorkerPool"]

OnFull = Literal["block", "raise", "caller_runs"]

logger = logging.getLogger("wheeltask")

_STOP: Final = object()


class WheeltaskThread(threading.Thread):
    """Every thread wheeltask starts is one of these (daemon), so leaks can be found."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(target=target, name=name, daemon=True)


class WorkItem(Protocol):
    """What the pool runs. Each method is called exactly once per run, in order."""

    def _claim(self) -> bool:
        """Lock held. Return False to skip the item (it was cancelled while queued)."""

    def _execute(self) -> None:
        """Lock not held. Run the user's code; must not raise."""

    def _complete(self) -> object:
        """Lock held. Record the outcome; return what ``_notify`` needs (or None)."""

    def _notify(self, token: object) -> None:
        """Lock not held. Wake waiters and call callbacks."""


class _Pool:
    """What both pools share: the counts and running an item on the caller's thread."""

    _lock: threading.Lock
    _queue_size: int
    queued: int
    running: int

    def has_room_locked(self) -> bool:
        return self.queued < self._queue_size

    def run_in_caller(self, item: WorkItem, *, was_queued: bool = False) -> None:
        """Run an item on this thread (``on_full="caller_runs"``, manual schedulers)."""
        with self._lock:
            if not item._claim():
                return
            if was_queued:
                self.queued -= 1
            self.running += 1
        try:
            item._execute()
        finally:
            with self._lock:
                self.running -= 1
                token = item._complete()
        if token is not None:
            item._notify(token)


class WorkerPool(_Pool):
    """Threads that run work items, at most ``max_workers`` at once.

    Args:
        lock: the owner's lock, shared.
        max_workers: upper bound on threads (>= 1).
        min_workers: threads kept alive while idle once started (<= max_workers).
        queue_size: bound on items waiting for a thread (>= 1); running ones don't count.
        idle_timeout: seconds an idle thread above ``min_workers`` waits before exiting.
        on_full: what ``submit_locked`` does when ``queue_size`` items are waiting.
        name: prefix of the thread names.
    """

    def __init__(
        self,
        lock: threading.Lock,
        *,
        max_workers: int,
        min_workers: int,
        queue_size: int,
        idle_timeout: float,
        on_full: OnFull,
        name: str,
    ) -> None:
        self._lock = lock
        self._max_workers = max_workers
        self._min_workers = min_workers
        self._queue_size = queue_size
        self._idle_timeout = idle_timeout
        self._on_full: OnFull = on_full
        self._name = name
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._not_full = threading.Condition(lock)
        self._blocked = 0  # posters waiting in on_full="block"
        self._in_queue = 0  # physical items in _queue (cancelled ones and stops included)
        self.queued = 0  # live items waiting for a thread
        self.running = 0
        self.workers = 0
        self.idle = 0
        self._closed = False
        self._threads: set[threading.Thread] = set()
        self._thread_ids = itertools.count(1)

    # ------------------------------------------------------------- submission
    def wait_for_room_locked(self, is_closed: object) -> str:
        """Apply ``on_full`` while the queue is full.

        Returns "ok" when there is room, "caller" when the caller must run the item
        itself. Raises QueueFull or SchedulerShutdown.
        """
        while self.queued >= self._queue_size:
            policy = self._on_full
            if policy == "raise":
                raise QueueFull(
                    f"run queue is full ({self._queue_size} tasks waiting; "
                    "on_full='raise'): retry later or raise queue_size"
                )
            if policy == "caller_runs":
                return "caller"
            self._blocked += 1
            try:
                self._not_full.wait()
            finally:
                self._blocked -= 1
            if callable(is_closed) and is_closed():
                raise SchedulerShutdown("scheduler shut down while waiting for queue room")
        return "ok"

    def submit_locked(self, item: WorkItem) -> None:
        """Queue an item (room already checked, or a timer that must not wait)."""
        self.queued += 1
        self._in_queue += 1
        self._queue.put(item)
        if self.queued > self.idle and self.workers < self._max_workers and not self._closed:
            self._spawn_locked()

    def discard_locked(self) -> None:
        """A queued item was cancelled: it no longer counts (the thread will skip it)."""
        self.queued -= 1
        if self._blocked:
            self._not_full.notify()

    # --------------------------------------------------------------- threads
    def _spawn_locked(self) -> None:
        t = WheeltaskThread(self._worker, f"{self._name}-worker-{next(self._thread_ids)}")
        self.workers += 1
        self.idle += 1
        self._threads.add(t)
        t.start()

    def _worker(self) -> None:
        lock = self._lock
        get = self._queue.get
        timeout = self._idle_timeout
        me = threading.current_thread()
        while True:
            try:
                item = get(True, timeout)
            except queue.Empty:
                with lock:
                    if self._in_queue == 0 and self.workers > self._min_workers:
                        self._exit_locked(me)
                        return
                continue
            with lock:
                self.idle -= 1
                self._in_queue -= 1
                if item is _STOP:
                    self._exit_locked(me, idle=False)
                    return
                work = cast(WorkItem, item)
                if not work._claim():
                    self.idle += 1
                    continue
                self.queued -= 1
                self.running += 1
                if self._blocked:
                    self._not_full.notify()
            work._execute()
            with lock:
                self.running -= 1
                self.idle += 1
                token = work._complete()
            if token is not None:
                work._notify(token)
            del item, work, token

    def _exit_locked(self, me: threading.Thread, idle: bool = True) -> None:
        self.workers -= 1
        if idle:
            self.idle -= 1
        self._threads.discard(me)

    def is_worker(self, thread: threading.Thread) -> bool:
        return thread in self._threads

    def threads(self) -> list[threading.Thread]:
        return list(self._threads)

    def drain_locked(self) -> list[object]:
        """Take every item still waiting (for cancellation); counts drop to zero."""
        items: list[object] = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._in_queue = 0
        self.queued = 0
        return [i for i in items if i is not _STOP]

    def stop_locked(self) -> None:
        """Tell every thread to exit once the items queued before it are done."""
        if self._closed:
            return
        self._closed = True
        for _ in range(self.workers):
            self._in_queue += 1
            self._queue.put(_STOP)
        self.release_blocked_locked()

    def release_blocked_locked(self) -> None:
        """Wake posters blocked on a full queue (they re-check and may give up)."""
        if self._blocked:
            self._not_full.notify_all()


class InlinePool(_Pool):
    """The pool of a manual scheduler: items wait in a deque and run on the thread
    that calls :meth:`run_queued` (``VirtualClock.advance`` or ``run_due``)."""

    def __init__(self, lock: threading.Lock, *, queue_size: int, on_full: OnFull) -> None:
        self._lock = lock
        self._queue_size = queue_size
        self._on_full: OnFull = on_full
        self._items: collections.deque[WorkItem] = collections.deque()
        self.queued = 0
        self.running = 0
        self.workers = 0
        self.idle = 0

    def wait_for_room_locked(self, is_closed: object) -> str:
        if self.queued < self._queue_size:
            return "ok"
        if self._on_full == "caller_runs":
            return "caller"
        # Blocking would wait for a thread that does not exist: nothing runs until the
        # test advances the clock.
        raise QueueFull(
            f"run queue is full ({self._queue_size} tasks waiting); a manual scheduler "
            "cannot block: advance the clock or call run_due() first"
        )

    def submit_locked(self, item: WorkItem) -> None:
        self.queued += 1
        self._items.append(item)

    def discard_locked(self) -> None:
        self.queued -= 1

    def run_queued(self) -> int:
        """Run queued items in order, including ones queued meanwhile; return count."""
        n = 0
        items = self._items
        while True:
            with self._lock:
                if not items:
                    return n
                item = items.popleft()
            self.run_in_caller(item, was_queued=True)
            n += 1

    def is_worker(self, thread: threading.Thread) -> bool:
        return False

    def threads(self) -> list[threading.Thread]:
        return []

    def drain_locked(self) -> list[object]:
        items: list[object] = list(self._items)
        self._items.clear()
        self.queued = 0
        return items

    def stop_locked(self) -> None:
        """Nothing to stop: an inline pool has no threads."""

    def release_blocked_locked(self) -> None:
        """Nothing to release: an inline pool never blocks."""
