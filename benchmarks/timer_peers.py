"""Ways to keep delayed callbacks: wheeltask and what a user would pick instead.

Each peer is built fresh for one measurement, posts a list of delays in the tight loop
a user would write (handles kept in a list), cancels them, and is closed. Nothing is
due to run while the insert is timed, except in ``wheeltask-live`` (see its doc).
"""

from __future__ import annotations

import abc
import asyncio
import datetime
import gc
import heapq
import importlib.util
import itertools
import sched
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

import wheeltask
from wheeltask.testing import manual_scheduler


def noop() -> None:
    """The callback every timer carries."""


class TimerPeer(abc.ABC):
    """One way to keep delayed callbacks."""

    label: ClassVar[str]
    #: Why cancel is not measured for this peer; None when it is.
    cancel_note: ClassVar[str | None] = None
    #: Added to every delay by the memory probe, for peers whose timers run by
    #: themselves (their own threads) and would not stay pending otherwise.
    memory_delay_offset: ClassVar[float] = 0.0
    #: Added to every delay of the timed insert and cancel, for the same reason (a
    #: peer labelled "live" keeps 0: its firing is part of what it is measured for).
    insert_delay_offset: ClassVar[float] = 0.0

    @abc.abstractmethod
    def post_all(self, delays: Sequence[float]) -> list[Any]:
        """Post one no-op timer per delay (seconds); return the handles, in order."""

    @abc.abstractmethod
    def cancel_all(self, handles: list[Any]) -> None:
        """Cancel every handle returned by :meth:`post_all`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the structure and any thread (not timed)."""


class WheeltaskPeer(TimerPeer):
    """``Scheduler.post_task`` with nothing running: the counterpart of a loop not running.

    A ``manual_scheduler`` on the real ``MonotonicClock``: the same ``post_task`` code as
    a threaded ``Scheduler``, without the timer thread, so no timer fires while the
    insert is timed (asyncio, uvloop, heapq and sched do not fire either).
    """

    label = "wheeltask post_task"

    def __init__(self) -> None:
        self.scheduler = manual_scheduler(clock=wheeltask.MonotonicClock())

    def post_all(self, delays: Sequence[float]) -> list[Any]:
        post = self.scheduler.post_task
        handles: list[Any] = []
        append = handles.append
        for delay in delays:
            append(post(noop, delay=delay))
        return handles

    def cancel_all(self, handles: list[Any]) -> None:
        for handle in handles:
            handle.cancel()

    def close(self) -> None:
        self.scheduler.shutdown(wait=False, cancel_pending=True)


class WheeltaskLivePeer(WheeltaskPeer):
    """A threaded ``Scheduler(max_workers=4)``: what a user's process really pays.

    Its timer thread and workers run the timers that fall due during the insert (half
    of them at 10^6, with delays from 1 ms), so this row also pays for firing them.
    """

    label = "wheeltask post_task, live Scheduler (due timers fire meanwhile)"
    cancel_note = "its short timers fire during the insert, so cancelling is not comparable"

    def __init__(self) -> None:
        self.scheduler = wheeltask.Scheduler(max_workers=4)

    def close(self) -> None:
        self.scheduler.shutdown(wait=True, cancel_pending=True)


class WheeltaskNoGcPeer(WheeltaskPeer):
    """The same insert and cancel with the cyclic gc disabled while timed.

    Not what a user's process pays: it separates the wheel's own cost, flat from 10^4
    to 10^6 pending, from the garbage collector's walks over the live handles.
    """

    label = "wheeltask post_task, gc disabled while timed (the wheel's own cost)"

    def post_all(self, delays: Sequence[float]) -> list[Any]:
        gc.disable()
        try:
            return super().post_all(delays)
        finally:
            gc.enable()

    def cancel_all(self, handles: list[Any]) -> None:
        gc.disable()
        try:
            super().cancel_all(handles)
        finally:
            gc.enable()


class AsyncioPeer(TimerPeer):
    """``loop.call_later`` on a default (selector) event loop that is not running."""

    label = "asyncio call_later"

    def __init__(self) -> None:
        self.loop = self.new_loop()

    @staticmethod
    def new_loop() -> asyncio.AbstractEventLoop:
        return asyncio.new_event_loop()

    def post_all(self, delays: Sequence[float]) -> list[Any]:
        call_later = self.loop.call_later
        handles: list[Any] = []
        append = handles.append
        for delay in delays:
            append(call_later(delay, noop))
        return handles

    def cancel_all(self, handles: list[Any]) -> None:
        for handle in handles:
            handle.cancel()

    def close(self) -> None:
        self.loop.close()


