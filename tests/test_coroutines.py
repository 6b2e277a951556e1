"""Coroutine tasks on the threaded Scheduler: one event loop owned by the scheduler."""

from __future__ import annotations

import asyncio
import functools
import gc
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import wait_until

import wheeltask
from wheeltask import Scheduler, TaskCancelled, TaskState, TaskTimeout
from wheeltask.testing import VirtualClock, manual_scheduler

LOOPS = ["asyncio"] + (["uvloop"] if wheeltask._coro.uvloop_available() else [])


@pytest.fixture(params=LOOPS)
def sched(request: pytest.FixtureRequest) -> Iterator[Scheduler]:
    s = Scheduler(max_workers=2, loop=request.param, name="coro")
    yield s
    assert s.shutdown(timeout=5, cancel_pending=True)


def test_async_def_runs_on_the_schedulers_loop_in_its_own_thread(sched: Scheduler) -> None:
    seen: dict[str, Any] = {}

    async def job(x: int) -> int:
        seen["loop"] = type(asyncio.get_running_loop()).__module__
        seen["thread"] = threading.current_thread().name
        seen["task"] = wheeltask.current_task()
        await asyncio.sleep(0.01)
        return x * 2

    h = sched.post_task(job, 21)
    assert h.result(timeout=5) == 42
    assert h.state is TaskState.SUCCEEDED and h.runs == 1
    assert seen["thread"] == "coro-asyncio"
    assert seen["task"] is h
    want = "uvloop" if sched._options["loop"] == "uvloop" else "asyncio"
    assert seen["loop"].split(".")[0] == want
    s = sched.stats()
    assert (s.succeeded, s.failed, s.running, s.queued) == (1, 0, 0, 0)


def test_auto_picks_uvloop_when_installed() -> None:
    with Scheduler(max_workers=1) as s:

        async def which() -> str:
            return type(asyncio.get_running_loop()).__module__.split(".")[0]

        want = "uvloop" if wheeltask._coro.uvloop_available() else "asyncio"
        assert s.post_task(which).result(timeout=5) == want


def test_delays_intervals_partials_and_callables_returning_awaitables(sched: Scheduler) -> None:
    runs: list[str] = []

    async def note(tag: str) -> str:
        runs.append(tag)
        return tag

    later = sched.post_task(note, "later", delay=0.05)
    every = sched.post_task(note, "tick", interval=0.01)
    part = sched.post_task(functools.partial(note, "partial"))
    returned = sched.post_task(lambda: note("lambda"))
    assert later.result(timeout=5) == "later"
    assert part.result(timeout=5) == "partial" and returned.result(timeout=5) == "lambda"
    assert every.wait_for_runs(3, timeout=5)
    assert every.cancel()
    wait_until(every.done)
    assert every.state is TaskState.CANCELLED and every.runs >= 3
    assert every.result() == "tick"


def test_failures_and_retries(sched: Scheduler) -> None:
    attempts = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("try again")
        return "ok"

    async def broken() -> None:
        raise ValueError("no")

    h = sched.post_task(flaky, retries=3, retry_on=OSError, backoff=0.01)
    assert h.result(timeout=5) == "ok" and h.attempts == 3
    bad = sched.post_task(broken)
    assert bad.wait_for_finished(timeout=5)
    assert isinstance(bad.exception(), ValueError) and bad.state is TaskState.FAILED
    s = sched.stats()
    assert (s.succeeded, s.failed, s.retried) == (1, 1, 2)


def test_max_async_bounds_running_coroutines_and_the_rest_count_as_queued() -> None:
    with Scheduler(max_workers=1, max_async=3, loop="asyncio") as s:
        gate = threading.Event()
        running = []
        most = [0]

        async def job(i: int) -> int:
            running.append(i)
            most[0] = max(most[0], len(running))
            while not gate.is_set():
                await asyncio.sleep(0.001)
            running.remove(i)
            return i

        hs = [s.post_task(job, i) for i in range(10)]
        wait_until(lambda: len(running) == 3 and s.stats().queued == 7)
        st = s.stats()
        assert (st.running, st.queued, st.workers) == (3, 7, 1)  # one thread, three tasks
        assert sum(h.state is TaskState.PENDING for h in hs) == 7
        gate.set()
        assert [h.result(timeout=5) for h in hs] == list(range(10))
        assert most[0] == 3


@pytest.mark.parametrize("swallow", [False, True])
def test_cancel_stops_a_running_coroutine(sched: Scheduler, swallow: bool) -> None:
    started = threading.Event()
    finished = []

    async def forever() -> str:
        started.set()
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            finished.append("cancelled")
            if not swallow:
                raise
        return "swallowed"

    h = sched.post_task(forever)
    assert started.wait(5)
    assert h.state is TaskState.RUNNING
    assert h.cancel() is True
    with pytest.raises(TaskCancelled):
        h.wait_for_finished(timeout=5)
    assert h.state is TaskState.CANCELLED and h.cancelled() and h.runs == 0
    assert finished == ["cancelled"]  # the coroutine saw it: cut short, not left running
    s = sched.stats()
    assert (s.cancelled, s.succeeded, s.failed, s.running) == (1, 0, 0, 0)


