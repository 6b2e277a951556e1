"""wheeltask.aio: AsyncScheduler on asyncio and on uvloop (every test runs on both)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import threading
import time
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import wheeltask
from wheeltask import Retry, TaskCancelled, TaskState, TaskTimeout
from wheeltask._coro import new_event_loop, uvloop_available
from wheeltask.aio import AsyncScheduler, AsyncTaskHandle
from wheeltask.testing import VirtualClock

LOOPS = ["asyncio"] + (["uvloop"] if uvloop_available() else [])
Run = Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any]


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Run:
    """Run a coroutine function to its end on a new loop of the kind under test."""

    def runner(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        loop = new_event_loop(request.param)
        try:
            return loop.run_until_complete(asyncio.wait_for(main(), 30))
        finally:
            loop.close()

    runner.kind = request.param  # type: ignore[attr-defined]
    return runner


def test_coroutines_and_plain_callables_with_delays_and_awaitable_handles(run: Run) -> None:
    async def main() -> None:
        threads: dict[str, str] = {}

        async def double(x: int) -> int:
            threads["coro"] = threading.current_thread().name
            await asyncio.sleep(0)
            return 2 * x

        def plain() -> str:
            threads["plain"] = threading.current_thread().name
            return "plain"

        def on_loop() -> str:
            threads["inline"] = threading.current_thread().name
            return "inline"

        async with AsyncScheduler() as s:
            t0 = time.monotonic()
            h = s.post_task(double, 21, delay=0.05)
            assert isinstance(h, AsyncTaskHandle) and h.state is TaskState.PENDING
            assert await h == 42
            assert time.monotonic() - t0 >= 0.05  # never early
            assert await s.post_task(plain) == "plain"
            assert await s.post_task(on_loop, inline=True) == "inline"
            me = threading.current_thread().name
            assert threads["coro"] == me and threads["inline"] == me
            assert threads["plain"] != me  # the loop's default executor
            st = s.stats()
            assert (st.submitted, st.succeeded, st.failed, st.pending, st.queued) == (3, 3, 0, 0, 0)

    run(main)


def test_an_inline_scheduler_runs_plain_callbacks_on_the_loop(run: Run) -> None:
    async def main() -> None:
        me = threading.current_thread().name
        async with AsyncScheduler(inline=True) as s:
            assert await s.post_task(lambda: threading.current_thread().name) == me
            away = s.post_task(lambda: threading.current_thread().name, inline=False)
            assert await away != me

    run(main)


def test_result_and_exception_never_block(run: Run) -> None:
    async def main() -> None:
        async with AsyncScheduler() as s:

            async def boom() -> None:
                raise ValueError("no")

            h = s.post_task(boom, delay=0.01)
            with pytest.raises(asyncio.InvalidStateError):
                h.result()
            with pytest.raises(asyncio.InvalidStateError):
                h.exception()
            assert await h.wait_for_finished(timeout=5) is True
            assert isinstance(h.exception(), ValueError)
            with pytest.raises(ValueError, match="no"):
                await h
            assert h.state is TaskState.FAILED

    run(main)


def test_waits_are_coroutines_with_real_timeouts(run: Run) -> None:
    async def main() -> None:
        async with AsyncScheduler() as s:
            far = s.post_task(lambda: None, delay=60)
            t0 = time.monotonic()
            assert await far.wait_for_finished(timeout=0.05) is False
            assert 0.04 <= time.monotonic() - t0 < 2
            ticks = s.post_task(lambda: None, interval=0.01, inline=True)
            assert await ticks.wait_for_runs(3, timeout=5) is True
            assert ticks.runs >= 3
            assert ticks.cancel() and far.cancel()
            with pytest.raises(TaskCancelled):
                await far.wait_for_finished()
            with pytest.raises(TaskCancelled):
                await far

    run(main)


def test_options_retries_timeouts_and_hooks(run: Run) -> None:
    async def main() -> None:
        async with AsyncScheduler() as s:
            tries: list[int] = []
            succeeded: list[object] = []

            async def flaky() -> str:
                tries.append(1)
                if len(tries) < 3:
                    raise Retry(delay=0.01)
                return "ok"

            h = s.post_task(
                flaky, retries=5, name="flaky", on_success=lambda h, v: succeeded.append(v)
            )
            assert await h == "ok" and h.attempts == 3 and h.name == "flaky"
            assert succeeded == ["ok"]
            cut = asyncio.Event()

            async def slow() -> None:
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    cut.set()
                    raise

            t = s.post_task(slow, timeout=0.05)
            with pytest.raises(TaskTimeout):
                await t
            await asyncio.wait_for(cut.wait(), 5)  # the coroutine itself was cancelled
            st = s.stats()
            assert (st.retried, st.timed_out, st.failed, st.succeeded) == (2, 1, 1, 1)

    run(main)


def test_cancel_of_a_running_coroutine(run: Run) -> None:
    async def main() -> None:
        async with AsyncScheduler() as s:
            started = asyncio.Event()

            async def stubborn() -> str:
                started.set()
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    return "swallowed"  # the handle still ends CANCELLED
                return "slept"

            h = s.post_task(stubborn)
            await started.wait()
            assert h.running() and h.cancel() is True
            with pytest.raises(TaskCancelled):
                await h
            assert h.state is TaskState.CANCELLED and h.runs == 0
            st = s.stats()
            assert (st.cancelled, st.succeeded, st.failed, st.running) == (1, 0, 0, 0)

    run(main)


def test_max_async_bounds_running_coroutines(run: Run) -> None:
    async def main() -> None:
        async with AsyncScheduler(max_async=2) as s:
            gate = asyncio.Event()
            now_running = [0]
            most = [0]

            async def job() -> None:
                now_running[0] += 1
                most[0] = max(most[0], now_running[0])
                await gate.wait()
                now_running[0] -= 1

            hs = [s.post_task(job) for _ in range(6)]
            for _ in range(20):
                await asyncio.sleep(0)
            st = s.stats()
            assert (st.running, st.queued) == (2, 4)
            gate.set()
            for h in hs:
                await h
            assert most[0] == 2

    run(main)


def test_one_loop_timer_at_a_time_and_none_while_idle(run: Run) -> None:
    if run.kind != "asyncio":  # type: ignore[attr-defined]
        pytest.skip("counts asyncio's own timer heap")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with AsyncScheduler() as s:
            before = len(loop._scheduled)  # type: ignore[attr-defined]
            hs = [s.post_task(lambda: None, delay=0.5 + i / 1000, inline=True) for i in range(500)]
            armed = [t for t in loop._scheduled if not t.cancelled()]  # type: ignore[attr-defined]
            assert len(armed) == before + 1
            for h in hs:
                h.cancel()
            sooner = s.post_task(lambda: "soon", delay=0.01, inline=True)
            assert await sooner == "soon"
            core = s._core
        # After shutdown nothing of ours is armed.
        assert core is not None
        ours = [
            t
            for t in loop._scheduled  # type: ignore[attr-defined]
            if not t.cancelled() and getattr(t._callback, "__self__", None) is core
        ]
        assert not ours

    run(main)


def test_post_task_from_another_thread_is_refused_and_threadsafe_works(run: Run) -> None:
    async def main() -> None:
        async with AsyncScheduler() as s:
            errors: list[BaseException] = []
            futures: list[concurrent.futures.Future[AsyncTaskHandle]] = []

            def other_thread() -> None:
                try:
                    s.post_task(lambda: None)
                except RuntimeError as exc:
                    errors.append(exc)
                futures.append(s.post_task_threadsafe(lambda x: x + 1, 41, delay=0.01))

            t = threading.Thread(target=other_thread)
            t.start()
            await asyncio.get_running_loop().run_in_executor(None, t.join)
            assert "post_task_threadsafe()" in str(errors[0])
            h = await asyncio.wrap_future(futures[0])
            assert isinstance(h, AsyncTaskHandle) and await h == 42

    run(main)


def test_shutdown_semantics(run: Run) -> None:
    async def main() -> None:
        s = AsyncScheduler()
        ran: list[str] = []

        async def later(tag: str) -> None:
            ran.append(tag)

        s.post_task(later, "a", delay=0.05)
        every = s.post_task(later, "tick", interval=0.01)
        assert await s.shutdown(timeout=5) is True
        assert "a" in ran and every.state is TaskState.CANCELLED
        with pytest.raises(wheeltask.SchedulerShutdown):
            s.post_task(later, "b")
        assert await s.shutdown() is True  # idempotent

        s2 = AsyncScheduler()
        started = asyncio.Event()

        async def stuck() -> None:
            started.set()
            await asyncio.sleep(60)

        running = s2.post_task(stuck)
        far = s2.post_task(later, "never", delay=60)
        await started.wait()
        assert await s2.shutdown(timeout=0.05) is False
        assert far.state is TaskState.CANCELLED
        await asyncio.sleep(0)
        assert running.state is TaskState.CANCELLED  # cut short at the deadline
        assert "never" not in ran

        s3 = AsyncScheduler()
        s3.post_task(later, "dropped", delay=60)
        assert await s3.shutdown(cancel_pending=True) is True
        assert s3.stats().cancelled == 1

    run(main)


def test_coroutine_objects_and_bad_input(run: Run) -> None:
    async def main() -> None:
        async with AsyncScheduler() as s:

            async def job(x: int = 7) -> int:
                return x

            assert await s.post_task(job(3)) == 3
            for kwargs, args in (({"interval": 1}, ()), ({}, (1,)), ({"retries": 1}, ())):
                with pytest.raises(TypeError, match="coroutine"):
                    s.post_task(job(), *args, **kwargs)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                h = s.post_task(job(), delay=10)
                assert h.cancel()
                del h
                gc.collect()
            assert not [w for w in caught if "never awaited" in str(w.message)]
            with pytest.raises(TypeError, match="inline"):
                s.post_task(job, inline="yes")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="delay"):
                s.post_task(job, delay=-1)
            with pytest.raises(TypeError, match="cb must be callable"):
                s.post_task(42)  # type: ignore[arg-type]
            assert s.stats().submitted == 2

    run(main)
    with pytest.raises(ValueError, match="max_async"):
        AsyncScheduler(max_async=0)
    with pytest.raises(TypeError, match="inline"):
        AsyncScheduler(inline=1)  # type: ignore[arg-type]


def test_post_task_needs_the_loop() -> None:
    s = AsyncScheduler()
    with pytest.raises(RuntimeError, match="running event loop"):
        s.post_task(lambda: None)


# ------------------------------------------------------------- virtual time
def test_advance_async_runs_what_is_due_in_virtual_time(run: Run) -> None:
    async def main() -> None:
        clock = VirtualClock()
        s = AsyncScheduler(clock=clock)
        seen: list[tuple[str, float]] = []

        async def job(tag: str) -> str:
            seen.append((tag, clock.now()))
            await asyncio.sleep(0)
            seen.append((tag + " again", clock.now()))
            return tag

        a = s.post_task(job, "a", delay=2.5)
        b = s.post_task(job, "b", interval=1)
        p = s.post_task(lambda: seen.append(("plain", clock.now())), delay=1.5)
        for sync_call in (
            lambda: clock.advance(1),
            lambda: clock.advance_to(1),
            clock.run_until_idle,
        ):
            with pytest.raises(RuntimeError, match="advance_async"):
                sync_call()
        assert clock.now() == 0
        await clock.advance_async(3)
        assert clock.now() == 3
        assert a.result() == "a" and b.runs == 3 and p.done()
        for tag, now in seen:  # each saw the clock within a tick of its deadline
            due = {"a": 2.5, "plain": 1.5}.get(tag.split()[0])
            if due is not None:
                assert due <= now < due + 0.005
            else:
                assert now in (1.0, 2.0, 3.0)
        await clock.advance_to_async(4)
        assert b.runs == 4
        assert await s.shutdown(cancel_pending=True)

    run(main)


def test_advance_async_waits_for_handles_but_not_for_asyncio_sleep(run: Run) -> None:
    async def main() -> None:
        clock = VirtualClock()
        s = AsyncScheduler(clock=clock)
        log: list[str] = []

        async def child() -> str:
            log.append(f"child at {clock.now():g}")
            return "child"

        async def parent() -> None:
            h = s.post_task(child, delay=5)
            log.append("parent waits")
            log.append(await h)  # suspended on a wheeltask handle: virtual time moves on

        async def sleeper() -> None:
            log.append("sleeper sleeps")
            await asyncio.sleep(0.2)  # real time: not waited for
            log.append("sleeper woke")

        s.post_task(parent, delay=1)
        s.post_task(sleeper, delay=1)
        await clock.advance_async(10)
        assert log[:2] == ["parent waits", "sleeper sleeps"] or log[:2] == [
            "sleeper sleeps",
            "parent waits",
        ]
        assert "child at 6" in log and "child" in log
        assert "sleeper woke" not in log
        await asyncio.sleep(0.3)
        assert "sleeper woke" in log
        assert await s.shutdown()

    run(main)


# ------------------------------------------------------------------ parity
def _scenario(
    post: Callable[..., Any],
) -> list[Any]:
    calls: list[str] = []
    tries: list[int] = []

    def plain(tag: str) -> str:
        calls.append(tag)
        return tag

    def flaky() -> str:
        tries.append(1)
        if len(tries) < 2:
            raise OSError("again")
        return "ok"

    def broken() -> None:
        raise ValueError("no")

    return [
        post(plain, "one", delay=1),
        post(plain, "tick", interval=0.5),
        post(flaky, delay=0.25, retries=2, retry_on=OSError, backoff=0.5),
        post(broken, delay=2),
        post(plain, "cancelled", delay=3),
        post(plain, "now"),
    ]


def _summary(handles: list[Any], stats: Any) -> dict[str, Any]:
    return {
        "states": [h.state for h in handles],
        "runs": [h.runs for h in handles],
        "attempts": [h.attempts for h in handles],
        "stats": {
            k: getattr(stats, k)
            for k in (
                "pending",
                "queued",
                "running",
                "submitted",
                "succeeded",
                "failed",
                "retried",
                "cancelled",
                "missed",
            )
        },
    }


def test_the_same_scenario_gives_the_same_runs_states_and_stats_sync_and_async(
    run: Run,
) -> None:
    clock = VirtualClock()
    sync = wheeltask.testing.manual_scheduler(clock=clock)
    hs = _scenario(sync.post_task)
    clock.advance(2.5)
    hs[4].cancel()
    clock.advance(1)
    want = _summary(hs, sync.stats())
    sync.shutdown(cancel_pending=True)

    async def main() -> dict[str, Any]:
        aclock = VirtualClock()
        s = AsyncScheduler(clock=aclock, inline=True)
        ahs = _scenario(s.post_task)
        await aclock.advance_async(2.5)
        ahs[4].cancel()
        await aclock.advance_async(1)
        got = _summary(ahs, s.stats())
        await s.shutdown(cancel_pending=True)
        return got

    got = run(main)
    assert got == want
    assert want["states"][1] is TaskState.PENDING and want["runs"][1] == 7


def test_parity_for_coroutine_tasks(run: Run) -> None:
    def scenario(post: Callable[..., Any]) -> list[Any]:
        async def co(tag: str) -> str:
            await asyncio.sleep(0)
            return tag

        async def bad() -> None:
            raise KeyError("k")

        return [
            post(co, "a", delay=1),
            post(co, "i", interval=0.25),
            post(bad, delay=0.5),
            post(co, "c", delay=5),
        ]

    clock = VirtualClock()
    sync = wheeltask.testing.manual_scheduler(clock=clock)
    hs = scenario(sync.post_task)
    clock.advance(2)
    hs[3].cancel()
    want = _summary(hs, sync.stats())
    sync.shutdown(cancel_pending=True)

    async def main() -> dict[str, Any]:
        aclock = VirtualClock()
        s = AsyncScheduler(clock=aclock)
        ahs = scenario(s.post_task)
        await aclock.advance_async(2)
        ahs[3].cancel()
        got = _summary(ahs, s.stats())
        await s.shutdown(cancel_pending=True)
        return got

    assert run(main) == want


def test_shutdown_from_one_of_its_own_coroutine_tasks_does_not_wait_for_itself(
    run: Run,
) -> None:
    async def main() -> None:
        s = AsyncScheduler()
        got: list[bool] = []

        async def other() -> str:
            await asyncio.sleep(0.02)
            return "other"

        async def stopper() -> str:
            got.append(await s.shutdown(timeout=5))
            return "stopper"

        o = s.post_task(other)
        h = s.post_task(stopper)
        assert await asyncio.wait_for(h, 5) == "stopper"
        assert got == [True] and await o == "other"  # it waited for the other one only

    run(main)


def test_shutdown_on_a_virtual_clock_moves_it_to_run_what_is_left(run: Run) -> None:
    async def main() -> None:
        clock = VirtualClock()
        async with AsyncScheduler(clock=clock) as s:

            async def job() -> str:
                return "ran"

            h = s.post_task(job, delay=30)
            far = s.post_task(job, delay=600)
        assert h.result() == "ran" and far.result() == "ran"
        assert clock.now() == 600
        s2 = AsyncScheduler(clock=clock)
        late = s2.post_task(job, delay=100)
        assert await s2.shutdown(timeout=10) is False  # 10 virtual seconds were not enough
        assert late.cancelled() and clock.now() == 610

    run(main)


def test_an_async_scheduler_belongs_to_its_loop() -> None:
    async def first() -> AsyncScheduler:
        s = AsyncScheduler()
        await s.post_task(lambda: None, inline=True)
        return s

    s = asyncio.run(first())

    async def second() -> None:
        with pytest.raises(wheeltask.SchedulerShutdown, match="loop is closed"):
            s.post_task(lambda: None)

    asyncio.run(second())


def test_plain_timer_posts_keep_every_rule_of_post_task(run: Run) -> None:
    """``post_task(cb, delay=float)`` has a short path: the same outcome as the long one."""

    async def main() -> None:
        seen: list[str] = []
        async with AsyncScheduler(inline=True) as s:
            h = s.post_task(lambda: seen.append("plain"), delay=0.01)
            assert h.state is TaskState.PENDING and h.next_run is not None
            gone = s.post_task(lambda: seen.append("cancelled"), delay=0.01)
            assert gone.cancel()
            await h
            posted: list[str] = []
            s.subscribe(lambda e: posted.append(e.kind), events=["posted"])
            s.post_task(lambda: None, delay=0.01)  # a listener: the general path
            assert posted == ["posted"]
            st = s.stats()
            assert (st.submitted, st.succeeded, st.cancelled) == (3, 1, 1)
        assert seen == ["plain"]
        with pytest.raises(wheeltask.SchedulerShutdown):
            s.post_task(lambda: None, delay=0.5)
        with pytest.raises(TypeError, match="cb must be callable"):
            AsyncScheduler().post_task(42, delay=0.5)  # type: ignore[arg-type]
        capped = AsyncScheduler(max_pending=1, inline=True)
        capped.post_task(lambda: None, delay=0.5)
        with pytest.raises(wheeltask.QueueFull):
            capped.post_task(lambda: None, delay=0.5)
        assert await capped.shutdown(cancel_pending=True)

    run(main)
