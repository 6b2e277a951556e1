"""Shutdown (DESIGN section 4) with real threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import wheeltask
from wheeltask import Scheduler, SchedulerShutdown, TaskCancelled, TaskState
from wheeltask._default import _swap_default
from wheeltask._pool import WheeltaskThread


def our_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, WheeltaskThread) and t.is_alive()]


@pytest.fixture
def default_scheduler() -> Iterator[None]:
    """A fresh module-level default for the test; the old one is put back after."""
    previous = _swap_default(None)
    try:
        yield
    finally:
        s, _ = _swap_default(*previous)
        if s is not None:
            s.shutdown(wait=False, cancel_pending=True)


def test_one_shots_still_run_delayed_ones_at_their_time() -> None:
    s = Scheduler()
    t0 = time.monotonic()
    h = s.post_task(time.monotonic, delay=0.1)
    assert s.shutdown() is True
    assert h.result() - t0 >= 0.1
    assert not [t for t in our_threads() if t.name.startswith("wheeltask-")]


def test_interval_tasks_stop_and_end_cancelled() -> None:
    s = Scheduler()
    started = threading.Event()
    gate = threading.Event()

    def run() -> None:
        started.set()
        gate.wait(5)

    h = s.post_task(run, interval=0.01)
    idle = s.post_task(print, interval=10)
    assert started.wait(5)
    threading.Timer(0.05, gate.set).start()
    assert s.shutdown(timeout=5) is True  # the run in progress completes
    assert h.state is TaskState.CANCELLED and h.done() and h.runs == 1
    assert idle.state is TaskState.CANCELLED and idle.runs == 0
    with pytest.raises(TaskCancelled, match=r"stopped by shutdown\(\)"):
        idle.wait_for_finished()


def test_timeout_returns_false_and_cancels_what_had_not_started() -> None:
    s = Scheduler(max_workers=1)
    gate = threading.Event()
    running = s.post_task(gate.wait, 5)
    queued = s.post_task(print, "never")
    delayed = s.post_task(print, "never", delay=30)
    t0 = time.monotonic()
    assert s.shutdown(timeout=0.1) is False
    assert 0.09 <= time.monotonic() - t0 < 2
    assert queued.state is TaskState.CANCELLED and delayed.state is TaskState.CANCELLED
    with pytest.raises(TaskCancelled, match=r"shutdown\(\) timed out"):
        delayed.result()
    assert s.stats().cancelled == 2
    assert running.state is TaskState.RUNNING
    gate.set()
    assert running.result(timeout=5) is True  # a running callback finishes...
    assert s.shutdown(timeout=5) is True  # ...and then its worker exits


def test_cancel_pending() -> None:
    s = Scheduler()
    ran: list[int] = []
    handles = [s.post_task(ran.append, i, delay=0.5) for i in range(5)]
    assert s.shutdown(cancel_pending=True) is True
    assert ran == [] and all(h.cancelled() for h in handles)


def test_idempotent_and_safe_from_several_threads() -> None:
    s = Scheduler()
    h = s.post_task(time.sleep, 0.05, delay=0.02)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(s.shutdown())) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert results == [True] * 6
    assert s.shutdown() is True and h.done()
    with pytest.raises(SchedulerShutdown):
        s.post_task(print)


def test_shutdown_from_inside_a_task_does_not_wait_for_itself() -> None:
    s = Scheduler(max_workers=2)
    other = s.post_task(time.sleep, 0.05)
    inner = s.post_task(lambda: s.shutdown(timeout=5))
    assert inner.result(timeout=5) is True
    assert other.done()
    assert s.shutdown(timeout=5) is True


def test_shutdown_without_waiting_lets_work_finish_then_threads_exit() -> None:
    s = Scheduler()
    h = s.post_task(lambda: "done", delay=0.05)
    assert s.shutdown(wait=False) is False  # work remains
    assert h.result(timeout=5) == "done"
    for t in our_threads():
        t.join(5)
    assert not our_threads()


def test_context_manager_waits_for_pending_one_shots() -> None:
    with Scheduler() as s:
        h = s.post_task(lambda: 1, delay=0.05)
    assert h.result(timeout=0) == 1


def test_posters_blocked_on_a_full_queue_are_released_by_shutdown() -> None:
    gate = threading.Event()
    s = Scheduler(max_workers=1, queue_size=1, on_full="block")
    s.post_task(gate.wait, 5)
    s.post_task(print, "fills the queue")
    errors: list[BaseException] = []

    def blocked() -> None:
        try:
            s.post_task(print)
        except SchedulerShutdown as exc:
            errors.append(exc)

    t = threading.Thread(target=blocked)
    t.start()
    time.sleep(0.05)
    assert s.shutdown(timeout=0.05) is False
    t.join(5)
    assert len(errors) == 1
    gate.set()
    assert s.shutdown(timeout=5)


def test_wait_and_exit(default_scheduler: None) -> None:
    assert wheeltask.wait_and_exit() is True  # never used: nothing to do
    _swap_default(None)
    h = wheeltask.post_task(lambda: 5, delay=0.05)
    tick = wheeltask.post_task(print, interval=1)
    assert wheeltask.wait_and_exit(timeout=5) is True
    assert h.result() == 5 and tick.cancelled()
    with pytest.raises(SchedulerShutdown):
        wheeltask.post_task(print)
    with pytest.raises(RuntimeError):
        wheeltask.configure(max_workers=3)
    assert wheeltask.wait_and_exit() is True  # idempotent


def test_wait_and_exit_timeout(default_scheduler: None) -> None:
    gate = threading.Event()
    wheeltask.configure(max_workers=1)
    wheeltask.post_task(gate.wait, 5)
    h = wheeltask.post_task(print, delay=60)
    assert wheeltask.wait_and_exit(timeout=0.05) is False
    assert h.cancelled()
    gate.set()
    assert wheeltask.get_scheduler().shutdown(timeout=5)


def test_two_tasks_calling_shutdown_do_not_deadlock() -> None:
    s = Scheduler(max_workers=2)
    barrier = threading.Barrier(2, timeout=5)

    def closer() -> bool:
        barrier.wait()
        return s.shutdown(timeout=5)

    a, b = s.post_task(closer), s.post_task(closer)
    assert a.result(timeout=10) is True and b.result(timeout=10) is True
    assert s.shutdown(timeout=5) is True


def test_caller_runs_task_calling_shutdown_does_not_wait_for_itself() -> None:
    gate = threading.Event()
    s = Scheduler(max_workers=1, queue_size=1, on_full="caller_runs")
    s.post_task(gate.wait, 5)
    s.post_task(print, "fills the queue")
    t0 = time.monotonic()
    h = s.post_task(lambda: (gate.set(), s.shutdown(timeout=5))[1])  # runs right here
    assert h.result(timeout=0) is True
    assert time.monotonic() - t0 < 4


def test_timer_thread_leaves_once_the_last_timer_is_cancelled() -> None:
    s = Scheduler()
    h = s.post_task(print, delay=3600)
    assert s.shutdown(wait=False) is False
    assert h.cancel()
    assert s._timer is not None
    s._timer.join(5)
    assert not s._timer.is_alive()
    assert s.shutdown(timeout=5) is True


def test_shutdown_without_wait_on_an_idle_scheduler() -> None:
    s = Scheduler()
    assert s.shutdown(wait=False) is True  # never started a thread
    used = Scheduler()
    used.post_task(print).wait_for_finished(5)
    used.shutdown(wait=False)  # threads may still be on their way out
    assert used.shutdown(timeout=5) is True


def test_outside_shutdown_waits_for_a_task_that_is_itself_shutting_down() -> None:
    s = Scheduler(max_workers=2)
    inside = threading.Event()

    def closer() -> str:
        assert s.shutdown(timeout=5)  # waits for no one: nothing else runs
        inside.set()
        time.sleep(0.1)  # still running after its own shutdown() returned
        return "closer done"

    h = s.post_task(closer)
    assert inside.wait(5)
    assert s.shutdown(timeout=5) is True
    assert h.done() and h.result() == "closer done"  # True only once it had finished
    assert not [t for t in our_threads() if t.name.startswith("wheeltask-")]


@pytest.mark.parametrize("trial", range(5))
def test_cancelled_queued_tasks_do_not_keep_shutdown_waiting(trial: int) -> None:
    gate = threading.Event()
    s = Scheduler(max_workers=2)
    s.post_task(gate.wait, 5)
    s.post_task(gate.wait, 5)
    queued = [s.post_task(print, "never") for _ in range(500)]
    result: list[bool] = []
    closer = threading.Thread(target=lambda: result.append(s.shutdown(timeout=5)))
    closer.start()
    for h in queued:
        h.cancel()
    gate.set()
    closer.join(6)
    assert result == [True]