class UvloopPeer(AsyncioPeer):
    """``loop.call_later`` on a uvloop loop that is not running."""

    label = "uvloop call_later"

    @staticmethod
    def new_loop() -> asyncio.AbstractEventLoop:
        import uvloop  # noqa: PLC0415 - optional: only listed when importable

        return uvloop.new_event_loop()


class HeapTimers:
    """The least a heap of timers needs (the floor for a heap, not thread-safe).

    Entries are ``[deadline, seq, cb, args]`` lists, which compare by deadline and then
    posting order; cancelling clears ``cb`` and the firing loop would skip it (lazy).
    """

    __slots__ = ("heap", "seq")

    def __init__(self) -> None:
        self.heap: list[list[Any]] = []
        self.seq = itertools.count()

    def call_later(self, delay: float, cb: Callable[..., object], *args: object) -> list[Any]:
        entry = [time.monotonic() + delay, next(self.seq), cb, args]
        heapq.heappush(self.heap, entry)
        return entry

    @staticmethod
    def cancel(entry: list[Any]) -> None:
        entry[2] = None


class _LazyTimers(Protocol):
    """What HeapqPeer needs of its timers: list entries, cancelled lazily."""

    def call_later(self, delay: float, cb: Callable[..., object], *args: object) -> list[Any]: ...

    def cancel(self, entry: list[Any]) -> None: ...


class HeapqPeer(TimerPeer):
    label = "heapq minimal (lazy cancel)"

    def __init__(self) -> None:
        self.timers: _LazyTimers = HeapTimers()

    def post_all(self, delays: Sequence[float]) -> list[Any]:
        call_later = self.timers.call_later
        handles: list[Any] = []
        append = handles.append
        for delay in delays:
            append(call_later(delay, noop))
        return handles

    def cancel_all(self, handles: list[Any]) -> None:
        cancel = self.timers.cancel
        for entry in handles:
            cancel(entry)

    def close(self) -> None:
        assert isinstance(self.timers, HeapTimers)
        self.timers.heap.clear()


class ConditionScheduler:
    """The textbook threaded scheduler: a ``heapq``, a ``threading.Condition`` and one
    thread that sleeps until the earliest deadline and runs the callbacks itself.

    Entries are ``[deadline, seq, cb, args]`` lists; cancelling clears ``cb`` (lazy).
    """

    def __init__(self) -> None:
        self.heap: list[list[Any]] = []
        self.seq = itertools.count()
        self.cond = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="heapq-condition", daemon=True)
        self.thread.start()

    def call_later(self, delay: float, cb: Callable[..., object], *args: object) -> list[Any]:
        entry = [time.monotonic() + delay, next(self.seq), cb, args]
        with self.cond:
            heapq.heappush(self.heap, entry)
            if self.heap[0] is entry:
                self.cond.notify()  # an earlier deadline: the thread sleeps less
        return entry

    @staticmethod
    def cancel(entry: list[Any]) -> None:
        entry[2] = None

    def _run(self) -> None:
        heap = self.heap
        cond = self.cond
        with cond:
            while not self.stopping:
                if not heap:
                    cond.wait()
                    continue
                wait = heap[0][0] - time.monotonic()
                if wait > 0:
                    cond.wait(wait)
                    continue
                entry = heapq.heappop(heap)
                cb = entry[2]
                if cb is None:
                    continue
                cond.release()
                try:
                    cb(*entry[3])
                finally:
                    cond.acquire()

    def close(self) -> None:
        with self.cond:
            self.stopping = True
            self.heap.clear()
            self.cond.notify()
        self.thread.join()


class ConditionPeer(HeapqPeer):
    """The textbook scheduler above, live: its thread fires the short timers meanwhile.
    Posting and cancelling as for ``HeapqPeer`` (the same entries), through its lock."""

    label = "heapq + threading.Condition scheduler (live)"
    memory_delay_offset = 3600.0  # its thread would fire the short ones

    def __init__(self) -> None:
        self.timers = ConditionScheduler()

    def close(self) -> None:
        assert isinstance(self.timers, ConditionScheduler)
        self.timers.close()


class SchedPeer(TimerPeer):
    label = "sched.enter"
    cancel_note = "sched.cancel is O(n) (list.remove + heapify: ~1 ms a cancel at 10^4)"

    def __init__(self) -> None:
        self.scheduler = sched.scheduler()

    def post_all(self, delays: Sequence[float]) -> list[Any]:
        enter = self.scheduler.enter
        handles: list[Any] = []
        append = handles.append
        for delay in delays:
            append(enter(delay, 0, noop))
        return handles

    def cancel_all(self, handles: list[Any]) -> None:
        cancel = self.scheduler.cancel
        for event in handles:
            cancel(event)

    def close(self) -> None:
        self.scheduler.queue.clear()


