"""Controls on live tasks: reschedule, pause/resume (issue 6)."""

from __future__ import annotations

import datetime
import math
import threading

import pytest
from helpers import wait_until

from wheeltask import QueueFull, Retry, Scheduler, TaskCancelled, TaskState
from wheeltask.testing import VirtualClock


# -------------------------------------------------------------- reschedule
def test_go_timewheel_reset_800_to_100_ms_fires_once_at_100(
    clock: VirtualClock, sched: Scheduler
) -> None:
    fired: list[float] = []
    h = sched.post_task(lambda: fired.append(clock.now()), delay=0.8)
    assert h.reschedule(0.1)
    clock.advance(2)
    assert fired == [pytest.approx(0.1, abs=0.005)]
    assert 0.1 <= fired[0] < 0.105  # never early, within its tick
    assert h.runs == 1


def test_go_timewheel_reset_100_100_then_1000(clock: VirtualClock, sched: Scheduler) -> None:
    fired: list[float] = []
    h = sched.post_task(lambda: fired.append(clock.now()), delay=0.8)
    assert h.reschedule(0.1)
    assert h.reschedule(0.1)
    assert h.reschedule(datetime.timedelta(milliseconds=1000))
    clock.advance(0.5)
    assert fired == []
    clock.advance(0.7)
    assert len(fired) == 1 and 1.0 <= fired[0] < 1.005
    assert sched.stats().pending == 0


def test_reschedule_is_relative_to_now_and_never_early(
    clock: VirtualClock, sched: Scheduler
) -> None:
    fired: list[float] = []
    h = sched.post_task(lambda: fired.append(clock.now()), delay=10)
    clock.advance(3)
    assert h.reschedule(2.0013)
    assert h.next_run == pytest.approx(5.0013)
    clock.advance(2.001)
    assert fired == []
    clock.advance(0.01)
    assert len(fired) == 1 and fired[0] >= 5.0013


def test_reschedule_interval_task_moves_its_grid(clock: VirtualClock, sched: Scheduler) -> None:
    runs: list[float] = []
    h = sched.post_task(lambda: runs.append(clock.now()), interval=1)
    clock.advance(2.5)
    assert runs == [1.0, 2.0]
    assert h.reschedule(0.2, interval=2)  # next at 2.7, then every 2 s
    assert h.interval == 2.0
    clock.advance(4.3)  # to 6.8
    assert runs == [1.0, 2.0, pytest.approx(2.7), pytest.approx(4.7), pytest.approx(6.7)]
    assert h.reschedule()  # default: one interval from now
    assert h.next_run == pytest.approx(8.8)
    h.cancel()


def test_reschedule_returns_false_and_changes_nothing_when_it_cannot(
    clock: VirtualClock, sched: Scheduler
) -> None:
    done = sched.post_task(print)
    sched.run_due()
    assert not done.reschedule(1)
    gone = sched.post_task(print, delay=5)
    gone.cancel()
    assert not gone.reschedule(1)
    assert gone.cancelled() and gone.next_run is None
    seen: list[bool] = []

    def running() -> None:
        me = h_running
        seen.append(me.reschedule(3))  # one-shot, from inside its own run

    h_running = sched.post_task(running)
    sched.run_due()
    assert seen == [False]
    assert sched.stats().pending == 0


