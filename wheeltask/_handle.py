"""Task handles: what ``post_task`` returns.

A handle is also the wheel entry and the pool's work item, so a pending timer costs one
object. Its fields are kept few on purpose (memory per pending timer is a promise):
``_args`` holds the callback's arguments until a one-shot run ends, then its outcome
(or, once cancelled, the reason); ``_cb`` holds the callback until it is released,
then its name; everything a plain one-shot task does not need lives in ``_extra``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
import functools
import inspect
import itertools
import logging
import threading
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, final

from ._coro import current as current_coro
from ._coro import is_awaitable
from ._errors import TaskTimeout
from ._pool import current_item

if TYPE_CHECKING:
    from ._scheduler import Scheduler

__all__ = ["TaskHandle", "TaskState", "current_task"]

logger = logging.getLogger("wheeltask")

_LockType: Final = type(threading.Lock())
_FunctionType: Final = types.FunctionType
_CO_COROUTINE: Final = inspect.CO_COROUTINE


@final
class AsyncWake:
    """A coroutine waiting on a handle (``wheeltask.aio``): woken like a thread's
    lock, from whichever thread finishes the run."""

    __slots__ = ("fut", "loop", "tid")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.tid = threading.get_ident()  # made by a coroutine: on the loop's thread
        self.fut: asyncio.Future[None] = loop.create_future()

    def release(self) -> None:
        if threading.get_ident() == self.tid:
            self._set()  # at once: advance_async sees the waiter runnable
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self.loop.call_soon_threadsafe(self._set)

    def _set(self) -> None:
        if not self.fut.done():
            self.fut.set_result(None)


#: Waiters that a run's progress wakes (the others are done callbacks).
WAKERS: Final = (_LockType, AsyncWake)


class TaskState(enum.Enum):
    """Where a task is in its life."""

    PENDING = "PENDING"  #: waiting for its time, or for a free worker
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    PAUSED = "PAUSED"  #: stopped by ``pause()`` until ``resume()``


# Internal states (ints compare fast); the first two are both PENDING to users. The
# final states come last: ``state >= SUCCEEDED`` means done.
WAITING: Final = 0  # on the wheel
QUEUED: Final = 1  # in the run queue
RUNNING: Final = 2
PAUSED: Final = 3
SUCCEEDED: Final = 4
FAILED: Final = 5
CANCELLED: Final = 6
# Why a keyed task was cancelled by a post with on_duplicate="replace".
REPLACED: Final = "replaced by a new task with the same key"
_PUBLIC: Final = (
    TaskState.PENDING,
    TaskState.PENDING,
    TaskState.RUNNING,
    TaskState.PAUSED,
    TaskState.SUCCEEDED,
    TaskState.FAILED,
    TaskState.CANCELLED,
)


@final
class Failure:
    """A run's exception, stored where its result would be."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


@final
class Extra:
    """Per-task data that a plain one-shot task does not need."""

    __slots__ = (
        "attempts",
        "backoff",
        "coro",
        "due",
        "expires",
        "interval",
        "key",
        "last",
        "missed",
        "name",
        "on_duplicate",
        "on_failure",
        "on_retry",
        "on_success",
        "pause_pending",
        "priority",
        "retries",
        "retry_entry",
        "retry_on",
        "run_deadline",
        "runs",
        "stop",
        "timed_out",
        "timeout",
        "timeout_entry",
    )

    def __init__(self, name: str | None = None, interval: int | None = None) -> None:
        self.name = name
        self.interval = interval  # ns; None for one-shot tasks
        self.runs = 0  # interval tasks only (a one-shot's runs follow from its state)
        self.missed = 0
        self.stop: str | None = None  # why an interval task was stopped (while running)
        self.last: object = None  # the latest run's outcome (interval tasks)
        self.retries = 0  # further attempts allowed after the first, per run
        self.retry_on: tuple[type[BaseException], ...] = ()
        self.backoff: object = None  # None, seconds (float) or a callable attempt -> seconds
        self.attempts = 0  # attempts made (per run for interval tasks)
        self.retry_entry: RetryEntry | None = None  # an interval run waiting to retry
        self.key: object = None  # deduplication key (None: none)
        self.on_duplicate = "return"
        self.on_success: Callable[[TaskHandle, object], object] | None = None
        self.on_failure: Callable[[TaskHandle, BaseException], object] | None = None
        self.on_retry: Callable[[TaskHandle, BaseException, float], object] | None = None
        self.priority = 0  # higher runs first among queued tasks
        self.timeout: int | None = None  # ns a run may take (per attempt); None: no limit
        self.run_deadline: int | None = None  # clock ns the current attempt must end by
        self.timeout_entry: TimeoutEntry | None = None  # on the wheel while it runs
        self.timed_out = False  # the latest attempt exceeded its timeout
        self.pause_pending = False  # pause() during an interval run: paused when it ends
        self.expires: int | None = None  # ns after its due time a run may still start
        self.due = 0  # clock ns the current run of an interval task was due
        self.coro: bool | None = None  # an async def callback (None: not looked at yet)


