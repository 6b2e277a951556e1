"""Scheduler behaviour in virtual time (manual scheduler on a VirtualClock)."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import gc
import logging
import weakref
from unittest import mock

import pytest

import wheeltask
from wheeltask import Scheduler, TaskCancelled, TaskState
from wheeltask.testing import VirtualClock, manual_scheduler


def approx_ms(values: list[float]) -> list[float]:
    return [round(v * 1000, 3) for v in values]


# --------------------------------------------------------------- Go scenarios
class TestGoOriginalScenarios:
    """async-tasks-in-memory's own spec, in virtual time (spec/ in the Go repo)."""

    def test_immediate_task_finishes(self, sched: Scheduler, clock: VirtualClock) -> None:
        result = []
        h = sched.post_task(result.append, 100)
        clock.advance(0.010)
        assert result == [100]
        assert h.done() and h.runs == 1 and h.state is TaskState.SUCCEEDED

    def test_interval_20ms_runs_5_times_in_110ms_and_never_after_cancel(
        self, sched: Scheduler, clock: VirtualClock
    ) -> None:
        times: list[float] = []
        h = sched.post_task(lambda: times.append(clock.now()), interval=0.020)
        clock.advance(0.110)
        assert approx_ms(times) == [20, 40, 60, 80, 100]
        assert h.cancel() is True
        clock.advance(0.100)
        assert len(times) == 5
        assert h.state is TaskState.CANCELLED and h.done() and h.runs == 5

    def test_5ms_delay_is_done_by_10ms(self, sched: Scheduler, clock: VirtualClock) -> None:
        h = sched.post_task(lambda: 10, delay=0.005)
        assert h.wait_for_finished(timeout=0.010) is True
        assert clock.now() <= 0.010
        assert h.result() == 10

    def test_task_cancelled_before_it_runs_never_runs(
        self, sched: Scheduler, clock: VirtualClock
    ) -> None:
        ran = []
        h = sched.post_task(ran.append, 1)
        assert h.cancel() is True
        clock.advance(1.0)
        assert ran == []
        assert h.runs == 0 and h.cancelled()
        with pytest.raises(TaskCancelled):
            h.wait_for_finished(timeout=1)

    def test_interval_with_start_delay_runs_on_its_grid(
        self, sched: Scheduler, clock: VirtualClock
    ) -> None:
        times: list[float] = []
        h = sched.post_task(lambda: times.append(clock.now()), delay=0.005, interval=0.020)
        clock.advance(0.110)
        assert approx_ms(times) == [5, 25, 45, 65, 85, 105]
        h.cancel()

    def test_interval_with_delay_wait_for_runs(self, sched: Scheduler, clock: VirtualClock) -> None:
        # Go: IntervalWithDelayTask(6 ms, 15 ms); WaitForFinished(130 ms) then
        # WaitForFinishedCount(100, 120 ms) times out.
        h = sched.post_task(lambda: None, delay=0.006, interval=0.015)
        assert h.wait_for_finished(timeout=0.130)
        assert h.runs == 1
        assert h.wait_for_runs(100, timeout=0.120) is False
        assert h.runs == 9  # runs at 6 (10), 21 (25), ... 126 (130)
        assert h.cancel()


