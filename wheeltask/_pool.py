"""Bounded worker pool: threads that grow on demand and shrink when idle.

The pool knows nothing of timers. It runs *work items* (see :class:`WorkItem`: one
``_run`` method) and keeps the counts the scheduler reports. It shares its owner's lock;
the ``*_locked`` methods must be called with that lock held.

Hand-off is a ``queue.SimpleQueue`` (a C queue: ~0.1 us per put/get, against ~2.5 us for
``queue.Queue``). Neither posting an immediate task (:meth:`WorkerPool.offer`) nor a
worker taking and finishing one takes the lock: a lock shared by posters and workers
forms a convoy under the GIL, which is what makes ``ThreadPoolExecutor.submit`` cost
~10-26 us a task. A claims dict decides, atomically, who gets a queued item.

Priorities: an item of priority 0 posted while no item waits in the priority heap goes
straight into the queue (the common case costs one more check). Any other item goes
into a heap keyed ``(-priority, sequence)``, and a token into the queue; a worker that
gets a token pops the heap's top. A worker that gets a priority-0 item while an item of
higher priority waits in the heap moves it into the heap, ahead of the priority-0 items
posted there (which are newer). ``heapq`` on tuples of ints runs in C without releasing
the GIL, so heap pushes and pops are atomic, like the queue's.
"""

from __future__ import annotations

import heapq
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


class _Signal:
    """What the queue carries besides work items (one type check tells them apart)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


# "Leave once the items queued before this one are done" (shutdown).
_STOP: Final = _Signal("stop")
# Put in the queue for each item placed in the priority heap: "take the heap's top".
_TOKEN: Final = _Signal("token")
# Put in the queue by a resize() that shrinks the pool: "leave if the pool is too big".
_RETIRE: Final = _Signal("retire")
# Key offset of a priority-0 item moved from the queue into the heap: ahead of every
# priority-0 item posted into the heap (those are newer), in the order moved.
_FRONT: Final = -(1 << 62)
# Positions in a batch of due timers after which threads are started, if needed.
_SPAWN_CHECKS: Final = frozenset({0, 7, 63, 511})


def _queue_full(size: int) -> QueueFull:
    return QueueFull(
        f"run queue is full ({size} tasks waiting; on_full='raise'): "
        "retry later or raise queue_size"
    )


# The attribute of a thread that holds the item it is running (see current_item()).
CURRENT: Final = "wheeltask_item"


class WheeltaskThread(threading.Thread):
    """Every thread wheeltask starts is one of these (daemon), so leaks can be found."""

    wheeltask_item: object = None  # the item this thread is running, if any

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(target=target, name=name, daemon=True)


def current_item() -> object:
    """The work item the calling thread is running, or None."""
    return getattr(threading.current_thread(), CURRENT, None)


class WorkItem(Protocol):
    """What the pool runs, once queued and claimed (see ``WorkerPool.unqueue``)."""

    def _run(self, finished: itertools.count[int]) -> None:
        """Run the user's code and record its outcome, then ``next(finished)``, then
        wake whoever waits for it. No lock held. Only done callbacks may raise."""


def count_value(counter: itertools.count[int]) -> int:
    """How many times ``next()`` was called on a ``count()`` (its repr is ``count(n)``)."""
    return int(repr(counter)[6:-1])


class _Pool:
    """What both pools share: claims, counts, and running an item on this thread.

    An item waiting in the queue is a key of ``_claims``. Taking it out with the
    atomic ``dict.pop`` decides, without a lock, who has it: the worker about to run
    it, or ``cancel()`` (through :meth:`unqueue`). Exactly one of them wins.
    """

    _lock: threading.Lock
    _queue_size: int
    _claims: dict[WorkItem, None]
    _seq: itertools.count[int]  # heap keys: posting order within a priority
    _started: itertools.count[int]
    _finished: itertools.count[int]
    _callers: dict[threading.Thread, int]  # threads running an item in run_in_caller
    workers: int

    @property
    def queued(self) -> int:
        """Items waiting for a thread (cancelled ones are no longer counted)."""
        return len(self._claims)

    @property
    def running(self) -> int:
        """Items taken from the queue and not finished (``_finished`` read first, so
        a run that ends between the two reads is never missed)."""
        finished = count_value(self._finished)
        return count_value(self._started) - finished

    @property
    def idle(self) -> int:
        return max(0, self.workers - self.running)

    def unqueue(self, item: WorkItem) -> bool:
        """Take a queued item back (to cancel it); False if a thread already has it."""
        return self._claims.pop(item, 1) is None

    def count_caller_run_locked(self) -> None:
        """Count an item as running before the lock is released (``caller_runs``), so
        that no shutdown() finds the scheduler idle before it has run."""
        next(self._started)

    def run_in_caller(self, item: WorkItem) -> None:
        """Run an item counted by :meth:`count_caller_run_locked` on this thread."""
        me = threading.current_thread()
        self._callers[me] = self._callers.get(me, 0) + 1
        outer = getattr(me, CURRENT, None)  # a task run inside another's (caller_runs)
        setattr(me, CURRENT, item)
        try:
            item._run(self._finished)
        finally:
            setattr(me, CURRENT, outer)
            n = self._callers.pop(me)
            if n > 1:
                self._callers[me] = n - 1

    def in_task(self, thread: threading.Thread) -> bool:
        """True if ``thread`` is running one of this pool's items."""
        return thread in self._callers

    def drain_locked(self) -> list[WorkItem]:
        """Take back every queued item, for cancellation."""
        items: list[WorkItem] = []
        claims = self._claims
        while claims:
            try:
                items.append(claims.popitem()[0])
            except KeyError:  # a worker took the last one meanwhile
                break
        items.reverse()
        return items


