"""Coroutine tasks: they run on an asyncio (or uvloop) event loop, at most ``max_async``
at once (a semaphore, not threads).

A ``CoroRunner`` belongs to one scheduler. It runs in one of three ways:

- ``"thread"``: the threaded ``Scheduler``'s own loop, in a thread of its own, started
  by the first coroutine task and stopped by ``shutdown()``;
- ``"inline"``: a manual scheduler's: each coroutine task is run to its end on the
  thread that runs it (``VirtualClock.advance``), so tests stay deterministic;
- ``"attached"``: ``wheeltask.aio.AsyncScheduler``'s: the running loop of its owner.

Counts (``waiting``, ``running``) and the maps are guarded by the scheduler's lock.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from ._pool import WheeltaskThread

if TYPE_CHECKING:
    from ._handle import TaskHandle
    from ._scheduler import Scheduler

logger = logging.getLogger("wheeltask")

LOOPS: Final = ("auto", "uvloop", "asyncio")
UVLOOP_MISSING: Final = (
    "loop='uvloop' needs uvloop, which is not installed: pip install 'wheeltask[uvloop]' "
    "(or use loop='auto', which falls back to asyncio)"
)

#: The task a coroutine belongs to (``current_task()`` inside a coroutine task).
current: contextvars.ContextVar[TaskHandle | None] = contextvars.ContextVar(
    "wheeltask_current_task", default=None
)


def uvloop_available() -> bool:
    """uvloop can be imported (found is not enough: a broken install counts as missing)."""
    try:
        import uvloop  # noqa: F401, PLC0415 - optional
    except ImportError:
        return False
    return True


def check_loop(loop: object) -> str:
    """Validate ``Scheduler(loop=...)``; raises at once for a missing uvloop."""
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {', '.join(map(repr, LOOPS))}, got {loop!r}")
    if loop == "uvloop" and not uvloop_available():
        raise RuntimeError(UVLOOP_MISSING)
    assert isinstance(loop, str)
    return loop


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new loop: uvloop's for "uvloop" (and for "auto" when installed), else asyncio's."""
    if kind == "uvloop" or (kind == "auto" and uvloop_available()):
        import uvloop  # noqa: PLC0415 - optional

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def is_coroutine_function(cb: object) -> bool:
    """``async def`` functions, methods, partials of them, and objects whose
    ``__call__`` is one."""
    while isinstance(cb, functools.partial):
        cb = cb.func
    if inspect.iscoroutinefunction(cb):
        return True
    call = getattr(type(cb), "__call__", None)  # noqa: B004 - the class's, not a getattr hook
    return call is not None and not inspect.isfunction(cb) and inspect.iscoroutinefunction(call)


def is_awaitable(value: object) -> bool:
    """What a callback may return to be awaited on the loop (not a generator)."""
    return inspect.isawaitable(value) and not inspect.isgenerator(value)


def close_unstarted(aw: object) -> None:
    """A coroutine that will never run is closed (no "never awaited" warning)."""
    if inspect.iscoroutine(aw):
        aw.close()


A_WAITING: Final = 0  # handed over; not started (waiting for the loop or a place)
A_RUNNING: Final = 1  # its coroutine is a task of the loop
A_DROPPED: Final = 2  # cancelled before it started


class Attempt:
    """One hand-over of a task to the loop (a retry is another one). Called by its
    asyncio task when that is done (a done callback)."""

    __slots__ = ("aw", "cut", "h", "queued", "runner", "started", "state", "task")

    def __init__(
        self, runner: CoroRunner, h: TaskHandle, aw: Awaitable[Any] | None, started: bool
    ) -> None:
        self.runner = runner
        self.h = h
        self.aw = aw  # what to await; None: call the coroutine function
        self.started = started  # the attempt began on a worker already
        self.state = A_WAITING
        self.queued = False  # waiting for a place (max_async)
        self.task: asyncio.Task[Any] | None = None
        self.cut: str | None = None  # cancelled while running: why

    def __call__(self, task: asyncio.Task[Any]) -> None:
        runner = self.runner
        if task.cancelled():
            runner._finish(self, None, asyncio.CancelledError())
            return
        exc = task.exception()
        runner._finish(self, None if exc is not None else task.result(), exc)


async def _await(aw: Awaitable[Any]) -> Any:
    """An awaitable that is not a coroutine (a future, an object with ``__await__``),
    as a coroutine for ``create_task``."""
    return await aw