def test_reschedule_a_queued_task_takes_it_back_from_the_queue(
    clock: VirtualClock, sched: Scheduler
) -> None:
    ran: list[float] = []
    h = sched.post_task(lambda: ran.append(clock.now()))
    assert h.reschedule(2)
    assert sched.run_due() == 0
    st = sched.stats()
    assert (st.queued, st.pending) == (0, 1)
    clock.advance(2)
    assert ran == [2.0]


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "message"),
    [
        ((-1,), {}, ValueError, r"^delay must be >= 0 seconds, got -1$"),
        ((math.nan,), {}, ValueError, r"^delay must be a finite number of seconds, got nan$"),
        (("1",), {}, TypeError, r"^delay must be a number of seconds"),
        ((1,), {"interval": 0.001}, ValueError, r"^interval must be at least 0.005 seconds"),
        ((1,), {"interval": True}, TypeError, r"^interval must be a number of seconds"),
    ],
)
def test_bad_reschedule_changes_nothing(
    sched: Scheduler,
    args: tuple[object, ...],
    kwargs: dict[str, object],
    exc: type[Exception],
    message: str,
) -> None:
    h = sched.post_task(print, interval=1)
    with pytest.raises(exc, match=message):
        h.reschedule(*args, **kwargs)  # type: ignore[arg-type]
    assert h.next_run == 1.0 and h.interval == 1.0
    one = sched.post_task(print, delay=3)
    with pytest.raises(ValueError, match=r"^interval must be None to reschedule a one-shot"):
        one.reschedule(1, interval=2)
    assert one.next_run == 3.0


# ---------------------------------------------------------- pause / resume
def test_paused_interval_resumes_on_its_grid_skipping_what_passed(
    clock: VirtualClock, sched: Scheduler
) -> None:
    runs: list[float] = []
    h = sched.post_task(lambda: runs.append(clock.now()), interval=1)
    clock.advance(2.5)
    assert h.pause()
    assert h.state is TaskState.PAUSED and h.next_run is None
    assert h.pause()  # again: still paused, True
    clock.advance(3.2)  # 3, 4, 5 pass while paused
    assert runs == [1.0, 2.0]
    h.resume()
    assert h.state is TaskState.PENDING
    assert h.missed == 3
    assert h.next_run == 6.0
    clock.advance(1.3)
    assert runs == [1.0, 2.0, 6.0, 7.0]  # no burst
    with pytest.raises(RuntimeError, match=r"^resume\(\) of a task that is not paused"):
        h.resume()
    h.cancel()


def test_paused_one_shot_runs_once_right_after_resume_when_its_time_passed(
    clock: VirtualClock, sched: Scheduler
) -> None:
    ran: list[float] = []
    h = sched.post_task(lambda: ran.append(clock.now()), delay=1)
    assert h.pause()
    clock.advance(5)
    assert ran == [] and h.state is TaskState.PAUSED
    h.resume()
    sched.run_due()
    assert ran == [5.0]
    early = sched.post_task(lambda: ran.append(clock.now()), delay=10)  # due at 15
    assert early.pause()
    clock.advance(2)
    early.resume()  # its time has not come: it keeps it
    clock.advance(7.99)
    assert ran == [5.0]
    clock.advance(0.01)
    assert ran == [5.0, 15.0]


def test_pause_during_an_interval_run_lets_it_complete(clock: VirtualClock) -> None:
    gate = threading.Event()
    runs: list[float] = []

    def job() -> None:
        runs.append(clock.now())
        gate.wait(10)

    with Scheduler(max_workers=2, clock=clock) as s:
        h = s.post_task(job, interval=1)
        clock.advance(1)
        wait_until(lambda: runs)
        assert h.pause()
        assert h.running()  # the run in progress completes
        gate.set()
        wait_until(lambda: h.state is TaskState.PAUSED)
        clock.advance(3)
        assert runs == [1.0]
        assert s.stats().pending == 0
        h.resume()
        assert h.next_run == 4.0  # 2 and 3 passed: missed; 4 is now
        assert h.missed == 2
        clock.advance(0.005)
        assert h.wait_for_runs(2, 10)
        assert runs == [1.0, 4.005]
        h.cancel()


def test_pause_returns_false_for_a_running_or_finished_one_shot(sched: Scheduler) -> None:
    seen: list[bool] = []
    h = sched.post_task(lambda: seen.append(h.pause()))
    sched.run_due()
    assert seen == [False]
    assert not h.pause()
    with pytest.raises(RuntimeError, match="not paused"):
        h.resume()