class WorkerPool(_Pool):
    """Threads that run work items, at most ``max_workers`` at once.

    Args:
        lock: the owner's lock, shared (the workers take it only to start or stop).
        max_workers: upper bound on threads (>= 1).
        min_workers: threads kept alive while idle once started (<= max_workers).
        queue_size: bound on items waiting for a thread (>= 1); running ones don't count.
        idle_timeout: seconds an idle thread above ``min_workers`` waits before exiting.
        on_full: what :meth:`wait_for_room_locked` does when the queue is full.
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
        self._queue: queue.SimpleQueue[_Signal | WorkItem] = queue.SimpleQueue()
        self._heap: list[tuple[int, int, WorkItem]] = []
        self._seq = itertools.count()
        self._front = itertools.count(_FRONT)
        self._claims = {}
        self._started = itertools.count()
        self._finished = itertools.count()
        self._callers = {}
        # busy[i]: worker slot i holds an item. Only slot i's thread writes it (a list
        # item store is atomic), so posters can count idle threads without the lock.
        self._busy = [False] * max_workers
        self._free_slots = list(range(max_workers - 1, -1, -1))
        self._not_full = threading.Condition(lock)
        self._blocked = 0  # posters waiting in on_full="block"
        self._shrinking = False  # resize() lowered max_workers: surplus threads leave
        self.workers = 0
        self._closed = False
        # Called after a worker skipped a cancelled item (its owner may be waiting for
        # the pool to be idle).
        self.on_skip: Callable[[], None] | None = None
        self._threads: set[threading.Thread] = set()  # workers in their loop
        self._started_threads: list[threading.Thread] = []  # for joins: until they end
        self._thread_ids = itertools.count(1)

    # ------------------------------------------------------------- submission
    def wait_for_room_locked(self, is_closed: Callable[[], bool]) -> str:
        """Apply ``on_full`` while the queue is full.

        Returns "ok" when there is room, "caller" when the caller must run the item
        itself. Raises QueueFull or SchedulerShutdown.
        """
        while len(self._claims) >= self._queue_size:
            policy = self._on_full
            if policy == "raise":
                raise _queue_full(self._queue_size)
            if policy == "caller_runs":
                return "caller"
            self._blocked += 1
            try:
                # Workers notify without the lock when they see a blocked poster; the
                # timeout covers a notification that raced with our going to sleep.
                self._not_full.wait(0.05)
            finally:
                self._blocked -= 1
            if is_closed():
                raise SchedulerShutdown("scheduler shut down while waiting for queue room")
        return "ok"

    def offer(self, item: WorkItem, priority: int = 0) -> bool:
        """Queue an item without the lock if there is room; False (and nothing queued)
        if there is none, to be retried with the lock (which applies ``on_full``).

        Raises RuntimeError (with the item taken back) if no thread exists to run it
        and none can be started.
        """
        claims = self._claims
        if len(claims) >= self._queue_size:
            return False
        claims[item] = None
        if priority or self._heap:
            heapq.heappush(self._heap, (-priority, next(self._seq), item))
            self._queue.put(_TOKEN)
        else:
            self._queue.put(item)
        # Posters racing each other may all have seen room: each checks after queueing
        # and takes its item back if the bound is now exceeded.
        if len(claims) > self._queue_size and self.unqueue(item):
            return False
        # Racy reads, re-checked under the lock. A worker leaving for idleness gives up
        # its `workers` count *before* it looks at the queue a last time, and a worker
        # marks itself busy *before* it takes an item, so an item put after either step
        # sees the smaller count here.
        if self.workers < self._max_workers and len(claims) > self._idle_estimate():
            with self._lock:
                try:
                    self.ensure_workers_locked()
                except RuntimeError:
                    if self.workers == 0 and self.unqueue(item):
                        raise
                    # Other threads exist and will run it.
        return True

    def submit_locked(self, item: WorkItem, priority: int = 0) -> None:
        """Queue an item with the lock held; call :meth:`ensure_workers_locked` after."""
        self._claims[item] = None
        if priority or self._heap:
            heapq.heappush(self._heap, (-priority, next(self._seq), item))
            self._queue.put(_TOKEN)
        else:
            self._queue.put(item)

    def submit_many_locked(self, items: list[WorkItem], priorities: list[int] | None) -> None:
        """Queue due timers (the timer thread never waits), starting threads early in a
        large batch so that its first callbacks need not wait for the whole batch.
        ``priorities`` gives each item's priority (None: all 0).

        Raises RuntimeError if a thread cannot be started; every item is queued.
        """
        claims = self._claims
        put = self._queue.put
        heap = self._heap
        error: RuntimeError | None = None
        for n, item in enumerate(items):
            claims[item] = None
            priority = 0 if priorities is None else priorities[n]
            if priority or heap:
                heapq.heappush(heap, (-priority, next(self._seq), item))
                put(_TOKEN)
            else:
                put(item)
            if n in _SPAWN_CHECKS:
                try:
                    self.ensure_workers_locked()
                except RuntimeError as exc:
                    error = exc
        try:
            self.ensure_workers_locked()
        except RuntimeError as exc:
            error = exc
        if error is not None:
            raise error

    def _idle_estimate(self) -> int:
        return self.workers - self._busy.count(True)

    def ensure_workers_locked(self) -> None:
        """Start threads while items outnumber idle threads, up to ``max_workers``.

        Raises RuntimeError if a thread cannot be started (the counts are left as if
        it had never been tried).
        """
        while (
            self.workers < self._max_workers
            and not self._closed
            and len(self._claims) > self._idle_estimate()
        ):
            self._spawn_locked()

    # --------------------------------------------------------------- threads
    def _spawn_locked(self) -> None:
        slot = self._free_slots.pop()
        t = WheeltaskThread(
            lambda: self._worker(slot), f"{self._name}-worker-{next(self._thread_ids)}"
        )
        self.workers += 1
        self._threads.add(t)
        try:
            t.start()
        except BaseException:  # e.g. "can't start new thread": undo, let the caller decide
            self.workers -= 1
            self._threads.discard(t)
            self._free_slots.append(slot)
            raise
        self._started_threads = [x for x in self._started_threads if x.is_alive()]
        self._started_threads.append(t)

    def _worker(self, slot: int) -> None:
        get = self._queue.get
        heap = self._heap
        signal = _Signal
        claim = self._claims.pop
        busy = self._busy
        started = self._started
        finished = self._finished
        timeout = self._idle_timeout
        me = cast(WheeltaskThread, threading.current_thread())
        while True:
            try:
                item = get(True, timeout)
            except queue.Empty:
                with self._lock:
                    self.workers -= 1
                    if self._queue.qsize() == 0 and self.workers >= self._min_workers:
                        self._leave_locked(me, slot)
                        return
                    self.workers += 1
                continue
            if type(item) is signal:
                if item is _TOKEN:
                    try:
                        item = heapq.heappop(heap)[2]
                    except IndexError:  # pragma: no cover - one token per heap entry
                        continue
                elif item is _STOP:
                    with self._lock:
                        self.workers -= 1
                        self._leave_locked(me, slot)
                    return
                else:  # _RETIRE
                    if self._retire(me, slot):
                        return
                    continue
            elif heap and self._behind(item):
                continue
            work: WorkItem = item  # type: ignore[assignment]  # not a signal: an item
            # Counted busy and running *before* the claim: from the moment an item
            # leaves the claims it is never counted nowhere (a post deciding whether to
            # start a thread, or a shutdown() deciding whether all is done, would be
            # wrong for that instant).
            busy[slot] = True
            next(started)
            me.wheeltask_item = work  # for current_task(), and Scheduler.tasks()
            if claim(work, 1) is not None:  # cancelled while it waited
                me.wheeltask_item = None
                next(finished)
                busy[slot] = False
                if self.on_skip is not None:
                    self.on_skip()  # this skip may be what a shutdown() waits for
                continue
            if self._blocked:
                with self._lock:
                    self._not_full.notify_all()
            try:
                work._run(finished)
            except BaseException:  # a done callback's SystemExit must not kill a worker
                logger.exception("wheeltask: error while reporting %r", work)
            me.wheeltask_item = None
            busy[slot] = False
            del item, work
            if self._shrinking and self._retire(me, slot):
                return

    def _behind(self, item: object) -> bool:
        """A priority-0 item taken from the queue: if an item of higher priority waits
        in the heap, move this one into the heap (ahead of the priority-0 items posted
        there, which are newer) and return True."""
        try:
            higher = self._heap[0][0] < 0
        except IndexError:  # emptied meanwhile
            return False
        if higher:
            heapq.heappush(self._heap, (0, next(self._front), cast("WorkItem", item)))
            self._queue.put(_TOKEN)
        return higher

    def _retire(self, me: threading.Thread, slot: int) -> bool:
        """After resize() shrank the pool: leave (True) while it has too many threads."""
        with self._lock:
            if self.workers > self._max_workers:
                self.workers -= 1
                self._leave_locked(me, slot)
                return True
            self._shrinking = False
            return False

    def resize_locked(self, max_workers: int | None, queue_size: int | None) -> None:
        """New bounds. More threads start at once for queued items; surplus threads
        leave as they go idle (a running item completes); queued items stay queued
        whatever the new ``queue_size`` (new posts see the new bound)."""
        if queue_size is not None:
            self._queue_size = queue_size
            self.release_blocked_locked()  # they re-check against the new bound
        if max_workers is None:
            return
        grow = max_workers - len(self._busy)
        if grow > 0:  # in place: each worker holds a reference to the list
            self._free_slots[:0] = range(len(self._busy) + grow - 1, len(self._busy) - 1, -1)
            self._busy.extend([False] * grow)
        self._max_workers = max_workers
        surplus = self.workers - max_workers
        if surplus > 0 and not self._closed:
            self._shrinking = True
            for _ in range(surplus):
                self._queue.put(_RETIRE)  # idle threads get one at once
        else:
            self.ensure_workers_locked()

    def _leave_locked(self, me: threading.Thread, slot: int) -> None:
        self._threads.discard(me)
        self._free_slots.append(slot)

    def in_task(self, thread: threading.Thread) -> bool:
        return thread in self._threads or thread in self._callers

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop_locked` was called: items queued now never run."""
        return self._closed

    def threads(self) -> list[threading.Thread]:
        """Every thread started and still alive, those on their way out included."""
        return [t for t in self._started_threads if t.is_alive()]

    def stop_locked(self) -> None:
        """Tell every thread to exit once the items queued before it are done."""
        if self._closed:
            return
        self._closed = True
        for _ in range(self.workers):
            self._queue.put(_STOP)
        self.release_blocked_locked()

    def release_blocked_locked(self) -> None:
        """Wake posters blocked on a full queue (they re-check and may give up)."""
        if self._blocked:
            self._not_full.notify_all()


