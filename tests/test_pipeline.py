"""Pipelines: sources on a schedule feeding consumers (issue 5)."""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from freezegun import freeze_time
from helpers import wait_until

from wheeltask import Pipeline, Retry, Scheduler
from wheeltask.testing import FrozenClock, VirtualClock, manual_scheduler


def _bgtaskqueue_sources() -> tuple[Any, Any, list[str]]:
    loaded: list[str] = []
    turns = itertools.count()

    def twenty() -> list[str]:
        n = next(turns)
        batch = [f"a{n}-{i}" for i in range(20)]
        loaded.extend(batch)
        return batch

    ones = itertools.count()

    def one() -> list[str]:
        batch = [f"b{next(ones)}"]
        loaded.extend(batch)
        return batch

    return twenty, one, loaded


# ------------------------------------------------------ bgtaskqueue's example
def test_bgtaskqueue_example_fanout(clock: VirtualClock, sched: Scheduler) -> None:
    twenty, one, loaded = _bgtaskqueue_sources()
    seen: dict[str, list[str]] = {"c1": [], "c2": []}
    p = Pipeline([twenty, one], [seen["c1"].append, seen["c2"].append], every=1, scheduler=sched)
    p.start()
    clock.advance(10)
    assert len(loaded) == 11 * 21  # a load at start, then every second
    assert sorted(seen["c1"]) == sorted(loaded) == sorted(seen["c2"])
    st = p.stats()
    assert (st.loaded, st.delivered, st.succeeded, st.failed) == (231, 462, 462, 0)
    assert p.stop()


def test_bgtaskqueue_example_round_robin(clock: VirtualClock, sched: Scheduler) -> None:
    twenty, one, loaded = _bgtaskqueue_sources()
    c1: list[str] = []
    c2: list[str] = []
    p = Pipeline(
        [twenty, one], [c1.append, c2.append], every=1, mode="round_robin", scheduler=sched
    )
    with p:
        clock.advance(10)
    assert not set(c1) & set(c2)
    assert sorted(c1 + c2) == sorted(loaded)
    assert abs(len(c1) - len(c2)) <= 1  # really in turn
    assert p.stats().delivered == len(loaded)


# --------------------------------------------------------- go-conveyor's examples
class Task:
    def __init__(self, ident: str, priority: int = 0) -> None:
        self.ident = ident
        self.priority = priority


def test_conveyor_simple_five_tasks_two_of_priority_one() -> None:
    done: list[str] = []
    lock = threading.Lock()

    def worker(task: Task) -> None:
        with lock:
            done.append(task.ident)

    with Scheduler(max_workers=5) as s:
        p = Pipeline([queue.Queue()], [worker], priority=lambda t: t.priority, scheduler=s)
        p.start()
        for i in range(1, 6):
            p.put(Task(f"task-{i}", priority=1 if i in (2, 4) else 0))
        assert p.stop(timeout=10)
    st = p.stats()
    assert (st.succeeded, st.failed, st.queued, st.backlog) == (5, 0, 0, 0)
    assert sorted(done) == [f"task-{i}" for i in range(1, 6)]


def test_conveyor_full_three_manual_tasks_and_a_producer_every_second(
    clock: VirtualClock, sched: Scheduler
) -> None:
    produced = itertools.count(1)
    processed: list[str] = []
    p = Pipeline(
        [lambda: [f"auto_task-{next(produced)}"]], [processed.append], every=1, scheduler=sched
    )
    p.start()
    for i in range(3):
        p.put(f"task-{i}")
    clock.advance(1.5)
    assert p.stop()
    assert len(processed) == 5  # 3 manual + 2 produced (at 0 and 1 s)
    assert p.stats().succeeded == 5


def test_conveyor_faulty_workers(clock: VirtualClock, sched: Scheduler) -> None:
    attempts: dict[str, int] = {}

    def worker(name: str) -> str:
        attempts[name] = attempts.get(name, 0) + 1
        n = attempts[name]
        if name == "fails-once" and n == 1:
            raise RuntimeError("first attempt fails")
        if name == "retry-twice" and n <= 2:
            raise Retry
        if name == "always":
            raise RuntimeError("always fails")
        return "ok"

    p = Pipeline(
        [queue.Queue()], [worker], retries=3, retry_on=Exception, backoff=0.5, scheduler=sched
    )
    for name in ("fails-once", "retry-twice", "fine", "always"):
        p.put(name)
    clock.run_until_idle()
    st = p.stats()
    assert (st.succeeded, st.failed, st.delivered) == (3, 1, 4)
    assert attempts == {"fails-once": 2, "retry-twice": 3, "fine": 1, "always": 4}
    assert p.stop()


