"""Deduplication keys: one live task per key (go-conveyor's ID:Type, bgtaskqueue's
UniqueTaskID)."""

from __future__ import annotations

import threading

import pytest

from wheeltask import DuplicateTask, QueueFull, Retry, Scheduler, TaskCancelled, TaskState
from wheeltask.testing import VirtualClock, manual_scheduler


def test_return_gives_the_live_task_and_posts_nothing(
    sched: Scheduler, clock: VirtualClock
) -> None:
    ran: list[int] = []
    first = sched.post_task(ran.append, 1, delay=5, key="report:42")
    again = sched.post_task(ran.append, 2, delay=1, key="report:42")
    assert again is first
    s = sched.stats()
    assert (s.submitted, s.pending, s.deduplicated) == (1, 1, 1)
    clock.advance(10)
    assert ran == [1]


def test_raise(sched: Scheduler) -> None:
    first = sched.post_task(print, delay=5, key=("user", 7))
    before = sched.stats()
    with pytest.raises(DuplicateTask, match=r"^a task with key \('user', 7\) is not finished"):
        sched.post_task(print, key=("user", 7), on_duplicate="raise")
    assert sched.stats() == before and not first.done()


def test_replace_cancels_the_pending_one(sched: Scheduler, clock: VirtualClock) -> None:
    ran: list[str] = []
    old = sched.post_task(ran.append, "old", delay=5, key="k")
    new = sched.post_task(ran.append, "new", delay=1, key="k", on_duplicate="replace")
    assert new is not old and old.cancelled()
    with pytest.raises(TaskCancelled, match="replaced by a new task with the same key"):
        old.result()
    clock.advance(10)
    assert ran == ["new"]


def test_replace_lets_a_running_one_complete() -> None:
    gate = threading.Event()
    started = threading.Event()

    def slow() -> str:
        started.set()
        gate.wait(5)
        return "old"

    with Scheduler() as s:
        old = s.post_task(slow, key="k")
        assert started.wait(5)
        new = s.post_task(lambda: "new", key="k", on_duplicate="replace")
        assert new.result(timeout=5) == "new"
        gate.set()
        assert old.result(timeout=5) == "old"
        # The old one finishing does not free the key of the new one... which is done too.
        assert s.post_task(lambda: "third", key="k").result(timeout=5) == "third"


def test_the_key_is_free_once_the_task_is_final(sched: Scheduler, clock: VirtualClock) -> None:
    a = sched.post_task(lambda: 1, key="k")
    clock.advance(0)
    b = sched.post_task(lambda: 2, key="k")
    assert b is not a
    b.cancel()
    c = sched.post_task(int, "x", key="k")  # fails
    clock.advance(0)
    assert c.state is TaskState.FAILED
    d = sched.post_task(lambda: 4, key="k")
    assert d not in (a, b, c)


def test_a_task_waiting_for_a_retry_keeps_its_key(sched: Scheduler, clock: VirtualClock) -> None:
    calls: list[float] = []

    def flaky() -> None:
        calls.append(clock.now())
        if len(calls) == 1:
            raise Retry(delay=1)

    h = sched.post_task(flaky, retries=1, key="k")
    clock.advance(0.5)
    assert sched.post_task(print, key="k") is h  # still live between attempts
    clock.advance(1)
    assert h.state is TaskState.SUCCEEDED
    assert sched.post_task(print, key="k") is not h


def test_interval_task_holds_its_key_until_cancelled(sched: Scheduler, clock: VirtualClock) -> None:
    tick = sched.post_task(print, interval=1, key="poller")
    assert sched.post_task(print, interval=1, key="poller") is tick
    tick.cancel()
    assert sched.post_task(print, interval=1, key="poller") is not tick


def test_concurrent_posts_with_one_key_make_one_task() -> None:
    gate = threading.Event()
    with Scheduler(max_workers=1) as s:
        s.post_task(gate.wait, 5)  # keep the worker busy
        got: list[object] = []
        lock = threading.Lock()

        def poster() -> None:
            h = s.post_task(print, "once", key="same")
            with lock:
                got.append(h)

        threads = [threading.Thread(target=poster) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({id(h) for h in got}) == 1
        assert s.stats().deduplicated == 7
        gate.set()


def test_replace_whose_post_is_refused_leaves_the_old_task(clock: VirtualClock) -> None:
    s = manual_scheduler(clock=clock, queue_size=1, on_full="raise")
    s.post_task(print)  # fills the run queue
    old = s.post_task(print, delay=10, key="k")
    with pytest.raises(QueueFull):
        s.post_task(print, key="k", on_duplicate="replace")  # immediate: no room
    assert old.state is TaskState.PENDING and not old.cancelled()
    assert s.post_task(print, key="k") is old  # still the key's task
    assert s.stats().cancelled == 0
    s.shutdown(wait=False, cancel_pending=True)


def test_a_caller_runs_task_may_post_a_keyed_task() -> None:
    gate = threading.Event()
    with Scheduler(max_workers=1, queue_size=1, on_full="caller_runs") as s:
        s.post_task(gate.wait, 5)
        s.post_task(print, "fills the queue")
        inner: list[object] = []
        outer = s.post_task(lambda: inner.append(s.post_task(print, key="inner")), key="outer")
        assert outer.done() and len(inner) == 1  # ran here, without a deadlock
        gate.set()
