"""wheeltask for code already inside a running asyncio (or uvloop) event loop.

    from wheeltask.aio import AsyncScheduler

    async def main() -> None:
        async with AsyncScheduler() as s:
            h = s.post_task(refresh, delay=1.5, retries=3, retry_on=OSError)
            print(await h)                      # the result, or its exception raised

The same wheel, handles, options and statistics as ``wheeltask.Scheduler``, driven by
the loop's own timer: at most one pending ``loop.call_later``, for the next non-empty
slot of the wheel, re-armed when it wakes early (never a polling task). Coroutine
functions run as tasks of the loop, at most ``max_async`` at once; plain callables run
in the loop's default executor, or on the loop itself with ``inline=True``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import heapq
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, cast

from ._clock import Clock, VirtualClock
from ._coro import CoroRunner, CoroutineCall, is_coroutine_function
from ._errors import SchedulerShutdown
from ._events import Event
from ._handle import WAITING, AsyncWake, Failure, TaskHandle, TaskState
from ._pool import InlinePool, WorkItem
from ._scheduler import (
    _INF,
    MAX_DELAY,
    Scheduler,
    Stats,
    _check_int,
    _new_handle,
    _register_locked,
    _unregister_locked,
    check_timeout,
)
from ._wheel import TICK_NS

__all__ = ["AsyncScheduler", "AsyncTaskHandle"]

_NS: Final = 1_000_000_000
_CACHE_MAX: Final = 4096
_get_ident: Final = threading.get_ident


class AsyncTaskHandle(TaskHandle):
    """A task of an :class:`AsyncScheduler`: a ``TaskHandle`` whose waits are
    coroutines, and which is itself awaitable (``await h`` returns the result or
    raises). ``result()`` and ``exception()`` never block: before the task is done
    they raise ``asyncio.InvalidStateError``."""

    __slots__ = ()

    def __await__(self) -> Any:
        return self._finished_result().__await__()

    async def _finished_result(self) -> Any:
        await self.wait_for_finished()
        return self.result()

    async def wait_for_finished(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until a one-shot task has finished, or an interval task has run once.

        Args:
            timeout: seconds (real time, on the loop's clock) to wait at most.

        Returns:
            True if finished, False if the timeout passed first.

        Raises:
            TaskCancelled: the task was cancelled before it finished.
        """
        return await self._wait_async(1, timeout)

    async def wait_for_runs(self, n: int, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until at least ``n`` runs have completed; see :meth:`wait_for_finished`."""
        if type(n) is not int or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        return await self._wait_async(n, timeout)

    async def _wait_async(self, n: int, timeout: float | None) -> bool:
        timeout = check_timeout(timeout)
        sched = self._sched
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while True:
            with sched._lock:
                r = sched._progress_locked(self, n)  # raises TaskCancelled
                if r is not None:
                    return r
                wake = AsyncWake(loop)
                _register_locked(self, wake)
            try:
                if end is None:
                    await wake.fut
                else:
                    remaining = end - loop.time()
                    if remaining <= 0:
                        return False
                    try:
                        await asyncio.wait_for(wake.fut, remaining)
                    except asyncio.TimeoutError:
                        with sched._lock:
                            r = sched._progress_locked(self, n)
                        return bool(r)
            finally:
                with sched._lock:
                    _unregister_locked(self, wake)

    def result(self) -> Any:  # type: ignore[override]
        """The run's return value (an interval task's latest); never blocks.

        Raises:
            asyncio.InvalidStateError: the task has not finished (or run) yet.
            TaskCancelled: it was cancelled before finishing.
            BaseException: whatever the callback raised.
        """
        outcome = self._ready_outcome()
        if type(outcome) is Failure:
            raise outcome.exc
        return outcome

    def exception(self) -> BaseException | None:  # type: ignore[override]
        """The exception the run raised, or None; never blocks (see :meth:`result`)."""
        outcome = self._ready_outcome()
        return outcome.exc if type(outcome) is Failure else None

    def _ready_outcome(self) -> object:
        sched = self._sched
        with sched._lock:
            r = sched._progress_locked(self, 1)
        if not r:
            raise asyncio.InvalidStateError(f"{self!r} is not done yet")
        extra = self._extra
        if extra is not None and extra.interval is not None:
            return extra.last
        return self._args


class _Inline:
    """A plain callback posted with ``inline=True``: it runs on the loop itself."""

    __slots__ = ("__qualname__", "fn")

    def __init__(self, fn: Callable[..., object]) -> None:
        self.fn = fn
        self.__qualname__ = getattr(fn, "__qualname__", type(fn).__qualname__)

    def __call__(self, *args: Any) -> object:
        return self.fn(*args)


class _InExecutor(_Inline):
    """A plain callback posted with ``inline=False`` where the scheduler's default is
    inline: it runs in the loop's default executor."""

    __slots__ = ()


