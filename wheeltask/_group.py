"""Task groups: tasks posted together, waited for and cancelled together."""

from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, final

from ._clock import real_monotonic
from ._errors import TaskCancelled
from ._handle import CANCELLED, FAILED, REPLACED, Failure, TaskHandle
from ._pool import count_value

if TYPE_CHECKING:
    import datetime

    from ._scheduler import Scheduler

__all__ = ["TaskGroup"]


@final
class TaskGroup:
    """One-shot tasks that succeed or fail together (pond's ``GroupContext``).

    Made by ``Scheduler.group()`` or ``wheeltask.group()``. The first task to fail
    cancels the group's tasks that have not started (running ones complete), and
    :meth:`wait` raises its exception. Use it as a context manager: leaving the block
    waits for every task; if the block raises, the group is cancelled first.
    Thread-safe.
    """

    __slots__ = ("__weakref__", "_error", "_foreign", "_handles", "_lock", "_sched")

    def __init__(self, scheduler: Scheduler) -> None:
        self._sched = scheduler
        self._lock = threading.Lock()
        self._handles: list[TaskHandle] = []
        self._error: BaseException | None = None  # the first failure, or TaskCancelled
        # Live tasks a keyed post returned (posted outside the group): waited for, never
        # cancelled by the group.
        self._foreign: set[int] = set()

    def post_task(
        self,
        cb: Callable[..., object],
        /,
        *args: Any,
        delay: float | datetime.timedelta | None = None,
        interval: None = None,
        name: str | None = None,
        **options: Any,
    ) -> TaskHandle:
        """Post a task of the group: the arguments of ``Scheduler.post_task``, but no
        ``interval`` (a group waits for its tasks to finish; interval tasks never do).

        Raises:
            ValueError: ``interval`` was given.
            BaseException: the group's first failure (or ``TaskCancelled``) once it
                has failed or been cancelled: nothing more is posted to it then.
        """
        if interval is not None:
            raise ValueError(
                f"interval must be None in a task group (got {interval!r}): a group waits "
                "for its tasks to finish, and interval tasks never do"
            )
        error = self._error
        if error is not None:
            raise error
        first_new_id = count_value(self._sched._ids)
        h = self._sched.post_task(cb, *args, delay=delay, name=name, **options)
        with self._lock:
            self._handles.append(h)
            if h._id < first_new_id:  # a keyed post returned an existing task
                self._foreign.add(h._id)
            late = self._error is not None  # failed or cancelled during the post
        if late:
            self._sched._cancel(h, "cancelled with its group")
        h.add_done_callback(self._task_done)
        return h

    def _task_done(self, h: TaskHandle) -> None:
        st = h._state
        if st == FAILED:
            outcome = h._args
            error: BaseException = outcome.exc if type(outcome) is Failure else RuntimeError()
            reason = f"cancelled: {h.name!r} of its group failed"
        elif st == CANCELLED:
            if self._sched._cancel_reason(h) == REPLACED:
                return  # a keyed post of the group replaced it: the new task counts
            error = self._sched._cancelled_error(h)
            reason = "cancelled with its group"
        else:
            return
        with self._lock:
            if self._error is not None:
                return
            self._error = error
            others = [x for x in self._handles if x is not h and x._id not in self._foreign]
        for x in others:
            self._sched._cancel(x, reason)

    def cancel(self) -> None:
        """Cancel every task of the group that has not started (running ones
        complete); :meth:`wait` then raises ``TaskCancelled``, unless a task had
        failed first."""
        with self._lock:
            if self._error is None:
                self._error = TaskCancelled("the group was cancelled by cancel()")
            handles = [h for h in self._handles if h._id not in self._foreign]
        for h in handles:
            self._sched._cancel(h, "cancelled with its group")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every task of the group has finished (or been cancelled).

        Args:
            timeout: seconds to wait at most (None: no limit); virtual seconds on a
                manual scheduler, as for handles.

        Returns:
            True once all have finished, False if the timeout passed first.

        Raises:
            BaseException: the exception of the group's first failed task.
            TaskCancelled: the group (or one of its tasks) was cancelled.
        """
        from ._scheduler import check_timeout  # noqa: PLC0415 - _scheduler imports this module

        timeout = check_timeout(timeout)
        sched = self._sched
        now: Callable[[], float] = sched._clock.now if sched._manual else real_monotonic
        end = None if timeout is None else now() + timeout
        i = 0
        while True:
            with self._lock:
                if i == len(self._handles):
                    break
                h = self._handles[i]
            i += 1
            remaining = None if end is None else max(0.0, end - now())
            try:
                if not h.wait_for_finished(remaining):
                    return False
            except TaskCancelled:
                pass
            # Its done callback may not have run yet (a timeout's runs on a worker, and
            # a failure is visible before its callbacks are called): record it here.
            self._task_done(h)
        if self._error is not None:
            raise self._error
        return True

    @property
    def tasks(self) -> tuple[TaskHandle, ...]:
        """The group's tasks, in posting order."""
        with self._lock:
            return tuple(self._handles)

    def __len__(self) -> int:
        return len(self._handles)

    def __enter__(self) -> TaskGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.wait()
            return
        self.cancel()  # the block failed: stop what has not started, wait for the rest
        with contextlib.suppress(Exception):  # the block's own exception is the one to see
            self.wait()

    def __repr__(self) -> str:
        handles = self.tasks
        done = sum(h.done() for h in handles)
        state = "failed" if self._error is not None else "ok"
        return f"<TaskGroup {len(handles)} tasks, {done} done, {state}>"
