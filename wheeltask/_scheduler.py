"""The scheduler: one clock, one wheel, one pool and one timer thread."""

from __future__ import annotations

import atexit
import collections
import dataclasses
import datetime
import inspect
import itertools
import logging
import math
import os
import random
import threading
import types
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, cast, final

from ._clock import Clock, MonotonicClock, VirtualClock, is_number, real_monotonic
from ._coro import (
    Attempt,
    CoroRunner,
    check_loop,
    close_unstarted,
    coroutine_task,
    is_awaitable,
    is_coroutine_function,
)
from ._errors import (
    DuplicateTask,
    QueueFull,
    Retry,
    SchedulerShutdown,
    TaskCancelled,
    TaskTimeout,
)
from ._events import RUN_EVENTS, Event, Listeners, check_events
from ._group import TaskGroup
from ._handle import (
    CANCELLED,
    FAILED,
    PAUSED,
    QUEUED,
    REPLACED,
    RUNNING,
    SUCCEEDED,
    WAITING,
    WAKERS,
    Extra,
    Failure,
    RetryEntry,
    TaskHandle,
    TaskState,
    TimeoutEntry,
    call_hook,
    callable_name,
    notify,
    report_failure,
    timeout_message,
)
from ._pool import CURRENT, InlinePool, OnFull, WheeltaskThread, WorkerPool, count_value
from ._wheel import TICK_NS, Wheel

__all__ = ["Scheduler", "Stats"]

logger = logging.getLogger("wheeltask")

_FunctionType: Final = types.FunctionType
_allocate_lock: Final = threading.Lock
_new_handle: Final = object.__new__
_NS: Final = 1_000_000_000
# Delays are capped so tick arithmetic stays exact and bounded (about 100 years).
MAX_DELAY: Final = 3_155_760_000.0
_MAX_DELAY_NS: Final = int(MAX_DELAY) * _NS
_MIN_INTERVAL_NS: Final = TICK_NS
# How many recent lateness samples stats() takes its percentiles from.
_LATENESS_SAMPLES: Final = 8192
_ON_FULL: Final = ("block", "raise", "caller_runs")
# The default backoff between attempts: 0.1 s, 0.2 s, 0.4 s ... at most 30 s, each
# times a random factor in [0.5, 1] so that tasks failing together retry apart.
_BACKOFF_BASE: Final = 0.1
_BACKOFF_CAP: Final = 30.0
_INF: Final = math.inf
# The priority of the internal items that run hooks and listeners for the timer thread.
_LATER_PRIORITY: Final = 1 << 62
# What a cancellation with no waiters hands back (not None: "cancelled just now").
_NO_WAITERS: Final[list[Any]] = []

# A call left for a worker to make: (function, arguments).
_Call = tuple[Callable[..., object], tuple[Any, ...]]

# Every live scheduler, for the interpreter-exit warning and fork handling.
_live: weakref.WeakSet[Scheduler] = weakref.WeakSet()


@final
@dataclasses.dataclass(frozen=True)
class Stats:
    """A snapshot of a scheduler's counters (``Scheduler.stats()``).

    ``pending`` counts timers on the wheels, ``queued`` tasks waiting for a worker,
    ``running`` callbacks in progress. ``submitted`` counts accepted posts,
    ``succeeded``/``failed`` completed runs by outcome, ``cancelled`` tasks that ended
    cancelled, ``missed`` interval firings skipped, ``retried`` retries scheduled,
    ``deduplicated`` posts that found a live task with their key, ``timed_out`` runs
    that exceeded their ``timeout`` (counted in ``failed`` too). ``queued_by_priority``
    maps each priority with queued tasks to their number, highest first. ``expired``
    counts runs not started within ``expires`` of their due time (one-shot ones are in
    ``cancelled`` too, interval ones in ``missed``); ``paused`` the tasks paused now.
    ``rejected`` counts
    tasks accepted and then refused before running (a post that raced ``shutdown()``);
    a post refused at once (``QueueFull``, ``SchedulerShutdown``, bad input) changes no
    count.
    Lateness is how long after its deadline the wheel handed a timer to the pool, in
    seconds, over the most recent 8,192 firings (0.0 before the first).
    """

    pending: int
    queued: int
    running: int
    workers: int
    idle_workers: int
    submitted: int
    succeeded: int
    failed: int
    retried: int
    cancelled: int
    missed: int
    rejected: int
    lateness_p50: float
    lateness_p99: float
    lateness_max: float
    deduplicated: int
    timed_out: int
    queued_by_priority: dict[int, int]
    expired: int
    paused: int


# ----------------------------------------------------------------- validation
def to_ns(value: object, what: str, *, minimum_ns: int = 0) -> int:
    """Seconds (int, float or timedelta) to integer nanoseconds, validated.

    Raises TypeError for a non-number (``bool`` included) and ValueError for NaN,
    infinities, values below ``minimum_ns`` and values beyond ``MAX_DELAY``.
    """
    if isinstance(value, datetime.timedelta):
        ns = (value // datetime.timedelta(microseconds=1)) * 1000
        shown = f"{value.total_seconds()!r} seconds ({value!r})"
    elif is_number(value):
        assert isinstance(value, (int, float))
        if not math.isfinite(value):
            raise ValueError(f"{what} must be a finite number of seconds, got {value!r}")
        if value > MAX_DELAY:
            raise ValueError(f"{what} must be at most {MAX_DELAY:g} seconds, got {value!r}")
        ns = value * _NS if type(value) is int else round(value * _NS)
        shown = repr(value)
    else:
        raise TypeError(
            f"{what} must be a number of seconds or a datetime.timedelta, "
            f"got {type(value).__name__} {value!r}"
        )
    if ns < minimum_ns:
        if minimum_ns == 0:
            raise ValueError(f"{what} must be >= 0 seconds, got {shown}")
        raise ValueError(
            f"{what} must be at least {minimum_ns / _NS:g} seconds (one 5 ms tick), got {shown}"
        )
    if ns > _MAX_DELAY_NS:
        raise ValueError(f"{what} must be at most {MAX_DELAY:g} seconds, got {shown}")
    return int(ns)


def check_timeout(timeout: object, what: str = "timeout") -> float | None:
    if timeout is None:
        return None
    if not is_number(timeout):
        raise TypeError(f"{what} must be a number of seconds or None, got {timeout!r}")
    assert isinstance(timeout, (int, float))
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"{what} must be >= 0 seconds or None, got {timeout!r}")
    return float(timeout)


def _check_int(value: object, what: str, low: int) -> int:
    if type(value) is not int:
        raise TypeError(f"{what} must be an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{what} must be >= {low}, got {value!r}")
    return value


def check_scheduler_options(
    *,
    max_workers: int = 10,
    min_workers: int = 0,
    queue_size: int = 10_000,
    idle_timeout: float = 5.0,
    on_full: OnFull = "block",
    max_pending: int | None = None,
    clock: Clock | None = None,
    name: str = "wheeltask",
    task_defaults: Mapping[str, Any] | None = None,
    loop: str = "auto",
    max_async: int = 1000,
) -> dict[str, Any]:
    """Validate ``Scheduler`` options; return them as a dict. Changes nothing."""
    _check_int(max_workers, "max_workers", 1)
    _check_int(min_workers, "min_workers", 0)
    if min_workers > max_workers:
        raise ValueError(f"min_workers must be <= max_workers ({max_workers}), got {min_workers!r}")
    _check_int(queue_size, "queue_size", 1)
    if not is_number(idle_timeout):
        raise TypeError(f"idle_timeout must be a number of seconds, got {idle_timeout!r}")
    if not (0 < idle_timeout < _INF):
        raise ValueError(f"idle_timeout must be > 0 and finite, got {idle_timeout!r}")
    if on_full not in _ON_FULL:
        raise ValueError(
            f"on_full must be one of {', '.join(map(repr, _ON_FULL))}, got {on_full!r}"
        )
    if max_pending is not None:
        _check_int(max_pending, "max_pending", 1)
    if clock is not None and not (
        callable(getattr(clock, "now_ns", None)) and callable(getattr(clock, "now", None))
    ):
        raise TypeError(f"clock must provide now() and now_ns(), got {clock!r}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")
    _check_int(max_async, "max_async", 1)
    check_loop(loop)
    return {
        "max_workers": max_workers,
        "min_workers": min_workers,
        "queue_size": queue_size,
        "idle_timeout": float(idle_timeout),
        "on_full": on_full,
        "max_pending": max_pending,
        "clock": clock,
        "name": name,
        "task_defaults": _check_task_defaults(task_defaults),
        "loop": loop,
        "max_async": max_async,
    }


_TASK_OPTIONS: Final = frozenset(
    {
        "retries",
        "retry_on",
        "backoff",
        "key",
        "on_duplicate",
        "on_success",
        "on_failure",
        "on_retry",
        "priority",
        "timeout",
        "expires",
    }
)
_ON_DUPLICATE: Final = ("return", "raise", "replace")
# The task options a scheduler can give every task (a key belongs to one task).
_DEFAULTABLE: Final = _TASK_OPTIONS - {"key", "on_duplicate"}


def _check_task_defaults(defaults: object) -> dict[str, Any] | None:
    if defaults is None:
        return None
    if not isinstance(defaults, Mapping):
        raise TypeError(f"task_defaults must be a mapping of task options, got {defaults!r}")
    bad = sorted(str(k) for k in defaults if k not in _DEFAULTABLE)
    if bad:
        raise ValueError(
            f"task_defaults takes {', '.join(sorted(_DEFAULTABLE))}; got {', '.join(bad)}"
        )
    options = dict(defaults)
    _task_extra(None, None, options)  # each value checked as post_task would
    return options or None