# --------------------------------------------------------------- timing rules
class TestTiming:
    def test_callback_sees_time_within_one_tick_after_deadline(
        self, sched: Scheduler, clock: VirtualClock
    ) -> None:
        seen = {}
        for d in (0.001, 0.0049, 0.005, 0.0051, 0.7, 1.3, 119.999, 130.0, 7200.5, 90000.0):
            sched.post_task(lambda d=d: seen.__setitem__(d, clock.now()), delay=d)
        clock.advance(100_000)
        assert len(seen) == 10
        for d, t in seen.items():
            assert d <= t < d + 0.005, (d, t)

    def test_equal_deadlines_run_in_posting_order(
        self, sched: Scheduler, clock: VirtualClock
    ) -> None:
        order: list[int] = []
        for i in range(50):
            sched.post_task(order.append, i, delay=0.25)
        clock.advance(0.25)
        assert order == list(range(50))

    def test_same_tick_runs_in_deadline_order(self, sched: Scheduler, clock: VirtualClock) -> None:
        order: list[str] = []
        sched.post_task(order.append, "c", delay=0.0049)
        sched.post_task(order.append, "a", delay=0.0011)
        sched.post_task(order.append, "b", delay=0.003)
        clock.advance(0.005)
        assert order == ["a", "b", "c"]

    def test_advance_runs_everything_due_by_its_end(
        self, sched: Scheduler, clock: VirtualClock
    ) -> None:
        seen: list[float] = []
        h = sched.post_task(lambda: seen.append(clock.now()), delay=0.0031)
        later = sched.post_task(lambda: seen.append(clock.now()), delay=0.0049)
        clock.advance(0.0030)
        assert not h.done()
        clock.advance(0.0001)  # ends between two ticks: what is due by then runs
        assert h.done() and not later.done()
        assert seen == [0.0031]
        clock.advance(0.01)
        assert seen == [0.0031, 0.005]  # the rest of that tick fires at its boundary

    def test_timedelta_delays_and_intervals(self, sched: Scheduler, clock: VirtualClock) -> None:
        times: list[float] = []
        h = sched.post_task(
            lambda: times.append(clock.now()),
            delay=datetime.timedelta(milliseconds=50),
            interval=datetime.timedelta(seconds=1),
        )
        clock.advance(2.1)
        assert approx_ms(times) == [50, 1050, 2050]
        assert h.interval == 1.0
        h.cancel()

    def test_large_advance_runs_every_grid_point(
        self, sched: Scheduler, clock: VirtualClock
    ) -> None:
        h = sched.post_task(lambda: None, interval=0.5)
        clock.advance(3600)  # not a stall: no coalescing in virtual time
        assert h.runs == 7200 and h.missed == 0
        h.cancel()

    def test_tasks_posted_by_callbacks_run_in_the_same_advance(
        self, sched: Scheduler, clock: VirtualClock
    ) -> None:
        times: list[float] = []

        def chain(n: int) -> None:
            times.append(clock.now())
            if n:
                sched.post_task(chain, n - 1, delay=0.1)

        sched.post_task(chain, 3, delay=0.1)
        clock.advance(1.0)
        assert approx_ms(times) == [100, 200, 300, 400]

    def test_immediate_tasks_wait_for_advance(self, sched: Scheduler, clock: VirtualClock) -> None:
        ran = []
        h = sched.post_task(ran.append, 1)
        assert ran == [] and h.state is TaskState.PENDING
        clock.advance(0)
        assert ran == [1]

    def test_far_timer_through_overflow_fires_on_time(
        self, sched: Scheduler, clock: VirtualClock
    ) -> None:
        seen: list[float] = []
        sched.post_task(lambda: seen.append(clock.now()), delay=3 * 86400 + 0.123)
        clock.advance(3 * 86400)
        assert seen == []
        clock.advance(1)
        assert len(seen) == 1 and 3 * 86400 + 0.123 <= seen[0] < 3 * 86400 + 0.128


