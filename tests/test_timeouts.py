"""Per-run timeouts: timeout=, TaskTimeout at the deadline, current_task().check()."""

from __future__ import annotations

import datetime
import logging
import math
import threading
from collections.abc import Iterator

import pytest
from freezegun import freeze_time
from helpers import wait_until

import wheeltask
from wheeltask import Scheduler, TaskHandle, TaskState, TaskTimeout
from wheeltask.testing import FrozenClock, VirtualClock, manual_scheduler


@pytest.fixture
def threaded(clock: VirtualClock) -> Iterator[Scheduler]:
    """A scheduler with real threads on a virtual clock: timeouts fire when the test
    advances the clock, callbacks run on workers meanwhile."""
    s = Scheduler(max_workers=3, clock=clock)
    yield s
    s.shutdown(wait=True, timeout=10)


def _fired_up_to(s: Scheduler, clock: VirtualClock, t: float) -> None:
    """Advance to ``t`` and wait until the timer thread has handled everything due by
    then (a marker timer due at ``t`` fires after every earlier deadline)."""
    marker = threading.Event()
    s.post_task(marker.set, delay=t - clock.now())
    clock.advance_to(t)
    assert marker.wait(10)


def test_a_run_past_its_timeout_fails_at_the_deadline(
    clock: VirtualClock, threaded: Scheduler
) -> None:
    gate = threading.Event()
    h = threaded.post_task(lambda: gate.wait(10) and "late", timeout=2, name="slow")
    wait_until(h.running)
    assert h.timeout == 2.0
    assert h.deadline == 2.0
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(h.wait_for_finished(10)))
    waiter.start()
    _fired_up_to(threaded, clock, 1.995)
    assert h.state is TaskState.RUNNING
    assert not h.timed_out()
    clock.advance_to(2.0)
    waiter.join(10)
    assert woke == [True]  # the waiter woke at the deadline, the callback still runs
    assert h.state is TaskState.FAILED
    assert h.timed_out()
    with pytest.raises(TaskTimeout, match=r"^'slow' exceeded its timeout of 2 seconds$"):
        h.result()
    assert isinstance(h.exception(), TaskTimeout)
    # (the marker task of _fired_up_to counts as running until its worker is done)
    wait_until(lambda: threaded.stats().running == 1)
    st = threaded.stats()
    assert (st.timed_out, st.failed, st.running) == (1, 1, 1)
    gate.set()  # the callback returns at last: its result is discarded
    wait_until(lambda: threaded.stats().running == 0)
    with pytest.raises(TaskTimeout):
        h.result()
    st = threaded.stats()
    # succeeded: only the marker timer of _fired_up_to
    assert (st.timed_out, st.failed, st.succeeded, st.pending) == (1, 1, 1, 0)


def test_a_run_within_its_timeout_succeeds(clock: VirtualClock, threaded: Scheduler) -> None:
    h = threaded.post_task(lambda: 42, timeout=1)
    assert h.result(10) == 42
    assert not h.timed_out()
    wait_until(lambda: threaded.stats().running == 0)
    assert threaded.stats().pending == 0  # the timeout's timer is gone with the run
    _fired_up_to(threaded, clock, 5)
    assert h.result() == 42
    assert threaded.stats().timed_out == 0


def test_cooperative_callback_notices_through_current_task(
    clock: VirtualClock, threaded: Scheduler
) -> None:
    seen: list[float | None] = []
    started = threading.Event()

    def job() -> str:
        me = wheeltask.current_task()
        assert me is not None
        seen.append(me.deadline)
        started.set()
        while True:
            me.check()  # raises TaskTimeout once the deadline has passed
            threading.Event().wait(0.001)

    clock.advance(10)
    h = threaded.post_task(job, timeout=datetime.timedelta(seconds=3))
    assert started.wait(10)
    assert seen == [13.0]
    clock.advance(3)
    assert h.wait_for_finished(10)
    wait_until(lambda: threaded.stats().running == 0)
    assert h.timed_out()
    with pytest.raises(TaskTimeout):
        h.result()
    assert threaded.stats().timed_out == 1


def test_interval_run_that_times_out_never_overlaps_the_next(
    clock: VirtualClock, threaded: Scheduler
) -> None:
    gate = threading.Event()
    calls: list[float] = []

    def job() -> str:
        calls.append(clock.now())
        gate.wait(10)
        return "done"

    h = threaded.post_task(job, interval=1, timeout=0.5)
    clock.advance(1)
    wait_until(lambda: len(calls) == 1)
    clock.advance(0.5)
    assert h.wait_for_runs(1, 10)  # the timed-out run counts as a (failed) run
    assert h.state is TaskState.RUNNING  # until its callback returns
    with pytest.raises(TaskTimeout):
        h.result()
    _fired_up_to(threaded, clock, 2.0)
    _fired_up_to(threaded, clock, 3.0)
    assert calls == [1.0]  # the firings at 2 and 3 found it running: missed
    assert h.missed == 2
    gate.set()
    wait_until(lambda: h.state is TaskState.PENDING)
    clock.advance(1)
    assert h.wait_for_runs(2, 10)
    assert calls == [1.0, 4.0]
    assert h.result() == "done"
    st = threaded.stats()
    assert (st.timed_out, st.failed, st.succeeded, st.missed) == (1, 1, 3, 2)  # + 2 markers
    assert h.cancel()


