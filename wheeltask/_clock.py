"""Clocks: the only place in wheeltask that reads the time.

Schedulers keep time in integer nanoseconds (``now_ns``) so that deadlines and ticks
are exact; ``now()`` gives the same instant in float seconds for people.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Clock",
    "FrozenClock",
    "MonotonicClock",
    "VirtualClock",
    "is_number",
    "real_monotonic",
]


def is_number(value: object) -> bool:
    """An int or a float, and not a bool (``True`` is no number of seconds)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: object, what: str) -> float:
    if not is_number(value):
        raise TypeError(f"{what} must be a number of seconds, got {value!r}")
    assert isinstance(value, (int, float))
    return value


@runtime_checkable
class Clock(Protocol):
    """A monotonic time source.

    ``real_time`` is True when time passes by itself, so a background timer thread may
    sleep on it. A clock whose time moves only when a test says so (``VirtualClock``)
    sets it False and wakes the schedulers attached to it after every move.
    """

    real_time: bool

    def now(self) -> float:
        """Current time in seconds."""

    def now_ns(self) -> int:
        """Current time in integer nanoseconds; never decreases."""


class MonotonicClock:
    """``time.monotonic``: the production clock.

    The functions are bound as class attributes when wheeltask is imported, so a
    ``freezegun.freeze_time`` in application tests (which swaps module attributes)
    cannot make real delays fire early or never.
    """

    __slots__ = ()
    real_time = True
    now = staticmethod(time.monotonic)
    now_ns = staticmethod(time.monotonic_ns)

    def __repr__(self) -> str:
        return "MonotonicClock()"


def real_monotonic() -> float:
    """Real elapsed time in seconds, for waits with a timeout (never virtual)."""
    return MonotonicClock.now()


class _Driven(Protocol):
    """What a VirtualClock needs from a scheduler attached to it."""

    def _next_due_ns(self) -> int | None:
        """When it next has work (manual schedulers), else None."""

    def run_due(self) -> int:
        """Run what is due now (manual schedulers)."""

    def _clock_moved(self) -> None:
        """Time moved (threaded schedulers re-check their wheel)."""


# run_until_idle() gives up after this many due times rather than loop forever.
_MAX_STEPS = 1_000_000