class ThreadingTimerPeer(TimerPeer):
    """One ``threading.Timer`` (a thread) per timer."""

    label = "threading.Timer"
    memory_delay_offset = 3600.0
    insert_delay_offset = 3600.0  # none fires during the insert: all are cancelled

    def __init__(self) -> None:
        self.timers: list[threading.Timer] = []

    def post_all(self, delays: Sequence[float]) -> list[Any]:
        handles: list[Any] = []
        append = handles.append
        for delay in delays:
            t = threading.Timer(delay, noop)
            t.start()
            append(t)
        self.timers = handles
        return handles

    def cancel_all(self, handles: list[Any]) -> None:
        for t in handles:
            t.cancel()

    def close(self) -> None:
        for t in self.timers:
            t.cancel()
        for t in self.timers:
            t.join()


class APSchedulerPeer(TimerPeer):
    """APScheduler 3: a one-off ``date`` job on a started, paused ``BackgroundScheduler``."""

    label = "APScheduler 3 date job"

    def __init__(self) -> None:
        from apscheduler.schedulers.background import (  # noqa: PLC0415 - optional
            BackgroundScheduler,
        )

        self.scheduler = BackgroundScheduler()
        self.scheduler.start(paused=True)

    def post_all(self, delays: Sequence[float]) -> list[Any]:
        add_job = self.scheduler.add_job
        now = datetime.datetime.now
        timedelta = datetime.timedelta
        handles: list[Any] = []
        append = handles.append
        for delay in delays:
            append(add_job(noop, "date", run_date=now() + timedelta(seconds=delay)))
        return handles

    def cancel_all(self, handles: list[Any]) -> None:
        for job in handles:
            job.remove()

    def close(self) -> None:
        self.scheduler.shutdown(wait=False)


class APSchedulerIntervalPeer(APSchedulerPeer):
    """APScheduler 3: an ``interval`` job (first run one interval from now)."""

    label = "APScheduler 3 interval job"

    def post_all(self, delays: Sequence[float]) -> list[Any]:
        add_job = self.scheduler.add_job
        handles: list[Any] = []
        append = handles.append
        for delay in delays:
            append(add_job(noop, "interval", seconds=delay))
        return handles


def _apscheduler_3() -> bool:
    if importlib.util.find_spec("apscheduler") is None:
        return False
    import apscheduler  # noqa: PLC0415 - optional

    return str(getattr(apscheduler, "__version__", "")).startswith("3.")


def _installed() -> tuple[dict[str, type[TimerPeer]], list[str]]:
    peers: dict[str, type[TimerPeer]] = {
        "wheeltask": WheeltaskPeer,
        "wheeltask-live": WheeltaskLivePeer,
        "wheeltask-nogc": WheeltaskNoGcPeer,
        "asyncio": AsyncioPeer,
        "heapq": HeapqPeer,
        "heapq-condition": ConditionPeer,
        "sched": SchedPeer,
        "threading.Timer": ThreadingTimerPeer,
    }
    notes: list[str] = []
    if importlib.util.find_spec("uvloop") is not None:
        peers["uvloop"] = UvloopPeer
    else:
        notes.append(
            "uvloop is not installed: its rows are skipped "
            "(`pip install -e '.[bench]'` installs every peer)."
        )
    if _apscheduler_3():
        peers["apscheduler"] = APSchedulerPeer
        peers["apscheduler-interval"] = APSchedulerIntervalPeer
    else:
        notes.append(
            "APScheduler 3 is not installed: its rows are skipped "
            "(`pip install -e '.[bench]'` installs every peer)."
        )
    return peers, notes


#: Peers importable here, by key; and a note line for each one that is not.
PEERS, MISSING_NOTES = _installed()
#: Peers measured at the full sizes, and those measured at a small N only (a thread or
#: a job store entry per timer), next to wheeltask at that N.
FAST_KEYS = [
    "wheeltask",
    "wheeltask-live",
    "wheeltask-nogc",
    "asyncio",
    "uvloop",
    "heapq",
    "heapq-condition",
    "sched",
]
#: A thread per timer: measured at ``Config.slow_peer_n`` (at most 2,000).
THREAD_KEYS = ["wheeltask", "threading.Timer"]
#: A job store entry per timer: measured at ``Config.apscheduler_n`` (at most 10^4).
JOB_KEYS = ["wheeltask", "apscheduler", "apscheduler-interval"]
MEMORY_KEYS = ["wheeltask", "asyncio", "uvloop", "heapq", "heapq-condition", "sched"]
SLOW_MEMORY_KEYS = ["threading.Timer", "apscheduler"]


def available(keys: Sequence[str]) -> list[str]:
    return [k for k in keys if k in PEERS]