def test_timed_out_run_is_not_retried_and_hooks_run_on_a_worker(
    clock: VirtualClock, threaded: Scheduler
) -> None:
    gate = threading.Event()
    failures: list[tuple[BaseException, str]] = []
    done: list[TaskHandle] = []

    def on_failure(handle: TaskHandle, exc: BaseException) -> None:
        failures.append((exc, threading.current_thread().name))

    h = threaded.post_task(
        gate.wait, 10, timeout=1, retries=3, retry_on=Exception, on_failure=on_failure
    )
    h.add_done_callback(done.append)
    wait_until(h.running)
    clock.advance(1)
    wait_until(lambda: failures and done)
    assert len(failures) == 1
    exc, thread = failures[0]
    assert isinstance(exc, TaskTimeout)
    assert "worker" in thread  # never the timer thread
    assert done == [h]
    assert h.attempts == 1
    gate.set()
    wait_until(lambda: threaded.stats().running == 0)
    assert threaded.stats().retried == 0


def test_each_attempt_has_its_own_deadline(clock: VirtualClock) -> None:
    s = manual_scheduler(clock=clock)
    deadlines: list[float | None] = []

    def job() -> str:
        me = wheeltask.current_task()
        assert me is not None
        deadlines.append(me.deadline)
        if me.attempts == 1:
            raise wheeltask.Retry(delay=5)
        return "ok"

    h = s.post_task(job, timeout=2, retries=1)
    clock.advance(0)
    clock.advance(5)
    assert h.result() == "ok"
    assert deadlines == [2.0, 7.0]
    assert s.stats().timed_out == 0


def test_keyed_task_frees_its_key_when_it_times_out(
    clock: VirtualClock, threaded: Scheduler
) -> None:
    gate = threading.Event()
    first = threaded.post_task(gate.wait, 10, key="k", timeout=1)
    wait_until(first.running)
    assert threaded.post_task(gate.wait, 10, key="k") is first
    clock.advance(1)
    assert first.wait_for_finished(10)
    second = threaded.post_task(lambda: "again", key="k")
    assert second is not first
    gate.set()
    assert second.result(10) == "again"


