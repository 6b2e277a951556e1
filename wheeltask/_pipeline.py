"""Pipelines: periodic batch sources feeding consumers on the worker pool.

bgtaskqueue's loaders and go-conveyor's producers in one abstraction: sources are
called on the wheel (every N seconds, or on a cron schedule) or drained as items
arrive (channels); each item is handed to consumers as ordinary tasks of a scheduler,
with its task options, backpressure, deduplication and a clean stop.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import dataclasses
import datetime
import functools
import inspect
import itertools
import logging
import math
import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, final

from ._clock import is_number, real_monotonic
from ._errors import QueueFull, SchedulerShutdown, TaskCancelled
from ._handle import (
    CANCELLED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    TaskHandle,
    callable_name,
    current_task,
)
from ._pool import count_value

if TYPE_CHECKING:
    from ._scheduler import Scheduler

__all__ = ["Pipeline", "PipelineStats"]

logger = logging.getLogger("wheeltask")

_MODES: Final = ("fanout", "round_robin")
_SOURCE_BACKOFF_CAP: Final = 60.0  # seconds between loads of a failing source, at most
_CHANNEL_POLL: Final = 0.05  # seconds a channel thread waits for an item before re-checking
_SWEEP_MIN: Final = 64  # lean batches kept before a full pass drops the finished ones


@final
@dataclasses.dataclass(frozen=True)
class PipelineStats:
    """A snapshot of a pipeline's counters (``Pipeline.stats()``).

    ``loaded`` counts items taken from the sources (and ``put``), duplicates included;
    ``queued`` deliveries posted and not started; ``delivered`` deliveries handed to a
    consumer; ``succeeded`` and ``failed`` finished deliveries (an item of an unknown
    type counts as failed); ``deduplicated`` items dropped because an item with the
    same key was live; ``aborted`` items removed by ``abort()``; ``source_errors``
    source calls that raised; ``backlog`` items loaded and not finished (queued or in
    flight); ``cancelled`` deliveries that never ran (``abort()``, a ``stop()`` that
    timed out, a scheduler shut down under the pipeline).
    """

    loaded: int
    queued: int
    delivered: int
    succeeded: int
    failed: int
    deduplicated: int
    aborted: int
    source_errors: int
    backlog: int
    cancelled: int


@final
class _Item:
    """One loaded item: how many of its deliveries are not finished, and their handles."""

    __slots__ = ("handles", "key", "left", "posted", "value")

    def __init__(self, value: object, key: object) -> None:
        self.value = value
        self.key = key
        self.left = 0
        self.handles: list[TaskHandle] = []
        self.posted = False  # every delivery has been posted


@final
class _Batch:
    """The handles of one lean batch; ``pos``: all before it are done."""

    __slots__ = ("handles", "open", "pos")

    def __init__(self) -> None:
        self.handles: list[TaskHandle] = []
        self.pos = 0
        self.open = True  # still being posted

    def pending(self) -> list[TaskHandle]:
        return [h for h in self.handles[self.pos :] if not h.done()]

    def settled(self) -> bool:
        """All its deliveries done (advances ``pos``; amortised O(1))."""
        handles = self.handles
        while self.pos < len(handles) and handles[self.pos].done():
            self.pos += 1
        return not self.open and self.pos == len(handles)


def _is_channel(source: object) -> bool:
    return isinstance(source, (queue.Queue, asyncio.Queue)) or (
        not callable(source)
        and (
            isinstance(source, (collections.abc.Iterator, collections.abc.AsyncIterator))
            or (isinstance(source, collections.abc.Iterable) and not isinstance(source, str))
        )
    )


class Pipeline:
    """Periodic batch sources feeding consumers, on a scheduler's worker pool.

    Args:
        sources: callables returning an iterable batch (plain or ``async def``), called
            every ``every`` seconds or on ``cron``; or channels drained as items arrive
            (a ``queue.Queue``, an ``asyncio.Queue``, an iterator or async iterator), each
            on a thread of its own.
        consumers: a list (``mode`` says how items are shared) or a dict
            ``{type: consumer}`` with ``route(item) -> type``.
        every: seconds between loads (1.0 when neither ``every`` nor ``cron`` is given).
        cron: six fields, seconds first (``"*/5 * * * * *"``), in local wall-clock time
            (needs the ``cron`` extra: croniter).
        capacity: a source is not called while this many loaded items are unfinished
            (one batch may overshoot it); a channel waits.
        key: ``key(item)``; an item whose key is live (queued or in flight) is dropped.
        mode: ``"fanout"`` (every consumer gets every item) or ``"round_robin"`` (each
            item goes to exactly one consumer, in turn).
        route: with dict ``consumers``: ``route(item)`` gives the item's type.
        scheduler: the scheduler the loads and deliveries run on (the default one).
        stop_on_source_error: stop loading when a source raises (else it is logged,
            counted, and called again at a later turn, with backoff).
        name: shown in task names and logs.
        **task_options: ``post_task`` options of every delivery (``retries``,
            ``timeout``, ...); ``priority`` may be a callable of the item.
    """

    def __init__(
        self,
        sources: Sequence[object],
        consumers: Sequence[Callable[[Any], object]] | Mapping[object, Callable[[Any], object]],
        *,
        every: float | None = None,
        cron: str | None = None,
        capacity: int = 1000,
        key: Callable[[Any], object] | None = None,
        mode: str = "fanout",
        route: Callable[[Any], object] | None = None,
        scheduler: Scheduler | None = None,
        stop_on_source_error: bool = False,
        name: str = "pipeline",
        **task_options: Any,
    ) -> None:
        from ._default import get_scheduler  # noqa: PLC0415 - _default imports the scheduler
        from ._scheduler import _task_extra  # noqa: PLC0415

        if isinstance(sources, (str, bytes)) or not isinstance(sources, Sequence) or not sources:
            raise ValueError(f"sources must be a non-empty list of sources, got {sources!r}")
        for s in sources:
            if not (callable(s) or _is_channel(s)):
                raise TypeError(
                    "each source must be a callable returning a batch, a queue.Queue, an "
                    f"asyncio.Queue or an (async) iterator, got {s!r}"
                )
        if isinstance(consumers, Mapping):
            if not consumers:
                raise ValueError("consumers must not be empty")
            if route is None or not callable(route):
                raise TypeError(f"route must be callable with a dict of consumers, got {route!r}")
            if mode != "fanout":
                raise ValueError(
                    f"mode must stay 'fanout' with a dict of consumers (each item goes to "
                    f"the consumer of its type), got {mode!r}"
                )
            routes: dict[object, Callable[[Any], object]] = dict(consumers)
            routed: dict[object, Callable[[Any], object]] | None = routes
            targets = list(routes.values())
        else:
            if isinstance(consumers, (str, bytes)) or not isinstance(consumers, Sequence):
                raise TypeError(f"consumers must be a list or a dict, got {consumers!r}")
            if not consumers:
                raise ValueError("consumers must be a non-empty list or dict")
            if mode not in _MODES:
                raise ValueError(f"mode must be 'fanout' or 'round_robin', got {mode!r}")
            if route is not None:
                raise TypeError("route is for a dict of consumers {type: consumer}")
            routed = None
            targets = list(consumers)
        for c in targets:
            if not callable(c):
                raise TypeError(f"each consumer must be callable, got {c!r}")
        if every is not None and cron is not None:
            raise ValueError("every and cron are exclusive: give one of them")
        cron_after: Callable[[datetime.datetime], datetime.datetime] | None = None
        if cron is not None:
            cron_after = _check_cron(cron)
        else:
            every = 1.0 if every is None else every
            if not is_number(every) or not (0.005 <= every < math.inf):
                raise ValueError(f"every must be a number of seconds >= 0.005, got {every!r}")
        if type(capacity) is not int or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        if key is not None and not callable(key):
            raise TypeError(f"key must be callable or None, got {key!r}")
        priority = task_options.get("priority")
        options = {k: v for k, v in task_options.items() if k != "priority" or not callable(v)}
        if "key" in options or "interval" in options or "delay" in options:
            raise TypeError("key, interval and delay are the pipeline's own, not task options")
        _task_extra(None, None, options)  # every other option checked as post_task would
        self._cron = cron_after
        self._sched = scheduler if scheduler is not None else get_scheduler()
        self._sources = list(sources)
        self._consumers = targets
        self._routed = routed
        self._route = route
        self._mode = mode
        self._every = None if every is None else float(every)
        self._capacity = capacity
        self._key = key
        self._priority = priority if callable(priority) else None
        self._options = options
        self._stop_on_error = stop_on_source_error
        self._name = name
        # Re-entrant: a route, key or listener that calls stats() or put() must not hang.
        self._lock = threading.RLock()
        self._room = threading.Condition(self._lock)  # channels wait for backlog room
        self._turn = itertools.cycle(range(len(targets)))
        self._live: dict[object, _Item] = {}  # items by key, while unfinished
        self._unfinished: dict[int, _Item] = {}
        self._loads: dict[int, TaskHandle] = {}  # by source index (callable sources)
        self._loading = 0  # loads, put() calls and channel accepts under way
        self._loaders: dict[int, int] = {}  # ... by thread (stop() from one of them)
        self._stopped = False  # stop() has returned once
        self._threads: list[threading.Thread] = []
        self._errors: dict[int, int] = {}  # consecutive errors per source
        self._started = False
        self._stopping = False
        self._fast = not options and self._priority is None
        # No options, no key, one consumer per item: see _accept_lean.
        self._lean = (
            self._fast
            and key is None
            and (routed is not None or mode == "round_robin" or len(targets) == 1)
        )
        self._lean_in = itertools.count()  # lean items loaded ...
        self._lean_out = itertools.count()  # ... and finished
        self._lean_batches: collections.deque[_Batch] = collections.deque()
        self._filling = 0  # lean batches being posted right now
        self._cancelling = 0  # _cancel_waiting() calls under way
        self._sweep_at = _SWEEP_MIN  # lean batches kept before a full pass
        self._waiting = 0  # channel threads waiting for room in the backlog
        self._loaded = itertools.count()
        self._delivered = itertools.count()
        self._succeeded = itertools.count()
        self._failed = itertools.count()
        self._dedup = 0
        self._aborted = 0
        self._cancelled = itertools.count()  # deliveries that never ran
        self._source_errors = 0

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> Pipeline:
        """Start loading: callable sources at once and then every ``every`` seconds (or
        at each cron time), channels on threads of their own. Returns the pipeline."""
        with self._lock:
            if self._started:
                raise RuntimeError(f"pipeline {self._name!r} was started already")
            self._started = True
        for i, source in enumerate(self._sources):
            if callable(source) and not isinstance(source, (queue.Queue, asyncio.Queue)):
                self._loads[i] = self._schedule_load(i, source)
            else:
                t = threading.Thread(
                    target=self._drain,
                    args=(source,),
                    name=f"{self._name}-channel-{i}",
                    daemon=True,
                )
                self._threads.append(t)
                t.start()
        return self

    def _schedule_load(self, i: int, source: Callable[[], object]) -> TaskHandle:
        name = f"{self._name}: load {callable_name(source)}"
        if self._cron is None:
            assert self._every is not None
            return self._sched.post_task(
                self._load, i, source, delay=0.0, interval=self._every, name=name
            )
        # The first load at start(), as with every=; then one at each cron time.
        return self._sched.post_task(self._load_cron, i, source, delay=0.0, name=name)

    def _cron_delay(self) -> float:
        assert self._cron is not None
        now = datetime.datetime.now()
        nxt = self._cron(now)
        return max(0.0, (nxt - now).total_seconds())

    def _load_cron(self, i: int, source: Callable[[], object]) -> None:
        """A cron turn: load, then post the next turn (one at a time: never overlaps)."""
        try:
            self._load(i, source)
        finally:
            self._next_cron_turn(i, source)

    def _next_cron_turn(self, i: int, source: Callable[[], object]) -> None:
        with self._lock:
            if self._stopping:
                return
            name = f"{self._name}: load {callable_name(source)}"
            delay = self._cron_delay()
            self._loads[i] = self._sched.post_task(
                self._load_cron, i, source, delay=delay, name=name
            )

    def _load(self, i: int, source: Callable[[], object]) -> None:
        """One turn of a callable source (on a worker; the wheel never runs it twice at
        once: interval runs do not overlap)."""
        self._drop_settled()
        if not self._enter():
            return
        try:
            if self._backlog() >= self._capacity:
                return  # backpressure: its next turn may find room
            try:
                batch = source()
                if inspect.isawaitable(batch):
                    batch = asyncio.run(_awaited(batch))
                items = list(batch) if batch is not None else []  # type: ignore[call-overload]
            except Exception as exc:  # noqa: BLE001 - a source's failure is ours to report
                self._source_failed(i, source, exc)
                return
            self._errors.pop(i, None)
            self._accept_many(items)
        finally:
            self._exit()

    def _enter(self, force: bool = False) -> bool:
        """A load, put() or channel accept begins: False once stopping (a channel still
        delivers what it took, until stop() has returned)."""
        with self._lock:
            if (self._stopping and not force) or self._stopped:
                return False
            self._loading += 1
            me = threading.get_ident()
            self._loaders[me] = self._loaders.get(me, 0) + 1
            return True

    def _exit(self) -> None:
        with self._lock:
            self._loading -= 1
            me = threading.get_ident()
            n = self._loaders.pop(me) - 1
            if n:
                self._loaders[me] = n

    def _source_failed(self, i: int, source: object, exc: Exception) -> None:
        with self._lock:
            self._source_errors += 1
            n = self._errors[i] = self._errors.get(i, 0) + 1
        logger.error(
            "pipeline %r: source %s raised (error %d in a row)",
            self._name,
            callable_name(source),
            n,
            exc_info=exc,
        )
        if self._stop_on_error:
            self._halt()
            return
        if self._cron is None and i in self._loads:
            assert self._every is not None
            # Backoff: its next turn comes after every * 2^(n-1) seconds, at most 60 s.
            delay = min(_SOURCE_BACKOFF_CAP, self._every * 2 ** min(n - 1, 30))
            self._loads[i].reschedule(max(delay, self._every), interval=self._every)

    def _drain(self, source: object) -> None:
        """A channel's thread: take items as they arrive, waiting while the backlog is
        full, until the pipeline stops."""
        try:
            if isinstance(source, queue.Queue):
                while not self._stopping:
                    try:
                        item = source.get(timeout=_CHANNEL_POLL)
                    except queue.Empty:
                        continue
                    self._take(item)
            elif isinstance(source, asyncio.Queue):
                self._drain_async_queue(source)
            elif isinstance(source, collections.abc.AsyncIterator):
                asyncio.run(self._drain_async_iter(source))
            else:
                for item in iter(source):  # type: ignore[call-overload]
                    if self._stopping:
                        break
                    self._take(item)
        except Exception as exc:  # noqa: BLE001 - reported and counted like a source call
            self._source_failed(-1, source, exc)

    def _take(self, item: object) -> None:
        """An item a channel has taken: delivered, unless stop() has returned already."""
        if not self._enter(force=True):
            logger.warning(
                "pipeline %r: item %r arrived after stop(): not delivered", self._name, item
            )
            return
        try:
            self._accept_many((item,), wait=True)
        finally:
            self._exit()

    def _drain_async_queue(self, q: asyncio.Queue[Any]) -> None:
        loop = getattr(q, "_loop", None)  # the loop it is bound to, once used
        if loop is not None and loop.is_running():
            while not self._stopping:
                fut = asyncio.run_coroutine_threadsafe(
                    asyncio.wait_for(q.get(), _CHANNEL_POLL), loop
                )
                try:
                    item = fut.result()
                except (TimeoutError, asyncio.TimeoutError):
                    continue
                self._take(item)
        else:

            async def run() -> None:
                while not self._stopping:
                    try:
                        item = await asyncio.wait_for(q.get(), _CHANNEL_POLL)
                    except (TimeoutError, asyncio.TimeoutError):
                        continue
                    self._take(item)

            asyncio.run(run())

    async def _drain_async_iter(self, it: collections.abc.AsyncIterator[Any]) -> None:
        async for item in it:
            if self._stopping:
                break
            self._take(item)

    def _halt(self) -> None:
        """Stop loading (callable sources and channels); deliveries go on."""
        with self._lock:
            self._stopping = True
            loads = list(self._loads.values())
            self._room.notify_all()
        for h in loads:
            h.cancel()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop loading; let queued and in-flight deliveries finish.

        Args:
            timeout: seconds to wait at most; when it passes, deliveries that have not
                started are cancelled. From inside a consumer, nothing is waited for.

        Returns:
            True if every delivery finished. Idempotent.
        """
        from ._scheduler import check_timeout  # noqa: PLC0415

        timeout = check_timeout(timeout)
        self._halt()
        sched = self._sched
        clock_now = sched._clock.now if sched._manual else real_monotonic
        end = None if timeout is None else clock_now() + timeout
        if self._loaders.get(threading.get_ident()):
            # From a source, key() or route() in a load under way: its batch is still
            # to be posted, so it cannot be waited for here. Loading stops.
            return False
        me = current_task()
        if me is not None and self._is_ours(me):
            # From one of our own deliveries: waiting for the others could need this
            # very worker. Loading stops; True only if no other delivery is unfinished.
            with self._lock:
                others = [h for i in self._items_now() for h in i.handles]
                others += [h for b in list(self._lean_batches) for h in b.pending()]
            return not any(h is not me and not h.done() for h in others)
        real_end = None if timeout is None else real_monotonic() + timeout
        current = threading.current_thread()
        for t in self._threads:  # channels leave within _CHANNEL_POLL; a blocked
            if t is not current:  # iterator cannot be interrupted: not waited for long
                wait = 0.5 if real_end is None else max(0.0, min(0.5, real_end - real_monotonic()))
                t.join(wait)
        # Loads and put() calls under way finish posting first, within the timeout.
        while self._loading:
            if real_end is not None and real_monotonic() >= real_end:
                with self._lock:
                    self._stopped = True  # what a stuck load brings later is not delivered
                self._cancel_waiting("cancelled: the pipeline's stop() timed out")
                return False
            threading.Event().wait(0.001)
        try:
            return self._wait_deliveries(end, clock_now)
        finally:
            with self._lock:
                self._stopped = True

    def _items_now(self) -> list[_Item]:
        """The unfinished items (a copy: deliveries remove theirs without the lock;
        list() of a dict's values runs in C, in one piece under the GIL)."""
        return list(self._unfinished.values())

    def _is_ours(self, h: TaskHandle) -> bool:
        """Is ``h`` one of our deliveries? (Its callback is a bound method of ours: no
        list to search, so it holds even before the poster has stored the handle.)"""
        cb = h._cb
        return getattr(cb, "__self__", None) is self and getattr(cb, "__func__", None) in (
            Pipeline._deliver,
            Pipeline._deliver_fast,
            Pipeline._deliver_lean,
        )

    def _wait_deliveries(self, end: float | None, clock_now: Callable[[], float]) -> bool:
        while True:
            with self._lock:
                handles = [h for i in self._items_now() for h in i.handles if not h.done()]
                handles += [h for b in list(self._lean_batches) for h in b.pending()]
                filling = self._filling
            if not handles:
                if not filling:
                    self._prune()
                    return True
                threading.Event().wait(0.001)  # a load is posting its batch
                continue
            for h in handles:
                remaining = None if end is None else max(0.0, end - clock_now())
                try:
                    if not h.wait_for_finished(remaining):
                        self._cancel_waiting("cancelled: the pipeline's stop() timed out")
                        return False
                except TaskCancelled:
                    pass

    def _cancel_waiting(self, reason: str) -> None:
        with self._lock:
            pairs = [(i, h) for i in self._items_now() for h in i.handles]
            lean = [h for b in list(self._lean_batches) for h in b.pending()]
            self._cancelling += 1  # _prune() does not count these cancellations too
        try:
            for h in lean:
                if self._sched._cancel_now(h, reason):
                    next(self._lean_out)
                    next(self._cancelled)
        finally:
            with self._lock:
                self._cancelling -= 1
        for item, h in pairs:
            if self._sched._cancel_now(h, reason) and self._fast:
                next(self._cancelled)
                self._delivery_done(item)  # (a done callback does it otherwise)

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------- items
    def put(self, item: object) -> bool:
        """Hand one item to the consumers now (go-conveyor's ``AddTask``), as if a source
        had loaded it. Returns False if it was dropped as a duplicate of a live key.

        Raises:
            RuntimeError: the pipeline is stopping or stopped.
        """
        if not self._enter():
            raise RuntimeError(f"pipeline {self._name!r} is stopped: put() takes no item")
        try:
            return self._accept_many((item,)) == 1
        finally:
            self._exit()

    def abort(self, key: object) -> bool:
        """Remove the queued item with this key: its deliveries that have not started
        are cancelled. Returns True if any was, False if none was queued."""
        with self._lock:
            item = self._live.get(key)
            handles = [] if item is None else list(item.handles)
        removed = False
        for h in handles:
            if self._sched._cancel_now(h, "aborted by Pipeline.abort()"):
                removed = True
                if self._fast and item is not None:
                    next(self._cancelled)
                    self._delivery_done(item)  # (a done callback does it otherwise)
        if removed:
            with self._lock:
                self._aborted += 1
        return removed

    def _backlog(self) -> int:
        """Items loaded and not finished."""
        return len(self._unfinished) + count_value(self._lean_in) - count_value(self._lean_out)

    def _accept_many(self, values: Iterable[object], wait: bool = False) -> int:
        """Loaded items: each one's key and targets (user code, outside the lock), then
        dedup and bookkeeping, then one delivery per target consumer. An item whose
        key() or route() raises is logged and counted loaded and failed; the others go
        on. Returns how many were accepted."""
        if self._stopped:  # a load that outlived a stop() that timed out
            return self._refuse_late(values)
        if self._lean and not wait:
            return self._accept_lean(values)
        key = self._key
        accepted = 0
        for value in values:
            if wait:  # a channel: wait for room in the backlog
                with self._lock:
                    while self._backlog() >= self._capacity and not self._stopping:
                        self._waiting += 1
                        try:
                            self._room.wait(_CHANNEL_POLL)
                        finally:
                            self._waiting -= 1
            try:
                k = None if key is None else key(value)
                targets = self._targets(value)
                priority = None if self._priority is None else self._priority(value)
            except Exception:
                logger.exception(
                    "pipeline %r: key(), route() or priority() raised for %r: counted failed",
                    self._name,
                    value,
                )
                next(self._loaded)
                next(self._failed)
                continue
            with self._lock:
                next(self._loaded)  # (duplicates included: loaded, then dropped)
                if k is not None and k in self._live:
                    self._dedup += 1
                    continue
                item = _Item(value, k)
                if k is not None:
                    self._live[k] = item
                self._unfinished[id(item)] = item
                item.left = len(targets)
            accepted += 1
            if not targets:
                self._finish(item)
                continue
            self._post(item, targets, priority)
            item.posted = True
        return accepted

    def _refuse_late(self, values: Iterable[object]) -> int:
        items = list(values)
        if items:
            for _ in items:
                next(self._loaded)
                next(self._failed)
            logger.warning(
                "pipeline %r: %d item(s) loaded after stop() gave up: not delivered "
                "(counted failed)",
                self._name,
                len(items),
            )
        return 0

    def _accept_lean(self, values: Iterable[object]) -> int:
        """The lean path (no task options, no key, one consumer per item): no per-item
        bookkeeping object; the backlog is a pair of counters, the handles one list
        per batch (for stop()). A loaded batch with nothing else to track allocates
        only the tasks themselves, which keeps the garbage collector's work down."""
        self._drop_settled()
        batch = _Batch()
        with self._lock:
            self._lean_batches.append(batch)
            self._filling += 1  # (_prune leaves the batches alone meanwhile)
        try:
            return self._post_lean(values, batch.handles)
        finally:
            with self._lock:
                batch.open = False
                self._filling -= 1

    def _drop_settled(self) -> None:
        """Drop the oldest lean batches whose deliveries are all done (cheap: each
        handle is looked at about once), so that finished ones are not kept."""
        batches = self._lean_batches
        if batches:
            with self._lock:  # (settled() moves a batch's position: one thread at a time)
                while batches and batches[0].settled():
                    batches.popleft()
                if len(batches) > self._sweep_at:
                    # One slow delivery at the front must not keep every later batch:
                    # a full pass now and then (amortised: when the count has doubled).
                    self._lean_batches = batches = collections.deque(
                        b for b in batches if not b.settled()
                    )
                    self._sweep_at = max(_SWEEP_MIN, 2 * len(batches))

    def _post_lean(self, values: Iterable[object], batch: list[TaskHandle]) -> int:
        post = self._sched.post_task
        deliver = self._deliver_lean
        loaded = self._loaded
        lean_in = self._lean_in
        append = batch.append
        routed = self._routed is not None
        single = self._consumers[0] if not routed and len(self._consumers) == 1 else None
        n = 0
        for value in values:
            if single is not None:
                consumer = single
            else:
                try:
                    targets = self._targets(value)
                except Exception:
                    logger.exception(
                        "pipeline %r: route() raised for %r: counted failed", self._name, value
                    )
                    targets = []
                    next(self._failed)
                if not targets:  # (an unknown type is counted failed by _targets)
                    next(loaded)
                    n += 1
                    continue
                consumer = targets[0]
            next(loaded)
            next(lean_in)
            n += 1
            try:
                append(post(deliver, consumer, value))
            except (SchedulerShutdown, QueueFull, RuntimeError):  # refused: counted
                logger.exception("pipeline %r: a delivery of %r was refused", self._name, value)
                next(self._failed)
                next(self._lean_out)
        return n

    def _deliver_lean(self, consumer: Callable[[Any], object], value: object) -> object:
        next(self._delivered)
        try:
            result = consumer(value)
        except BaseException:
            next(self._failed)
            next(self._lean_out)
            if self._waiting:
                self._wake_channels()
            raise  # the task fails with it: stored on the handle, logged
        next(self._succeeded)
        next(self._lean_out)
        if self._waiting:
            self._wake_channels()
        return result

    def _wake_channels(self) -> None:
        with self._lock:
            self._room.notify_all()

    def _post(
        self, item: _Item, targets: list[Callable[[Any], object]], priority: int | None
    ) -> None:
        post = self._sched.post_task
        if self._fast:  # no task options: the plain (cheapest) tasks, accounted inline
            for consumer in targets:
                try:
                    item.handles.append(post(self._deliver_fast, consumer, item))
                except (SchedulerShutdown, QueueFull, RuntimeError):  # refused: counted
                    self._refused(item)
            return
        options = self._options
        if priority is not None:
            options = {**options, "priority": priority}
        for consumer in targets:
            try:
                h = post(
                    self._deliver, consumer, item.value, name=callable_name(consumer), **options
                )
            except (SchedulerShutdown, QueueFull, RuntimeError):  # refused: counted
                self._refused(item)
                continue
            item.handles.append(h)
            h.add_done_callback(functools.partial(self._outcome, item=item))

    def _refused(self, item: _Item) -> None:
        logger.exception("pipeline %r: a delivery of %r was refused", self._name, item.value)
        next(self._failed)
        self._delivery_done(item)

    def _targets(self, value: object) -> list[Callable[[Any], object]]:
        """The consumers of an item (the route is user code: no lock held; the turn
        of round-robin is an atomic next() on an itertools.cycle)."""
        if self._routed is not None:
            assert self._route is not None
            kind = self._route(value)
            consumer = self._routed.get(kind)
            if consumer is None:
                next(self._failed)
                logger.error(
                    "pipeline %r: no consumer for type %r of item %r: counted as failed",
                    self._name,
                    kind,
                    value,
                )
                return []
            return [consumer]
        if self._mode == "round_robin":
            return [self._consumers[next(self._turn)]]
        return self._consumers

    def _deliver_fast(self, consumer: Callable[[Any], object], item: _Item) -> object:
        """A delivery without task options: counted here, no done callback."""
        next(self._delivered)
        try:
            result = consumer(item.value)
        except BaseException:
            next(self._failed)
            self._delivery_done(item)
            raise  # the task fails with it: stored on the handle, logged
        next(self._succeeded)
        self._delivery_done(item)
        return result

    def _deliver(self, consumer: Callable[[Any], object], value: object) -> object:
        me = current_task()
        if me is None or me.attempts <= 1:
            next(self._delivered)
        return consumer(value)

    def _outcome(self, h: TaskHandle, *, item: _Item) -> None:
        st = h._state
        if st == SUCCEEDED:
            next(self._succeeded)
        elif st == FAILED:
            next(self._failed)
        elif st == CANCELLED and h.attempts:
            next(self._failed)  # delivered, then cancelled while waiting for a retry
        elif st == CANCELLED:
            next(self._cancelled)
        self._delivery_done(item)  # (not delivered at all: aborted, stopped or expired)

    def _delivery_done(self, item: _Item) -> None:
        if item.left == 1:  # its only delivery (the common case): no lock needed
            item.left = 0
        else:
            with self._lock:
                item.left -= 1
                if item.left > 0:
                    return
        self._finish(item)

    def _finish(self, item: _Item) -> None:
        self._unfinished.pop(id(item), None)  # atomic
        if item.key is not None or self._waiting:
            with self._lock:
                if item.key is not None and self._live.get(item.key) is item:
                    del self._live[item.key]
                self._room.notify_all()

    def _prune(self) -> None:
        """Items whose deliveries were all cancelled without us (a scheduler shut down
        under the pipeline) are finished here, so that the backlog does not keep them;
        lean batches whose deliveries are all done are dropped."""
        with self._lock:
            if self._filling:  # a batch is being posted: its handles are not all there
                return
            self._lean_batches = collections.deque(b for b in self._lean_batches if not b.settled())
            if not self._lean_batches and not self._cancelling:
                # Nothing lean is live: counts the deliveries cancelled without us.
                gap = count_value(self._lean_in) - count_value(self._lean_out)
                for _ in range(gap):
                    next(self._lean_out)
                    next(self._cancelled)
            # Options path: done callbacks count every end, cancellations included. The
            # plain path counts its own runs and our cancels; a delivery cancelled by
            # someone else (a scheduler shut down, a handle from tasks()) is counted
            # here, once every delivery of the item is done.
            stale = []
            if self._fast:
                stale = [
                    i
                    for i in self._items_now()
                    if i.posted and i.left > 0 and all(h.done() for h in i.handles)
                ]
            for item in stale:
                self._unfinished.pop(id(item), None)
                for _ in range(item.left):
                    next(self._cancelled)
                item.left = 0
        for item in stale:
            self._finish(item)

    # ----------------------------------------------------------------- metrics
    def stats(self) -> PipelineStats:
        """A snapshot of the counters (see :class:`PipelineStats`)."""
        self._prune()
        with self._lock:
            delivered = count_value(self._delivered)
            handles = [h for i in self._items_now() for h in i.handles]
            handles += [h for b in list(self._lean_batches) for h in b.handles[b.pos :]]
            queued = sum(1 for h in handles if h._state < RUNNING)  # pending or queued
            return PipelineStats(
                loaded=count_value(self._loaded),
                queued=queued,
                delivered=delivered,
                succeeded=count_value(self._succeeded),
                failed=count_value(self._failed),
                deduplicated=self._dedup,
                aborted=self._aborted,
                source_errors=self._source_errors,
                backlog=self._backlog(),
                cancelled=count_value(self._cancelled),
            )

    def __repr__(self) -> str:
        state = "stopped" if self._stopping else "running" if self._started else "new"
        return f"<Pipeline {self._name!r} {state} backlog={self._backlog()}>"


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _check_cron(expr: object) -> Callable[[datetime.datetime], datetime.datetime]:
    """A function giving the next cron time after a datetime; ValueError if invalid."""
    if not isinstance(expr, str):
        raise TypeError(f"cron must be a str of six fields (seconds first), got {expr!r}")
    try:
        from croniter import croniter  # noqa: PLC0415 - the optional cron extra
    except ImportError:
        raise ImportError(
            "cron= needs the croniter package: pip install 'wheeltask[cron]'"
        ) from None
    if len(expr.split()) != 6 or not croniter.is_valid(expr, second_at_beginning=True):
        raise ValueError(
            f"cron must be a valid expression of six fields, seconds first "
            f"(e.g. '*/5 * * * * *'), got {expr!r}"
        )

    def after(moment: datetime.datetime) -> datetime.datetime:
        nxt: datetime.datetime = croniter(expr, moment, second_at_beginning=True).get_next(
            datetime.datetime
        )
        return nxt

    return after