def test_cancel_of_an_interval_coroutine_cuts_the_run_and_stops_the_task(
    sched: Scheduler,
) -> None:
    started = threading.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(100)

    h = sched.post_task(slow, interval=0.01)
    assert started.wait(5)
    assert h.cancel()
    wait_until(h.done)
    assert h.state is TaskState.CANCELLED and h.runs == 0
    assert sched.stats().failed == 0


def test_cancel_of_a_waiting_coroutine_closes_it_without_a_warning() -> None:
    s = Scheduler(max_workers=1, max_async=1, loop="asyncio")
    gate = threading.Event()
    try:

        async def hold() -> None:
            while not gate.is_set():
                await asyncio.sleep(0.001)

        async def never() -> None:
            raise AssertionError("must not run")

        first = s.post_task(hold)
        wait_until(first.running)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            waiting = s.post_task(never)
            wait_until(lambda: s.stats().queued == 1)
            assert waiting.cancel() is True
            # (at once, or as soon as the worker handing it to the loop lets go of it)
            wait_until(waiting.done)
            assert waiting.state is TaskState.CANCELLED
            queued_coro = s.post_task(never(), delay=10)  # a coroutine object
            assert queued_coro.cancel()
            del queued_coro
            gc.collect()
        assert not [w for w in caught if "never awaited" in str(w.message)]
    finally:
        gate.set()
        assert s.shutdown(timeout=5)
    assert first.state is TaskState.SUCCEEDED


def test_a_timeout_cancels_the_coroutine_at_its_deadline(sched: Scheduler) -> None:
    cut = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            cut.set()
            raise

    h = sched.post_task(slow, timeout=0.05)
    assert h.wait_for_finished(timeout=5)
    assert isinstance(h.exception(), TaskTimeout)
    assert cut.wait(5)
    s = sched.stats()
    assert (s.timed_out, s.failed) == (1, 1)


def test_a_coroutine_object_is_accepted_once_and_refused_where_it_would_run_again(
    sched: Scheduler,
) -> None:
    async def job(x: int = 1) -> int:
        return x

    assert sched.post_task(job(5)).result(timeout=5) == 5
    assert sched.post_task(job(6), delay=0.01).result(timeout=5) == 6
    for kwargs, args in (({"interval": 1}, ()), ({}, (1,)), ({"retries": 2}, ())):
        with pytest.raises(TypeError, match="coroutine"):
            sched.post_task(job(), *args, **kwargs)
    assert sched.stats().submitted == 2


def test_shutdown_waits_for_coroutines_and_stops_the_loop_thread() -> None:
    s = Scheduler(max_workers=1, loop="asyncio", name="closing")
    done = []

    async def job() -> None:
        await asyncio.sleep(0.05)
        done.append(1)

    s.post_task(job)
    s.post_task(job, delay=0.05)
    assert s.shutdown(timeout=5)
    assert done == [1, 1]
    assert not [t for t in threading.enumerate() if t.name == "closing-asyncio"]


def test_shutdown_that_times_out_cancels_running_coroutines() -> None:
    s = Scheduler(max_workers=1, loop="asyncio", name="deadline")
    started = threading.Event()

    async def stuck() -> None:
        started.set()
        await asyncio.sleep(100)

    h = s.post_task(stuck)
    assert started.wait(5)
    assert s.shutdown(timeout=0.1) is False
    wait_until(h.done)
    assert h.state is TaskState.CANCELLED
    wait_until(lambda: not [t for t in threading.enumerate() if t.name == "deadline-asyncio"])


def test_loop_option_is_checked() -> None:
    with pytest.raises(ValueError, match="loop"):
        Scheduler(loop="trio")
    with pytest.raises(ValueError, match="max_async"):
        Scheduler(max_async=0)
    with pytest.raises(TypeError, match="max_async"):
        Scheduler(max_async=1.5)  # type: ignore[arg-type]


def test_uvloop_without_uvloop_installed_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wheeltask._coro, "uvloop_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"pip install 'wheeltask\[uvloop\]'"):
        Scheduler(loop="uvloop")
    with pytest.raises(RuntimeError, match="uvloop"):
        wheeltask.configure(loop="uvloop")
    with Scheduler(max_workers=1) as s:  # "auto" falls back to asyncio

        async def which() -> str:
            return type(asyncio.get_running_loop()).__module__

        assert s.post_task(which).result(timeout=5).startswith("asyncio")


def test_manual_scheduler_runs_coroutines_inline_in_virtual_time() -> None:
    clock = VirtualClock()
    s = manual_scheduler(clock=clock)
    seen = []

    async def job(tag: str) -> str:
        seen.append((tag, clock.now()))
        await asyncio.sleep(0)
        return tag

    h = s.post_task(job, "a", delay=2)
    every = s.post_task(job, "i", interval=1)
    clock.advance(2)
    assert h.result() == "a" and every.runs == 2
    assert [t for t, _ in seen] == ["i", "a", "i"] or [t for t, _ in seen] == ["i", "i", "a"]
    assert all(now >= 1 for _, now in seen)
    s.shutdown(cancel_pending=True)


