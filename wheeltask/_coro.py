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
import contextlib
import contextvars
import dataclasses
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


@dataclasses.dataclass(eq=False)
class Attempt:
    """One hand-over of a task to the loop (a retry is another one)."""

    aw: Awaitable[Any] | None  # what to await; None: call the coroutine function
    started: bool  # the attempt began on a worker already
    fresh: bool  # not started yet: a cancel() ends it at once
    task: asyncio.Task[None] | None = None  # made on the loop
    cut: str | None = None  # cancelled while running: why


class CoroRunner:
    """Runs a scheduler's coroutine tasks on one loop (see the module docstring)."""

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
        self._sem = asyncio.Semaphore(max_async)  # bound to the loop at first use
        self.waiting = 0  # handed over, not started yet: they count as queued
        self.running = 0
        # Every task handed over and not ended -> its current attempt.
        self.tasks: dict[TaskHandle, Attempt] = {}
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
        """The tasks handed over that have not started (lock held)."""
        return [h for h, a in self.tasks.items() if a.fresh]

    def _call(self, fn: Callable[..., object], *args: Any) -> None:
        """Call ``fn(*args)`` on the loop's thread, soon."""
        if self.mode == "inline":
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
        attempt = self.tasks[h] = Attempt(aw, started, not started)
        return attempt

    def submit(self, h: TaskHandle, attempt: Attempt) -> None:
        """After :meth:`hand_over_locked`, lock released: run it on the loop."""
        if self.mode == "inline":
            drive = self._drive(h, attempt)
            try:
                self.loop.run_until_complete(drive)
            except RuntimeError as exc:  # another loop runs on this thread
                if inspect.getcoroutinestate(drive) != inspect.CORO_CREATED:
                    raise
                drive.close()
                with self._sched._lock:
                    self.waiting -= 1
                    if self.tasks.get(h) is attempt:
                        del self.tasks[h]
                if not attempt.started:
                    close_unstarted(attempt.aw)
                self._sched._coro_refused(h, exc)
            return
        if self.mode == "attached" and threading.get_ident() == self._tid:
            self._begin(h, attempt)
            return
        self._call(self._begin, h, attempt)

    def _begin(self, h: TaskHandle, attempt: Attempt) -> None:
        task = self.loop.create_task(self._drive(h, attempt))
        attempt.task = task
        task.add_done_callback(functools.partial(self._task_done, h, attempt))

    def _task_done(self, h: TaskHandle, attempt: Attempt, task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step never ran ``_drive`` (the
        CancelledError comes in before its first line): count it out here."""
        if not task.cancelled() or attempt.aw is _DRIVEN:
            return  # _drive ran (the usual case)
        with self._sched._lock:
            self.waiting -= 1
            attempt.fresh = False
        if not attempt.started:
            close_unstarted(attempt.aw)
        self._sched._coro_ended(h, attempt)

    def cancel_locked(self, h: TaskHandle, reason: str) -> list[Any] | None:
        """``cancel()`` of a task the runner holds (lock held). One that has not
        started ends CANCELLED now (the token to notify is returned); a running one is
        cancelled on the loop and ends CANCELLED when its coroutine returns (None)."""
        attempt = self.tasks[h]
        if attempt.fresh:
            attempt.fresh = False
            token = self._sched._finish_cancelled_locked(h, reason)
            self._call(self._cancel_task, attempt)  # out of the semaphore's queue
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
        if attempt is not None:
            self._call(self._cancel_task, attempt)

    def _cancel_task(self, attempt: Attempt) -> None:
        task = attempt.task
        if task is not None and task is not asyncio.current_task(self.loop):
            task.cancel()

    # ------------------------------------------------------------- a run
    async def _drive(self, h: TaskHandle, attempt: Attempt) -> None:
        aw, started = attempt.aw, attempt.started
        attempt.aw = _DRIVEN  # (for _task_done) and no reference kept
        sched = self._sched
        acquired = False
        try:
            await self._sem.acquire()
            acquired = True
        except asyncio.CancelledError:
            pass  # cancelled while waiting for a place
        with sched._lock:
            self.waiting -= 1
            go = acquired and (started or attempt.fresh)
            attempt.fresh = False
            if go:
                self.running += 1
        if not go:
            if acquired:
                self._sem.release()
            if not started:
                close_unstarted(aw)
            sched._coro_ended(h, attempt)
            return
        current.set(h)
        try:
            await sched._coro_run(h, aw, started, attempt)
        finally:
            self._sem.release()
            with sched._lock:
                self.running -= 1
            sched._coro_ended(h, attempt)

    def active(self) -> list[asyncio.Task[None]]:
        """The asyncio tasks of the attempts under way (for virtual time)."""
        return [a.task for a in list(self.tasks.values()) if a.task is not None]


_DRIVEN: Final[Any] = object()  # Attempt.aw once _drive has taken it


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