def test_shutdown_cancels_paused_tasks(clock: VirtualClock, sched: Scheduler) -> None:
    one = sched.post_task(print, delay=1)
    every = sched.post_task(print, interval=1)
    one.pause()
    every.pause()
    assert sched.shutdown(timeout=5)
    assert one.cancelled() and every.cancelled()
    with pytest.raises(TaskCancelled, match="stopped by shutdown\\(\\) while paused"):
        one.result()
    assert not one.pause()


def test_cancel_a_paused_task(clock: VirtualClock, sched: Scheduler) -> None:
    h = sched.post_task(print, delay=1)
    h.pause()
    assert h.cancel()
    assert h.cancelled()
    with pytest.raises(RuntimeError, match="not paused"):
        h.resume()
    assert sched.tasks() == []


# -------------------------------------------------------------- inspection
def test_tasks_lists_live_tasks_in_posting_order(clock: VirtualClock, sched: Scheduler) -> None:
    later = sched.post_task(print, delay=5, name="later")
    queued = sched.post_task(print, name="queued")
    every = sched.post_task(print, interval=1, name="every")
    paused = sched.post_task(print, delay=9, name="paused")
    paused.pause()
    far = sched.post_task(print, delay=3 * 86_400, name="far")  # the overflow list
    done = sched.post_task(print, delay=0.5)
    clock.advance(0.5)  # runs `queued` and `done`
    assert sched.tasks() == [later, every, paused, far]
    assert sched.tasks(TaskState.PAUSED) == [paused]
    assert sched.tasks(TaskState.PENDING) == [later, every, far]
    assert done not in sched.tasks() and queued not in sched.tasks()
    with pytest.raises(TypeError, match=r"^state must be a TaskState or None, got 'PAUSED'$"):
        sched.tasks("PAUSED")  # type: ignore[arg-type]


def test_tasks_includes_running_and_retrying_ones() -> None:
    gate = threading.Event()
    clock = VirtualClock()
    with Scheduler(max_workers=2, clock=clock) as s:
        running = s.post_task(gate.wait, 10, name="running")
        wait_until(running.running)

        def flaky() -> None:
            raise ValueError("again")

        retrying = s.post_task(flaky, interval=10, retries=1, retry_on=ValueError)
        clock.advance(10)
        wait_until(lambda: s.stats().retried == 1)
        assert s.tasks() == [running, retrying]  # once each, though on the wheel twice
        assert s.tasks(TaskState.RUNNING) == [running, retrying]
        gate.set()
        retrying.cancel()


def test_tasks_on_a_hundred_thousand_timers(sched: Scheduler) -> None:
    handles = [sched.post_task(print, delay=1 + i * 1e-3) for i in range(100_000)]
    handles[5].cancel()
    live = sched.tasks()
    assert len(live) == 99_999 and live[0] is handles[0] and live[5] is handles[6]


def test_repr_shows_id_name_state_runs_and_next_run(clock: VirtualClock, sched: Scheduler) -> None:
    h = sched.post_task(print, interval=2, name="beat")
    clock.advance(2.5)
    assert repr(h) == "<TaskHandle #1 'beat' interval=2 state=PENDING runs=1 next_run=+1.500s>"
    h.pause()
    assert repr(h) == "<TaskHandle #1 'beat' interval=2 state=PAUSED runs=1>"
    h.cancel()


# ------------------------------------------------------------ start deadline
def test_one_shot_not_started_within_expires_is_cancelled(clock: VirtualClock) -> None:
    gate = threading.Event()
    failures: list[BaseException] = []
    kinds: list[str] = []
    ran: list[str] = []
    with Scheduler(max_workers=1, clock=clock) as s:
        s.subscribe(lambda e: kinds.append(e.kind), events=["expired", "cancelled"])
        busy = s.post_task(gate.wait, 10)
        wait_until(busy.running)
        late = s.post_task(
            ran.append, "late", expires=1, on_failure=lambda h, e: failures.append(e)
        )
        fine = s.post_task(ran.append, "fine", delay=1.5, expires=1)  # due at 1.5
        clock.advance(2)  # the one worker is still busy
        gate.set()
        with pytest.raises(TaskCancelled, match=r"'list.append' expired: not started within 1 s"):
            late.result(10)
        assert fine.wait_for_finished(10)
    assert ran == ["fine"]
    assert len(failures) == 1 and isinstance(failures[0], TaskCancelled)
    assert kinds == ["expired", "cancelled"]
    st = s.stats()
    assert (st.expired, st.cancelled, st.succeeded) == (1, 1, 2)