def _task_extra(name: object, interval: object, options: dict[str, Any]) -> Extra:
    """Validate the task options; build the Extra that holds them. Changes nothing."""
    unknown = options.keys() - _TASK_OPTIONS
    if unknown:
        raise unknown_options_error({k: options[k] for k in unknown})
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")
    extra = Extra(
        name,
        None if interval is None else to_ns(interval, "interval", minimum_ns=_MIN_INTERVAL_NS),
    )
    if options:
        retries = options.get("retries", 0)
        _check_int(retries, "retries", 0)
        retry_on = options.get("retry_on", ())
        if isinstance(retry_on, type):
            retry_on = (retry_on,)
        if not isinstance(retry_on, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in retry_on
        ):
            raise TypeError(
                f"retry_on must be an exception type or a tuple of them, got {retry_on!r}"
            )
        backoff = options.get("backoff")
        if backoff is not None and not callable(backoff):
            backoff = to_ns(backoff, "backoff") / _NS  # seconds, validated
        extra.retries = retries
        extra.retry_on = retry_on
        extra.backoff = backoff
        key = options.get("key")
        if key is not None:
            try:
                hash(key)
            except TypeError:
                raise TypeError(f"key must be hashable, got {key!r}") from None
        on_duplicate = options.get("on_duplicate", "return")
        if on_duplicate not in _ON_DUPLICATE:
            raise ValueError(
                f"on_duplicate must be one of {', '.join(map(repr, _ON_DUPLICATE))}, "
                f"got {on_duplicate!r}"
            )
        extra.key = key
        extra.on_duplicate = on_duplicate
        for hook in ("on_success", "on_failure", "on_retry"):
            fn = options.get(hook)
            if fn is not None and not callable(fn):
                raise TypeError(f"{hook} must be callable, got {fn!r}")
        extra.on_success = options.get("on_success")
        extra.on_failure = options.get("on_failure")
        extra.on_retry = options.get("on_retry")
        priority = options.get("priority", 0)
        if type(priority) is not int:
            raise TypeError(f"priority must be an int, got {type(priority).__name__} {priority!r}")
        extra.priority = priority
        timeout = options.get("timeout")
        if timeout is not None:
            if is_number(timeout) and timeout <= 0:
                raise ValueError(f"timeout must be > 0 seconds or None, got {timeout!r}")
            timeout_ns = to_ns(timeout, "timeout")
            if timeout_ns <= 0:
                raise ValueError(f"timeout must be > 0 seconds or None, got {timeout!r}")
            extra.timeout = timeout_ns
        expires = options.get("expires")
        if expires is not None:
            extra.expires = to_ns(expires, "expires")
    return extra


def unknown_options_error(options: dict[str, object]) -> TypeError:
    names = ", ".join(sorted(options))
    return TypeError(
        f"post_task() got unknown option(s): {names}. Keyword arguments are task "
        "options; to pass keywords to the callback use functools.partial(cb, "
        f"{next(iter(sorted(options)))}=...)"
    )