class CoroRunner:
    """Runs a scheduler's coroutine tasks on one loop (see the module docstring).

    A coroutine task's coroutine is itself the loop's task (nothing wraps it): its
    attempt starts when a place is free (``max_async``), and the task's done callback
    records the outcome, frees the place and starts the next attempt waiting for one.
    """

    def __init__(
        self,
        sched: Scheduler,
        mode: str,
        max_async: int,
        loop: asyncio.AbstractEventLoop | None = None,
        loop_kind: str = "auto",
    ) -> None:
        self._sched = sched
        self.mode = mode
        self.loop: asyncio.AbstractEventLoop = (
            loop if loop is not None else new_event_loop(loop_kind)
        )
        self._max = max_async
        self.waiting = 0  # handed over, not started yet: they count as queued
        self.running = 0
        # Every task handed over and not ended -> its current attempt.
        self.tasks: dict[TaskHandle, Attempt] = {}
        self._queue: collections.deque[Attempt] = collections.deque()  # for a place
        self._inbox: collections.deque[Attempt] = collections.deque()  # from other threads
        self._inbox_kicked = False
        self.thread: threading.Thread | None = None
        self._tid = threading.get_ident()  # "attached": made on the loop's thread
        self._stopped = False
        if mode == "thread":
            self.thread = WheeltaskThread(self._main, f"{sched.name}-asyncio")
            self.thread.start()

    # ------------------------------------------------------------ the loop
    def _main(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # Only a coroutine cut short by an abandoned shutdown can be left here.
            left = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in left:
                t.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def stop_locked(self) -> None:
        """Stop the loop (its thread exits); idempotent. Only for mode "thread"."""
        if self.mode != "thread" or self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(RuntimeError):  # closed already
            self.loop.call_soon_threadsafe(self.loop.stop)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def on_loop_thread(self) -> bool:
        if self.mode == "thread":
            return threading.current_thread() is self.thread
        return self.mode == "attached" and threading.get_ident() == self._tid

    def fresh(self) -> list[TaskHandle]:
        """The tasks handed over and waiting for the loop or a place (lock held)."""
        return [h for h, a in self.tasks.items() if a.state == A_WAITING]

    def _call(self, fn: Callable[..., object], *args: Any) -> None:
        """Call ``fn(*args)`` on the loop's thread: now if this is it, else soon."""
        if self.mode == "inline" or (
            self.mode == "attached" and threading.get_ident() == self._tid
        ):
            fn(*args)
            return
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: an abandoned shutdown
            logger.warning("wheeltask: the event loop is closed; %r not delivered", fn)

    # -------------------------------------------------------- handing over
    def hand_over_locked(self, h: TaskHandle, aw: Awaitable[Any] | None, started: bool) -> Attempt:
        """Count a task as the runner's (lock held): ``aw`` is what to await (None: call
        the task's coroutine function when it starts); ``started``: its run began on
        a worker already (a callable that returned an awaitable)."""
        self.waiting += 1
        attempt = self.tasks[h] = Attempt(self, h, aw, started)
        return attempt

    def take_place_now_locked(self, attempt: Attempt) -> bool:
        """On the loop's own thread ("attached") with a place free: the attempt takes
        it at once (the caller then calls :meth:`_start`)."""
        if (
            self.mode == "attached"
            and self.running < self._max
            and threading.get_ident() == self._tid
        ):
            self.waiting -= 1
            self.running += 1
            attempt.state = A_RUNNING
            return True
        return False

    def submit(self, h: TaskHandle, attempt: Attempt) -> None:
        """After :meth:`hand_over_locked`, lock released: start it on the loop."""
        if self.mode == "inline":
            self._run_inline(attempt)
        elif self.mode == "attached" and threading.get_ident() == self._tid:
            self._begin(attempt)
        else:
            # From another thread: one wake-up of the loop (a write to its self-pipe)
            # for a whole batch of hand-overs, not one each.
            self._inbox.append(attempt)
            if not self._inbox_kicked:
                self._inbox_kicked = True
                self._call(self._take_inbox)

    def _take_inbox(self) -> None:
        self._inbox_kicked = False  # (first: a hand-over from now on kicks again)
        inbox = self._inbox
        while inbox:
            self._begin(inbox.popleft())

    def _run_inline(self, attempt: Attempt) -> None:
        """A manual scheduler's: the attempt runs to its end on this thread."""
        if asyncio._get_running_loop() is not None:  # a loop runs here: cannot nest one
            exc = RuntimeError("an event loop is already running on this thread")
            with self._sched._lock:
                self.waiting -= 1
                attempt.state = A_DROPPED
                if self.tasks.get(attempt.h) is attempt:
                    del self.tasks[attempt.h]
            close_unstarted(attempt.aw)  # never awaited
            self._sched._coro_refused(attempt.h, exc)
            return
        self._begin(attempt)
        task = attempt.task
        if task is not None:
            try:
                self.loop.run_until_complete(task)
            except BaseException:
                if not task.done():
                    raise
                # The outcome is the task's, recorded by its done callback.

    def _begin(self, attempt: Attempt) -> None:
        """On the loop: start the attempt if a place is free, else queue it."""
        with self._sched._lock:
            if attempt.state != A_WAITING:
                return  # cancelled meanwhile
            if self.running >= self._max:
                attempt.queued = True
                self._queue.append(attempt)
                return
            self.waiting -= 1
            self.running += 1
            attempt.state = A_RUNNING
        self._start(attempt)

    def _start(self, attempt: Attempt) -> None:
        """On the loop, a place taken: the attempt begins."""
        h = attempt.h
        aw, attempt.aw = attempt.aw, None
        if not attempt.started and not self._sched._coro_start(h):
            close_unstarted(aw)  # expired before it could start
            self._sched._coro_ended(h, attempt)
            return
        self._launch(attempt, aw)

    def _launch(self, attempt: Attempt, aw: Awaitable[Any] | None) -> None:
        """Call the coroutine function if need be and make the coroutine a task of
        the loop."""
        h = attempt.h
        try:
            if aw is None:
                cb: Callable[..., Awaitable[Any]] = h._cb  # type: ignore[assignment]
                aw = cb(*h._args)
            coro = aw if inspect.iscoroutine(aw) else _await(aw)
            token = current.set(h)  # the task copies the context: current_task() is h
            try:
                task = self.loop.create_task(coro)
            finally:
                current.reset(token)
        except BaseException as exc:  # noqa: BLE001 - the attempt's outcome
            self._finish(attempt, None, exc)
            return
        attempt.task = task
        task.add_done_callback(attempt)
        if attempt.cut is not None:  # cancelled while starting
            task.cancel()

    def _finish(self, attempt: Attempt, value: object, error: BaseException | None) -> None:
        sched = self._sched
        sched._coro_outcome(attempt.h, attempt, value, error)
        sched._coro_ended(attempt.h, attempt)

    def release_place_locked(self) -> Attempt | None:
        """An attempt left its place (lock held): the next one waiting takes it (the
        caller starts it)."""
        self.running -= 1
        queue = self._queue
        while queue:
            attempt = queue.popleft()
            attempt.queued = False
            if attempt.state == A_WAITING:
                self.waiting -= 1
                self.running += 1
                attempt.state = A_RUNNING
                return attempt
        return None

    def cancel_locked(self, h: TaskHandle, reason: str) -> list[Any] | None:
        """``cancel()`` of a task the runner holds (lock held). One that has not
        started ends CANCELLED now (the token to notify is returned); a running one is
        cancelled on the loop and ends CANCELLED when its coroutine returns (None)."""
        attempt = self.tasks[h]
        sched = self._sched
        if attempt.state == A_WAITING:
            attempt.state = A_DROPPED
            self.waiting -= 1
            del self.tasks[h]
            aw, attempt.aw = attempt.aw, None
            close_unstarted(aw)  # never awaited, even one a worker's call returned
            if attempt.started and h._extra is not None:
                sched._disarm_timeout_locked(h._extra)
            token = sched._finish_cancelled_locked(h, reason)
            return token
        if attempt.cut is None:
            attempt.cut = reason
            extra = h._extra
            if extra is not None and extra.interval is not None:
                if extra.stop is None:
                    extra.stop = reason
                extra.pause_pending = False
            self._call(self._cancel_task, attempt)
        return None

    def cancel_run_locked(self, h: TaskHandle) -> None:
        """Cancel the coroutine of a run that has timed out (lock held)."""
        attempt = self.tasks.get(h)
        if attempt is not None and attempt.state == A_RUNNING:
            self._call(self._cancel_task, attempt)

    def _cancel_task(self, attempt: Attempt) -> None:
        task = attempt.task
        if task is not None and not task.done():
            task.cancel()

    def busy(self) -> bool:
        """For virtual time: an attempt can still make progress now (about to start,
        or a task that is not suspended); one waiting for a place is not."""
        for attempt in list(self.tasks.values()):
            if attempt.state == A_WAITING:
                if not attempt.queued:
                    return True
                continue
            task = attempt.task
            if task is None or task.done():
                return True  # about to start, or its done callback is about to run
            waiter = getattr(task, "_fut_waiter", None)
            if waiter is None or waiter.done():
                return True
        return False


class CoroutineCall:
    """A coroutine object posted as a task: called once, it returns the coroutine.

    A coroutine that never runs (its task cancelled, refused or shut down) is closed
    when this is released, so Python does not warn that it was never awaited.
    """

    __slots__ = ("__qualname__", "_coro")

    def __init__(self, coro: Any) -> None:
        self._coro = coro
        self.__qualname__ = getattr(coro, "__qualname__", type(coro).__qualname__)

    def __call__(self) -> Any:
        coro, self._coro = self._coro, None
        if coro is None:
            raise RuntimeError(f"coroutine {self.__qualname__} was run already")
        return coro

    def __del__(self) -> None:
        coro = self._coro
        if coro is not None:
            self._coro = None
            coro.close()


def coroutine_task(
    cb: object, args: tuple[Any, ...], interval: object, options: dict[str, Any]
) -> CoroutineCall:
    """A coroutine object given to ``post_task`` instead of a function: fine for a
    one-shot task without arguments or retries; a clear TypeError otherwise (it can
    run only once). Raises before anything is changed; the coroutine is then closed."""
    problem = None
    if interval is not None:
        problem = "an interval task runs many times"
    elif args:
        problem = "arguments cannot be passed to it"
    elif options.get("retries"):
        problem = "a retry would run it again"
    if problem is not None:
        cb.close()  # type: ignore[attr-defined]  # a coroutine: no "never awaited"
        raise TypeError(
            f"post_task() got a coroutine object ({getattr(cb, '__qualname__', cb)!r}) and "
            f"{problem}: a coroutine runs once. Pass the async function itself, e.g. "
            "post_task(fn, arg) instead of post_task(fn(arg))"
        )
    return CoroutineCall(cb)