# ------------------------------------------------------------- behaviour
def test_a_slow_source_never_blocks_a_fast_one() -> None:
    gate = threading.Event()
    got: list[str] = []
    fast_turns = itertools.count()
    with Scheduler(max_workers=3) as s:
        p = Pipeline(
            [lambda: gate.wait(10) and ["slow"], lambda: [f"fast{next(fast_turns)}"]],
            [got.append],
            every=0.02,
            scheduler=s,
        )
        p.start()
        wait_until(lambda: len(got) >= 5)
        assert "slow" not in got  # still blocked in its first load
        gate.set()
        wait_until(lambda: "slow" in got)
        assert p.stop(timeout=10)


def test_a_raising_consumer_does_not_stop_the_others(clock: VirtualClock, sched: Scheduler) -> None:
    good: list[int] = []

    def bad(item: int) -> None:
        raise ValueError(item)

    p = Pipeline([lambda: [1, 2, 3]], [bad, good.append], every=1, scheduler=sched)
    p.start()
    clock.advance(0)
    assert good == [1, 2, 3]
    st = p.stats()
    assert (st.succeeded, st.failed) == (3, 3)
    p.stop()


def test_a_full_backlog_stops_loading_until_it_drains() -> None:
    gate = threading.Event()
    calls = itertools.count()

    def source() -> list[int]:
        n = next(calls)
        return [n * 3 + i for i in range(3)]

    with Scheduler(max_workers=8) as s:  # loads need a worker too: 6 block, 2 stay free
        p = Pipeline([source], [lambda item: gate.wait(10)], every=0.01, capacity=5, scheduler=s)
        p.start()
        wait_until(lambda: p.stats().loaded >= 6)
        threading.Event().wait(0.05)
        loads = p.stats().loaded
        assert loads == 6  # two batches of 3: one batch may overshoot the capacity
        assert p.stats().backlog == 6
        threading.Event().wait(0.1)  # ten more turns: all skipped
        assert p.stats().loaded == loads
        gate.set()
        wait_until(lambda: p.stats().loaded > loads)  # drained: loading resumes
        assert p.stop(timeout=10)


def test_keys_deduplicate_and_abort_removes_a_queued_item(
    clock: VirtualClock, sched: Scheduler
) -> None:
    got: list[str] = []
    p = Pipeline(
        [queue.Queue()], [got.append], key=lambda item: item.split(":")[0], scheduler=sched
    )
    assert p.put("a:1")
    assert not p.put("a:2")  # 'a' is queued
    assert p.put("b:1")
    assert p.abort("b")
    assert not p.abort("b")
    assert not p.abort("zzz")
    clock.advance(0)
    assert got == ["a:1"]
    assert p.put("a:3")  # 'a' finished: free again
    clock.advance(0)
    st = p.stats()
    assert (st.deduplicated, st.aborted, st.loaded, st.cancelled) == (1, 1, 4, 1)
    assert got == ["a:1", "a:3"]


def test_routes_by_type_and_an_unknown_type_is_a_failure(
    clock: VirtualClock, sched: Scheduler, caplog: pytest.LogCaptureFixture
) -> None:
    mails: list[str] = []
    sms: list[str] = []
    p = Pipeline(
        [lambda: [("mail", "m1"), ("sms", "s1"), ("fax", "f1")]],
        {"mail": mails.append, "sms": sms.append},
        route=lambda item: item[0],
        scheduler=sched,
    )
    p.start()
    clock.advance(0)
    assert mails == [("mail", "m1")] and sms == [("sms", "s1")]
    assert p.stats().failed == 1
    assert "no consumer for type 'fax'" in caplog.text
    p.stop()