class InlinePool(_Pool):
    """The pool of a manual scheduler: items wait in a heap and run on the thread
    that calls :meth:`run_queued` (``VirtualClock.advance`` or ``run_due``)."""

    def __init__(self, lock: threading.Lock, *, queue_size: int, on_full: OnFull) -> None:
        self._lock = lock
        self._queue_size = queue_size
        self._on_full: OnFull = on_full
        self._items: list[tuple[int, int, WorkItem]] = []  # a heap, as WorkerPool's
        self._seq = itertools.count()
        self._claims = {}
        self._started = itertools.count()
        self._finished = itertools.count()
        self._callers = {}
        self.workers = 0

    def wait_for_room_locked(self, is_closed: Callable[[], bool]) -> str:
        if len(self._claims) < self._queue_size:
            return "ok"
        if self._on_full == "caller_runs":
            return "caller"
        if self._on_full == "raise":
            raise _queue_full(self._queue_size)
        # Blocking would wait for a thread that does not exist: nothing runs until the
        # test advances the clock.
        raise QueueFull(
            f"run queue is full ({self._queue_size} tasks waiting); a manual scheduler "
            "cannot block: advance the clock or call run_due() first"
        )

    def offer(self, item: WorkItem, priority: int = 0) -> bool:
        """Always False: a manual scheduler queues with its lock held."""
        return False

    def submit_locked(self, item: WorkItem, priority: int = 0) -> None:
        self._claims[item] = None
        heapq.heappush(self._items, (-priority, next(self._seq), item))

    def submit_many_locked(self, items: list[WorkItem], priorities: list[int] | None) -> None:
        for n, item in enumerate(items):
            self.submit_locked(item, 0 if priorities is None else priorities[n])

    def run_queued(self) -> int:
        """Run queued items by priority, then in order, including ones queued
        meanwhile; return how many ran."""
        n = 0
        items = self._items
        while items:
            item = heapq.heappop(items)[2]
            if self._claims.pop(item, 1) is not None:
                continue  # cancelled
            self.count_caller_run_locked()
            self.run_in_caller(item)
            n += 1
        return n

    def resize_locked(self, max_workers: int | None, queue_size: int | None) -> None:
        """Only ``queue_size`` means anything here (items run on the test's thread)."""
        if queue_size is not None:
            self._queue_size = queue_size

    def ensure_workers_locked(self) -> None:
        """Nothing to start: items run when the test says so."""

    @property
    def stopped(self) -> bool:
        """Never: items run whenever the test says so."""
        return False

    def threads(self) -> list[threading.Thread]:
        return []

    def stop_locked(self) -> None:
        """Nothing to stop: an inline pool has no threads."""

    def release_blocked_locked(self) -> None:
        """Nothing to release: an inline pool never blocks."""