def test_expired_interval_run_is_skipped_and_the_task_lives_on(clock: VirtualClock) -> None:
    gate = threading.Event()
    runs: list[float] = []
    with Scheduler(max_workers=1, clock=clock) as s:
        h = s.post_task(lambda: runs.append(clock.now()), interval=1, expires=0.5)
        busy = s.post_task(gate.wait, 10, delay=0.9)
        clock.advance(0.9)
        wait_until(busy.running)
        clock.advance(0.7)  # run due at 1.0 waits for the worker until 1.6: expired
        gate.set()
        wait_until(lambda: s.stats().expired == 1)
        assert runs == [] and h.missed == 1 and h.state is TaskState.PENDING
        clock.advance(0.4)  # due at 2.0, started at once
        assert h.wait_for_runs(1, 10)
        assert runs == [2.0]
        h.cancel()


def test_expires_applies_to_each_attempt_from_its_own_due_time(
    clock: VirtualClock, sched: Scheduler
) -> None:
    attempts: list[float] = []

    def flaky() -> str:
        attempts.append(clock.now())
        if len(attempts) == 1:
            raise Retry(delay=10)
        return "ok"

    h = sched.post_task(flaky, delay=5, expires=0.5, retries=1)
    clock.advance(20)
    assert h.result() == "ok"
    assert attempts == [5.0, 15.0]


@pytest.mark.parametrize(
    ("value", "exc", "message"),
    [
        (-1, ValueError, r"^expires must be >= 0 seconds, got -1$"),
        (math.nan, ValueError, r"^expires must be a finite number of seconds, got nan$"),
        ("1", TypeError, r"^expires must be a number of seconds"),
    ],
)
def test_bad_expires_changes_nothing(
    sched: Scheduler, value: object, exc: type[Exception], message: str
) -> None:
    before = sched.stats()
    with pytest.raises(exc, match=message):
        sched.post_task(print, expires=value)
    assert sched.stats() == before


# ------------------------------------------------------------------ resize
def test_pond_resize_cases() -> None:
    gate = threading.Event()
    with Scheduler(max_workers=5) as s:
        handles = [s.post_task(gate.wait, 10) for _ in range(10)]
        wait_until(lambda: s.stats().running == 5)
        assert s.stats().queued == 5
        s.resize(10)  # the queued ones start at once
        wait_until(lambda: s.stats().running == 10)
        gate.set()
        for h in handles:
            assert h.wait_for_finished(10)
        s.resize(2)
        wait_until(lambda: s.stats().workers == 2)  # the idle surplus left
        gate.clear()
        seen: list[int] = []
        lock = threading.Lock()
        running = [0]

        def job() -> None:
            with lock:
                running[0] += 1
                seen.append(running[0])
            gate.wait(0.02)
            with lock:
                running[0] -= 1

        more = [s.post_task(job) for _ in range(10)]
        for h in more:
            assert h.wait_for_finished(10)
        assert max(seen) <= 2
        assert s.stats().workers <= 2


def test_shrinking_lets_running_tasks_finish(clock: VirtualClock) -> None:
    gate = threading.Event()
    with Scheduler(max_workers=4) as s:
        handles = [s.post_task(gate.wait, 10) for _ in range(4)]
        wait_until(lambda: s.stats().running == 4)
        s.resize(1)
        assert s.stats().running == 4  # nothing is interrupted
        queued = [s.post_task(lambda: None) for _ in range(3)]
        gate.set()
        for h in [*handles, *queued]:
            assert h.wait_for_finished(10)
        wait_until(lambda: s.stats().workers == 1)