def test_source_errors_are_counted_and_retried_with_backoff(
    clock: VirtualClock, sched: Scheduler
) -> None:
    calls: list[float] = []

    def flaky() -> list[int]:
        calls.append(clock.now())
        if len(calls) <= 3:
            raise OSError("database down")
        return [1]

    got: list[int] = []
    p = Pipeline([flaky], [got.append], every=1, scheduler=sched)
    p.start()
    clock.advance(20)
    assert calls[:5] == [0.0, 1.0, 3.0, 7.0, 8.0]  # waits of 1, 2, 4 s, then every 1 s
    assert p.stats().source_errors == 3
    assert got
    p.stop()


def test_stop_on_source_error(clock: VirtualClock, sched: Scheduler) -> None:
    def broken() -> list[int]:
        raise OSError("gone")

    p = Pipeline([broken], [print], every=1, stop_on_source_error=True, scheduler=sched)
    p.start()
    clock.advance(5)
    assert p.stats().source_errors == 1
    assert "stopped" in repr(p)


def test_stop_waits_times_out_is_idempotent_and_works_from_a_consumer() -> None:
    gate = threading.Event()
    stopped: list[bool] = []
    with Scheduler(max_workers=1) as s:
        p = Pipeline([queue.Queue()], [lambda item: gate.wait(10)], scheduler=s)
        p.start()
        for i in range(3):
            p.put(i)
        wait_until(lambda: p.stats().delivered == 1)
        assert p.stop(timeout=0.05) is False  # the two queued ones are cancelled
        assert p.stats().cancelled == 2
        gate.set()
        assert p.stop(timeout=10)
        assert p.stop()  # again
        q = Pipeline([queue.Queue()], [lambda item: stopped.append(q.stop())], scheduler=s)
        q.start()
        q.put("x")
        wait_until(lambda: stopped)
        assert q.stop(timeout=10)
    assert p.stats().succeeded == 1


def test_channels_queue_iterator_and_async_ones() -> None:
    got: list[object] = []
    lock = threading.Lock()

    def consume(item: object) -> None:
        with lock:
            got.append(item)

    async def agen() -> Any:
        for i in range(3):
            await asyncio.sleep(0)
            yield f"async{i}"

    q: queue.Queue[str] = queue.Queue()
    with Scheduler(max_workers=2) as s:
        p = Pipeline([q, iter(["it0", "it1"]), agen()], [consume], scheduler=s)
        p.start()
        q.put("q0")
        q.put("q1")
        wait_until(lambda: len(got) == 7)
        assert p.stop(timeout=10)
    assert sorted(map(str, got)) == ["async0", "async1", "async2", "it0", "it1", "q0", "q1"]


def test_an_asyncio_queue_bound_to_a_running_loop() -> None:
    got: list[int] = []
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    aq: asyncio.Queue[int] | None = None

    async def main() -> None:
        nonlocal aq
        aq = asyncio.Queue()
        ready.set()
        for i in range(3):
            await aq.put(i)
            await asyncio.sleep(0.01)
        while len(got) < 3:
            await asyncio.sleep(0.01)

    t = threading.Thread(target=loop.run_until_complete, args=(main(),))
    t.start()
    assert ready.wait(10)
    with Scheduler(max_workers=2) as s:
        assert aq is not None
        p = Pipeline([aq], [got.append], scheduler=s)
        p.start()
        wait_until(lambda: len(got) == 3)
        assert p.stop(timeout=10)
    t.join(10)
    loop.close()
    assert sorted(got) == [0, 1, 2]


def test_async_def_source(clock: VirtualClock, sched: Scheduler) -> None:
    async def fetch() -> list[str]:
        await asyncio.sleep(0)
        return ["x", "y"]

    got: list[str] = []
    p = Pipeline([fetch], [got.append], every=1, scheduler=sched)
    p.start()
    clock.advance(0)
    assert got == ["x", "y"]
    p.stop()


def test_priority_callable_orders_deliveries(sched: Scheduler) -> None:
    got: list[int] = []
    p = Pipeline([lambda: [1, 5, 3]], [got.append], priority=lambda item: item, scheduler=sched)
    p.start()
    sched.clock.advance(0)  # type: ignore[attr-defined]
    assert got == [5, 3, 1]
    p.stop()