@final
class RetryEntry:
    """The wheel entry of an interval run's next attempt (its handle is on the wheel
    for the next grid point already)."""

    __slots__ = ("_deadline", "_extra", "_id", "_wslot", "handle")

    def __init__(self, handle: TaskHandle, deadline: int) -> None:
        self.handle = handle
        self._deadline = deadline
        self._id = handle._id
        self._wslot: list[Any] | None = None
        self._extra = handle._extra  # so that firing sees an interval task's entry


@final
class TimeoutEntry:
    """The wheel entry that fails a run which exceeds its ``timeout``."""

    __slots__ = ("_deadline", "_extra", "_id", "_wslot", "handle")

    def __init__(self, handle: TaskHandle, deadline: int) -> None:
        self.handle = handle
        self._deadline = deadline
        self._id = handle._id
        self._wslot: list[Any] | None = None
        self._extra = handle._extra


def callable_name(cb: object) -> str:
    """A short name for a callback: its qualified name without ``<locals>`` parts.

    Never raises, whatever the callable (a mock, an object with odd attributes).
    """
    if not isinstance(cb, str):
        for _ in range(8):  # functools.partial(functools.partial(f)) ...
            if not isinstance(cb, functools.partial):
                break
            cb = cb.func
        try:
            name = getattr(cb, "__qualname__", None) or getattr(cb, "__name__", None)
        except Exception:  # noqa: BLE001 - a name is not worth a failing cancel()
            name = None
        cb = name if isinstance(name, str) else type(cb).__qualname__
    assert isinstance(cb, str)
    return cb.rpartition("<locals>.")[2]