class _LoopPool(InlinePool):
    """Queued items run from the loop: coroutine tasks become loop tasks (through the
    runner), plain callbacks run in the default executor or inline, by priority and
    then in order, as soon as the loop gets to them."""

    def __init__(
        self,
        lock: threading.Lock,
        loop: asyncio.AbstractEventLoop,
        *,
        queue_size: int,
        inline: bool,
    ) -> None:
        super().__init__(lock, queue_size=queue_size, on_full="raise")
        self._loop = loop
        self._tid = threading.get_ident()
        self._kicked = False
        self._inline = inline
        self._coro_cache: dict[object, bool] = {}
        self.sched: _LoopCore | None = None  # set by the scheduler that made it
        self.in_executor: set[asyncio.Future[None]] = set()

    def submit_locked(self, item: WorkItem, priority: int = 0) -> None:
        super().submit_locked(item, priority)
        if not self._kicked:
            self._kicked = True
            if threading.get_ident() == self._tid:
                self._loop.call_soon(self._drain)
            else:
                self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._kicked = False
        self.run_queued()

    def run_queued(self) -> int:
        n = 0
        items = self._items
        while items:
            item = heapq.heappop(items)[2]
            if self._claims.pop(item, 1) is not None:
                continue  # cancelled
            where = self._where(item)
            if where is _CORO:  # straight to the runner: its coroutine is called there
                sched = self.sched
                assert sched is not None and isinstance(item, TaskHandle)
                self.count_caller_run_locked()
                sched._hand_over(item, None, False, self._finished)
            elif where is _LOOP:
                self.count_caller_run_locked()
                self.run_in_caller(item)
            else:
                self.count_caller_run_locked()
                fut = self._loop.run_in_executor(None, self.run_in_caller, item)
                self.in_executor.add(fut)
                fut.add_done_callback(self.in_executor.discard)
            n += 1
        return n

    def _where(self, item: WorkItem) -> object:
        """Where an item runs: ``_CORO`` (an async def task: handed to the runner),
        ``_LOOP`` (internal items, coroutine objects, inline callbacks) or
        ``_EXECUTOR`` (other plain callbacks, unless the scheduler is inline)."""
        if not isinstance(item, TaskHandle):
            return _LOOP
        cb = item._cb
        kind = type(cb)
        if kind is _Inline or kind is CoroutineCall:
            return _LOOP
        if kind is _InExecutor:
            return _EXECUTOR
        if self.is_coro(cb):
            return _CORO
        return _LOOP if self._inline else _EXECUTOR

    def is_coro(self, cb: object) -> bool:
        """``is_coroutine_function(cb)``, remembered per callable (it is not cheap)."""
        try:
            coro = self._coro_cache.get(cb)
        except TypeError:  # unhashable
            return is_coroutine_function(cb)
        if coro is None:
            coro = is_coroutine_function(cb)
            if len(self._coro_cache) >= _CACHE_MAX:
                self._coro_cache.clear()
            self._coro_cache[cb] = coro
        return coro


_CORO: Final = object()
_LOOP: Final = object()
_EXECUTOR: Final = object()


