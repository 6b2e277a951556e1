"""Retries requested by the task (Retry) or by failure type (retry_on), with backoff."""

from __future__ import annotations

import itertools
import threading

import pytest

from wheeltask import Retry, Scheduler, TaskCancelled, TaskState
from wheeltask.testing import VirtualClock, manual_scheduler


def recorder(clock: VirtualClock, outcomes: list[object]) -> tuple[list[float], object]:
    """A callback that plays `outcomes` in turn (raising exceptions), noting times."""
    times: list[float] = []

    def cb() -> object:
        times.append(clock.now())
        outcome = outcomes[min(len(times), len(outcomes)) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return times, cb


def test_tasq_rule_retry_every_time_makes_retries_plus_one_attempts(
    sched: Scheduler, clock: VirtualClock
) -> None:
    times, cb = recorder(clock, [Retry()])
    h = sched.post_task(cb, retries=2, backoff=0.5)
    clock.advance(10)
    assert times == [0.0, 0.5, 1.0]
    assert h.attempts == 3 and h.state is TaskState.FAILED and h.runs == 1
    with pytest.raises(Retry, match=r"^retry requested$"):
        h.result()
    s = sched.stats()
    assert (s.retried, s.failed, s.succeeded) == (2, 1, 0)


def test_another_error_fails_at_once_without_retry_on(
    sched: Scheduler, clock: VirtualClock
) -> None:
    times, cb = recorder(clock, [KeyError("x")])
    h = sched.post_task(cb, retries=5)
    clock.advance(10)
    assert len(times) == 1 and h.attempts == 1
    assert isinstance(h.exception(), KeyError)
    assert sched.stats().retried == 0


def test_go_conveyor_faulty_workers(sched: Scheduler, clock: VirtualClock) -> None:
    boom = RuntimeError("panic")
    cases = {
        "fails once": [boom, "ok"],
        "retry twice": [Retry(), Retry(), "ok"],
        "fine": ["ok"],
        "always fails": [boom],
    }
    handles = {}
    for name, outcomes in cases.items():
        _, cb = recorder(clock, outcomes)
        handles[name] = sched.post_task(cb, retries=3, retry_on=Exception, backoff=0.1)
    clock.advance(5)
    assert {n: h.attempts for n, h in handles.items()} == {
        "fails once": 2,
        "retry twice": 3,
        "fine": 1,
        "always fails": 4,
    }
    assert handles["always fails"].exception() is boom
    s = sched.stats()
    assert (s.succeeded, s.failed, s.retried) == (3, 1, 1 + 2 + 3)


def test_exact_attempt_times(sched: Scheduler, clock: VirtualClock) -> None:
    t1, cb1 = recorder(clock, [Retry(), Retry(), 1])
    sched.post_task(cb1, retries=2, backoff=lambda attempt: attempt * 1.0)
    t2, cb2 = recorder(clock, [Retry(delay=0.25), Retry(delay=2), 2])
    sched.post_task(cb2, delay=1, retries=2, backoff=100)  # Retry(delay) wins
    clock.advance(10)
    assert t1 == [0.0, 1.0, 3.0]  # waits of 1 s then 2 s
    assert t2 == [1.0, 1.25, 3.25]


def test_default_backoff_is_exponential_with_jitter(sched: Scheduler, clock: VirtualClock) -> None:
    times, cb = recorder(clock, [Retry()])
    sched.post_task(cb, retries=4)
    clock.advance(60)
    waits = [b - a for a, b in itertools.pairwise(times)]
    assert len(waits) == 4
    for n, wait in enumerate(waits):
        full = 0.1 * 2**n
        assert 0.5 * full - 0.005 <= wait <= full + 0.005, (n, wait)


def test_cancel_while_waiting_for_a_retry_stops_the_attempts(
    sched: Scheduler, clock: VirtualClock
) -> None:
    times, cb = recorder(clock, [Retry()])
    h = sched.post_task(cb, retries=5, backoff=1)
    clock.advance(1.5)
    assert len(times) == 2 and h.state is TaskState.PENDING
    assert h.cancel() is True
    clock.advance(10)
    assert len(times) == 2 and h.cancelled()
    with pytest.raises(TaskCancelled):
        h.result()


def test_interval_retries_apply_within_one_run(sched: Scheduler, clock: VirtualClock) -> None:
    times: list[float] = []

    def flaky() -> str:
        times.append(clock.now())
        if len(times) % 2:  # the first attempt of every run fails
            raise ValueError("flaky")
        return "ok"

    h = sched.post_task(flaky, interval=1, retries=1, retry_on=ValueError, backoff=0.1)
    clock.advance(3.5)
    assert [round(t, 3) for t in times] == [1.0, 1.1, 2.0, 2.1, 3.0, 3.1]
    assert h.runs == 3 and h.missed == 0 and h.result() == "ok"
    assert sched.stats().retried == 3 and sched.stats().failed == 0
    h.cancel()


def test_interval_run_out_of_retries_fails_that_run_only(
    sched: Scheduler, clock: VirtualClock
) -> None:
    times, cb = recorder(clock, [Retry()])
    h = sched.post_task(cb, interval=1, retries=1, backoff=0.2)
    clock.advance(2.5)
    assert [round(t, 3) for t in times] == [1.0, 1.2, 2.0, 2.2]
    assert h.runs == 2 and isinstance(h.exception(), Retry)
    assert sched.stats().failed == 2 and h.state is TaskState.PENDING
    h.cancel()


def test_cancel_an_interval_waiting_for_its_retry(sched: Scheduler, clock: VirtualClock) -> None:
    times, cb = recorder(clock, [Retry()])
    h = sched.post_task(cb, interval=1, retries=3, backoff=0.5)
    clock.advance(1.2)
    assert times == [1.0]
    assert h.cancel() is True
    assert h.cancelled() and h.done()  # at once: no attempt was under way
    clock.advance(5)
    assert times == [1.0]


def test_shutdown_waits_for_a_pending_retry_and_cancels_it_on_timeout() -> None:
    clock = VirtualClock()
    s = manual_scheduler(clock=clock)
    times, cb = recorder(clock, [Retry(), "done"])
    h = s.post_task(cb, retries=1, backoff=2)
    clock.advance(0)
    assert s.shutdown() is True and h.result() == "done" and times == [0.0, 2.0]
    s2 = manual_scheduler(clock=clock)
    _, cb2 = recorder(clock, [Retry(), "done"])
    h2 = s2.post_task(cb2, retries=1, backoff=100)
    clock.advance(0)
    assert s2.shutdown(timeout=1) is False and h2.cancelled()


def test_retries_with_real_threads() -> None:
    attempts: list[int] = []
    lock = threading.Lock()

    def cb() -> int:
        with lock:
            attempts.append(1)
            n = len(attempts)
        if n < 3:
            raise Retry(delay=0.01)
        return n

    with Scheduler() as s:
        h = s.post_task(cb, retries=5)
        assert h.result(timeout=5) == 3
        assert h.attempts == 3 and s.stats().retried == 2


def test_no_new_attempt_starts_once_shutdown_began() -> None:
    started = threading.Event()
    gate = threading.Event()

    def attempt() -> None:
        started.set()
        gate.wait(5)
        raise Retry(delay=0.01)

    s = Scheduler()
    h = s.post_task(attempt, retries=3)
    assert started.wait(5)
    threading.Timer(0.05, gate.set).start()
    assert s.shutdown(timeout=5) is True  # the attempt under way ends; no new one
    assert h.state is TaskState.FAILED and h.attempts == 1


def test_a_backoff_that_raises_fails_the_task(sched: Scheduler, clock: VirtualClock) -> None:
    def backoff(attempt: int) -> float:
        raise RuntimeError("backoff bug")

    h = sched.post_task(lambda: (_ for _ in ()).throw(Retry()), retries=2, backoff=backoff)
    clock.advance(0)
    assert h.state is TaskState.FAILED and isinstance(h.exception(), Retry)
    assert sched.stats().running == 0


def test_an_interval_waiting_to_retry_is_cancelled_once_at_exit(
    sched: Scheduler, clock: VirtualClock
) -> None:
    h = sched.post_task(lambda: (_ for _ in ()).throw(Retry()), interval=0.5, retries=1, backoff=2)
    clock.advance(0.5)  # first attempt failed; its retry (at 2.5) is after the next grid point
    assert sched.stats().retried == 1
    not_run, running = sched._abandon("not run: the interpreter exited")
    assert (not_run, running) == (1, 0) and h.cancelled()
    assert sched.stats().cancelled == 1


def test_scheduler_task_defaults_apply_unless_a_post_overrides_them(clock: VirtualClock) -> None:
    s = manual_scheduler(
        clock=clock,
        task_defaults={"retries": 2, "retry_on": ValueError, "backoff": 1, "timeout": 9},
    )
    calls: list[float] = []

    def flaky() -> str:
        calls.append(clock.now())
        if len(calls) < 3:
            raise ValueError("not yet")
        return "ok"

    h = s.post_task(flaky)
    clock.run_until_idle()
    assert h.result() == "ok"
    assert calls == [0.0, 1.0, 2.0]
    assert h.timeout == 9.0
    once = s.post_task(lambda: 1 / 0, retries=0, timeout=None)
    clock.run_until_idle()
    assert once.attempts == 1 and once.timeout is None
    assert isinstance(once.exception(), ZeroDivisionError)
    keyed = s.post_task(print, key="k")
    assert s.post_task(print, key="k") is keyed


@pytest.mark.parametrize(
    ("defaults", "exc", "message"),
    [
        ({"key": "k"}, ValueError, r"^task_defaults takes backoff, expires, .*; got key$"),
        ({"retries": -1}, ValueError, r"^retries must be >= 0, got -1$"),
        ({"timeout": 0}, ValueError, r"^timeout must be > 0 seconds or None, got 0$"),
        ([("retries", 1)], TypeError, r"^task_defaults must be a mapping of task options"),
    ],
)
def test_bad_task_defaults(defaults: object, exc: type[Exception], message: str) -> None:
    with pytest.raises(exc, match=message):
        Scheduler(task_defaults=defaults)  # type: ignore[arg-type]
