"""Per-task hooks: on_success, on_failure (after the last attempt), on_retry."""

from __future__ import annotations

import logging
import threading

import pytest

from wheeltask import Retry, Scheduler, TaskHandle, TaskState, current_task
from wheeltask.testing import VirtualClock


def test_on_success_sees_the_final_state_and_result(sched: Scheduler, clock: VirtualClock) -> None:
    seen: list[tuple[TaskState, object]] = []
    sched.post_task(lambda: 42, delay=1, on_success=lambda h, r: seen.append((h.state, r)))
    clock.advance(1)
    assert seen == [(TaskState.SUCCEEDED, 42)]


def test_on_failure_once_after_the_last_attempt_and_no_log(
    sched: Scheduler, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[BaseException] = []
    retries: list[tuple[int, str, float]] = []

    def always() -> None:
        raise ValueError("nope")

    with caplog.at_level(logging.ERROR, logger="wheeltask"):
        h = sched.post_task(
            always,
            retries=2,
            retry_on=ValueError,
            backoff=0.5,
            on_failure=lambda hh, exc: failures.append(exc),
            on_retry=lambda hh, exc, delay: retries.append((hh.attempts, str(exc), delay)),
        )
        clock.advance(5)
    assert [str(e) for e in failures] == ["nope"]
    assert retries == [(1, "nope", 0.5), (2, "nope", 0.5)]
    assert h.state is TaskState.FAILED
    assert "nope" not in caplog.text  # the failure hook handled it: not logged


def test_a_raising_hook_is_logged_and_harms_nothing(
    sched: Scheduler, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    def bad(_: TaskHandle, __: object) -> None:
        raise RuntimeError("hook bug")

    with caplog.at_level(logging.ERROR, logger="wheeltask"):
        h = sched.post_task(lambda: 1, on_success=bad)
        after = sched.post_task(lambda: 2)
        clock.advance(0)
    assert h.result() == 1 and after.result() == 2
    assert "hook bug" in caplog.text


def test_interval_hooks_per_run(sched: Scheduler, clock: VirtualClock) -> None:
    outcomes: list[str] = []
    n = [0]

    def sometimes() -> int:
        n[0] += 1
        if n[0] == 2:
            raise Retry()
        return n[0]

    h = sched.post_task(
        sometimes,
        interval=1,
        on_success=lambda hh, r: outcomes.append(f"ok {r}"),
        on_failure=lambda hh, exc: outcomes.append(f"failed {type(exc).__name__}"),
    )
    clock.advance(3)
    assert outcomes == ["ok 1", "failed Retry", "ok 3"]
    h.cancel()


def test_hooks_with_real_threads() -> None:
    got: list[object] = []
    with Scheduler() as s:
        s.post_task(lambda: "x", delay=0.01, on_success=lambda h, r: got.append(r))
    assert got == ["x"]


def test_current_task_is_the_running_handle(sched: Scheduler, clock: VirtualClock) -> None:
    assert current_task() is None
    seen: list[object] = []
    h = sched.post_task(lambda: seen.append(current_task()), delay=1)
    sched.post_task(lambda: None, on_success=lambda hh, r: seen.append(current_task() is hh))
    clock.advance(1)
    assert seen == [True, h]  # the immediate task ran first, at the start of the advance
    assert current_task() is None


def test_current_task_on_worker_and_caller_threads() -> None:
    gate = threading.Event()
    with Scheduler(max_workers=1, queue_size=1, on_full="caller_runs") as s:
        on_worker = s.post_task(current_task)
        assert on_worker.result(timeout=5) is on_worker
        s.post_task(gate.wait, 5)
        s.post_task(print, "fills the queue")
        inner: list[object] = []

        def outer() -> object:
            inner.append(s.post_task(current_task))  # runs here too: caller_runs
            return current_task()

        h = s.post_task(outer)  # runs on this thread
        gate.set()
        assert h.result() is h  # restored after the nested run
        nested = inner[0]
        assert isinstance(nested, TaskHandle) and nested.result() is nested
    assert current_task() is None
