"""Scheduler.subscribe: events for posted, started, ... timed out."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from freezegun import freeze_time
from helpers import wait_until

from wheeltask import (
    Event,
    QueueFull,
    Retry,
    Scheduler,
    SchedulerShutdown,
    TaskCancelled,
    TaskTimeout,
)
from wheeltask.testing import FrozenClock, VirtualClock, manual_scheduler


def _kinds(events: list[Event], h: object = None) -> list[str]:
    return [e.kind for e in events if h is None or e.handle is h]


def test_a_task_life_in_events(clock: VirtualClock, sched: Scheduler) -> None:
    events: list[Event] = []
    sched.subscribe(events.append)

    ok = sched.post_task(lambda: 7, delay=1)
    bad = sched.post_task(lambda: 1 / 0, delay=1, name="bad")
    flaky_calls: list[int] = []

    def flaky() -> str:
        flaky_calls.append(1)
        if len(flaky_calls) < 2:
            raise Retry(delay=2)
        return "third time"

    retried = sched.post_task(flaky, delay=1, retries=1)
    gone = sched.post_task(print, delay=5)
    assert gone.cancel()
    clock.advance(1)
    clock.advance(2)

    assert _kinds(events, ok) == ["posted", "started", "succeeded"]
    assert _kinds(events, bad) == ["posted", "started", "failed"]
    assert _kinds(events, retried) == ["posted", "started", "retried", "started", "succeeded"]
    assert _kinds(events, gone) == ["posted", "cancelled"]
    by = {(e.handle, e.kind): e for e in events}
    assert by[ok, "succeeded"].result == 7
    assert by[ok, "succeeded"].time == 1.0
    assert isinstance(by[bad, "failed"].exception, ZeroDivisionError)
    assert isinstance(by[retried, "retried"].exception, Retry)
    assert by[retried, "retried"].delay == 2.0
    assert by[retried, "succeeded"].time == 3.0
    assert by[gone, "cancelled"].reason == "cancelled by cancel()"


def test_only_the_kinds_asked_for_and_unsubscribe(sched: Scheduler) -> None:
    failed: list[Event] = []
    everything: list[Event] = []
    stop = sched.subscribe(failed.append, events=["failed"])
    sched.subscribe(everything.append, events="posted")
    sched.post_task(lambda: 1 / 0)
    sched.post_task(print)
    sched.run_due()
    assert _kinds(failed) == ["failed"]
    assert _kinds(everything) == ["posted", "posted"]
    stop()
    stop()  # twice is fine
    sched.post_task(lambda: 1 / 0)
    sched.run_due()
    assert len(failed) == 1


def test_a_raising_listener_is_logged_and_harms_nothing(
    sched: Scheduler, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    sched.subscribe(broken)
    sched.subscribe(lambda e: seen.append(e.kind))
    with caplog.at_level(logging.ERROR, logger="wheeltask"):
        h = sched.post_task(lambda: "fine")
        sched.run_due()
    assert h.result() == "fine"
    assert seen == ["posted", "started", "succeeded"]
    logged = [r.getMessage() for r in caplog.records if r.exc_info]
    assert len(logged) == 3
    assert all(m.startswith("event listener <function") for m in logged)


def test_rejected_posts_are_reported(sched: Scheduler) -> None:
    events: list[Event] = []
    s = manual_scheduler(queue_size=1, on_full="raise")
    s.subscribe(events.append, events=["rejected"])
    s.post_task(print)
    with pytest.raises(QueueFull):
        s.post_task(print, name="one too many")
    s.shutdown(wait=False, cancel_pending=True)
    with pytest.raises(SchedulerShutdown):
        s.post_task(print, delay=1, name="too late")
    assert [e.handle.name for e in events] == ["one too many", "too late"]
    assert isinstance(events[0].exception, QueueFull)
    assert isinstance(events[1].exception, SchedulerShutdown)
    assert events[1].handle.cancelled()
    assert events[1].reason is not None and "shut down" in events[1].reason
    assert s.stats().submitted == 1


def test_shutdown_cancellations_are_reported(clock: VirtualClock) -> None:
    s = manual_scheduler(clock=clock)
    events: list[Event] = []
    s.subscribe(events.append, events=["cancelled"])
    a = s.post_task(print, delay=10)
    b = s.post_task(print, interval=1)
    s.shutdown(wait=False, cancel_pending=True)
    assert {(e.handle, e.reason) for e in events} == {
        (a, "cancelled by shutdown(cancel_pending=True)"),
        (b, "stopped by shutdown()"),
    }


def test_timed_out_event_at_return_on_a_manual_scheduler() -> None:
    with freeze_time("2026-01-01") as frozen:
        s = manual_scheduler(clock=FrozenClock())
        events: list[Event] = []
        s.subscribe(events.append, events=["timed_out", "failed", "succeeded"])
        h = s.post_task(lambda: frozen.tick(2), timeout=1, on_failure=lambda h, e: None)
        s.run_due()
    assert _kinds(events) == ["timed_out", "failed"]
    assert all(isinstance(e.exception, TaskTimeout) and e.handle is h for e in events)


@pytest.fixture
def threaded(clock: VirtualClock) -> Iterator[Scheduler]:
    s = Scheduler(max_workers=2, clock=clock)
    yield s
    s.shutdown(wait=True, timeout=10)


def test_timer_thread_events_are_delivered_by_a_worker(
    clock: VirtualClock, threaded: Scheduler
) -> None:
    events: list[tuple[str, str, int]] = []
    threaded.subscribe(
        lambda e: events.append((e.kind, threading.current_thread().name, e.count)),
        events=["timed_out", "missed"],
    )
    gate = threading.Event()
    runs: list[float] = []

    def job() -> None:
        runs.append(clock.now())
        gate.wait(10)

    h = threaded.post_task(job, interval=1, timeout=1.5)
    clock.advance(1)
    wait_until(lambda: runs)
    marker = threading.Event()
    threaded.post_task(marker.set, delay=1)
    clock.advance(1)  # the firing at 2 finds the run still going: missed
    assert marker.wait(10)
    clock.advance(0.5)  # deadline 2.5
    wait_until(lambda: len(events) == 2)
    assert [k for k, _, _ in events] == ["missed", "timed_out"]
    assert all("worker" in thread for _, thread, _ in events)
    gate.set()
    wait_until(lambda: not h.running())
    h.cancel()


def test_bad_subscribe_arguments_change_nothing(sched: Scheduler) -> None:
    with pytest.raises(TypeError, match=r"^fn must be callable, got 3$"):
        sched.subscribe(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^events must name some of posted, .*unknown: 'done'"):
        sched.subscribe(print, events=["posted", "done"])
    with pytest.raises(ValueError, match=r"^events must name some of"):
        sched.subscribe(print, events=[])
    with pytest.raises(TypeError, match=r"^events must be an iterable of event names or None"):
        sched.subscribe(print, events=3)  # type: ignore[arg-type]
    h = sched.post_task(print)
    sched.run_due()
    assert h.done()  # no listener was left behind: nothing printed an event
    assert not sched._observed


# ------------------------------------------------------ regressions (review)
def test_a_posted_handle_refused_afterwards_ends_cancelled(sched: Scheduler) -> None:
    seen: list[Event] = []
    s = manual_scheduler(queue_size=1, on_full="raise", max_pending=1)
    s.subscribe(seen.append, events=["posted"])  # no "rejected" listener
    s.post_task(print)
    s.post_task(print, delay=5)
    with pytest.raises(QueueFull):
        s.post_task(print)
    with pytest.raises(QueueFull):
        s.post_task(print, delay=5)
    s.shutdown(wait=False, cancel_pending=True)
    with pytest.raises(SchedulerShutdown):
        s.post_task(print)
    refused = [e.handle for e in seen[2:]]
    assert len(refused) == 3
    for h in refused:
        assert h.cancelled()
        with pytest.raises(TaskCancelled, match="rejected"):
            h.wait_for_finished()
    assert s.stats().submitted == 2


@pytest.mark.parametrize("delay", [None, 1.0])
def test_cancel_from_a_posted_listener_stops_the_task(
    clock: VirtualClock, sched: Scheduler, delay: float | None
) -> None:
    results: list[bool] = []
    sched.subscribe(lambda e: results.append(e.handle.cancel()), events=["posted"])
    ran: list[int] = []
    h = sched.post_task(ran.append, 1, delay=delay)
    clock.advance(2)
    assert results == [True]
    assert h.cancelled() and ran == []
    st = sched.stats()
    assert (st.submitted, st.cancelled, st.failed, st.succeeded, st.pending) == (1, 1, 0, 0, 0)