# ------------------------------------------------------------------ intervals
class TestIntervals:
    def test_no_overlap_firing_while_running_is_missed(self, clock: VirtualClock) -> None:
        # With real threads a slow run makes the next firings find it still running.
        # In virtual time the inline pool runs synchronously, so drive the state by
        # hand: a firing that finds the task queued or running is counted missed.
        s = manual_scheduler(clock=clock)
        calls = []
        h = s.post_task(calls.append, "x", interval=0.01)
        clock.advance(0.01)
        assert h.runs == 1 and h.missed == 0
        h.cancel()
        s.shutdown()

    def test_interval_failure_keeps_running(
        self, sched: Scheduler, clock: VirtualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        runs = []

        def flaky() -> int:
            runs.append(clock.now())
            if len(runs) == 2:
                raise ValueError("boom")
            return len(runs)

        with caplog.at_level(logging.ERROR, logger="wheeltask"):
            h = sched.post_task(flaky, interval=0.1)
            clock.advance(0.2)
            assert isinstance(h.exception(), ValueError)
            clock.advance(0.1)
        assert h.result() == 3 and h.runs == 3
        assert sched.stats().failed == 1 and sched.stats().succeeded == 2
        assert any("boom" in r.getMessage() or r.exc_info for r in caplog.records)
        h.cancel()

    def test_cancel_interval_from_its_own_callback(
        self, sched: Scheduler, clock: VirtualClock
    ) -> None:
        holder: list[wheeltask.TaskHandle] = []

        def cb() -> None:
            if holder[0].runs == 2:  # third run
                assert holder[0].cancel() is True

        holder.append(sched.post_task(cb, interval=0.01))
        clock.advance(1)
        h = holder[0]
        assert h.runs == 3 and h.state is TaskState.CANCELLED
        assert h.wait_for_finished(0) is True  # it had run
        assert h.next_run is None


# ----------------------------------------------------------- handles and waits
class TestHandles:
    def test_ids_are_sequential_per_scheduler(self, sched: Scheduler) -> None:
        ids = [sched.post_task(print, delay=i).id for i in range(3)]
        other = manual_scheduler()
        assert ids == [1, 2, 3] and other.post_task(print).id == 1
        other.shutdown(wait=False, cancel_pending=True)

    def test_result_and_exception(self, sched: Scheduler, clock: VirtualClock) -> None:
        ok = sched.post_task(lambda: "value", delay=1)
        bad = sched.post_task(functools.partial(int, "x"), delay=1)
        assert ok.result(timeout=2) == "value"
        assert ok.exception() is None
        with pytest.raises(ValueError, match="invalid literal"):
            bad.result()
        assert isinstance(bad.exception(), ValueError)
        assert bad.state is TaskState.FAILED and bad.runs == 1

    def test_result_times_out_in_virtual_time(self, sched: Scheduler, clock: VirtualClock) -> None:
        h = sched.post_task(lambda: 1, delay=10)
        with pytest.raises(TimeoutError):
            h.result(timeout=1)
        assert clock.now() == pytest.approx(1.0)
        assert h.wait_for_finished(timeout=0) is False
        assert h.result(timeout=9.01) == 1

    def test_wait_without_timeout_on_a_task_that_cannot_finish_raises(
        self, sched: Scheduler
    ) -> None:
        other = manual_scheduler()  # another clock: nothing here can move it
        h = other.post_task(lambda: 1, delay=5)
        # FrozenClock/other clocks: a wait runs what is due and reports, never hangs.
        assert h.wait_for_finished() is True  # its own VirtualClock is advanced
        other.shutdown()

    def test_done_callbacks(self, sched: Scheduler, clock: VirtualClock) -> None:
        calls: list[tuple[str, int]] = []
        h = sched.post_task(lambda: 5, delay=0.5)
        h.add_done_callback(lambda hh: calls.append(("a", hh.result())))
        h.add_done_callback(lambda hh: calls.append(("b", hh.runs)))
        clock.advance(0.4)
        assert calls == []
        clock.advance(0.1)
        assert calls == [("a", 5), ("b", 1)]
        h.add_done_callback(lambda hh: calls.append(("late", 0)))  # already done: at once
        assert calls[-1] == ("late", 0)

    def test_done_callback_on_cancel_and_raising_callback_is_logged(
        self, sched: Scheduler, caplog: pytest.LogCaptureFixture
    ) -> None:
        seen: list[TaskState] = []
        h = sched.post_task(print, delay=5)

        def bad(_: wheeltask.TaskHandle) -> None:
            raise RuntimeError("callback bug")

        h.add_done_callback(bad)
        h.add_done_callback(lambda hh: seen.append(hh.state))
        with caplog.at_level(logging.ERROR, logger="wheeltask"):
            assert h.cancel()
        assert seen == [TaskState.CANCELLED]
        assert "callback bug" in caplog.text

    def test_cancel_state_table(self, sched: Scheduler, clock: VirtualClock) -> None:
        pending = sched.post_task(print, delay=1)
        queued = sched.post_task(print)
        done = sched.post_task(lambda: None)
        clock.advance(0)  # runs queued and done
        assert pending.cancel() is True
        assert pending.cancel() is True  # already cancelled
        assert done.cancel() is False and done.state is TaskState.SUCCEEDED
        assert queued.cancel() is False
        running_result = []

        def running() -> None:
            running_result.append(holder[0].cancel())

        holder = [sched.post_task(running)]
        clock.advance(0)
        assert running_result == [False]  # a started one-shot run completes
        assert holder[0].state is TaskState.SUCCEEDED

    def test_cancel_frees_the_callback(self, sched: Scheduler) -> None:
        class Big:
            def __call__(self) -> None:
                pass

        big = Big()
        ref = weakref.ref(big)
        h = sched.post_task(big, delay=100)
        del big
        assert h.name == "Big"
        h.cancel()
        gc.collect()
        assert ref() is None
        assert h.name == "Big"

    def test_repr(self, sched: Scheduler, clock: VirtualClock) -> None:
        def refresh() -> None:
            pass

        h = sched.post_task(refresh, interval=5.0)
        clock.advance(15.005)
        assert (
            repr(h) == "<TaskHandle #1 'refresh' interval=5 state=PENDING runs=3 next_run=+4.995s>"
        )
        named = sched.post_task(print, name="greeter")
        assert "'greeter'" in repr(named) and named.name == "greeter"
        assert "pending=1 queued=1" in repr(sched)
        h.cancel()

    def test_next_run_tracks_the_grid(self, sched: Scheduler, clock: VirtualClock) -> None:
        h = sched.post_task(print, delay=1, interval=2)
        assert h.next_run == 1.0
        clock.advance(1)
        assert h.next_run == 3.0
        h.cancel()
        assert h.next_run is None


# -------------------------------------------------------------------- stats
class TestStats:
    def test_counts(self, sched: Scheduler, clock: VirtualClock) -> None:
        sched.post_task(lambda: None, delay=1)
        sched.post_task(lambda: None, delay=2)
        sched.post_task(int, "bad", delay=1)
        cancelled = sched.post_task(print, delay=3)
        cancelled.cancel()
        sched.post_task(print)
        s = sched.stats()
        assert (s.pending, s.queued, s.running, s.submitted) == (3, 1, 0, 5)
        clock.advance(5)
        s = sched.stats()
        assert (s.pending, s.queued, s.succeeded, s.failed, s.cancelled) == (0, 0, 3, 1, 1)
        assert s.workers == 0 and s.retried == 0
        assert 0 <= s.lateness_p50 <= s.lateness_p99 <= s.lateness_max < 0.005

    def test_stats_is_frozen(self, sched: Scheduler) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            sched.stats().pending = 3  # type: ignore[misc]


# ------------------------------------------------------------- module level
class TestModuleLevel:
    def test_wheeltask_clock_fixture_drives_module_api(self, wheeltask_clock: VirtualClock) -> None:
        seen: list[float] = []
        h = wheeltask.post_task(lambda: seen.append(wheeltask_clock.now()), delay=2.5)
        wheeltask_clock.advance(2.5)
        assert seen == [2.5] and h.done()
        assert wheeltask.get_scheduler().stats().succeeded == 1

    def test_configure_after_first_use_raises(self, wheeltask_clock: VirtualClock) -> None:
        wheeltask.get_scheduler()
        with pytest.raises(RuntimeError, match=r"^wheeltask.configure\(\) must be called"):
            wheeltask.configure(max_workers=2)

    def test_configure_validates_at_once(self) -> None:
        with pytest.raises(ValueError, match=r"^max_workers must be >= 1"):
            wheeltask.configure(max_workers=0)
        with pytest.raises(TypeError):
            wheeltask.configure(bogus=1)


def test_cancel_with_a_mock_callback(sched: Scheduler) -> None:
    h = sched.post_task(mock.Mock(), delay=1)
    assert h.name == "Mock"
    assert h.cancel() is True
    assert h.name == "Mock" and h.cancelled()
    with pytest.raises(TaskCancelled, match=r"^'Mock' cancelled by cancel\(\)$"):
        h.result()