def test_cron_with_freezegun() -> None:
    with freeze_time("2026-01-01 00:00:00") as frozen:
        s = manual_scheduler(clock=FrozenClock())
        loads: list[str] = []
        p = Pipeline(
            [lambda: [frozen.time_to_freeze.isoformat()]],
            [loads.append],
            cron="*/2 * * * * *",
            scheduler=s,
        )
        p.start()
        s.run_due()  # the first load, at start()
        for _ in range(7):
            frozen.tick(1)
            s.run_due()
        assert loads == [
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:02",
            "2026-01-01T00:00:04",
            "2026-01-01T00:00:06",
        ]
        p.stop()


def _never() -> Iterator[int]:
    yield from ()


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "message"),
    [
        (([], [print]), {}, ValueError, r"^sources must be a non-empty list"),
        (([list], []), {}, ValueError, r"^consumers must be a non-empty list or dict"),
        (([list], [print]), {"mode": "broadcast"}, ValueError, r"^mode must be 'fanout' or"),
        (
            ([list], [print]),
            {"every": 1, "cron": "* * * * * *"},
            ValueError,
            r"^every and cron are exclusive",
        ),
        (([list], [print]), {"capacity": 0}, ValueError, r"^capacity must be an int >= 1"),
        (([list], [3]), {}, TypeError, r"^each consumer must be callable, got 3$"),
        (([list], [print]), {"cron": "61 * * * * *"}, ValueError, r"^cron must be a valid"),
        (([list], [print]), {"cron": "* * * * *"}, ValueError, r"^cron must be a valid"),
        (([3], [print]), {}, TypeError, r"^each source must be a callable"),
        (([list], {"a": print}), {}, TypeError, r"^route must be callable"),
        (([list], [print]), {"every": 0}, ValueError, r"^every must be a number of seconds"),
        (([list], [print]), {"retries": -1}, ValueError, r"^retries must be >= 0"),
        (([list], [print]), {"key": 3}, TypeError, r"^key must be callable or None"),
    ],
)
def test_bad_input_raises_before_anything_starts(
    sched: Scheduler,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    exc: type[Exception],
    message: str,
) -> None:
    before = sched.stats()
    with pytest.raises(exc, match=message):
        Pipeline(*args, scheduler=sched, **kwargs)
    assert sched.stats() == before


def test_lean_deliveries_stop_with_a_timeout_and_survive_a_scheduler_shutdown() -> None:
    gate = threading.Event()
    with Scheduler(max_workers=1) as s:
        p = Pipeline([lambda: range(5)], [lambda item: gate.wait(10)], every=3600, scheduler=s)
        p.start()
        wait_until(lambda: p.stats().loaded == 5)
        assert p.stop(timeout=0.05) is False  # four queued deliveries cancelled
        gate.set()
        wait_until(lambda: p.stats().backlog == 0)
        assert (p.stats().succeeded, p.stats().cancelled) == (1, 4)
    q_gate = threading.Event()
    s2 = Scheduler(max_workers=1)
    p2 = Pipeline([lambda: range(3)], [lambda item: q_gate.wait(10)], every=3600, scheduler=s2)
    p2.start()
    wait_until(lambda: p2.stats().loaded == 3)
    q_gate.set()
    s2.shutdown(cancel_pending=True)  # under the pipeline
    assert p2.stop(timeout=5)
    assert p2.stats().backlog == 0


# ------------------------------------------------------ regressions (review)
@pytest.mark.parametrize("lean", [True, False])
def test_a_key_or_priority_that_raises_fails_that_item_only(
    clock: VirtualClock, sched: Scheduler, lean: bool
) -> None:
    got: list[int] = []

    def key(item: int) -> int:
        if item == 2:
            raise ValueError("no key for 2")
        return item

    options: dict[str, Any] = {} if lean else {"key": key}
    if lean:
        options["priority"] = lambda item: 1 // (item - 2)  # raises for 2
    p = Pipeline([lambda: [0, 1, 2, 3]], [got.append], scheduler=sched, **options)
    p.start()
    clock.advance(0)
    assert sorted(got) == [0, 1, 3]
    st = p.stats()
    assert (st.loaded, st.failed, st.succeeded, st.backlog) == (4, 1, 3, 0)
    p.stop()