def test_cancel_during_a_retry_that_follows_a_slow_hook_cuts_the_new_attempt(
    sched: Scheduler,
) -> None:
    """The next attempt may be handed to the loop before the last one has left it."""
    calls = [0]
    second = threading.Event()

    async def flaky() -> str:
        calls[0] += 1
        if calls[0] == 1:
            raise wheeltask.Retry(delay=0)
        second.set()
        await asyncio.sleep(60)
        return "ok"

    def slow_hook(h: object, exc: BaseException, delay: float) -> None:
        time.sleep(0.05)  # the retry is due meanwhile

    h = sched.post_task(flaky, retries=2, on_retry=slow_hook)
    assert second.wait(5)
    assert h.cancel() is True
    with pytest.raises(TaskCancelled):
        h.wait_for_finished(timeout=5)
    assert h.state is TaskState.CANCELLED
    assert sched._runner is not None
    wait_until(lambda: not sched._runner.tasks and sched.stats().running == 0)  # type: ignore[union-attr]


def test_shutdown_from_inside_a_coroutine_task_does_not_wait_for_the_loop() -> None:
    s = Scheduler(max_workers=1, loop="asyncio", name="inside")
    result: list[bool] = []

    async def stopper() -> None:
        result.append(s.shutdown(timeout=5))

    h = s.post_task(stopper)
    assert h.wait_for_finished(timeout=5)
    assert result == [False]  # it could not wait for itself: not everything was done
    wait_until(lambda: not [t for t in threading.enumerate() if t.name == "inside-asyncio"])


def test_a_uvloop_that_cannot_be_imported_counts_as_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    assert not wheeltask._coro.uvloop_available()
    with pytest.raises(RuntimeError, match="uvloop"):
        Scheduler(loop="uvloop")


def test_tasks_lists_coroutine_tasks_and_cancel_pending_cancels_those_waiting() -> None:
    s = Scheduler(max_workers=1, max_async=1, loop="asyncio", name="listing")
    gate = threading.Event()

    async def hold() -> None:
        while not gate.is_set():
            await asyncio.sleep(0.001)

    try:
        running = s.post_task(hold)
        waiting = s.post_task(hold)
        # (the state follows the counts by a moment: read it after them)
        wait_until(lambda: (s.stats().running, s.stats().queued) == (1, 1) and running.running())
        assert s.tasks() == [running, waiting]
        assert s.tasks(TaskState.RUNNING) == [running]
        assert s.shutdown(wait=False, cancel_pending=True) is False
        assert waiting.state is TaskState.CANCELLED
        assert running.state is TaskState.RUNNING
    finally:
        gate.set()
    assert running.wait_for_finished(timeout=5)
    wait_until(lambda: not [t for t in threading.enumerate() if t.name == "listing-asyncio"])


def test_a_cancel_during_a_slow_backoff_ends_the_task_without_a_retry(
    sched: Scheduler,
) -> None:
    runs = [0]
    in_backoff = threading.Event()

    def backoff(n: int) -> float:
        in_backoff.set()
        time.sleep(0.2)  # the retry is being decided while cancel() comes
        return 0.05

    async def flaky() -> None:
        runs[0] += 1
        raise ValueError("x")

    h = sched.post_task(flaky, retries=3, retry_on=ValueError, backoff=backoff)
    assert in_backoff.wait(5)
    assert h.cancel() is True
    with pytest.raises(TaskCancelled):
        h.wait_for_finished(timeout=5)
    time.sleep(0.1)  # a retry, had one been armed, would be due by now
    assert runs[0] == 1 and h.state is TaskState.CANCELLED
    st = sched.stats()
    assert (st.cancelled, st.failed, st.retried, st.pending) == (1, 0, 0, 0)


def test_a_returned_coroutine_waiting_for_a_place_counts_as_queued_and_is_closed_on_cancel() -> (
    None
):
    s = Scheduler(max_workers=1, max_async=1, loop="asyncio")
    gate = threading.Event()

    async def hold() -> None:
        while not gate.is_set():
            await asyncio.sleep(0.001)

    async def g() -> str:
        return "g"

    try:
        first = s.post_task(hold)
        wait_until(first.running)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            h = s.post_task(lambda: g(), timeout=5)  # noqa: PLW0108 - not async def: on a worker
            wait_until(lambda: s.stats().queued == 1)
            assert h.cancel() is True
            wait_until(h.done)
            gc.collect()
        assert not [w for w in caught if "never awaited" in str(w.message)]
        assert h.state is TaskState.CANCELLED and s.stats().queued == 0
    finally:
        gate.set()
        assert s.shutdown(timeout=5)