class VirtualClock:
    """A clock that moves only when told to: time for deterministic tests.

    Schedulers built on it with ``manual_scheduler`` run nothing by themselves:
    :meth:`advance` moves time forward step by step and, at each step, runs on the
    calling thread every callback that has fallen due, in deadline order: every one
    whose deadline is at or before the new time. Each callback sees ``now()`` at the
    tick in which the wheel fires it (at or after its deadline, less than 5 ms after
    it), or at the end of the advance if that comes first, never later.

    Args:
        start: the initial time in seconds.
    """

    real_time = False

    def __init__(self, start: float = 0.0) -> None:
        start = _number(start, "start")
        if not math.isfinite(start):
            raise ValueError(f"start must be finite, got {start!r}")
        self._now = round(start * 1_000_000_000)
        self._schedulers: weakref.WeakSet[_Driven] = weakref.WeakSet()
        self._busy = False

    def now(self) -> float:
        return self._now / 1e9

    def now_ns(self) -> int:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (>= 0), running what falls due on the way.

        ``advance(0)`` runs what is due now, immediate tasks included.

        Raises:
            RuntimeError: an ``AsyncScheduler`` uses this clock (``await
                advance_async(...)`` instead).
        """
        self._refuse_async("advance")
        self._advance_to_ns(self._target_after(seconds))

    def advance_to(self, t: float) -> None:
        """Move time forward to ``t`` seconds (not before now); see :meth:`advance`."""
        self._refuse_async("advance_to")
        self._advance_to_ns(self._target_at(t))

    async def advance_async(self, seconds: float) -> None:
        """``advance`` for ``wheeltask.aio.AsyncScheduler``: at each step, what fell due
        runs, and every coroutine task is awaited until it finishes or is suspended
        (on a wheeltask handle, say). One suspended on ``asyncio.sleep`` or I/O goes
        on in real time and is not waited for: asyncio's own timers are not virtual.
        Plain callbacks run in the executor are awaited."""
        await self._advance_to_ns_async(self._target_after(seconds))

    async def advance_to_async(self, t: float) -> None:
        """Move time forward to ``t`` seconds; see :meth:`advance_async`."""
        await self._advance_to_ns_async(self._target_at(t))

    def _target_after(self, seconds: float) -> int:
        seconds = _number(seconds, "seconds")
        if not (0 <= seconds < float("inf")):
            raise ValueError(f"seconds must be >= 0 and finite, got {seconds!r}")
        return self._now + round(seconds * 1_000_000_000)

    def _target_at(self, t: float) -> int:
        t = _number(t, "t")
        target = round(t * 1_000_000_000) if math.isfinite(t) else None
        if target is None or target < self._now:
            raise ValueError(f"t must be finite and >= now ({self.now()!r}), got {t!r}")
        return target

    def _refuse_async(self, what: str) -> None:
        if any(getattr(s, "_async_core", False) for s in list(self._schedulers)):
            raise RuntimeError(
                f"VirtualClock.{what}() with an AsyncScheduler attached: use 'await "
                "clock.advance_async(seconds)' or 'await clock.advance_to_async(t)', which "
                "also await its coroutine tasks"
            )

    def run_until_idle(self, max_time: float | None = None) -> None:
        """Advance from due time to due time until nothing is pending.

        Args:
            max_time: stop after this many seconds of virtual time. Without it, interval
                tasks would keep the clock busy forever, so reaching a state where only
                interval tasks remain raises RuntimeError instead.
        """
        self._refuse_async("run_until_idle")
        end = None
        if max_time is not None:
            max_time = _number(max_time, "max_time")
            if not (0 <= max_time < float("inf")):
                raise ValueError(f"max_time must be >= 0 and finite, got {max_time!r}")
            end = self._now + round(max_time * 1_000_000_000)
        for _ in range(_MAX_STEPS):
            nxt = self._next_due_ns()
            if nxt is None:
                return
            if end is not None and nxt > end:
                self._advance_to_ns(end)
                return
            if end is None and all(
                getattr(s, "_only_intervals_left", lambda: False)() for s in list(self._schedulers)
            ):
                raise RuntimeError(
                    "run_until_idle(): only interval tasks are left and they never finish; "
                    "cancel them or pass max_time="
                )
            self._advance_to_ns(max(nxt, self._now))
        raise RuntimeError(
            f"run_until_idle(): still busy after {_MAX_STEPS:,} steps (tasks that keep "
            "posting tasks?); pass max_time="
        )

    # ------------------------------------------------------------- internals
    def _attach(self, scheduler: _Driven) -> None:
        self._schedulers.add(scheduler)

    def _next_due_ns(self) -> int | None:
        best: int | None = None
        for s in list(self._schedulers):
            t = s._next_due_ns()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def _advance_to_ns(self, target: int) -> None:
        if self._busy:
            raise RuntimeError(
                "VirtualClock.advance() called from a callback that the clock is running"
            )
        self._busy = True
        try:
            # What is due already runs first, at the current time (an entry posted for
            # "now" in a tick that had already been processed, say).
            self._run_due()
            while True:  # then tick by tick
                nxt = self._next_due_ns()
                if nxt is None or nxt > target:
                    break
                if nxt > self._now:
                    self._now = nxt
                self._run_due()
            if target > self._now:
                self._now = target
                self._run_due()  # what falls due in the last, partial tick
        finally:
            self._busy = False
        for s in list(self._schedulers):
            s._clock_moved()

    async def _advance_to_ns_async(self, target: int) -> None:
        if self._busy:
            raise RuntimeError(
                "VirtualClock.advance_async() called while the clock is being advanced"
            )
        self._busy = True
        try:
            await self._settle()
            self._run_due()
            await self._settle()
            while True:
                nxt = self._next_due_ns()
                if nxt is None or nxt > target:
                    break
                if nxt > self._now:
                    self._now = nxt
                self._run_due()
                await self._settle()
            if target > self._now:
                self._now = target
                self._run_due()
                await self._settle()
        finally:
            self._busy = False
        for s in list(self._schedulers):
            s._clock_moved()

    async def _settle(self) -> None:
        """Let the attached async schedulers' tasks run until each is done or suspended."""
        for _ in range(_MAX_STEPS):
            executor: list[Any] = []
            runnable = False
            for s in list(self._schedulers):
                unsettled = getattr(s, "_unsettled", None)
                if unsettled is not None:
                    futs, busy = unsettled()
                    executor += futs
                    runnable = runnable or busy
            if executor:
                await asyncio.wait(executor)
            elif runnable:
                await asyncio.sleep(0)
            else:
                return
        raise RuntimeError(
            f"advance_async(): coroutine tasks still running after {_MAX_STEPS:,} steps"
        )

    def _run_due(self) -> None:
        for s in list(self._schedulers):
            if s._next_due_ns() is not None:
                s.run_due()

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now()!r})"


class FrozenClock:
    """Reads freezegun's frozen ``time.monotonic_ns`` (for ``manual_scheduler``).

    Use it on the test's thread inside ``freeze_time``: ``frozen.tick(2)`` moves it and
    ``scheduler.run_due()`` runs what fell due. It never moves backwards, even when
    freezegun's time does (``move_to`` an earlier date): it then stands still.
    """

    real_time = False

    def __init__(self) -> None:
        self._last: int | None = None

    def now_ns(self) -> int:
        ns = time.monotonic_ns()  # looked up at each call, so freezegun's fake is seen
        last = self._last
        if last is not None and ns < last:
            return last
        self._last = ns
        return ns

    def now(self) -> float:
        return self.now_ns() / 1e9

    def __repr__(self) -> str:
        return "FrozenClock()"