def test_a_smaller_queue_size_keeps_queued_work() -> None:
    gate = threading.Event()
    with Scheduler(max_workers=1, queue_size=10, on_full="raise") as s:
        busy = s.post_task(gate.wait, 10)
        wait_until(busy.running)
        queued = [s.post_task(lambda: 1) for _ in range(6)]
        s.resize(queue_size=2)
        assert s.stats().queued == 6
        with pytest.raises(QueueFull):
            s.post_task(lambda: 1)
        gate.set()
        assert all(h.result(10) == 1 for h in queued)
        s.resize(queue_size=20)
        s.post_task(lambda: 1).result(10)


def test_manual_scheduler_resize_changes_the_queue_bound(sched: Scheduler) -> None:
    sched.resize(3, queue_size=1)
    sched.post_task(print)
    with pytest.raises(QueueFull):
        sched.post_task(print)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "message"),
    [
        ((0,), {}, ValueError, r"^max_workers must be >= 1, got 0$"),
        ((2.0,), {}, TypeError, r"^max_workers must be an int, got float 2.0$"),
        ((), {"queue_size": 0}, ValueError, r"^queue_size must be >= 1, got 0$"),
        ((1,), {}, ValueError, r"^max_workers must be >= min_workers \(2\), got 1$"),
    ],
)
def test_bad_resize_changes_nothing(
    args: tuple[object, ...], kwargs: dict[str, object], exc: type[Exception], message: str
) -> None:
    with Scheduler(max_workers=3, min_workers=2) as s:
        with pytest.raises(exc, match=message):
            s.resize(*args, **kwargs)  # type: ignore[arg-type]
        gate = threading.Event()
        hs = [s.post_task(gate.wait, 10) for _ in range(3)]
        wait_until(lambda: s.stats().running == 3)  # still three workers
        gate.set()
        assert all(h.wait_for_finished(10) for h in hs)


# ------------------------------------------------------ regressions (review)
def test_resume_after_cancelling_a_task_paused_mid_run_raises(clock: VirtualClock) -> None:
    gate = threading.Event()
    with Scheduler(max_workers=2, clock=clock) as s:
        h = s.post_task(gate.wait, 10, interval=1)
        clock.advance(1)
        wait_until(h.running)
        assert h.pause()  # pending: paused when the run ends
        assert h.cancel()
        assert not h.pause()  # cancelled: nothing to pause
        with pytest.raises(RuntimeError, match="not paused"):
            h.resume()
        gate.set()
        wait_until(h.done)
        assert h.cancelled()
        with pytest.raises(RuntimeError, match="not paused"):
            h.resume()
        assert s.stats().pending == 0
    assert s.shutdown(timeout=5)


@pytest.mark.parametrize("delay", [None, 1.0])
def test_pause_or_reschedule_from_a_posted_listener_changes_nothing(
    clock: VirtualClock, sched: Scheduler, delay: float | None
) -> None:
    answers: list[bool] = []
    sched.subscribe(
        lambda e: answers.extend([e.handle.pause(), e.handle.reschedule(5)]), events=["posted"]
    )
    ran: list[int] = []
    h = sched.post_task(ran.append, 1, delay=delay)
    clock.advance(2)
    assert answers == [False, False]
    assert ran == [1] and h.done()
    st = sched.stats()
    assert (st.pending, st.paused, st.succeeded, st.failed) == (0, 0, 1, 0)


def test_pausing_an_interval_task_whose_run_is_queued_counts_that_run_missed(
    clock: VirtualClock,
) -> None:
    gate = threading.Event()
    with Scheduler(max_workers=1, clock=clock) as s:
        busy = s.post_task(gate.wait, 10)
        wait_until(busy.running)
        runs: list[float] = []
        h = s.post_task(lambda: runs.append(clock.now()), interval=1)
        clock.advance(1)
        wait_until(lambda: s.stats().queued == 1)  # its run waits for the worker
        assert h.pause()
        assert h.missed == 1 and s.stats().missed == 1
        gate.set()
        assert busy.wait_for_finished(10)
        assert runs == [] and h.state is TaskState.PAUSED
        h.cancel()