def test_manual_scheduler_times_out_a_run_that_returns_late(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A manual scheduler's timer cannot fire during a callback: a run that returns
    # at or after its deadline is timed out then, its result discarded.
    with freeze_time("2026-01-01") as frozen:
        s = manual_scheduler(clock=FrozenClock())
        ok = s.post_task(lambda: frozen.tick(0.999) and "in time", timeout=1)
        late = s.post_task(lambda: frozen.tick(1.0) and "late", timeout=1, name="late")
        with caplog.at_level(logging.ERROR, logger="wheeltask"):
            assert s.run_due() == 2
    assert ok.result() == "in time"
    with pytest.raises(TaskTimeout):
        late.result()
    assert late.timed_out()
    assert "task <TaskHandle #2 'late'" in caplog.text
    assert "timed out: 'late' exceeded its timeout of 1 seconds" in caplog.text
    st = s.stats()
    assert (st.succeeded, st.failed, st.timed_out) == (1, 1, 1)


def test_shutdown_waits_for_a_timed_run_and_leaves_no_thread(clock: VirtualClock) -> None:
    gate = threading.Event()
    s = Scheduler(max_workers=2, clock=clock)
    h = s.post_task(gate.wait, 10, timeout=5)
    wait_until(h.running)
    assert not s.shutdown(timeout=0.05)  # the run goes on: not done
    clock.advance(5)
    assert h.wait_for_finished(10)
    with pytest.raises(TaskTimeout):
        h.result()
    gate.set()
    assert s.shutdown(timeout=10)  # every thread, the timer's included, has exited


def test_timed_task_started_during_shutdown_still_times_out(clock: VirtualClock) -> None:
    gate = threading.Event()
    s = Scheduler(max_workers=1, clock=clock)
    blocker = s.post_task(gate.wait, 10)
    wait_until(blocker.running)
    release = threading.Event()
    timed = s.post_task(release.wait, 10, timeout=1)
    result: list[bool] = []
    closer = threading.Thread(target=lambda: result.append(s.shutdown(timeout=20)))
    closer.start()
    wait_until(lambda: s.stats().pending == 0 and s._closing)
    gate.set()  # the queued timed task starts while shutdown() waits
    wait_until(timed.running)
    clock.advance(1)
    assert timed.wait_for_finished(10)  # its timer still fired
    with pytest.raises(TaskTimeout):
        timed.result()
    release.set()
    closer.join(20)
    assert result == [True]


@pytest.mark.parametrize(
    ("timeout", "exc", "message"),
    [
        (0, ValueError, r"^timeout must be > 0 seconds or None, got 0$"),
        (-1, ValueError, r"^timeout must be > 0 seconds or None, got -1$"),
        (datetime.timedelta(0), ValueError, r"^timeout must be > 0 seconds or None"),
        (math.nan, ValueError, r"^timeout must be a finite number of seconds, got nan$"),
        (math.inf, ValueError, r"^timeout must be a finite number of seconds, got inf$"),
        ("1", TypeError, r"^timeout must be a number of seconds or a datetime.timedelta"),
        (True, TypeError, r"^timeout must be a number of seconds"),
    ],
)
def test_bad_timeout_changes_nothing(
    sched: Scheduler, timeout: object, exc: type[Exception], message: str
) -> None:
    before = sched.stats()
    with pytest.raises(exc, match=message):
        sched.post_task(print, timeout=timeout)
    assert sched.stats() == before


# ------------------------------------------------------ regressions (review)
def test_shutdown_inside_a_timed_task_does_not_wait_for_its_own_timeout(
    clock: VirtualClock,
) -> None:
    gate = threading.Event()
    returned: list[bool] = []
    s = Scheduler(max_workers=1, clock=clock)

    def task() -> str:
        returned.append(s.shutdown())  # the only worker is this one
        gate.wait(10)
        return "done"

    h = s.post_task(task, timeout=1)
    wait_until(lambda: returned)
    assert returned == [True]
    clock.advance(1)  # the timer thread stayed for this task's timeout
    assert h.wait_for_finished(10)
    with pytest.raises(TaskTimeout):
        h.result()
    gate.set()  # then every thread exits (the leak check of conftest.py)


def test_timed_out_is_false_between_the_attempts_of_a_run(clock: VirtualClock) -> None:
    s = manual_scheduler(clock=clock)
    seen: list[TaskHandle] = []

    def job() -> None:
        me = wheeltask.current_task()
        assert me is not None
        seen.append(me)
        if me.attempts == 1:
            raise wheeltask.Retry(delay=5)

    h = s.post_task(job, interval=10, timeout=1, retries=1)
    clock.advance(10)  # attempt 1 at 10, fails at once; attempt 2 due at 15
    assert h.running() and h.deadline == 11.0
    clock.advance(2)
    assert not h.timed_out()  # no attempt under way: nothing can be late
    clock.advance(3)
    assert h.runs == 1 and not h.timed_out()
    assert s.stats().timed_out == 0
    h.cancel()


def test_timed_run_goes_on_without_a_timer_thread(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    s = Scheduler(max_workers=1, clock=clock)

    def no_thread() -> None:
        raise RuntimeError("can't start new thread")

    s._wake_timer_locked = no_thread  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="wheeltask"):
        h = s.post_task(lambda: "ran", timeout=1)
        assert h.result(10) == "ran"
    assert "no timer thread for the timeout" in caplog.text
    wait_until(lambda: s.stats().running == 0)
    assert s.shutdown(timeout=10)


def test_in_task_shutdown_after_its_own_timeout_fired_returns(clock: VirtualClock) -> None:
    s = Scheduler(max_workers=1, clock=clock)
    started = threading.Event()
    proceed = threading.Event()
    returned: list[bool] = []

    def task() -> None:
        started.set()
        proceed.wait(10)
        returned.append(s.shutdown())  # its timeout's hooks wait for this very worker

    hooked: list[BaseException] = []
    h = s.post_task(task, timeout=1, on_failure=lambda h, e: hooked.append(e))
    assert started.wait(10)
    clock.advance(1)
    assert h.wait_for_finished(10)  # timed out; the hook item is queued
    proceed.set()
    wait_until(lambda: returned)
    assert returned == [True]
    wait_until(lambda: hooked)  # run by the worker once its task returned
    assert isinstance(hooked[0], TaskTimeout)


def test_a_timeout_armed_after_the_timer_thread_left_still_fires() -> None:
    # The window: a worker has taken a timed task from the queue but not yet armed its
    # timeout when a shutdown lets the timer thread leave.
    s = Scheduler(max_workers=2)
    s.post_task(print, "", delay=0.01).wait_for_finished(5)  # the timer thread exists
    in_window = threading.Event()
    go_on = threading.Event()
    original = s._start_timed_attempt

    def slow_start(*args: object) -> None:
        in_window.set()
        go_on.wait(10)
        original(*args)  # type: ignore[arg-type]

    s._start_timed_attempt = slow_start  # type: ignore[method-assign]
    gate = threading.Event()
    h = s.post_task(gate.wait, 10, timeout=0.05)
    assert in_window.wait(10)
    closer = threading.Thread(target=s.shutdown, kwargs={"timeout": 20})
    closer.start()
    wait_until(lambda: s._timer_left)
    go_on.set()
    assert h.wait_for_finished(5)  # a new timer thread fired it
    with pytest.raises(TaskTimeout):
        h.result()
    gate.set()
    closer.join(20)