def test_a_dict_of_one_consumer_still_routes(clock: VirtualClock, sched: Scheduler) -> None:
    evens: list[int] = []
    p = Pipeline(
        [lambda: [0, 1, 2, 3]],
        {"even": evens.append},
        route=lambda i: "even" if i % 2 == 0 else "odd",
        scheduler=sched,
    )
    p.start()
    clock.advance(0)
    assert evens == [0, 2]
    assert p.stats().failed == 2
    p.stop()
    with pytest.raises(ValueError, match=r"^mode must stay 'fanout' with a dict"):
        Pipeline([list], {"a": print}, route=str, mode="round_robin", scheduler=sched)


@pytest.mark.parametrize("key", [None, str])
def test_stop_during_a_load_waits_for_its_batch(key: Any) -> None:
    in_load = threading.Event()
    release = threading.Event()
    got: list[int] = []

    def source() -> list[int]:
        in_load.set()
        release.wait(10)
        return [1, 2, 3]

    with Scheduler(max_workers=2) as s:
        p = Pipeline([source], [got.append], every=3600, key=key, scheduler=s)
        p.start()
        assert in_load.wait(10)
        result: list[bool] = []
        stopper = threading.Thread(target=lambda: result.append(p.stop(timeout=10)))
        stopper.start()
        threading.Event().wait(0.05)
        assert not result  # waiting for the load under way
        release.set()
        stopper.join(10)
        assert result == [True]
        assert sorted(got) == [1, 2, 3]  # all delivered before stop() returned
        with pytest.raises(RuntimeError, match="is stopped: put"):
            p.put(4)


def test_stop_joins_the_channel_threads() -> None:
    q: queue.Queue[str] = queue.Queue()
    with Scheduler(max_workers=2) as s:
        p = Pipeline([q], [print], scheduler=s)
        p.start()
        assert p.stop(timeout=5)
        assert not any(t.is_alive() for t in p._threads)


def test_a_delivery_cancelled_from_outside_does_not_stick_in_the_backlog(
    clock: VirtualClock, sched: Scheduler
) -> None:
    seen: list[str] = []
    p = Pipeline([queue.Queue()], [seen.append, seen.append], key=str, scheduler=sched)
    assert p.put("k")
    deliveries = sched.tasks()
    deliveries[1].cancel()  # not through the pipeline
    clock.advance(0)
    assert seen == ["k"]
    assert p.stats().backlog == 0
    assert p.put("k")  # the key is free again
    clock.advance(0)
    assert p.stop()


def test_lean_batches_do_not_pile_up_without_stats(sched: Scheduler) -> None:
    p = Pipeline([queue.Queue()], [print], scheduler=sched)
    for i in range(300):
        p.put(i)
        sched.run_due()
    assert len(p._lean_batches) <= 65


def test_stats_count_queued_deliveries(sched: Scheduler) -> None:
    p = Pipeline([queue.Queue()], [print, print], scheduler=sched)
    for i in range(3):
        p.put(i)
    st = p.stats()
    assert (st.queued, st.backlog) == (6, 3)
    sched.run_due()
    assert p.stats().queued == 0


def test_source_backoff_hits_the_failing_source_when_a_channel_comes_first(
    clock: VirtualClock, sched: Scheduler
) -> None:
    bad: list[float] = []
    good: list[float] = []

    def failing() -> list[int]:
        bad.append(clock.now())
        raise OSError("down")

    def healthy() -> list[int]:
        good.append(clock.now())
        return []

    p = Pipeline([iter([]), failing, healthy], [print], every=1, scheduler=sched)
    p.start()
    clock.advance(7.5)
    assert bad == [0.0, 1.0, 3.0, 7.0]
    assert good == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    p.stop()


def test_a_route_may_call_the_pipeline(clock: VirtualClock, sched: Scheduler) -> None:
    got: list[int] = []

    def route(item: int) -> str:
        p.stats()  # re-entrant: no deadlock
        return "x"

    p = Pipeline([lambda: [1]], {"x": got.append}, route=route, scheduler=sched)
    p.start()
    clock.advance(0)
    assert got == [1]
    p.stop()


