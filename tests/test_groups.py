"""Task groups: Scheduler.group() / wheeltask.group(), the Go original's cases."""

from __future__ import annotations

import threading

import pytest
from helpers import wait_until

import wheeltask
from wheeltask import Scheduler, TaskCancelled, TaskGroup
from wheeltask._default import _swap_default
from wheeltask.testing import VirtualClock


# ------------------------------------------------------------- the Go cases
@pytest.mark.parametrize("manual", [True, False])
def test_two_tasks_adding_10_and_1700_give_1710(sched: Scheduler, manual: bool) -> None:
    total = [0]
    lock = threading.Lock()

    def add(n: int) -> None:
        with lock:
            total[0] += n

    s = sched if manual else Scheduler(max_workers=2)
    with s.group() as g:
        g.post_task(add, 10)
        g.post_task(add, 1700)
    assert total == [1710]
    assert all(h.done() for h in g.tasks)
    assert g.wait() is True
    if not manual:
        s.shutdown()


def test_group_cancelled_right_after_posting_runs_nothing(sched: Scheduler) -> None:
    ran: list[int] = []
    g = sched.group()
    for i in range(5):
        g.post_task(ran.append, i)
    g.post_task(ran.append, 99, delay=3)
    g.cancel()
    with pytest.raises(TaskCancelled, match="the group was cancelled by cancel"):
        g.wait()
    sched.run_due()
    assert ran == []
    assert all(h.cancelled() for h in g.tasks)
    with pytest.raises(TaskCancelled):
        g.post_task(ran.append, 100)  # a cancelled group takes nothing more
    assert len(g) == 6


def test_group_cancelled_with_real_threads_runs_nothing() -> None:
    ran: list[int] = []
    gate = threading.Event()
    with Scheduler(max_workers=1) as s:
        blocker = s.post_task(gate.wait, 10)
        wait_until(blocker.running)
        g = s.group()
        for i in range(10):
            g.post_task(ran.append, i)
        g.cancel()
        gate.set()
        with pytest.raises(TaskCancelled):
            g.wait(10)
    assert ran == []


@pytest.mark.parametrize("manual", [True, False])
def test_failing_fifth_of_ten_leaves_the_later_ones_unstarted(
    sched: Scheduler, manual: bool
) -> None:
    ran: list[int] = []

    def job(i: int) -> None:
        ran.append(i)
        if i == 5:
            raise ValueError("task 5 failed")

    gate = threading.Event()
    s = sched if manual else Scheduler(max_workers=1)
    if not manual:
        blocker = s.post_task(gate.wait, 10)
        wait_until(blocker.running)
    g = s.group()
    handles = [g.post_task(job, i) for i in range(1, 11)]
    gate.set()
    with pytest.raises(ValueError, match="task 5 failed"):
        g.wait(10)
    assert ran == [1, 2, 3, 4, 5]
    assert [h.state.name for h in handles] == ["SUCCEEDED"] * 4 + ["FAILED"] + ["CANCELLED"] * 5
    with pytest.raises(TaskCancelled, match=r"^'job' cancelled: 'job' of its group failed$"):
        handles[7].result()
    if not manual:
        s.shutdown()


# ----------------------------------------------------------------- the rest
def test_wait_returns_false_when_the_timeout_passes_first(
    clock: VirtualClock, sched: Scheduler
) -> None:
    g = sched.group()
    h = g.post_task(print, delay=10)
    assert g.wait(timeout=4) is False
    assert clock.now() == 4.0  # virtual time moved by the timeout, no more
    assert not h.done()
    assert g.wait(timeout=6) is True


def test_a_running_task_completes_when_another_fails() -> None:
    gate = threading.Event()
    with Scheduler(max_workers=2) as s:
        g = s.group()
        slow = g.post_task(lambda: gate.wait(10) and "slow done")
        wait_until(slow.running)
        g.post_task(lambda: 1 / 0)
        wait_until(lambda: len([h for h in g.tasks if h.done()]) == 1)
        assert not slow.done()  # running tasks are not stopped ...
        gate.set()
        with pytest.raises(ZeroDivisionError):
            g.wait(10)  # ... and wait() waits for them
        assert slow.result() == "slow done"


def test_leaving_the_block_raises_the_first_failure(sched: Scheduler) -> None:
    with pytest.raises(KeyError), sched.group() as g:
        g.post_task(dict().__getitem__, "missing")
        g.post_task(print)


def test_an_exception_in_the_block_cancels_the_group(sched: Scheduler) -> None:
    ran: list[int] = []
    with pytest.raises(RuntimeError, match="body"), sched.group() as g:
        g.post_task(ran.append, 1)
        raise RuntimeError("body")
    assert ran == []
    assert g.tasks[0].cancelled()


def test_a_member_cancelled_on_its_own_cancels_the_group(sched: Scheduler) -> None:
    g = sched.group()
    a = g.post_task(print, delay=1)
    b = g.post_task(print, delay=2)
    a.cancel()
    assert b.cancelled()
    with pytest.raises(TaskCancelled, match="cancelled by cancel"):
        g.wait()


def test_group_tasks_take_every_option_but_interval(sched: Scheduler) -> None:
    g = sched.group()
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise wheeltask.Retry(delay=1)
        return "ok"

    h = g.post_task(flaky, retries=2, priority=3, name="flaky", key="k")
    assert g.wait() is True
    assert h.result() == "ok" and h.attempts == 3
    with pytest.raises(ValueError, match=r"^interval must be None in a task group"):
        g.post_task(print, interval=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^timeout must be >= 0 seconds or None, got -1$"):
        g.wait(-1)
    assert len(g) == 1


def test_module_level_group_uses_the_default_scheduler() -> None:
    old = _swap_default(Scheduler(max_workers=2))
    try:
        with wheeltask.group() as g:
            h = g.post_task(lambda: 5)
        assert isinstance(g, TaskGroup)
        assert h.result() == 5
        assert h._sched is wheeltask.get_scheduler()
    finally:
        new, _ = _swap_default(*old)
        assert new is not None
        new.shutdown()


# ------------------------------------------------------ regressions (review)
def test_wait_raises_a_timeout_even_before_its_hooks_have_run() -> None:
    gate = threading.Event()
    with Scheduler(max_workers=1) as s:  # the one worker stays in the timed-out run
        g = s.group()
        g.post_task(gate.wait, 10, timeout=0.05)
        later = g.post_task(print, delay=30)
        with pytest.raises(wheeltask.TaskTimeout):
            g.wait(10)
        assert later.cancelled()  # the failure cancelled what had not started
        gate.set()


def test_wait_never_misses_a_failure_that_races_it() -> None:
    missed = 0
    with Scheduler(max_workers=4) as s:
        for _ in range(200):
            g = s.group()
            g.post_task(lambda: 1 / 0)
            try:
                g.wait(10)
            except ZeroDivisionError:
                continue
            missed += 1
    assert missed == 0


def test_a_keyed_replace_inside_a_group_is_not_a_failure(sched: Scheduler) -> None:
    ran: list[str] = []
    g = sched.group()
    g.post_task(ran.append, "first", key="k", delay=1)
    g.post_task(ran.append, "second", key="k", on_duplicate="replace", delay=1)
    assert g.wait() is True
    assert ran == ["second"]


def test_a_task_returned_by_a_keyed_post_is_not_cancelled_by_the_group(
    sched: Scheduler,
) -> None:
    outside = sched.post_task(print, key="shared", delay=5)
    g = sched.group()
    assert g.post_task(print, key="shared") is outside
    g.post_task(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        g.wait()
    assert outside.state.name == "SUCCEEDED"  # waited for, never cancelled by the group