class _LoopCore(Scheduler):
    """The scheduler behind an :class:`AsyncScheduler`: no timer thread (the loop's
    timer drives the wheel), no worker threads (the loop and its executor run)."""

    _handle_cls = AsyncTaskHandle
    _async_core = True  # VirtualClock: moved by advance_async() only

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        inline: bool,
        max_async: int,
        queue_size: int,
        **options: Any,
    ) -> None:
        self._loop = loop
        self._tid = threading.get_ident()  # the loop's thread (made inside the loop)
        self._inline = inline
        self._timer_handle: asyncio.TimerHandle | None = None
        self._idle_event: asyncio.Event | None = None
        self._own_coro = 0  # 1 while shutdown() runs inside one of its coroutine tasks
        self._ms_timer = type(loop).__module__.startswith("uvloop")  # ms-granular timers
        super().__init__(max_async=max_async, queue_size=queue_size, **options)
        self._manual = True  # no timer thread; run_due() for a VirtualClock
        self._virtual = isinstance(self._clock, VirtualClock)
        self._wake_tick = _INF
        self._runner = CoroRunner(self, "attached", max_async, loop=loop)
        # No max_pending and no task defaults: _post_timer may serve plain timer posts.
        self._plain = self._max_pending is None and self._task_defaults is None
        pool = self._pool
        assert isinstance(pool, _LoopPool)
        pool.sched = self

    def _post_timer(self, cb: Callable[..., object], delay: float) -> AsyncTaskHandle:
        """``post_task(cb, delay=seconds)`` with nothing else: the commonest post of
        an AsyncScheduler, on the loop's thread, when ``_plain`` holds, nobody listens
        to "posted" and no shutdown has begun. What
        Scheduler.post_task does for it, without its argument handling."""
        deadline = self._now_ns() + round(delay * _NS)
        h: AsyncTaskHandle = _new_handle(AsyncTaskHandle)
        h._cb = cb
        h._args = ()
        h._wslot = None
        h._waiters = None
        h._extra = None
        h._sched = self
        h._id = next(self._ids)
        h._deadline = deadline
        h._state = WAITING
        lock = self._lock
        lock.acquire()
        try:
            if self._closing:  # (a shutdown raced this post: the general path refuses it)
                self._id_gaps += 1
                raise SchedulerShutdown(f"scheduler {self._name!r} is shut down")
            self._wheel.add(h)
            if -(-deadline // TICK_NS) < self._wake_tick:
                self._wake_timer_locked()
        finally:
            lock.release()
        return h

    def _make_pool(self) -> _LoopPool:
        return _LoopPool(
            self._lock, self._loop, queue_size=self._options["queue_size"], inline=self._inline
        )

    # ------------------------------------------------------------ the timer
    def _wake_timer_locked(self) -> None:
        """An earlier deadline was posted: re-arm the loop's one timer for it."""
        if self._virtual:
            return
        if threading.get_ident() == self._tid:
            self._arm_locked()
        else:  # a retry or a timeout armed from an executor thread
            self._wake_tick = -_INF  # re-armed by the loop soon: no other wake needed
            self._loop.call_soon_threadsafe(self._rearm)

    def _rearm(self) -> None:
        with self._lock:
            self._arm_locked()

    def _arm_locked(self) -> None:
        nd = self._wheel.next_deadline()
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        if nd is None:
            self._wake_tick = _INF
            return
        delay = max(0.0, (nd * TICK_NS - self._now_ns()) / _NS)
        if self._ms_timer:  # uvloop rounds to whole ms: round up, not early (and no spin)
            delay = math.ceil(delay * 1000) / 1000
        self._timer_handle = self._loop.call_later(delay, self._on_timer)
        self._wake_tick = nd

    def _on_timer(self) -> None:
        with self._lock:
            self._timer_handle = None
            now = self._now_ns()
            due = self._wheel.advance(now // TICK_NS)
            if due:
                self._fire_locked(due, now)
            self._arm_locked()  # the next slot, or this one again if woken early

    # --------------------------------------------------------- virtual time
    def _unsettled(self) -> tuple[list[asyncio.Future[None]], bool]:
        """For ``VirtualClock.advance_async``: the executor runs still going, and
        whether a coroutine task (or a queued item) can still make progress now. A
        task suspended on anything (a handle, ``asyncio.sleep``, I/O) counts as
        settled."""
        pool = self._pool
        assert isinstance(pool, _LoopPool)
        runnable = bool(pool._items)
        runner = self._runner
        if not runnable and runner is not None:
            runnable = runner.busy()
        return [f for f in pool.in_executor if not f.done()], runnable

    # -------------------------------------------------------------- closing
    def _closed_progress_locked(self) -> None:
        super()._closed_progress_locked()
        event = self._idle_event
        if (
            self._timer_handle is not None
            and not len(self._wheel)
            and threading.get_ident() == self._tid
            and self._is_idle_locked(0, self._own_coro)
        ):
            self._timer_handle.cancel()  # shut down with nothing left: no more wake-ups
            self._timer_handle = None
            self._wake_tick = _INF
        if event is not None and self._is_idle_locked(0, self._own_coro):
            if threading.get_ident() == self._tid:
                event.set()
            else:
                self._loop.call_soon_threadsafe(event.set)


class AsyncScheduler:
    """Delayed, periodic and immediate tasks for code inside a running event loop.

    Args:
        max_async: at most this many coroutine tasks run at once (the others wait,
            counted in ``stats().queued``).
        inline: run plain (non-async) callbacks on the loop itself instead of in the
            loop's default executor; ``post_task(..., inline=...)`` decides per task.
        queue_size: at most this many tasks wait for the loop (``QueueFull`` beyond).
        max_pending: at most this many timers on the wheels (``QueueFull`` beyond).
        clock: time source; a ``VirtualClock`` is moved by ``await clock.advance_async``.
        name: shown in reprs and logs.
        task_defaults: task options every ``post_task`` gets unless it gives its own.

    Use it as ``async with AsyncScheduler() as s:`` (leaving the block awaits
    ``shutdown()``), from inside the loop that will run its tasks.
    """

    def __init__(
        self,
        *,
        max_async: int = 1000,
        inline: bool = False,
        queue_size: int = 1_000_000,
        max_pending: int | None = None,
        clock: Clock | None = None,
        name: str = "wheeltask-aio",
        task_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(inline, bool):
            raise TypeError(f"inline must be a bool, got {inline!r}")
        _check_int(max_async, "max_async", 1)
        self._options: dict[str, Any] = {
            "max_async": max_async,
            "queue_size": queue_size,
            "max_pending": max_pending,
            "clock": clock,
            "name": name,
            "task_defaults": task_defaults,
        }
        # Every option checked now, as Scheduler would (nothing is started).
        from ._scheduler import check_scheduler_options  # noqa: PLC0415

        check_scheduler_options(**self._options)
        self._inline = inline
        self._core: _LoopCore | None = None
        self._closed = False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._bind(loop)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> _LoopCore:
        core = _LoopCore(loop, inline=self._inline, **self._options)
        self._core = core
        return core

    def _core_here(self, what: str) -> _LoopCore:
        core = self._core
        if core is not None:
            if core._loop.is_closed():
                raise SchedulerShutdown(
                    f"AsyncScheduler {self.name!r}: its event loop is closed (an "
                    "AsyncScheduler belongs to the loop it was first used in)"
                )
            if threading.get_ident() != core._tid:
                raise RuntimeError(
                    f"AsyncScheduler.{what}() called from a thread other than its event "
                    "loop's: use post_task_threadsafe(), which returns a "
                    "concurrent.futures.Future of the handle"
                )
            return core
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                f"AsyncScheduler.{what}() needs a running event loop: call it from a "
                "coroutine (or use post_task_threadsafe() from another thread)"
            ) from None
        return self._bind(loop)

    # ------------------------------------------------------------- posting
    def post_task(
        self,
        cb: Callable[..., object],
        /,
        *args: Any,
        delay: float | datetime.timedelta | None = None,
        interval: float | datetime.timedelta | None = None,
        name: str | None = None,
        inline: bool | None = None,
        **options: Any,
    ) -> AsyncTaskHandle:
        """Run ``cb(*args)`` after ``delay`` seconds, or every ``interval`` seconds:
        ``Scheduler.post_task``'s arguments and options, plus ``inline`` (run a plain
        callback on the loop instead of the default executor; None: the scheduler's
        setting). ``cb`` may be an ``async def`` function; a coroutine object is taken
        for a one-shot task without arguments or retries.

        Only from the loop's own thread (see :meth:`post_task_threadsafe`).
        """
        core = self._core
        if core is None or _get_ident() != core._tid or core._loop.is_closed():  # hot path
            core = self._core_here("post_task")
        if (
            type(delay) is float
            and 0.0 < delay <= MAX_DELAY
            and core._plain
            and not core._ev_posted
            and not core._closing
            and not args
            and not options
            and interval is None
            and name is None
            and inline is None
            and callable(cb)
        ):
            return core._post_timer(cb, delay)
        if inline is not None:
            if not isinstance(inline, bool):
                raise TypeError(f"inline must be a bool or None, got {inline!r}")
            pool = core._pool
            assert isinstance(pool, _LoopPool)
            if callable(cb) and inline != self._inline and not pool.is_coro(cb):
                cb = (_Inline if inline else _InExecutor)(cb)
        if args or options or interval is not None or name is not None:
            h = core.post_task(cb, *args, delay=delay, interval=interval, name=name, **options)
        else:  # the commonest post: a plain call, not a re-packed *args/**options one
            h = core.post_task(cb, delay=delay)
        return cast(AsyncTaskHandle, h)  # core._handle_cls is AsyncTaskHandle

    def post_task_threadsafe(
        self, cb: Callable[..., object], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[AsyncTaskHandle]:
        """``post_task`` from any thread: returns a ``concurrent.futures.Future`` of the
        handle (or of the exception ``post_task`` raised). Do not wait for it on the
        loop's own thread: the loop posts it."""
        core = self._core
        if core is None:
            raise RuntimeError(
                "post_task_threadsafe() before the AsyncScheduler is bound to its loop: "
                "create it (or post a first task) inside the loop"
            )
        out: concurrent.futures.Future[AsyncTaskHandle] = concurrent.futures.Future()

        def post() -> None:
            if not out.set_running_or_notify_cancel():
                return
            try:
                out.set_result(self.post_task(cb, *args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                out.set_exception(exc)

        try:
            core._loop.call_soon_threadsafe(post)
        except RuntimeError:  # the loop is closed
            raise SchedulerShutdown(f"scheduler {core.name!r}: its event loop is closed") from None
        return out

    # ------------------------------------------------------------- shutdown
    async def shutdown(
        self, wait: bool = True, *, timeout: float | None = None, cancel_pending: bool = False
    ) -> bool:
        """Stop taking tasks; optionally wait for the ones already posted (as
        ``Scheduler.shutdown``): interval tasks stop, one-shot tasks still run (delayed
        ones at their time) unless ``cancel_pending``; when ``timeout`` (real seconds)
        passes first, what has not started is cancelled, coroutines still running are
        cancelled too, and False is returned. Idempotent."""
        timeout = check_timeout(timeout)
        self._closed = True
        core = self._core
        if core is None:
            return True
        loop = core._loop
        end = None if timeout is None else loop.time() + timeout
        me = asyncio.current_task()
        runner = core._runner
        own = 0  # called from one of its own coroutine tasks: never waits for itself
        if me is not None and runner is not None:
            own = int(any(a.task is me for a in list(runner.tasks.values())))
        with core._lock:
            if core._idle_event is None:
                core._idle_event = asyncio.Event()
            core._own_coro = own
            tokens = core._close_locked(cancel_pending)
            idle = core._is_idle_locked(0, own)
        core._notify_all(tokens)
        if idle or not wait:
            return idle
        clock = core._clock
        if isinstance(clock, VirtualClock):
            if await self._run_out_virtual_time(clock, timeout):
                return True
        else:
            event = core._idle_event
            while True:
                with core._lock:
                    if core._is_idle_locked(0, own):
                        return True
                    event.clear()
                remaining = None if end is None else end - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except asyncio.TimeoutError:
                    break
        reason = "cancelled: shutdown() timed out"
        with core._lock:
            tokens = core._cancel_all_locked(reason)
            core._cut_coroutines_locked(reason, spare=me)
        core._notify_all(tokens)
        for _ in range(10):  # let the cut coroutines take their CancelledError
            await asyncio.sleep(0)
            with core._lock:
                if core._is_idle_locked(0, own):
                    break
        return False

    async def _run_out_virtual_time(self, clock: VirtualClock, timeout: float | None) -> bool:
        """A shutdown on a VirtualClock, as a manual scheduler's: time moves (by at most
        ``timeout`` virtual seconds) until what is left has run. True if all is done."""
        core = self._core
        assert core is not None
        if clock._busy:  # called from a task that advance_async is running
            return False
        end = None if timeout is None else clock.now_ns() + round(timeout * _NS)
        while True:
            with core._lock:
                if core._is_idle_locked(0, core._own_coro):
                    return True
            nxt = core._next_due_ns()
            if nxt is None or (end is not None and nxt > end):
                break
            await clock._advance_to_ns_async(max(nxt, clock.now_ns()))
        if end is not None and end > clock.now_ns():
            await clock._advance_to_ns_async(end)
        await clock._settle()
        with core._lock:
            return core._is_idle_locked(0, core._own_coro)

    async def __aenter__(self) -> AsyncScheduler:
        self._core_here("__aenter__")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    # ----------------------------------------------------------- inspection
    def stats(self) -> Stats:
        """A snapshot of the counters, as ``Scheduler.stats()``."""
        core = self._core
        return (core or self._core_here("stats")).stats()

    def tasks(self, state: TaskState | None = None) -> list[TaskHandle]:
        """The live tasks, in posting order (see ``Scheduler.tasks``)."""
        return [] if self._core is None else self._core.tasks(state)

    def subscribe(self, fn: Callable[[Event], object], events: Any = None) -> Callable[[], None]:
        """Listen to task events, as ``Scheduler.subscribe``."""
        return self._core_here("subscribe").subscribe(fn, events=events)

    @property
    def clock(self) -> Clock:
        core = self._core
        if core is not None:
            return core.clock
        clock = self._options["clock"]
        if clock is None:
            raise RuntimeError("the clock is made when the scheduler binds to its loop")
        assert isinstance(clock, Clock)
        return clock

    @property
    def name(self) -> str:
        return str(self._options["name"])

    def __repr__(self) -> str:
        if self._core is None:
            return f"<AsyncScheduler {self.name!r} not started>"
        s = self._core.stats()
        state = "shut down" if self._closed else "running"
        return (
            f"<AsyncScheduler {self.name!r} {state} pending={s.pending} queued={s.queued} "
            f"running={s.running}>"
        )
