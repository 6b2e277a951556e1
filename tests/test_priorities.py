"""Priorities: higher first among queued tasks, FIFO within a priority."""

from __future__ import annotations

import random
import threading

import pytest

from wheeltask import Scheduler
from wheeltask.testing import VirtualClock


def _mixed(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.choice([-3, -1, 0, 0, 0, 1, 2, 7]) for _ in range(n)]


def _expected(priorities: list[int]) -> list[int]:
    return sorted(range(len(priorities)), key=lambda i: (-priorities[i], i))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_worker_runs_queued_tasks_by_priority_then_posting_order(seed: int) -> None:
    priorities = _mixed(100, seed)
    ran: list[int] = []
    gate = threading.Event()
    with Scheduler(max_workers=1) as s:
        blocker = s.post_task(gate.wait, 10)
        while not blocker.running():
            threading.Event().wait(0.001)
        handles = [s.post_task(ran.append, i, priority=p) for i, p in enumerate(priorities)]
        assert s.stats().queued == 100
        gate.set()
        for h in handles:
            assert h.wait_for_finished(10)
    assert ran == _expected(priorities)
    assert [h.priority for h in handles] == priorities


def test_manual_scheduler_obeys_priority(sched: Scheduler) -> None:
    priorities = _mixed(100, 7)
    ran: list[int] = []
    for i, p in enumerate(priorities):
        sched.post_task(ran.append, i, priority=p)
    assert sched.run_due() == 100
    assert ran == _expected(priorities)


def test_timers_due_in_one_tick_reach_the_queue_in_deadline_order_then_obey_priority(
    clock: VirtualClock, sched: Scheduler
) -> None:
    ran: list[str] = []
    # All due within the tick (0.000, 0.005]: queued together, in deadline order.
    sched.post_task(ran.append, "a", delay=0.001)
    sched.post_task(ran.append, "b", delay=0.004, priority=5)
    sched.post_task(ran.append, "c", delay=0.002, priority=5)
    sched.post_task(ran.append, "d", delay=0.0015)
    sched.post_task(ran.append, "e", delay=0.003, priority=-1)
    sched.post_task(ran.append, "late", delay=0.006, priority=9)  # next tick
    clock.advance(0.005)
    assert ran == ["c", "b", "a", "d", "e"]
    clock.advance(0.005)
    assert ran[-1] == "late"


def test_timers_with_priorities_on_a_real_worker() -> None:
    ran: list[str] = []
    gate = threading.Event()
    clock = VirtualClock()
    with Scheduler(max_workers=1, clock=clock) as s:
        blocker = s.post_task(gate.wait, 10)
        while not blocker.running():
            threading.Event().wait(0.001)
        s.post_task(ran.append, "low", delay=1, priority=-2)
        s.post_task(ran.append, "plain", delay=1)
        s.post_task(ran.append, "high", delay=1, priority=3)
        last = s.post_task(ran.append, "plain2", delay=1)
        clock.advance(1)
        while s.stats().queued < 4:
            threading.Event().wait(0.001)
        gate.set()
        assert last.wait_for_finished(10)
    assert ran == ["high", "plain", "plain2", "low"]


def test_plain_tasks_queued_before_a_priority_one_run_after_it() -> None:
    ran: list[str] = []
    gate = threading.Event()
    with Scheduler(max_workers=1) as s:
        blocker = s.post_task(gate.wait, 10)
        while not blocker.running():
            threading.Event().wait(0.001)
        for i in range(3):
            s.post_task(ran.append, f"old{i}")  # straight into the queue
        s.post_task(ran.append, "urgent", priority=1)
        s.post_task(ran.append, "new")  # behind the older plain ones
        s.post_task(ran.append, "later", priority=-1)
        gate.set()
    assert ran == ["urgent", "old0", "old1", "old2", "new", "later"]


def test_cancelled_prioritised_task_is_skipped() -> None:
    ran: list[str] = []
    gate = threading.Event()
    with Scheduler(max_workers=1) as s:
        blocker = s.post_task(gate.wait, 10)
        while not blocker.running():
            threading.Event().wait(0.001)
        a = s.post_task(ran.append, "a", priority=2)
        s.post_task(ran.append, "b", priority=1)
        assert a.cancel()
        assert s.stats().queued == 1
        gate.set()
    assert ran == ["b"]


def test_many_posters_and_workers_with_priorities_lose_nothing() -> None:
    counts = [0] * 4000
    lock = threading.Lock()

    def bump(i: int) -> None:
        with lock:
            counts[i] += 1

    def poster(start: int) -> None:
        rng = random.Random(start)
        for i in range(start, start + 1000):
            s.post_task(bump, i, priority=rng.choice([0, 0, 1, -1]))

    with Scheduler(max_workers=4, queue_size=100_000) as s:
        threads = [threading.Thread(target=poster, args=(k * 1000,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert counts == [1] * 4000
    st = s.stats()
    assert (st.submitted, st.succeeded, st.queued, st.running) == (4000, 4000, 0, 0)


def test_stats_count_queued_tasks_per_priority(sched: Scheduler) -> None:
    for p in (0, 3, 3, -1, 0, 0):
        sched.post_task(print, priority=p)
    sched.post_task(print)
    sched.post_task(print, delay=1, priority=9)  # pending, not queued
    st = sched.stats()
    assert st.queued == 7
    assert st.queued_by_priority == {3: 2, 0: 4, -1: 1}
    assert list(st.queued_by_priority) == [3, 0, -1]
    sched.run_due()
    assert sched.stats().queued_by_priority == {}