# ------------------------------------------------------------------ scheduler
class Scheduler:
    """Runs delayed, periodic and immediate tasks on a bounded pool of threads.

    Args:
        max_workers: at most this many callbacks run at once (threads, made on demand).
        min_workers: threads kept alive while idle, once started.
        queue_size: at most this many tasks wait for a worker; a post beyond it is
            handled by ``on_full``. Timers that fall due are always queued.
        idle_timeout: seconds before a thread above ``min_workers`` exits when idle.
        on_full: ``"block"`` (wait for room), ``"raise"`` (``QueueFull``) or
            ``"caller_runs"`` (run the task on the posting thread).
        max_pending: at most this many timers on the wheels (``QueueFull`` beyond);
            None for no limit.
        clock: time source; ``MonotonicClock()`` by default.
        name: used in thread names and logs.
        task_defaults: task options every ``post_task`` gets unless it gives its
            own, e.g. ``{"timeout": 30, "retries": 2, "retry_on": OSError}`` (any
            option but ``key`` and ``on_duplicate``).
        loop: the event loop of coroutine tasks (``async def`` callbacks): "auto"
            (uvloop when installed, else asyncio), "uvloop" or "asyncio". It runs in a
            thread of its own, started by the first coroutine task.
        max_async: at most this many coroutine tasks run at once (a semaphore, not
            threads); the others wait, counted in ``stats().queued``.

    Use it as a context manager: leaving the block calls ``shutdown(wait=True)``.
    """

    _handle_cls: type[TaskHandle] = TaskHandle  # what post_task returns

    def __init__(
        self,
        *,
        max_workers: int = 10,
        min_workers: int = 0,
        queue_size: int = 10_000,
        idle_timeout: float = 5.0,
        on_full: OnFull = "block",
        max_pending: int | None = None,
        clock: Clock | None = None,
        name: str = "wheeltask",
        task_defaults: Mapping[str, Any] | None = None,
        loop: str = "auto",
        max_async: int = 1000,
    ) -> None:
        opts = check_scheduler_options(
            max_workers=max_workers,
            min_workers=min_workers,
            queue_size=queue_size,
            idle_timeout=idle_timeout,
            on_full=on_full,
            max_pending=max_pending,
            clock=clock,
            name=name,
            task_defaults=task_defaults,
            loop=loop,
            max_async=max_async,
        )
        self._options = opts
        self._name = name
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._now_ns: Callable[[], int] = self._clock.now_ns
        self._queue_size = queue_size
        self._max_pending = max_pending
        self._manual = False
        self._running_due = False
        self._setup_sync()
        self._wheel = Wheel(TICK_NS, self._now_ns() // TICK_NS)
        self._pool: WorkerPool | InlinePool = self._make_pool()
        self._offer = self._pool.offer
        self._closing = False
        self._ids = itertools.count(1)  # atomic under the GIL: lock-free posts use it
        # Posts that took an id and were then refused (a shutdown() racing the post):
        # the poster got SchedulerShutdown; stats() counts them as rejected.
        self._refused = 0
        self._id_gaps = 0  # ids taken by posts refused at once (they change no count)
        self._intervals: set[TaskHandle] = set()
        self._paused: set[TaskHandle] = set()  # paused one-shot and interval tasks
        self._n_succeeded = itertools.count()  # bumped by workers without the lock
        self._n_failed = itertools.count()
        self._cancelled = 0
        self._missed = 0
        self._retried = 0
        self._keys: dict[object, TaskHandle] = {}  # live keyed tasks, by key
        # Serialises keyed posts; re-entrant: a caller_runs task may post a keyed task.
        self._keys_lock = threading.RLock()
        self._deduplicated = 0
        self._timed_out = 0
        self._expired = 0
        self._rng = random.Random()  # jitter of the default backoff
        self._late: collections.deque[int] = collections.deque(maxlen=_LATENESS_SAMPLES)
        self._late_max = 0
        self._closers: dict[threading.Thread, int] = {}  # tasks inside shutdown()
        self._bulk = False  # cancelling many at once: one _closed_progress_locked after
        self._listeners = Listeners()
        self._ev = self._listeners.by_kind  # kind -> listeners (read on each emit point)
        self._ev_posted: tuple[Callable[[Event], object], ...] = ()
        self._ev_cancelled: tuple[Callable[[Event], object], ...] = ()
        # Some listener wants run events: every run takes Scheduler._run_task.
        self._observed = False
        self._armed_timeouts = 0  # TimeoutEntry objects on the wheel
        self._orphans: list[_Later] = []  # see _run_orphans_unlocked
        self._later_queued = 0  # _Later items in the run queue
        self._runner: CoroRunner | None = None  # coroutine tasks' loop, made on first use
        self._early_cancels: dict[TaskHandle, str] = {}  # cancelled during a hand-over
        _live.add(self)
        self._task_defaults: dict[str, Any] | None = opts["task_defaults"]
        if self._task_defaults is not None:
            # Only such schedulers pay for the merge: post_task is replaced here.
            self.post_task = self._post_with_defaults  # type: ignore[method-assign]
        attach = getattr(self._clock, "_attach", None)
        if attach is not None:
            attach(self)

    def _setup_sync(self) -> None:
        self._lock = _allocate_lock()
        self._cond = threading.Condition(self._lock)  # wakes the timer thread
        self._idle_cond = threading.Condition(self._lock)  # wakes shutdown waiters
        self._timer: threading.Thread | None = None
        self._timer_left = False  # the timer thread has left its loop (shutdown)
        # Tick the timer thread sleeps until: +inf before it exists (the first delayed
        # post starts it), -inf while it is awake or already told to wake.
        self._wake_tick: float = _INF

    def _make_pool(self) -> WorkerPool | InlinePool:
        o = self._options
        if self._manual:
            return InlinePool(self._lock, queue_size=o["queue_size"], on_full=o["on_full"])
        pool = WorkerPool(
            self._lock,
            max_workers=o["max_workers"],
            min_workers=o["min_workers"],
            queue_size=o["queue_size"],
            idle_timeout=o["idle_timeout"],
            on_full=o["on_full"],
            name=o["name"],
        )
        pool.on_skip = self._after_skip
        return pool

    @classmethod
    def _new_manual(cls, clock: Clock, **options: Any) -> Scheduler:
        """A scheduler with no timer thread and an inline pool (``manual_scheduler``)."""
        self = cls(clock=clock, **options)
        self._manual = True
        self._wake_tick = -_INF
        self._pool = self._make_pool()
        self._offer = self._pool.offer
        return self

    # ------------------------------------------------------------------ posting
    def post_task(
        self,
        cb: Callable[..., object],
        /,
        *args: Any,
        delay: float | datetime.timedelta | None = None,
        interval: float | datetime.timedelta | None = None,
        name: str | None = None,
        **options: Any,
    ) -> TaskHandle:
        """Run ``cb(*args)`` after ``delay`` seconds, or every ``interval`` seconds.

        Args:
            cb: the callback; positional ``args`` are passed to it.
            delay: seconds (or timedelta) before the (first) run; None or 0 without
                ``interval`` runs it as soon as a worker is free.
            interval: seconds between runs (>= 0.005) on a fixed-rate grid anchored at
                the first run, which comes after ``delay`` if given, else one interval.
            name: shown in ``repr``, logs and ``handle.name``.

        Returns:
            The task's handle.

        Raises:
            TypeError: ``cb`` is not callable, a bad argument type, or an unknown option.
            ValueError: a negative, NaN, infinite or too-small time.
            SchedulerShutdown: the scheduler is shutting down.
            QueueFull: the run queue is full (``on_full="raise"``) or ``max_pending``
                timers are already held.
        """
        if not callable(cb):
            if not inspect.iscoroutine(cb):
                raise TypeError(f"cb must be callable, got {cb!r}")
            cb = coroutine_task(cb, args, interval, options)
        if options and options.get("key") is not None:
            return self._post_keyed(
                cb, args, delay=delay, interval=interval, name=name, options=options
            )
        if delay is None and interval is None and name is None and not options:
            extra = None  # the commonest post
            immediate = True
        else:
            if interval is None and name is None and not options:
                extra = None
            else:
                extra = _task_extra(name, interval, options)
            if delay is None:
                delay_ns = -1
            elif type(delay) is float and 0.0 <= delay <= MAX_DELAY:  # common, fast
                delay_ns = round(delay * _NS)
            else:
                delay_ns = to_ns(delay, "delay")
            periodic = extra is not None and extra.interval is not None
            immediate = delay_ns <= 0 and not periodic
            if not immediate:
                if delay_ns < 0:
                    assert extra is not None and extra.interval is not None
                    delay_ns = extra.interval  # first run after one interval
                # The clock is read before anything is allocated: a GC pause that the
                # allocation triggers must not push the deadline later.
                deadline = self._now_ns() + delay_ns
        h: TaskHandle = _new_handle(self._handle_cls)
        h._cb = cb
        h._args = args
        h._wslot = None
        h._waiters = None
        h._extra = extra
        h._sched = self
        # Lock-free: the id counter is atomic under the GIL.
        h._id = next(self._ids)
        try:
            if immediate:  # the hot path, written out: no call but the pool's offer()
                h._deadline = 0
                if extra is not None and extra.expires is not None:
                    h._deadline = self._now_ns()  # its due time, for expires=
                h._state = QUEUED
                if self._ev_posted and self._posted(h):
                    return h  # a listener cancelled it
                if self._closing:
                    with self._lock:
                        self._refuse_locked()
                    raise SchedulerShutdown(f"scheduler {self._name!r} is shut down")
                # Lock-free too: the claims dict and the SimpleQueue are each atomic.
                try:
                    if extra is None:
                        offered = self._offer(h)
                    else:
                        offered = self._offer(h, extra.priority)
                except RuntimeError:  # no thread to run it, and none could start
                    with self._lock:
                        self._refuse_locked()
                    raise
                if not offered:
                    # No room (or posters racing each other overfilled the queue, or a
                    # manual scheduler): the locked path applies on_full.
                    return self._post_now_locked(h)
                if self._closing:
                    self._take_back_if_refused(h)
                return h
            h._deadline = deadline
            h._state = WAITING
            if self._ev_posted and self._posted(h):
                return h  # a listener cancelled it
            lock = self._lock
            lock.acquire()  # explicit acquire/release: half the cost of `with` here
            try:
                if h._state == CANCELLED:  # by another thread, since a "posted" listener
                    return h
                if self._closing:
                    self._id_gaps += 1
                    raise SchedulerShutdown(f"scheduler {self._name!r} is shut down")
                wheel = self._wheel
                if self._max_pending is not None and len(wheel) >= self._max_pending:
                    self._id_gaps += 1
                    raise QueueFull(
                        f"{len(wheel)} timers pending, max_pending={self._max_pending}: "
                        "retry later or raise max_pending"
                    )
                wheel.add(h)
                if periodic:
                    self._intervals.add(h)
                if -(-deadline // TICK_NS) < self._wake_tick:
                    try:
                        self._wake_timer_locked()
                    except BaseException:  # the timer thread could not start: undo the post
                        wheel.remove(h)
                        self._intervals.discard(h)
                        self._id_gaps += 1
                        raise
            finally:
                lock.release()
            return h
        except (SchedulerShutdown, QueueFull, RuntimeError) as exc:
            self._rejected(h, exc)
            raise

    def _posted(self, h: TaskHandle) -> bool:
        """Tell the "posted" listeners, before the task is handed over (so that this
        comes first among its events). True if a listener cancelled it meanwhile."""
        state = h._state
        h._state = WAITING  # what cancel() knows how to cancel: not on the wheel yet
        self._emit("posted", h)
        with self._lock:
            if h._state == CANCELLED:
                return True
            h._state = state
        return False

    def _rejected(self, h: TaskHandle, exc: BaseException) -> None:
        """A post was refused (the poster gets ``exc``): its handle, which a "posted"
        listener may hold, ends CANCELLED with the reason; "rejected" is emitted."""
        with self._lock:
            if h._state < SUCCEEDED:
                h._state = CANCELLED
                _release_callback(h)
                h._args = f"rejected: {exc}"
        if self._ev.get("rejected"):
            self._emit("rejected", h, exception=exc, reason=str(exc))

    def _post_with_defaults(
        self,
        cb: Callable[..., object],
        /,
        *args: Any,
        delay: float | datetime.timedelta | None = None,
        interval: float | datetime.timedelta | None = None,
        name: str | None = None,
        **options: Any,
    ) -> TaskHandle:
        """``post_task`` of a scheduler with ``task_defaults``."""
        assert self._task_defaults is not None
        merged = {**self._task_defaults, **options}
        return Scheduler.post_task(
            self, cb, *args, delay=delay, interval=interval, name=name, **merged
        )

    # ------------------------------------------------------------ dedup keys
    def _post_keyed(
        self,
        cb: Callable[..., object],
        args: tuple[Any, ...],
        *,
        delay: float | datetime.timedelta | None,
        interval: float | datetime.timedelta | None,
        name: str | None,
        options: dict[str, Any],
    ) -> TaskHandle:
        """A post with a ``key``: one live task per key.

        Keyed posts are serialised by their own lock. The live task is looked up, the
        new one is posted as an ordinary task, and only once it is accepted is its key
        registered (and, with "replace", the old one cancelled): a refused post changes
        nothing, and no other thread ever sees a handle that is not posted yet.
        """
        _task_extra(name, interval, options)  # every argument is checked first
        key = options["key"]
        rest = {k: v for k, v in options.items() if k != "key"}
        rest.setdefault("on_duplicate", "return")  # keeps an Extra to hold the key
        with self._keys_lock:
            old = self._keys.get(key)
            if old is not None and old._state >= SUCCEEDED:
                old = None
            if old is not None:
                if rest["on_duplicate"] == "return":
                    with self._lock:
                        self._deduplicated += 1
                    return old
                if rest["on_duplicate"] == "raise":
                    raise DuplicateTask(f"a task with key {key!r} is not finished yet: {old!r}")
            h = self.post_task(cb, *args, delay=delay, interval=interval, name=name, **rest)
            with self._lock:
                assert h._extra is not None
                h._extra.key = key
                if h._state < SUCCEEDED:  # a quick task may have finished already
                    self._keys[key] = h
                elif self._keys.get(key) is old:
                    self._keys.pop(key, None)
                if old is not None:
                    self._deduplicated += 1
        if old is not None:  # "replace": a pending one is cancelled, a running one ends
            # Outside the keys lock: cancelling calls done callbacks and listeners.
            self._cancel(old, REPLACED)
        return h

    def _release_key(self, h: TaskHandle) -> None:
        """A keyed task reached a final state (lock not held): its key is free."""
        with self._lock:
            self._release_key_locked(h)

    def _release_key_locked(self, h: TaskHandle) -> None:
        extra = h._extra
        if extra is not None and extra.key is not None and self._keys.get(extra.key) is h:
            del self._keys[extra.key]

    def _take_back_if_refused(self, h: TaskHandle) -> None:
        # shutdown() began during the post and may have found the queue empty: take the
        # task back unless a worker has it already (then it runs).
        with self._lock:
            if self._pool.unqueue(h):
                h._state = CANCELLED
                h._args = "refused: the scheduler shut down"
                self._refused += 1
                self._closed_progress_locked()
                raise SchedulerShutdown(f"scheduler {self._name!r} is shut down")

    def _post_now_locked(self, h: TaskHandle) -> TaskHandle:
        """The immediate path with the lock: queue full, racing posters, manual."""
        pool = self._pool
        caller = False
        with self._lock:
            if self._closing:
                self._refuse_locked()
                raise SchedulerShutdown(f"scheduler {self._name!r} is shut down")
            if pool.queued >= self._queue_size:
                try:
                    caller = pool.wait_for_room_locked(self._is_closing) == "caller"
                except (QueueFull, SchedulerShutdown):
                    self._refuse_locked()
                    raise
            if caller:
                pool.count_caller_run_locked()
            else:
                pool.submit_locked(h, 0 if h._extra is None else h._extra.priority)
                try:
                    pool.ensure_workers_locked()
                except RuntimeError:
                    if pool.workers == 0 and pool.unqueue(h):
                        self._refuse_locked()
                        raise
        if caller:
            pool.run_in_caller(h)
        return h

    def _is_closing(self) -> bool:
        return self._closing

    def _refuse_locked(self) -> None:
        """A post that took an id is refused at once: no count changes for it, and a
        waiting shutdown() may now be done (its task had been counted as queued)."""
        self._id_gaps += 1
        if self._closing:
            self._closed_progress_locked()

    def _after_skip(self) -> None:
        """A worker skipped a cancelled task: during a shutdown, that may be the end."""
        if self._closing and self._maybe_idle():
            with self._lock:
                self._closed_progress_locked()

    # ------------------------------------------------------------ timer thread
    def _wake_timer_locked(self) -> None:
        if self._manual:
            return
        if self._timer is None or self._timer_left:
            # The first timer, or one after the last left during a shutdown (a queued
            # task with a timeout has just started).
            t = WheeltaskThread(self._timer_main, f"{self._name}-timer")
            t.start()  # it waits for the lock we hold before it looks at anything
            self._timer = t
            self._timer_left = False
        else:
            self._cond.notify()
        self._wake_tick = -_INF  # awake now: it re-reads the wheel before sleeping

    def _timer_main(self) -> None:
        clock = self._clock
        now_ns = self._now_ns
        wheel = self._wheel
        cond = self._cond
        real = getattr(clock, "real_time", True)
        with self._lock:
            while True:
                try:
                    now = now_ns()
                    due = wheel.advance(now // TICK_NS)
                    if due:
                        self._fire_locked(due, now)
                        if self._orphans:
                            self._run_orphans_unlocked()
                    # Leave once nothing is left to fire and nothing queued could arm
                    # a timeout (if one is armed later, a new timer thread starts).
                    if self._closing and not self._timer_needed_locked():
                        self._timer_left = True
                        self._wake_tick = _INF  # any timeout armed now starts a new one
                        break
                    nd = wheel.next_deadline()
                    if nd is None:
                        self._wake_tick = _INF
                        cond.wait()
                    else:
                        self._wake_tick = nd
                        if real:
                            # Sleep right after dispatching: a thread that keeps running
                            # Python delays the woken workers by a 5 ms GIL switch.
                            cond.wait(max(0.0, (nd * TICK_NS - now_ns()) / _NS))
                        else:
                            cond.wait()
                    self._wake_tick = -_INF
                except Exception:  # pragma: no cover - a bug; keep the timers firing
                    logger.exception("wheeltask timer thread error (continuing)")

    def _fire_locked(self, due: list[Any], now: int) -> None:
        # `due` is in deadline order, so the first is the latest; stats() keeps only
        # the last 8,192 samples anyway.
        late_max = now - due[0]._deadline
        if late_max > self._late_max:
            self._late_max = late_max
        self._late.extend([now - h._deadline for h in due[-_LATENESS_SAMPLES:]])
        pool = self._pool
        batch: list[Any] = []
        prioritised = False
        later: list[_Call] = []  # user code: a worker runs it
        for h in due:
            extra = h._extra
            if extra is None:
                h._state = QUEUED
                batch.append(h)
                continue
            if type(h) is TimeoutEntry:
                self._armed_timeouts -= 1
                if extra.timeout_entry is h:  # its run is still under way: it fails now
                    later.append(self._fire_timeout_locked(h.handle, extra))
                continue
            if extra.priority:
                prioritised = True
            if extra.interval is None:
                h._state = QUEUED
                batch.append(h)
                continue
            if type(h) is RetryEntry:  # the next attempt of an interval run
                handle = h.handle
                extra.retry_entry = None
                extra.due = h._deadline
                handle._state = QUEUED
                batch.append(handle)
                continue
            if h._state == WAITING:
                h._state = QUEUED
                extra.attempts = 0  # a new run: its own attempts
                extra.due = h._deadline
                batch.append(h)
                overlap = 0
            else:  # the previous run is still queued or running: never overlap
                extra.missed += 1
                self._missed += 1
                overlap = 1
            # The next grid point, unless the timer has stalled past it: a point whose
            # tick is before the current one can no longer run within a tick of its
            # deadline. This firing was the one catch-up run; such points are missed.
            iv = extra.interval
            g = h._deadline
            k = 1
            behind = (now // TICK_NS - 1) * TICK_NS - g
            if behind >= iv:
                k = behind // iv + 1
                extra.missed += k - 1
                self._missed += k - 1
            if (overlap or k > 1) and self._ev.get("missed"):
                later.append((self._emit_missed, (h, overlap, k - 1)))
            h._deadline = g + k * iv
            self._wheel.add(h)
        # Due timers reach the queue in deadline order; there, priority orders them.
        priorities = None
        if prioritised or later:
            priorities = [0 if h._extra is None else h._extra.priority for h in batch]
            if later:  # hooks and listeners never run on the timer thread ...
                if pool.stopped:  # ... unless no worker is left to run them
                    self._orphans.append(_Later(self, later))
                else:
                    batch.append(_Later(self, later))
                    priorities.append(_LATER_PRIORITY)
                    self._later_queued += 1
        try:
            pool.submit_many_locked(batch, priorities)
        except RuntimeError:
            # Every due task is queued already; the threads there are (or the next
            # one started) will run them.
            logger.exception("wheeltask: could not start a worker thread")

    def _run_orphans_unlocked(self) -> None:
        """The timer thread, lock held: hooks found after the pool stopped (a shutdown
        that gave up on a task that later timed out) run here, without the lock."""
        orphans, self._orphans = self._orphans, []
        self._lock.release()
        try:
            for item in orphans:
                item.run_calls()
        finally:
            self._lock.acquire()

    def _fire_timeout_locked(self, h: TaskHandle, extra: Extra) -> _Call:
        """The timer reached a running attempt's deadline: the run fails now and its
        waits wake now; done callbacks, on_failure and listeners are left to a worker."""
        exc, token = self._time_out_locked(h, extra)
        if self._runner is not None:
            self._runner.cancel_run_locked(h)  # a coroutine is cancelled at its deadline
        for w in token:
            if type(w) in WAKERS:
                w.release()  # never blocks
        rest = [w for w in token if type(w) not in WAKERS]
        return self._after_timeout, (h, exc, rest)

    def _after_timeout(self, h: TaskHandle, exc: TaskTimeout, callbacks: list[Any]) -> None:
        if callbacks:
            notify(h, callbacks)
        self._timed_out_reports(h, exc)

    def _emit_missed(self, h: TaskHandle, overlap: int, coalesced: int) -> None:
        if overlap:
            self._emit("missed", h, reason="the previous run was still going")
        if coalesced:
            self._emit("missed", h, reason="the timer fell behind", count=coalesced)

    # ------------------------------------------------------------ completion
    def _retry(self, h: TaskHandle, exc: BaseException) -> bool:
        """After a failed attempt (lock not held): schedule the next one if the task's
        retries allow it and the failure asks for it. The waiting attempt sits on the
        wheel, never in a worker. Returns False when the failure is final."""
        extra = h._extra
        assert extra is not None
        if extra.attempts > extra.retries:
            return False
        if isinstance(exc, Retry):
            delay = exc.delay
        elif extra.retry_on and isinstance(exc, extra.retry_on):
            delay = None
        else:
            return False
        try:
            delay_ns = self._backoff_ns(extra, delay)  # may call the user's backoff
        except Exception:
            logger.exception("task %r: no retry delay could be had; the task fails", h)
            return False
        deadline = self._now_ns() + delay_ns
        with self._lock:
            if self._closing:
                # A shutdown lets an attempt under way finish but starts no new one:
                # its timer thread may already be gone.
                return False
            runner = self._runner
            if runner is not None:
                attempt = runner.tasks.get(h)
                if attempt is not None and attempt.cut is not None:
                    return True  # cancelled as it failed: it ends CANCELLED, no retry
            if extra.interval is None:
                h._state = WAITING
                h._deadline = deadline
                self._wheel.add(h)
            else:
                if extra.stop is not None:
                    return False  # cancelled during the attempt: the run ends here
                entry = extra.retry_entry = RetryEntry(h, deadline)
                self._wheel.add(entry)
            self._retried += 1
            if -(-deadline // TICK_NS) < self._wake_tick:
                self._wake_timer_locked()
        if extra.on_retry is not None:
            call_hook(extra.on_retry, h, exc, delay_ns / _NS)
        if self._observed:
            self._emit("retried", h, exception=exc, delay=delay_ns / _NS)
        return True

    def _backoff_ns(self, extra: Extra, delay: object) -> int:
        """The wait before the next attempt: Retry(delay=...), else the task's backoff,
        else 0.1 s doubling per attempt, capped at 30 s, times a jitter in [0.5, 1]."""
        n = extra.attempts  # attempts made so far (>= 1)
        if delay is None:
            backoff = extra.backoff
            if backoff is None:
                seconds = min(_BACKOFF_CAP, math.ldexp(_BACKOFF_BASE, min(n - 1, 64)))
                return round(seconds * self._rng.uniform(0.5, 1.0) * _NS)
            delay = backoff(n) if callable(backoff) else backoff
        return to_ns(delay, "retry delay")

    # ---------------------------------------------------------------- runs
    def _run_task(self, h: TaskHandle, finished: itertools.count[int]) -> None:
        """A run of a task with options, or of any task while run events are listened
        to (see ``TaskHandle._run``; no lock held, the handle claimed)."""
        extra = h._extra
        if extra is not None and extra.expires is not None and self._expired_now(h, extra):
            if self._early_cancels:
                self._early_cancels.pop(h, None)
            self._run_ended(h, finished)
            return
        cb: Callable[..., object] = h._cb  # type: ignore[assignment]  # claimed: callable
        if extra is None:
            coro = is_coroutine_function(cb)
        elif extra.coro is None:
            coro = extra.coro = is_coroutine_function(cb)
        else:
            coro = extra.coro
        if coro:  # an async def callback: its whole run happens on the event loop
            self._hand_over(h, None, False, finished)
            return
        timeout = self._start_attempt(h, extra)
        value: object = None
        error: BaseException | None = None
        try:
            value = cb(*h._args)  # on an exception a one-shot's arguments stay
        except BaseException as exc:  # noqa: BLE001 - the run's outcome, reported below
            error = exc
            del exc
        if error is None and value is not None and is_awaitable(value):
            # A callable that returned an awaitable: awaited on the loop (its attempt,
            # and any timeout, started already).
            self._hand_over(h, cast("Awaitable[Any]", value), True, finished)
            return
        self._run_outcome(h, timeout, value, error)
        del value, error
        self._run_ended(h, finished)

    def _start_attempt(self, h: TaskHandle, extra: Extra | None) -> int | None:
        """An attempt begins (lock not held): RUNNING, counted, its timeout armed, the
        "started" event. Returns the timeout (ns) or None."""
        timeout = None if extra is None else extra.timeout
        if timeout is not None:
            assert extra is not None
            self._start_timed_attempt(h, extra, timeout)
        else:
            h._state = RUNNING
            if extra is not None:
                extra.attempts += 1
        if self._observed:
            self._emit("started", h)
        return timeout

    def _run_outcome(
        self, h: TaskHandle, timeout: int | None, value: object, error: BaseException | None
    ) -> None:
        """An attempt ended (lock not held): success, a retry, or a failure."""
        extra = h._extra
        if timeout is not None and self._end_timed_attempt(h):
            pass  # timed out: whatever the callback produced is discarded
        elif error is None:
            self._succeeded(h, value)
        elif extra is None or not extra.retries or not self._retry(h, error):
            self._failed(h, error)

    # ------------------------------------------------------- coroutine tasks
    def _hand_over(
        self,
        h: TaskHandle,
        aw: Awaitable[Any] | None,
        started: bool,
        finished: itertools.count[int],
    ) -> None:
        """A worker passes a coroutine task to the event loop (lock not held); its
        thread is free at once. ``aw``: what to await (None: call the coroutine
        function there); ``started``: the attempt began here already."""
        token = None
        failure: Exception | None = None
        with self._lock:
            runner = self._runner  # (read under the lock: two workers may get here)
            reason = self._early_cancels.pop(h, None) if self._early_cancels else None
            if reason is not None:  # cancel() came while the worker had it
                token = self._finish_cancelled_locked(h, reason)
            else:
                if runner is None or runner.stopped:
                    mode = "inline" if self._manual else "thread"
                    o = self._options
                    try:
                        runner = self._runner = CoroRunner(
                            self, mode, o["max_async"], loop_kind=o["loop"]
                        )
                    except Exception as exc:  # noqa: BLE001 - no loop, or no thread for it
                        failure = exc
                if failure is None:
                    assert runner is not None
                    if not started:
                        h._state = QUEUED  # waiting for the loop (and max_async)
                    attempt = runner.hand_over_locked(h, aw, started)
                    now = runner.take_place_now_locked(attempt)
        if failure is not None:  # the run fails with the reason
            close_unstarted(aw)  # (never awaited, started or not)
            self._failed(h, failure)
            self._run_ended(h, finished)
            return
        if token is not None:
            close_unstarted(aw)
            next(finished)
            if token:
                notify(h, token)
            if self._ev_cancelled:
                self._emit("cancelled", h, reason=self._cancel_reason(h))
            if self._closing and self._maybe_idle():
                with self._lock:
                    self._closed_progress_locked()
            return
        assert runner is not None
        if now:  # on the loop's own thread, a place free: it starts here
            next(finished)
            runner._start(attempt)
        elif runner.mode == "inline":
            runner.submit(h, attempt)  # run to its end, here
            next(finished)
        else:
            next(finished)  # the worker's part is over; the loop's counts hold it now
            runner.submit(h, attempt)

    def _coro_start(self, h: TaskHandle) -> bool:
        """A coroutine task's attempt begins, on the loop, a place of ``max_async``
        taken: False if it expired first (then it is dealt with)."""
        extra = h._extra
        if extra is not None and extra.expires is not None and self._expired_now(h, extra):
            return False
        self._start_attempt(h, extra)
        return True

    def _coro_outcome(
        self, h: TaskHandle, attempt: Attempt, value: object, error: BaseException | None
    ) -> None:
        """A coroutine task's attempt ended, on the loop: success, a retry or a failure,
        unless it was cancelled while it ran (then its outcome is dropped)."""
        extra = h._extra
        cut = attempt.cut  # (one read: a cut that comes later is too late for this run)
        if cut is None:
            self._run_outcome(h, None if extra is None else extra.timeout, value, error)
        elif extra is not None:
            with self._lock:
                self._disarm_timeout_locked(extra)

    def _coro_ended(self, h: TaskHandle, attempt: Attempt, placed: bool = True) -> None:
        """An attempt of a coroutine task left the loop (lock not held); ``placed``: it
        held a place of ``max_async``, now free for the next attempt waiting. A run
        cancelled while it ran ends CANCELLED now, whatever its coroutine did; then
        waiters and a waiting shutdown() hear of the end."""
        runner = self._runner
        assert runner is not None
        token = None
        nxt = None
        with self._lock:
            if runner.tasks.get(h) is attempt:  # (a retry may have handed over again)
                del runner.tasks[h]
            if placed:
                nxt = runner.release_place_locked()
            reason = attempt.cut
            if reason is not None and h._state < SUCCEEDED:
                token = self._finish_cancelled_locked(h, reason)
        if nxt is not None:
            runner.loop.call_soon(runner._start, nxt)  # (not nested in this callback)
        if token is not None:
            if token:
                notify(h, token)
            if self._ev_cancelled:
                self._emit("cancelled", h, reason=reason)
        if h._waiters is not None or self._closing:
            self._report_progress(h)

    def _coro_refused(self, h: TaskHandle, exc: BaseException) -> None:
        """A manual scheduler could not run a coroutine task (a loop already runs on
        this thread): the run fails with the reason."""
        err = RuntimeError(
            f"coroutine task {h.name!r} cannot run inline while an event loop runs on this "
            f"thread ({exc}); in async tests use wheeltask.aio.AsyncScheduler"
        )
        self._failed(h, err)
        if h._waiters is not None or self._closing:
            self._report_progress(h)

    def _run_ended(self, h: TaskHandle, finished: itertools.count[int]) -> None:
        """The pool counts the run finished; then, as in TaskHandle._run (read after
        that count), waiters and a waiting shutdown() hear of it."""
        next(finished)
        if h._waiters is not None or (self._closing and self._maybe_idle()):
            self._report_progress(h)

    def _expired_now(self, h: TaskHandle, extra: Extra) -> bool:
        """A run about to start (lock not held): if more than ``expires`` has passed
        since it was due, it does not run. A one-shot task ends CANCELLED (on_failure
        gets the TaskCancelled); an interval task skips the run (missed) and lives on."""
        assert extra.expires is not None
        due = h._deadline if extra.interval is None else extra.due
        if self._now_ns() <= due + extra.expires:
            return False
        reason = f"expired: not started within {extra.expires / _NS:g} s of its due time"
        if extra.interval is None:
            with self._lock:
                self._expired += 1
                token = self._finish_cancelled_locked(h, reason)
            if token:
                notify(h, token)
            exc = self._cancelled_error(h)
            if extra.on_failure is not None:
                call_hook(extra.on_failure, h, exc)
            else:
                logger.warning("task %r %s", h, reason)
            self._emit("expired", h, exception=exc, reason=reason)
            self._emit("cancelled", h, reason=reason)
            return True
        with self._lock:
            self._expired += 1
            extra.missed += 1
            self._missed += 1
        self._finish_interval(h, counted=True)
        logger.warning("task %r: a run %s", h, reason)
        self._emit("expired", h, reason=reason)
        self._emit("missed", h, reason=reason)
        return True

    def _succeeded(self, h: TaskHandle, value: object) -> None:
        extra = h._extra
        if extra is None or extra.interval is None:
            h._args = value
            h._state = SUCCEEDED
            next(self._n_succeeded)
            if extra is not None and extra.key is not None:
                self._release_key(h)
        else:
            extra.last = value
            self._finish_interval(h)
        if extra is not None and extra.on_success is not None:
            call_hook(extra.on_success, h, value)
        if self._observed:
            self._emit("succeeded", h, result=value)

    def _failed(self, h: TaskHandle, exc: BaseException) -> None:
        extra = h._extra
        if extra is None or extra.interval is None:
            h._args = Failure(exc)
            h._state = FAILED
            next(self._n_failed)
            if extra is not None and extra.key is not None:
                self._release_key(h)
        else:
            extra.last = Failure(exc)
            self._finish_interval(h)
        report_failure(h, exc)
        if self._observed:
            self._emit("failed", h, exception=exc)

    def _finish_interval(self, h: TaskHandle, *, counted: bool = False) -> None:
        """A run of an interval task ended (lock not held); ``counted``: the timer
        counted it already (it timed out)."""
        extra = h._extra
        assert extra is not None
        with self._lock:
            if not counted:
                extra.runs += 1
                if type(extra.last) is Failure:
                    next(self._n_failed)
                else:
                    next(self._n_succeeded)
            if extra.stop is None:
                if extra.pause_pending:  # pause() during the run: paused now
                    extra.pause_pending = False
                    h._state = PAUSED
                    self._paused.add(h)
                else:
                    h._state = WAITING
                return
            _release_callback(h)
            self._intervals.discard(h)
            h._state = CANCELLED
            self._cancelled += 1
            self._release_key_locked(h)
        if self._ev.get("cancelled"):
            self._emit("cancelled", h, reason=extra.stop)

    # ----------------------------------------------------------------- timeouts
    def _start_timed_attempt(self, h: TaskHandle, extra: Extra, timeout: int) -> None:
        with self._lock:
            deadline = self._now_ns() + timeout
            h._state = RUNNING
            extra.attempts += 1
            extra.timed_out = False
            extra.run_deadline = deadline
            entry = extra.timeout_entry = TimeoutEntry(h, deadline)
            self._wheel.add(entry)
            self._armed_timeouts += 1
            if -(-deadline // TICK_NS) < self._wake_tick:
                try:
                    self._wake_timer_locked()
                except RuntimeError:  # e.g. "can't start new thread": the run goes on
                    logger.exception(
                        "wheeltask: no timer thread for the timeout of %r; it is checked "
                        "when the callback returns",
                        h,
                    )

    def _disarm_timeout_locked(self, extra: Extra) -> None:
        """Take a finished attempt's timeout off the wheel."""
        entry = extra.timeout_entry
        if entry is not None:
            extra.timeout_entry = None
            if entry._wslot is not None:
                self._wheel.remove(entry)
                self._armed_timeouts -= 1
                if self._closing and self._timer is not None:
                    self._cond.notify()  # that may have been all it waited for

    def _end_timed_attempt(self, h: TaskHandle) -> bool:
        """A timed attempt's callback returned: True if the run timed out (now or at
        its deadline), and then its outcome is discarded."""
        extra = h._extra
        assert extra is not None and extra.run_deadline is not None
        timed_out: tuple[TaskTimeout, list[Any]] | None = None
        with self._lock:
            if not extra.timed_out:  # else the timer failed it at the deadline already
                self._disarm_timeout_locked(extra)
                if self._now_ns() < extra.run_deadline:
                    return False
                # Returned at or after its deadline, before the timer got to it (a
                # manual scheduler's timer never runs during a callback).
                timed_out = self._time_out_locked(h, extra)
        if timed_out is not None:
            exc, token = timed_out
            if token:
                notify(h, token)
            self._timed_out_reports(h, exc)
        if extra.interval is not None:
            self._finish_interval(h, counted=True)
        return True

    def _time_out_locked(self, h: TaskHandle, extra: Extra) -> tuple[TaskTimeout, list[Any]]:
        """The running attempt of ``h`` exceeded its timeout: fail the run now. Returns
        the exception and the waiters to notify: every waiter of a one-shot task, the
        waits (not the done callbacks) of an interval task, which stays RUNNING until
        its callback returns so that its runs never overlap."""
        assert extra.timeout is not None
        extra.timed_out = True
        extra.timeout_entry = None
        exc = TaskTimeout(timeout_message(h, extra.timeout))
        self._timed_out += 1
        next(self._n_failed)
        ws = h._waiters
        if extra.interval is None:
            h._args = Failure(exc)
            h._state = FAILED
            self._release_key_locked(h)
            h._waiters = None
            return exc, ws or _NO_WAITERS
        extra.last = Failure(exc)
        extra.runs += 1
        if ws is None:
            return exc, _NO_WAITERS
        h._waiters = [w for w in ws if type(w) not in WAKERS] or None
        return exc, [w for w in ws if type(w) in WAKERS]

    def _timed_out_reports(self, h: TaskHandle, exc: TaskTimeout) -> None:
        """What a timed-out run reports (lock not held): on_failure or the log, then
        the "timed_out" and "failed" events."""
        report_failure(h, exc)
        if self._observed:
            self._emit("timed_out", h, exception=exc)
            self._emit("failed", h, exception=exc)

    def _report_progress(self, h: TaskHandle) -> None:
        """After a run: wake the handle's waiters, and shutdown() if it waits."""
        with self._lock:
            if self._closing:
                self._closed_progress_locked()
            ws = h._waiters
            if ws is None:
                return
            if h._state >= SUCCEEDED:
                h._waiters = None
                token = ws
            else:  # an interval task between runs: wake waits, keep done callbacks
                token = [w for w in ws if type(w) in WAKERS]
                h._waiters = [w for w in ws if type(w) not in WAKERS] or None
        notify(h, token)

    # ------------------------------------------------------- live task controls
    def _reschedule(self, h: TaskHandle, delay: object, interval: object) -> bool:
        extra = h._extra
        periodic = extra is not None and extra.interval is not None
        if interval is not None and not periodic:
            raise ValueError(
                f"interval must be None to reschedule a one-shot task, got {interval!r}"
            )
        if type(delay) is float and 0.0 <= delay <= MAX_DELAY:  # common, fast
            delay_ns: int | None = round(delay * _NS)
        else:
            delay_ns = None if delay is None else to_ns(delay, "delay")
        iv_ns = None
        if interval is not None:
            iv_ns = to_ns(interval, "interval", minimum_ns=_MIN_INTERVAL_NS)
        with self._lock:
            st = h._state
            if st >= SUCCEEDED or (st == WAITING and h._wslot is None):
                return False  # done, or being posted (a "posted" listener)
            now = self._now_ns()
            if not periodic:
                if st == RUNNING or (st == QUEUED and not self._pool.unqueue(h)):
                    return False  # a one-shot run has started: it completes
                deadline = now + (delay_ns or 0)
            else:
                assert extra is not None and extra.interval is not None
                if extra.stop is not None:
                    return False  # cancelled, its last run still going
                if iv_ns is not None:
                    extra.interval = iv_ns
                deadline = now + (extra.interval if delay_ns is None else delay_ns)
            if h._wslot is not None:
                self._wheel.remove(h)
            h._deadline = deadline
            if st == PAUSED or (periodic and extra is not None and extra.pause_pending):
                return True  # resume() puts it on the wheel
            if not periodic:
                h._state = WAITING
            self._wheel.add(h)
            if -(-deadline // TICK_NS) < self._wake_tick:
                self._wake_timer_locked()
        return True

    def _pause(self, h: TaskHandle) -> bool:
        extra = h._extra
        with self._lock:
            st = h._state
            if st >= SUCCEEDED or (extra is not None and extra.stop is not None):
                return False  # done, or cancelled with its last run still going
            if st == PAUSED or (extra is not None and extra.pause_pending):
                return True
            if self._closing or (st == WAITING and h._wslot is None):
                # A shutdown cancels paused tasks: none is paused after it began. A
                # WAITING task off the wheel is being posted (a "posted" listener).
                return False
            periodic = extra is not None and extra.interval is not None
            if periodic:
                assert extra is not None
                if h._wslot is not None:
                    self._wheel.remove(h)  # its next grid point stays in _deadline
                if st == RUNNING or (st == QUEUED and not self._pool.unqueue(h)):
                    extra.pause_pending = True  # paused when the run ends
                    return True
                if st == QUEUED:  # its queued run was taken back: that run is missed
                    extra.missed += 1
                    self._missed += 1
            elif st == RUNNING or (st == QUEUED and not self._pool.unqueue(h)):
                return False
            elif h._wslot is not None:
                self._wheel.remove(h)
            h._state = PAUSED
            self._paused.add(h)
        return True

    def _resume(self, h: TaskHandle) -> None:
        extra = h._extra
        with self._lock:
            pending = extra is not None and extra.pause_pending and extra.stop is None
            if h._state != PAUSED and not pending:
                raise RuntimeError(f"resume() of a task that is not paused: {h!r}")
            if self._closing:
                raise SchedulerShutdown(f"scheduler {self._name!r} is shut down")
            now = self._now_ns()
            if extra is not None and extra.interval is not None:
                # Back on its grid: the points that passed meanwhile are missed.
                iv = extra.interval
                g = h._deadline
                if g < now:
                    k = -(-(now - g) // iv)
                    extra.missed += k
                    self._missed += k
                    g += k * iv
                h._deadline = g
                if pending:
                    extra.pause_pending = False
                else:
                    self._paused.discard(h)
                    h._state = WAITING
            else:
                self._paused.discard(h)
                if h._deadline <= now:  # its time has passed: it runs now
                    h._deadline = now  # (its due time, for expires=)
                    h._state = QUEUED
                    self._pool.submit_locked(h, 0 if extra is None else extra.priority)
                    try:
                        self._pool.ensure_workers_locked()
                    except RuntimeError:
                        logger.exception("wheeltask: could not start a worker thread")
                    return
                h._state = WAITING
            self._wheel.add(h)
            if -(-h._deadline // TICK_NS) < self._wake_tick:
                self._wake_timer_locked()

    # ------------------------------------------------------------------ cancel
    def _cancel(self, h: TaskHandle, reason: str) -> bool:
        lock = self._lock
        lock.acquire()
        try:
            if h._state == WAITING and h._wslot is not None:  # a pending timer: common
                self._wheel.remove(h)
                ok, token = True, self._finish_cancelled_locked(h, reason)
            else:
                ok, token = self._cancel_locked(h, reason)
        finally:
            lock.release()
        if token is not None:  # cancelled just now
            if token:
                notify(h, token)
            if self._ev_cancelled:
                self._emit("cancelled", h, reason=reason)
        return ok

    def _cancel_now(self, h: TaskHandle, reason: str) -> bool:
        """Cancel; True only if this call cancelled it (for owners that count)."""
        with self._lock:
            token = self._cancel_locked(h, reason)[1]
        if token is None:
            return False
        if token:
            notify(h, token)
        if self._ev_cancelled:
            self._emit("cancelled", h, reason=reason)
        return True

    def _cancel_locked(self, h: TaskHandle, reason: str) -> tuple[bool, list[Any] | None]:
        st = h._state
        if st == WAITING and h._wslot is not None:  # the common case: a pending timer
            self._wheel.remove(h)
            return True, self._finish_cancelled_locked(h, reason)
        if st >= SUCCEEDED:
            return st == CANCELLED, None
        if h._wslot is not None:
            self._wheel.remove(h)
        extra = h._extra
        if st == RUNNING and extra is not None and extra.retry_entry is not None:
            # An interval run waiting for its next attempt: no attempt is under way.
            self._wheel.remove(extra.retry_entry)
            extra.retry_entry = None
            return True, self._finish_cancelled_locked(h, reason)
        if st == RUNNING or (st == QUEUED and not self._pool.unqueue(h)):
            runner = self._runner
            if runner is not None and h in runner.tasks:  # a coroutine task: it can stop
                return True, runner.cancel_locked(h, reason)
            if is_coroutine_function(h._cb):
                # A worker is handing it to the event loop: it ends there, unstarted.
                self._early_cancels[h] = reason
                return True, None
            # A run has started (or a worker has just claimed it): it completes. An
            # interval task ends after it; a one-shot run was not prevented.
            if extra is not None and extra.interval is not None:
                if extra.stop is None:
                    extra.stop = reason
                extra.pause_pending = False  # cancelled: it will not be paused
                return True, None
            return False, None
        return True, self._finish_cancelled_locked(h, reason)

    def _finish_cancelled_locked(self, h: TaskHandle, reason: str) -> list[Any] | None:
        # Cheap on purpose (cancel is a hot path): the callback and its arguments are
        # dropped, the reason is kept as a string; TaskCancelled is built when raised.
        if h._state == PAUSED:
            self._paused.discard(h)
        extra = h._extra
        if extra is None or extra.interval is None:
            cb = h._cb  # released (as _release_callback does, inlined: a hot path)
            if type(cb) is _FunctionType:
                h._cb = cb.__qualname__
            elif not isinstance(cb, str):
                h._cb = callable_name(cb)
            h._args = reason
        else:
            if extra.stop is None:
                extra.stop = reason
            _release_callback(h)
            self._intervals.discard(h)
        h._state = CANCELLED
        self._cancelled += 1
        if extra is not None and extra.key is not None:
            self._release_key_locked(h)
        if self._closing and not self._bulk:
            self._closed_progress_locked()
        ws = h._waiters
        h._waiters = None
        return _NO_WAITERS if ws is None else ws

    def _closed_progress_locked(self) -> None:
        # After shutdown(): wake its waiters once all is done, and let the threads go
        # (shutdown(wait=False) returns before that).
        if self._timer is not None and not self._timer_needed_locked():
            self._cond.notify()  # nothing left that needs a timer: it can leave now
        if self._is_idle_locked(len(self._closers)):
            self._idle_cond.notify_all()
            if not self._closers:
                self._stop_threads_locked()

    def _stop_threads_locked(self) -> None:
        """Let the workers go, and the event loop once no coroutine task is left (the
        last one to end stops it then)."""
        self._pool.stop_locked()
        runner = self._runner
        if runner is not None and not runner.tasks:
            runner.stop_locked()

    def _cut_coroutines_locked(self, reason: str, spare: object = None) -> None:
        """Cancel the coroutine tasks still running (a shutdown that gave up on them):
        each ends CANCELLED once its coroutine returns. ``spare``: the asyncio task
        that called the shutdown."""
        runner = self._runner
        if runner is not None:
            for h, attempt in list(runner.tasks.items()):
                if spare is None or attempt.task is not spare:
                    runner.cancel_locked(h, reason)

    def _timer_needed_locked(self) -> bool:
        """Something is on the wheel, or a queued task may yet arm a timeout (queued
        _Later items need no timer)."""
        return bool(len(self._wheel)) or self._pool.queued != self._later_queued

    def _maybe_idle(self) -> bool:
        """Racy pre-check (no lock) for a finishing task: could shutdown() be done?"""
        return self._is_idle_locked(len(self._closers))  # the same test, without the lock

    @staticmethod
    def _cancel_reason(h: TaskHandle) -> str:
        extra = h._extra
        reason = extra.stop if extra is not None and extra.interval is not None else h._args
        return reason if isinstance(reason, str) else "cancelled"

    def _cancelled_error(self, h: TaskHandle) -> TaskCancelled:
        return TaskCancelled(f"{h.name!r} {self._cancel_reason(h)}")

    # ------------------------------------------------------------------- waits
    def _progress_locked(self, h: TaskHandle, n: int) -> bool | None:
        """True: n runs done; False: never will be; None: not yet. Raises if cancelled."""
        if h.runs >= n:
            return True
        st = h._state
        if st == CANCELLED:
            raise self._cancelled_error(h)
        if st >= SUCCEEDED:
            return False
        return None

    def _wait(self, h: TaskHandle, n: int, timeout: float | None) -> bool:
        timeout = check_timeout(timeout)
        if self._manual:
            return self._virtual_wait(h, n, timeout)
        end = None if timeout is None else real_monotonic() + timeout
        while True:
            with self._lock:
                r = self._progress_locked(h, n)
                if r is not None:
                    return r
                remaining = None if end is None else end - real_monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                waiter = _allocate_lock()  # allocated only when someone really waits
                waiter.acquire()
                _register_locked(h, waiter)
            # A one-shot task finishes without the lock: it may have done so between
            # our check and the registration, without seeing the waiter. Look again.
            try:
                r = self._progress_locked(h, n)
            except TaskCancelled:
                r = True
            if r is not None:
                with self._lock:
                    _unregister_locked(h, waiter)
                continue
            if remaining is None:
                waiter.acquire()
            elif not waiter.acquire(True, remaining):
                with self._lock:
                    _unregister_locked(h, waiter)

    def _virtual_wait(self, h: TaskHandle, n: int, timeout: float | None) -> bool:
        clock = self._clock
        with self._lock:
            r = self._progress_locked(h, n)
        if r is not None:
            return r
        if self._in_callback() or not isinstance(clock, VirtualClock):
            # Time cannot be moved here (freezegun, or a callback of this very run):
            # run what is due, if allowed, and report.
            if not self._in_callback():
                self.run_due()
            with self._lock:
                r = self._progress_locked(h, n)
            if r is None and timeout is None:
                raise RuntimeError(
                    f"waiting for {h!r} without a timeout would block forever: on a manual "
                    "scheduler nothing runs while a callback waits (or while time is frozen)"
                )
            return bool(r)
        end = None if timeout is None else clock.now_ns() + round(timeout * _NS)
        while True:
            with self._lock:
                r = self._progress_locked(h, n)
            if r is not None:
                return r
            nxt = clock._next_due_ns()
            if nxt is None or (end is not None and nxt > end):
                if end is None:
                    raise RuntimeError(
                        f"waiting for {h!r} would block forever: nothing is scheduled on "
                        "this virtual clock that could finish it"
                    )
                clock._advance_to_ns(end)
                with self._lock:
                    return bool(self._progress_locked(h, n))
            clock._advance_to_ns(max(nxt, clock.now_ns()))

    def _add_done_callback(self, h: TaskHandle, fn: Callable[[TaskHandle], object]) -> None:
        with self._lock:
            registered = h._state < SUCCEEDED
            if registered:
                _register_locked(h, fn)
        if registered:
            if h._state < SUCCEEDED:
                return  # the run's end calls it
            with self._lock:  # finished meanwhile: whoever takes it off calls it
                if not _unregister_locked(h, fn):
                    return
        try:
            fn(h)
        except Exception:
            logger.exception("done callback %r of %r raised", fn, h)

    # ------------------------------------------------------- manual scheduling
    def _next_due_ns(self) -> int | None:
        """For VirtualClock: when this (manual) scheduler next has work; else None."""
        if not self._manual:
            return None
        with self._lock:
            if self._pool.queued:
                return self._now_ns()
            nd = self._wheel.next_deadline()
        return None if nd is None else nd * TICK_NS

    def _clock_moved(self) -> None:
        """For VirtualClock: time moved; a threaded scheduler re-checks its wheel."""
        if not self._manual:
            with self._lock:
                if self._timer is not None:
                    self._cond.notify()

    def run_due(self) -> int:
        """Run, on this thread, every task whose deadline is at or before now.

        Only on schedulers made by ``wheeltask.testing.manual_scheduler``. Tasks that
        callbacks post and that are already due run too. Returns how many ran.
        """
        if not self._manual:
            raise RuntimeError("run_due() is only for schedulers made by manual_scheduler()")
        pool = self._pool
        assert isinstance(pool, InlinePool)
        if self._running_due:
            raise RuntimeError("run_due() called from a callback that run_due() is running")
        self._running_due = True
        ran = 0
        try:
            while True:
                ran += pool.run_queued()
                with self._lock:
                    now = self._now_ns()
                    due = self._wheel.advance(now // TICK_NS, cutoff=now)
                    if due:
                        self._fire_locked(due, now)
                    if not pool.queued:
                        return ran
        finally:
            self._running_due = False

    def _in_callback(self) -> bool:
        clock = self._clock
        return self._running_due or (isinstance(clock, VirtualClock) and clock._busy)

    def _only_intervals_left(self) -> bool:
        """For VirtualClock.run_until_idle: nothing but interval timers is pending."""
        if not self._manual:
            return True
        with self._lock:
            armed = sum(1 for h in self._intervals if h._wslot is not None)
            return armed == len(self._wheel) and not self._pool.queued

    # ----------------------------------------------------------------- shutdown
    def shutdown(
        self, wait: bool = True, *, timeout: float | None = None, cancel_pending: bool = False
    ) -> bool:
        """Stop taking tasks; optionally wait for the ones already posted.

        Interval tasks stop re-arming (a run in progress completes, and the task ends
        CANCELLED). With ``cancel_pending=False`` one-shot tasks already posted still
        run, delayed ones at their time, and ``wait=True`` waits for them.

        Args:
            wait: wait for posted one-shot tasks and for the threads to exit.
            timeout: seconds to wait at most; when it passes first, every task that
                has not started is cancelled (its handle says so) and False is returned.
            cancel_pending: cancel every task that has not started, at once.

        Returns:
            True if every task finished and every thread of the scheduler exited (the
            worker calling it from inside a task exits when that task returns, and so
            does the timer thread if that task has a ``timeout``).

        Idempotent and thread-safe; safe from inside a task, where it never waits for
        its own thread.
        """
        timeout = check_timeout(timeout)
        end = None if timeout is None else real_monotonic() + timeout
        me = threading.current_thread()
        in_task = self._pool.in_task(me)
        with self._lock:
            tokens = self._close_locked(cancel_pending)
            if self._timer is not None:
                self._cond.notify()
        self._notify_all(tokens)
        if self._manual:
            return self._shutdown_manual(wait, timeout)
        runner = self._runner
        if runner is not None and runner.on_loop_thread():
            wait = False  # a coroutine task: waiting would stop the loop it waits for
        if not wait:
            with self._lock:
                idle = self._is_idle_locked(0)
                if idle:
                    self._stop_threads_locked()
            return idle and not self._threads_alive()
        ok = True
        with self._lock:
            # Tasks calling shutdown() count as finished for its wait, and are never
            # joined: their threads exit when their tasks return.
            if in_task:
                self._closers[me] = self._closers.get(me, 0) + 1
            try:
                # A task waits for every other task but those also inside shutdown();
                # any other caller waits for them all.
                while not self._is_idle_locked(len(self._closers) if in_task else 0):
                    remaining = None if end is None else end - real_monotonic()
                    if remaining is not None and remaining <= 0:
                        ok = False
                        tokens = self._cancel_all_locked("cancelled: shutdown() timed out")
                        self._cut_coroutines_locked("cancelled: shutdown() timed out")
                        break
                    self._idle_cond.wait(remaining)
                self._stop_threads_locked()
                if self._timer is not None:
                    self._cond.notify()
                joinable = [t for t in self._threads_alive() if t is not me]
                if in_task:
                    joinable = [t for t in joinable if t not in self._closers]
                    if self._armed_timeouts:  # the timeouts of tasks inside shutdown()
                        joinable = [t for t in joinable if t is not self._timer]
            finally:
                if in_task:
                    n = self._closers.pop(me)
                    if n > 1:
                        self._closers[me] = n - 1
        if not ok:
            self._notify_all(tokens)
        for t in joinable:
            remaining = None if end is None else max(0.0, end - real_monotonic())
            t.join(remaining)
            if t.is_alive():
                ok = False
        return ok

    def _close_locked(self, cancel_pending: bool) -> list[tuple[Any, list[Any] | None]]:
        """The start of every shutdown: posts are refused from now on, interval and
        paused tasks stop, and with ``cancel_pending`` so does every task that has not
        started. Returns what :meth:`_notify_all` must do once the lock is released."""
        tokens: list[tuple[Any, list[Any] | None]] = []
        self._closing = True
        self._pool.release_blocked_locked()
        self._bulk = True  # one progress check at the end, not one per task
        try:
            for h in list(self._intervals):
                tokens.append((h, self._cancel_locked(h, "stopped by shutdown()")[1]))
            for h in list(self._paused):  # paused one-shots: nothing would resume them
                reason = "stopped by shutdown() while paused"
                tokens.append((h, self._cancel_locked(h, reason)[1]))
            if cancel_pending:
                tokens += self._cancel_all_locked("cancelled by shutdown(cancel_pending=True)")
        finally:
            self._bulk = False
        self._closed_progress_locked()
        return tokens

    def _threads_alive(self) -> list[threading.Thread]:
        timer = self._timer
        alive = self._pool.threads()
        runner = self._runner
        if runner is not None and runner.thread is not None and runner.thread.is_alive():
            alive.append(runner.thread)
        if timer is not None and timer.is_alive():
            alive.append(timer)
        return alive

    def _is_idle_locked(self, own: int, own_coro: int = 0) -> bool:
        # A run's timeout does not make the scheduler busy: the run itself does (and
        # a task inside shutdown() does not wait for its own timeout). Nor do queued
        # _Later items: they run before the workers stop (and a task inside shutdown()
        # may hold the only worker).
        pool = self._pool
        runner = self._runner
        return (
            len(self._wheel) == self._armed_timeouts
            and pool.queued == self._later_queued
            and pool.running <= own
            and (runner is None or len(runner.tasks) <= own_coro)
        )

    def _cancel_all_locked(self, reason: str) -> list[tuple[Any, list[Any] | None]]:
        """Cancel every task that has not started (lock held). Returns what to do once
        the lock is released (see :meth:`_notify_all`)."""
        bulk, self._bulk = self._bulk, True  # one progress check at the end
        try:
            tokens = self._cancel_all_bulk_locked(reason)
        finally:
            self._bulk = bulk
        if self._closing and not bulk:
            self._closed_progress_locked()
        return tokens

    def _cancel_all_bulk_locked(self, reason: str) -> list[tuple[Any, list[Any] | None]]:
        tokens: list[tuple[Any, list[Any] | None]] = []
        timeouts = []
        for h in self._wheel.drain():
            if type(h) is TimeoutEntry:  # its run goes on, and can still time out
                timeouts.append(h)
                continue
            if type(h) is RetryEntry:
                handle = h.handle
                assert handle._extra is not None
                if handle._extra.retry_entry is h:  # not already cancelled via its handle
                    handle._extra.retry_entry = None
                    tokens.append((handle, self._finish_cancelled_locked(handle, reason)))
                continue
            assert isinstance(h, TaskHandle)
            tokens.append((h, self._cancel_locked(h, reason)[1]))
        for item in self._pool.drain_locked():  # each one taken back from the queue
            if type(item) is _Later:  # hooks of timed-out runs: run by the caller
                self._later_queued -= 1
                tokens.append((item, None))
                continue
            assert isinstance(item, TaskHandle)
            tokens.append((item, self._finish_cancelled_locked(item, reason)))
        runner = self._runner
        if runner is not None:  # coroutine tasks waiting for the loop or for max_async
            for h in runner.fresh():
                tokens.append((h, runner.cancel_locked(h, reason)))
        for h in [*self._intervals, *self._paused]:
            tokens.append((h, self._cancel_locked(h, reason)[1]))
        for entry in timeouts:
            self._wheel.add(entry)
        return tokens

    def _notify_all(self, tokens: list[tuple[Any, list[Any] | None]]) -> None:
        """After cancelling with the lock held: wake the waiters of every task that
        was cancelled, tell the listeners, and run hooks left to a worker."""
        listen = self._ev.get("cancelled")
        for h, token in tokens:
            if type(h) is _Later:
                h.run_calls()
            elif token is not None:
                if token:
                    notify(h, token)
                if listen:
                    self._emit("cancelled", h, reason=self._cancel_reason(h))

    def _shutdown_manual(self, wait: bool, timeout: float | None) -> bool:
        # Waiting on a manual scheduler means moving its virtual time (by at most
        # `timeout` seconds); with another clock, running what is due now.
        clock = self._clock
        if wait and not self._in_callback():
            if isinstance(clock, VirtualClock):
                end = None if timeout is None else clock.now_ns() + round(timeout * _NS)
                while True:
                    nxt = self._next_due_ns()
                    if nxt is None or (end is not None and nxt > end):
                        break
                    clock._advance_to_ns(max(nxt, clock.now_ns()))
                if end is not None and nxt is not None and end > clock.now_ns():
                    clock._advance_to_ns(end)  # what falls due by the timeout runs too
            else:
                self.run_due()
        with self._lock:
            if self._is_idle_locked(self._pool.running):
                return True
            tokens = self._cancel_all_locked("cancelled: shutdown() could not run it")
        self._notify_all(tokens)
        return False

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)

    # ------------------------------------------------------------------ resize
    def resize(self, max_workers: int | None = None, *, queue_size: int | None = None) -> None:
        """Change the pool's bounds while it runs (pond's ``Resize``).

        Args:
            max_workers: at most this many callbacks at once from now on. Growing
                starts threads at once for queued tasks; shrinking lets running tasks
                finish and retires the surplus threads as they go idle.
            queue_size: the new bound on tasks waiting for a worker. Tasks already
                queued stay queued, even beyond a smaller bound; new posts see it.

        Raises:
            TypeError, ValueError: a bound that is not an int >= 1, or a
                ``max_workers`` below ``min_workers``. Nothing is changed then.
        """
        if max_workers is not None:
            _check_int(max_workers, "max_workers", 1)
            low = self._options["min_workers"]
            if max_workers < low:
                raise ValueError(f"max_workers must be >= min_workers ({low}), got {max_workers}")
        if queue_size is not None:
            _check_int(queue_size, "queue_size", 1)
        with self._lock:
            if max_workers is not None:
                self._options["max_workers"] = max_workers
            if queue_size is not None:
                self._options["queue_size"] = queue_size
                self._queue_size = queue_size
            try:
                self._pool.resize_locked(max_workers, queue_size)
            except RuntimeError:  # a thread could not start: the others run the queue
                logger.exception("wheeltask: could not start a worker thread")

    # ------------------------------------------------------------------ groups
    def group(self) -> TaskGroup:
        """A new :class:`TaskGroup` of tasks on this scheduler::

        with scheduler.group() as g:
            g.post_task(fetch, "a")
            g.post_task(fetch, "b")
        # here both have finished; the first failure was raised
        """
        return TaskGroup(self)

    # ----------------------------------------------------------- observability
    def stats(self) -> Stats:
        """A snapshot of the counters (see :class:`Stats`).

        Workers count their runs without stopping for it: every count is exact when
        the scheduler is idle; while tasks run, the counts are read one after another
        and may each be a few tasks apart.
        """
        with self._lock:
            pool = self._pool
            samples = list(self._late)
            counts = (
                len(self._wheel) - self._armed_timeouts,
                pool.queued,
                pool.running + (0 if self._runner is None else self._runner.running),
                pool.workers,
                pool.idle,
                count_value(self._ids) - 1 - self._refused - self._id_gaps,
                count_value(self._n_succeeded),
                count_value(self._n_failed),
                self._retried,
                self._cancelled,
                self._missed,
                self._refused,
            )
            late_max = self._late_max
            dedup = self._deduplicated
            timed_out = self._timed_out
            expired = self._expired
            paused = len(self._paused)
            queued = _snapshot(pool._claims)
            if self._runner is not None:  # waiting for the loop, or for max_async
                queued += tuple(self._runner.fresh())
        by_priority: dict[int, int] = {}
        n_queued = 0  # tasks only: not the internal items that run a timeout's hooks
        for item in queued:
            if isinstance(item, TaskHandle):
                p = item.priority
                by_priority[p] = by_priority.get(p, 0) + 1
                n_queued += 1
        counts = (counts[0], n_queued, *counts[2:])
        samples.sort()
        p50 = samples[(len(samples) - 1) // 2] / _NS if samples else 0.0
        p99 = samples[min(len(samples) - 1, (len(samples) * 99) // 100)] / _NS if samples else 0.0
        return Stats(
            *counts,
            lateness_p50=p50,
            lateness_p99=p99,
            lateness_max=late_max / _NS,
            deduplicated=dedup,
            timed_out=timed_out,
            queued_by_priority=dict(sorted(by_priority.items(), reverse=True)),
            expired=expired,
            paused=paused,
        )

    def tasks(self, state: TaskState | None = None) -> list[TaskHandle]:
        """The live tasks (pending, queued, running or paused), in posting order.

        Args:
            state: only those in this state (``TaskState.PENDING``, ``RUNNING`` or
                ``PAUSED``); None for all.

        O(live tasks), under the scheduler's lock: about 50 ms for 10^5 pending timers
        on a 2-core machine, during which posts and firings wait. Fine for an admin
        page or a debugger, not for a hot loop.
        """
        if state is not None and not isinstance(state, TaskState):
            raise TypeError(f"state must be a TaskState or None, got {state!r}")
        found: dict[int, TaskHandle] = {}
        with self._lock:
            for e in self._wheel.entries():
                h = e if isinstance(e, TaskHandle) else cast("RetryEntry | TimeoutEntry", e).handle
                found[id(h)] = h
            for item in _snapshot(self._pool._claims):
                if isinstance(item, TaskHandle):
                    found[id(item)] = item
            for t in [*self._pool.threads(), *self._pool._callers]:
                item = getattr(t, CURRENT, None)
                if isinstance(item, TaskHandle) and item._sched is self:
                    found[id(item)] = item
            for h in [*self._intervals, *self._paused]:
                found[id(h)] = h
            if self._runner is not None:  # coroutine tasks on the event loop
                for h in list(self._runner.tasks):
                    found[id(h)] = h
            live = [h for h in found.values() if h._state < SUCCEEDED]
        if state is not None:
            live = [h for h in live if h.state is state]
        live.sort(key=_by_id)
        return live

    def subscribe(
        self, fn: Callable[[Event], object], events: Iterable[str] | str | None = None
    ) -> Callable[[], None]:
        """Call ``fn(event)`` for every event of the given kinds (all when None).

        Kinds: "posted", "rejected", "started", "retried", "succeeded", "failed",
        "timed_out", "missed", "cancelled" (see :class:`Event` for what each carries).
        ``fn`` runs on the thread where it happened: the poster's, the worker's, the
        canceller's; events found by the timer thread ("timed_out" at the deadline,
        "missed") are delivered by a worker, never by the timer thread. A listener that
        raises is logged and harms nothing else. Listening to a run event makes every
        run take a slightly slower path.

        Returns a function that unsubscribes (safe to call more than once).
        """
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        sub = (fn, check_events(events))
        with self._lock:
            self._listeners.subs.append(sub)
            self._update_listeners_locked()

        def unsubscribe() -> None:
            with self._lock:
                subs = self._listeners.subs
                for i, x in enumerate(subs):
                    if x is sub:
                        del subs[i]
                        self._update_listeners_locked()
                        return

        return unsubscribe

    def _update_listeners_locked(self) -> None:
        listeners = self._listeners
        listeners.rebuild()
        self._ev = listeners.by_kind
        self._ev_posted = listeners.by_kind["posted"]
        self._ev_cancelled = listeners.by_kind["cancelled"]
        self._observed = any(listeners.by_kind[k] for k in RUN_EVENTS)

    def _emit(self, kind: str, h: TaskHandle, **fields: Any) -> None:
        """Tell the listeners of ``kind`` (lock not held)."""
        if self._ev.get(kind):
            self._listeners.emit(Event(kind, h, self._clock.now(), **fields))

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        if self._closing:
            state = "shut down"
        elif self._manual:
            state = "manual"
        else:
            state = "running"
        s = self.stats()
        return (
            f"<Scheduler {self._name!r} {state} pending={s.pending} queued={s.queued} "
            f"running={s.running} workers={s.workers}>"
        )

    # --------------------------------------------------- exit and fork safety
    def _abandon(self, why: str) -> tuple[int, int]:
        """Cancel what has not started, without waiting (interpreter exit).

        Returns how many tasks will not run, and how many are still running.
        """
        with self._lock:
            running = self._pool.running
            tokens = self._cancel_all_locked(why)
            self._closing = True
            self._cut_coroutines_locked(why)
            self._stop_threads_locked()
            if self._timer is not None:
                self._cond.notify()
        self._notify_all(tokens)
        not_run = sum(isinstance(h, TaskHandle) and h._state == CANCELLED for h, _ in tokens)
        return not_run, running

    def _after_fork_child(self) -> None:
        # Only the forking thread exists in the child: no timer, no workers. Tasks
        # inherited from the parent are the parent's to run; here they end cancelled.
        self._setup_sync()
        self._closing = True
        entries = self._wheel.drain()
        self._wheel = Wheel(TICK_NS, self._now_ns() // TICK_NS)
        self._armed_timeouts = 0  # the runs they timed are the parent's
        self._orphans = []
        self._later_queued = 0
        self._pool = self._make_pool()
        self._offer = self._pool.offer
        with self._lock:
            for h in [*entries, *self._intervals]:
                if isinstance(h, TaskHandle) and h._state < SUCCEEDED:
                    h._waiters = None  # their threads are in the parent
                    self._finish_cancelled_locked(h, "not run: inherited across fork()")


@final
class _Later:
    """Hooks and listeners that the timer thread found to call: a worker calls them
    (a pool work item, queued ahead of the tasks)."""

    __slots__ = ("_calls", "_sched")

    def __init__(self, sched: Scheduler, calls: list[_Call]) -> None:
        self._sched = sched
        self._calls = calls

    def run_calls(self) -> None:
        for fn, args in self._calls:
            try:
                fn(*args)
            except Exception:  # pragma: no cover - each call guards its own user code
                logger.exception("wheeltask: error in %r", fn)
        self._calls = []

    def _run(self, finished: itertools.count[int]) -> None:
        sched = self._sched
        with sched._lock:
            sched._later_queued -= 1
        self.run_calls()
        next(finished)
        if sched._closing and sched._maybe_idle():
            with sched._lock:
                sched._closed_progress_locked()


def _by_id(h: TaskHandle) -> int:
    return h._id


def _snapshot(claims: dict[Any, None]) -> tuple[Any, ...]:
    """The keys of a dict that workers change without the lock (under the GIL,
    ``tuple(dict)`` runs in C and sees no change; retried in case it ever does)."""
    while True:
        try:
            return tuple(claims)
        except RuntimeError:  # pragma: no cover - "dictionary changed size"
            continue


def _release_callback(h: TaskHandle) -> None:
    """Drop a task's callback and arguments; ``_cb`` keeps the callback's name."""
    cb = h._cb
    if type(cb) is _FunctionType:
        h._cb = cb.__qualname__
    elif not isinstance(cb, str):
        h._cb = callable_name(cb)
    h._args = ()


def _register_locked(h: TaskHandle, w: object) -> None:
    if h._waiters is None:
        h._waiters = [w]
    else:
        h._waiters.append(w)


def _unregister_locked(h: TaskHandle, w: object) -> bool:
    ws = h._waiters
    if ws is not None:
        for i, x in enumerate(ws):
            if x is w:
                del ws[i]
                if not ws:
                    h._waiters = None
                return True
    return False


def _at_exit() -> None:
    for s in list(_live):
        if s._manual:
            continue  # a test's scheduler: no thread to stop, nothing runs by itself
        not_run, running = s._abandon("not run: the interpreter exited")
        if not_run or running:
            logger.warning(
                "wheeltask scheduler %r: %d task(s) did not run and %d were still running "
                "when the interpreter exited; call wheeltask.wait_and_exit() (or "
                "Scheduler.shutdown()) before exit to wait for them",
                s.name,
                not_run,
                running,
            )


def _before_fork() -> None:
    for s in sorted(_live, key=id):
        s._lock.acquire()


def _after_fork_parent() -> None:
    for s in sorted(_live, key=id):
        s._lock.release()


def _after_fork_child() -> None:
    for s in list(_live):
        s._after_fork_child()


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_parent, after_in_child=_after_fork_child
    )