class TaskHandle:
    """A posted task: its state, its runs, and the means to wait for it or cancel it.

    Created by ``post_task``; not meant to be built directly. Thread-safe.
    """

    __slots__ = (
        "_args",
        "_cb",
        "_deadline",
        "_extra",
        "_id",
        "_sched",
        "_state",
        "_waiters",
        "_wslot",
    )

    _id: int
    _deadline: int
    _wslot: list[Any] | None
    _cb: Callable[..., object] | str  # the callback; its name once released
    _args: Any
    _state: int
    _sched: Scheduler
    _waiters: list[Any] | None
    _extra: Extra | None

    # ------------------------------------------------------------ inspection
    @property
    def id(self) -> int:
        """1, 2, 3 ... in posting order, per scheduler."""
        return self._id

    @property
    def name(self) -> str:
        """The ``name=`` given to ``post_task``, else the callback's qualified name."""
        extra = self._extra
        if extra is not None and extra.name is not None:
            return extra.name
        return callable_name(self._cb)  # once released, _cb holds the name itself

    @property
    def state(self) -> TaskState:
        """PENDING (waiting for its time or a worker), RUNNING, or a final state."""
        return _PUBLIC[self._state]

    @property
    def interval(self) -> float | None:
        """Seconds between runs of an interval task; None for a one-shot task."""
        extra = self._extra
        if extra is None or extra.interval is None:
            return None
        return extra.interval / 1e9

    @property
    def runs(self) -> int:
        """Completed runs, failed ones included."""
        extra = self._extra
        if extra is not None and extra.interval is not None:
            return extra.runs
        return 1 if self._state in (SUCCEEDED, FAILED) else 0

    @property
    def attempts(self) -> int:
        """Attempts made: of the task, or of the current run for an interval task
        (``retries=`` allows more than one)."""
        extra = self._extra
        if extra is not None:
            return extra.attempts
        st = self._state
        return 1 if st == RUNNING or SUCCEEDED <= st <= FAILED else 0

    @property
    def priority(self) -> int:
        """The ``priority=`` given to ``post_task`` (0 by default; higher runs first)."""
        extra = self._extra
        return 0 if extra is None else extra.priority

    @property
    def missed(self) -> int:
        """Interval firings skipped because the previous run was still going, or
        coalesced after a stall."""
        extra = self._extra
        return 0 if extra is None else extra.missed

    @property
    def next_run(self) -> float | None:
        """Clock time (seconds) at which the next run is due; None if none is."""
        if self._wslot is None:
            return None
        return self._deadline / 1e9

    @property
    def timeout(self) -> float | None:
        """Seconds a run may take (``timeout=``), or None for no limit."""
        extra = self._extra
        if extra is None or extra.timeout is None:
            return None
        return extra.timeout / 1e9

    @property
    def deadline(self) -> float | None:
        """Clock time (seconds) by which the current (or latest) attempt had to end,
        under ``timeout=``; None without a timeout or before the first attempt."""
        extra = self._extra
        if extra is None or extra.run_deadline is None:
            return None
        return extra.run_deadline / 1e9

    def timed_out(self) -> bool:
        """True if the current (or latest) attempt has exceeded its ``timeout``.

        A callback cannot be stopped from outside; a long one should look at this (or
        call :meth:`check`) now and then, through ``wheeltask.current_task()``.
        """
        extra = self._extra
        if extra is None or extra.run_deadline is None:
            return False
        if extra.timed_out:
            return True
        # Only while an attempt is under way (not between the attempts of a run).
        return extra.timeout_entry is not None and self._sched._now_ns() >= extra.run_deadline

    def check(self) -> None:
        """Raise ``TaskTimeout`` if the current attempt has exceeded its ``timeout``."""
        if self.timed_out():
            assert self._extra is not None and self._extra.timeout is not None
            raise TaskTimeout(timeout_message(self, self._extra.timeout))

    def cancelled(self) -> bool:
        """True if the task ended cancelled (by ``cancel()`` or a shutdown)."""
        return self._state == CANCELLED

    def done(self) -> bool:
        """True once the task will never run again (succeeded, failed or cancelled)."""
        return self._state >= SUCCEEDED

    def running(self) -> bool:
        """True while a run of the callback is in progress."""
        return self._state == RUNNING

    # ---------------------------------------------------------------- control
    def cancel(self) -> bool:
        """Prevent every future run.

        Returns True if a future run was prevented (the task was pending or queued, or
        is an interval task: a run in progress completes, later ones never start), or if
        it was already cancelled; False if a one-shot run has started or finished. A
        pending task is removed from the wheel in O(1) and its callback released.

        A coroutine task (``async def``) that is running is cancelled too, unlike a
        thread: True is returned and the task ends CANCELLED once its coroutine returns
        (whatever it does with the ``CancelledError``), the run counted in neither
        ``runs`` nor ``failed``.
        """
        return self._sched._cancel(self, "cancelled by cancel()")

    def reschedule(
        self,
        delay: float | datetime.timedelta | None = None,
        *,
        interval: float | datetime.timedelta | None = None,
    ) -> bool:
        """Move the next run: to ``delay`` seconds from now (0 if None) for a one-shot
        task; for an interval task to now + ``delay`` (default: now + the interval) and
        then every ``interval`` seconds (default: its interval so far). O(1).

        Returns:
            True if moved; False (and nothing changed) for a one-shot task that is
            running or done, or a task that is cancelled or finished. A paused task
            keeps the new time for its ``resume()``.

        Raises:
            TypeError, ValueError: a bad ``delay`` or ``interval`` (as for
                ``post_task``), or ``interval`` for a one-shot task.
        """
        return self._sched._reschedule(self, delay, interval)

    def pause(self) -> bool:
        """Stop future runs without losing the task, until :meth:`resume`.

        A run in progress completes. Returns True (also if already paused), or False
        for a one-shot task that has started or finished, or a cancelled task.
        """
        return self._sched._pause(self)

    def resume(self) -> None:
        """Restart a paused task.

        An interval task goes on on its original grid: the points that passed while it
        was paused are skipped (counted in ``missed``), not run in a burst. A one-shot
        task whose time passed runs at once; otherwise at its time.

        Raises:
            RuntimeError: the task is not paused.
        """
        self._sched._resume(self)

    # ------------------------------------------------------------------ waits
    def wait_for_finished(self, timeout: float | None = None) -> bool:
        """Wait until a one-shot task has finished, or an interval task has run once.

        Args:
            timeout: seconds to wait at most (None: no limit). On a manual scheduler
                waiting advances its ``VirtualClock``, so no real time passes.

        Returns:
            True if finished (successfully or not), False if the timeout passed first.

        Raises:
            TaskCancelled: the task was cancelled before it finished.
        """
        return self._sched._wait(self, 1, timeout)

    def wait_for_runs(self, n: int, timeout: float | None = None) -> bool:
        """Wait until at least ``n`` runs have completed; see :meth:`wait_for_finished`."""
        if type(n) is not int or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        return self._sched._wait(self, n, timeout)

    def result(self, timeout: float | None = None) -> Any:
        """The return value of the run, like ``concurrent.futures.Future.result``.

        For an interval task: the latest completed run's value.

        Raises:
            TaskCancelled: cancelled before finishing.
            TimeoutError: ``timeout`` passed first.
            BaseException: whatever the callback raised.
        """
        outcome = self._outcome(timeout)
        if type(outcome) is Failure:
            raise outcome.exc
        return outcome

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The exception the run raised, or None; waits like :meth:`result`."""
        outcome = self._outcome(timeout)
        return outcome.exc if type(outcome) is Failure else None

    def _outcome(self, timeout: float | None) -> object:
        if not self._sched._wait(self, 1, timeout):
            raise TimeoutError(f"{self!r} did not finish within {timeout} seconds")
        extra = self._extra
        if extra is not None and extra.interval is not None:
            return extra.last
        return self._args

    def add_done_callback(self, fn: Callable[[TaskHandle], object]) -> None:
        """Call ``fn(handle)`` once the task is done (at once if it already is).

        It runs on the thread that finished the task; an exception it raises is logged.
        """
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        self._sched._add_done_callback(self, fn)

    # ------------------------------------------------------------- pool side
    # Called by the pool's thread that claimed the handle (nobody else can change a
    # claimed one-shot task's state), so a plain task's run takes no lock. A task with
    # options, or any task while event listeners are subscribed, takes the full path.
    def _run(self, finished: itertools.count[int]) -> None:
        sched = self._sched
        if self._extra is not None or sched._observed:
            sched._run_task(self, finished)
            return
        cb: Callable[..., object] = self._cb  # type: ignore[assignment]  # claimed: callable
        if type(cb) is _FunctionType and cb.__code__.co_flags & _CO_COROUTINE:
            # An async def function: the event loop calls it (the task stays PENDING
            # until its coroutine starts there).
            sched._hand_over(self, None, False, finished)
            return
        self._state = RUNNING
        try:
            value = cb(*self._args)  # on an exception the arguments stay
        except BaseException as exc:
            self._args = Failure(exc)
            self._state = FAILED
            if sched._early_cancels:  # an async callable that raised when called
                sched._early_cancels.pop(self, None)
            next(sched._n_failed)
            logger.error("task %r raised", self, exc_info=exc)
            del exc
        else:
            if value is not None and is_awaitable(value):  # an async def callback
                sched._hand_over(self, value, False, finished)  # type: ignore[arg-type]
                return
            self._args = value
            self._state = SUCCEEDED
            next(sched._n_succeeded)
        next(finished)
        # Read after the pool counted the run finished: a shutdown() or a waiter that
        # registered before these reads is seen; one that registers after them sees
        # the final state itself (see Scheduler._wait). During a shutdown only the run
        # that may be the last one takes the lock.
        if self._waiters is not None or (sched._closing and sched._maybe_idle()):
            sched._report_progress(self)

    def __repr__(self) -> str:
        parts = [f"#{self._id}", repr(self.name)]
        iv = self.interval
        if iv is not None:
            parts.append(f"interval={iv:g}")
        parts.append(f"state={self.state.name}")
        parts.append(f"runs={self.runs}")
        nxt = self.next_run
        if nxt is not None:
            parts.append(f"next_run={nxt - self._sched._clock.now():+.3f}s")
        return f"<{type(self).__name__} {' '.join(parts)}>"


def current_task() -> TaskHandle | None:
    """The task whose callback the calling thread is running, or None outside one.

    Inside a callback (or a hook it runs) it gives the callback its own handle: its
    ``name``, ``id``, ``attempts``... Cheap: one attribute of the current thread.
    """
    item = current_item()
    return item if isinstance(item, TaskHandle) else current_coro.get()


def call_hook(hook: Callable[..., object], handle: TaskHandle, *args: object) -> None:
    """Call a task's hook; what it raises is logged and goes no further."""
    try:
        hook(handle, *args)
    except Exception:
        logger.exception("hook %r of %r raised", hook, handle)


def report_failure(handle: TaskHandle, exc: BaseException) -> None:
    """A run failed for good: its on_failure hook, else the log (with the traceback)."""
    extra = handle._extra
    if extra is not None and extra.on_failure is not None:
        call_hook(extra.on_failure, handle, exc)
    elif type(exc) is TaskTimeout and extra is not None and extra.timed_out:
        logger.error("task %r timed out: %s", handle, exc)
    else:
        logger.error("task %r raised", handle, exc_info=exc)


def timeout_message(handle: TaskHandle, timeout_ns: int) -> str:
    return f"{handle.name!r} exceeded its timeout of {timeout_ns / 1e9:g} seconds"


def notify(handle: TaskHandle, token: list[Any]) -> None:
    """Release waiters and, on a final state, run done callbacks (lock not held)."""
    final = handle._state >= SUCCEEDED
    for w in token:
        if type(w) in WAKERS:
            w.release()
        elif final:
            try:
                w(handle)
            except Exception:
                logger.exception("done callback %r of %r raised", w, handle)