def test_a_delivery_cancelled_between_retries_counts_as_failed(
    clock: VirtualClock, sched: Scheduler
) -> None:
    def flaky(item: int) -> None:
        raise Retry(delay=10)

    p = Pipeline([queue.Queue()], [flaky], retries=3, scheduler=sched)
    p.put(1)
    clock.advance(1)  # first attempt failed; the next waits on the wheel
    assert p.stop(timeout=0) is False
    st = p.stats()
    assert (st.delivered, st.succeeded, st.failed, st.backlog) == (1, 0, 1, 0)


def test_stop_from_a_source_or_a_route_does_not_hang(clock: VirtualClock, sched: Scheduler) -> None:
    got: list[int] = []
    results: list[bool] = []

    def source() -> list[int]:
        results.append(p.stop(timeout=1))  # stop from inside a load
        return [1, 2]

    p = Pipeline([source], [got.append], every=1, scheduler=sched)
    p.start()
    clock.advance(0)
    assert len(results) == 1
    clock.advance(2)
    assert got == [1, 2]  # the batch of that load is still delivered
    assert p.stats().loaded == 2  # and no later load happened


def test_stop_honours_its_timeout_while_a_source_is_stuck() -> None:
    stuck = threading.Event()
    release = threading.Event()

    def source() -> list[int]:
        stuck.set()
        release.wait(10)
        return [1]

    with Scheduler(max_workers=2) as s:
        p = Pipeline([source], [print], every=3600, scheduler=s)
        p.start()
        assert stuck.wait(10)
        result: list[bool] = []
        stopper = threading.Thread(target=lambda: result.append(p.stop(timeout=0.2)))
        stopper.start()
        stopper.join(5)
        assert result == [False]  # it did not wait for the stuck source past 0.2 s
        release.set()


def test_stop_from_a_key_function_on_a_channel_thread() -> None:
    q: queue.Queue[str] = queue.Queue()
    got: list[str] = []
    answers: list[bool] = []

    def key(item: str) -> str:
        if item == "stop":
            answers.append(p.stop(timeout=1))
        return item

    with Scheduler(max_workers=2) as s:
        p = Pipeline([q], [got.append], key=key, scheduler=s)
        p.start()
        q.put("a")
        q.put("stop")
        wait_until(lambda: answers)
        assert answers == [False]  # from inside an accept: it cannot wait for it
        wait_until(lambda: len(got) == 2)
        assert p.stats().failed == 0


def test_finished_lean_batches_are_dropped_as_puts_go_on(sched: Scheduler) -> None:
    p = Pipeline([queue.Queue()], [print], scheduler=sched)
    for i in range(500):
        p.put(i)
        if i % 10 == 9:
            sched.run_due()
    assert len(p._lean_batches) <= 11  # at most the unrun ones, not all 500


def test_one_slow_delivery_does_not_keep_every_later_lean_batch() -> None:
    gate = threading.Event()
    with Scheduler(max_workers=2) as s:
        p = Pipeline([queue.Queue()], [lambda item: item == "slow" and gate.wait(10)], scheduler=s)
        p.put("slow")
        for _ in range(10):  # a steady stream behind the slow one
            for i in range(200):
                p.put(i)
            wait_until(lambda: p._backlog() == 1)
        assert len(p._lean_batches) <= 600  # not the 2,001 batches put
        gate.set()
        assert p.stop(timeout=10)


def test_a_batch_loaded_after_stop_gave_up_is_not_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stuck = threading.Event()
    release = threading.Event()
    got: list[int] = []

    def source() -> list[int]:
        stuck.set()
        release.wait(10)
        return [1, 2, 3]

    with Scheduler(max_workers=2) as s:
        p = Pipeline([source], [got.append], every=3600, scheduler=s)
        p.start()
        assert stuck.wait(10)
        assert p.stop(timeout=0.1) is False
        release.set()
        wait_until(lambda: p.stats().failed == 3)
    assert got == []
    assert "3 item(s) loaded after stop() gave up: not delivered" in caplog.text


def test_stop_from_a_fanout_consumer_counts_the_other_delivery(sched: Scheduler) -> None:
    answers: list[bool] = []
    p = Pipeline([queue.Queue()], [lambda item: answers.append(p.stop()), print], scheduler=sched)
    p.put("x")
    sched.run_due()
    assert answers == [False]  # the other consumer's delivery had not run yet
