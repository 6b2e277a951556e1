"""Real threads and real time: bounds, never equalities."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from wheeltask import QueueFull, Scheduler, TaskCancelled, TaskHandle
from wheeltask._pool import WheeltaskThread
from wheeltask.testing import VirtualClock

pytestmark = pytest.mark.slow


@pytest.fixture
def fast_switching() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _lateness_run() -> list[float]:
    """300 timers over 0.6 s on 4 workers: each one's start minus its deadline."""
    starts: dict[int, float] = {}
    deadlines: dict[int, float] = {}
    with Scheduler(max_workers=4) as s:
        for i in range(300):
            h = s.post_task(
                lambda i=i: starts.__setitem__(i, time.monotonic()), delay=0.001 + 0.002 * i
            )
            assert h.next_run is not None
            deadlines[i] = h.next_run
    stats = s.stats()
    assert 0 <= stats.lateness_p50 <= stats.lateness_p99 <= stats.lateness_max
    return sorted(starts[i] - deadlines[i] for i in deadlines)


def test_never_early_and_p99_lateness_within_a_few_ms() -> None:
    # Never early is checked on every run. The p99 bound is a timing bound on a shared
    # 2-core machine: a run disturbed by something else on it (a collector pause, the
    # OS) may miss it, so the bound must hold in one of three runs.
    p99s = []
    for _ in range(3):
        late = _lateness_run()
        assert len(late) == 300
        assert late[0] >= 0, f"fired early by {-late[0] * 1000:.3f} ms"
        p99s.append(late[int(len(late) * 0.99) - 1])
        if p99s[-1] < 0.015:
            break
    assert min(p99s) < 0.015, f"p99 lateness in ms: {[round(p * 1000, 2) for p in p99s]}"


def test_eight_threads_post_40000_tasks_each_runs_exactly_once() -> None:
    runs: Counter[int] = Counter()
    lock = threading.Lock()

    def work(n: int) -> None:
        with lock:
            runs[n] += 1

    with Scheduler(max_workers=4, queue_size=100_000) as s:

        def poster(base: int) -> None:
            for k in range(5000):
                n = base + k
                if k % 4 == 0:
                    s.post_task(work, n, delay=0.001 * (k % 50))
                else:
                    s.post_task(work, n)

        threads = [threading.Thread(target=poster, args=(b * 5000,)) for b in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(runs) == 40_000 and set(runs.values()) == {1}
    st = s.stats()
    assert (st.submitted, st.succeeded, st.pending, st.queued) == (40_000, 40_000, 0, 0)


@pytest.mark.parametrize("delay", [None, 0.001])
def test_cancel_racing_the_firing_is_true_iff_never_ran(
    fast_switching: None, delay: float | None
) -> None:
    ran: set[int] = set()
    results: dict[int, bool] = {}
    with Scheduler(max_workers=2) as s:
        for round_ in range(40):
            # Delayed: deadlines spread over ~20 ms, cancelled one by one over the same
            # span, so the timer thread fires some just before their cancel() and
            # some cancels land just before the firing.
            handles = [
                s.post_task(ran.add, round_ * 100 + i, delay=delay and delay + i * 0.0002)
                for i in range(100)
            ]
            for i, h in enumerate(handles):
                if delay:
                    time.sleep(0.0002)
                results[round_ * 100 + i] = h.cancel()
            for h in handles:
                with contextlib.suppress(TaskCancelled):
                    h.wait_for_finished(timeout=5)
    assert len(results) == 4000
    mismatches = [n for n, ok in results.items() if ok == (n in ran)]
    assert not mismatches, mismatches[:10]
    # Both outcomes happened, or the race was not exercised.
    assert any(results.values()) and not all(results.values())


def test_idle_scheduler_with_far_timers_uses_no_cpu() -> None:
    with Scheduler() as s:
        handles = [s.post_task(print, delay=3600 + i * 0.01) for i in range(10_000)]
        time.sleep(0.05)
        c0, t0 = time.process_time(), time.monotonic()
        time.sleep(0.5)
        cpu = (time.process_time() - c0) / (time.monotonic() - t0)
        assert cpu < 0.02, f"{cpu:.1%} of a core while idle"
        for h in handles:
            h.cancel()


def test_after_a_stall_every_elapsed_tick_runs_in_order_once() -> None:
    # A threaded scheduler on a VirtualClock: one 10 s jump is a stall for its timer
    # thread, which must then process every elapsed tick in order.
    clock = VirtualClock()
    order: list[int] = []
    lock = threading.Lock()

    def rec(n: int) -> None:
        with lock:
            order.append(n)

    with Scheduler(clock=clock, max_workers=1) as s:
        for i in range(50):
            s.post_task(rec, i, delay=0.2 * (50 - i))  # posted in reverse deadline order
        tick = s.post_task(lambda: None, interval=1.0)
        clock.advance(10.5)
        assert tick.wait_for_runs(1, timeout=5)
        s.shutdown(timeout=5)
    assert order == list(range(49, -1, -1))
    # One catch-up run for the ten elapsed grid points, the rest counted missed.
    assert tick.runs == 1 and tick.missed == 9
    assert s.stats().missed == 9


def test_interval_runs_never_overlap() -> None:
    active = 0
    overlap = False
    lock = threading.Lock()

    def slow() -> None:
        nonlocal active, overlap
        with lock:
            active += 1
            overlap = overlap or active > 1
        time.sleep(0.035)
        with lock:
            active -= 1

    with Scheduler(max_workers=4) as s:
        h = s.post_task(slow, interval=0.01)
        assert h.wait_for_runs(3, timeout=5)
        h.cancel()
    assert not overlap
    assert h.missed >= 3
    assert h.done() and h.cancelled()


def test_max_workers_bounds_concurrency_and_idle_workers_exit() -> None:
    active = peak = 0
    lock = threading.Lock()
    gate = threading.Event()

    def work() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        gate.wait(5)
        with lock:
            active -= 1

    with Scheduler(max_workers=3, min_workers=1, idle_timeout=0.05) as s:
        handles = [s.post_task(work) for _ in range(10)]
        deadline = time.monotonic() + 5
        while s.stats().running < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert s.stats().workers == 3 and s.stats().queued == 7
        gate.set()
        for h in handles:
            assert h.wait_for_finished(timeout=5)
        deadline = time.monotonic() + 5
        while s.stats().workers > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.stats().workers == 1  # shrank to min_workers
    assert peak == 3


def test_on_full_block_waits_for_room() -> None:
    gate = threading.Event()
    with Scheduler(max_workers=1, queue_size=1, on_full="block") as s:
        s.post_task(gate.wait, 5)  # occupies the only worker
        s.post_task(print, "fills the queue")
        t0 = time.monotonic()
        threading.Timer(0.1, gate.set).start()
        s.post_task(lambda: None)  # blocks until the first task ends
        assert time.monotonic() - t0 >= 0.09


def test_on_full_caller_runs_on_the_posting_thread() -> None:
    gate = threading.Event()
    with Scheduler(max_workers=1, queue_size=1, on_full="caller_runs") as s:
        s.post_task(gate.wait, 5)
        s.post_task(print, "fills the queue")
        h = s.post_task(threading.current_thread)
        assert h.done() and h.result() is threading.current_thread()
        gate.set()


def test_timer_thread_never_blocks_on_a_full_queue() -> None:
    gate = threading.Event()
    with Scheduler(max_workers=1, queue_size=1, on_full="raise") as s:
        s.post_task(gate.wait, 5)
        timers = [s.post_task(lambda: None, delay=0.01) for _ in range(10)]
        deadline = time.monotonic() + 5
        while s.stats().pending and time.monotonic() < deadline:
            time.sleep(0.005)
        assert s.stats().queued == 10  # past queue_size: accepted timers always queue
        gate.set()
        assert all(h.wait_for_finished(5) for h in timers)


def test_max_pending_bounds_timers() -> None:
    with Scheduler(max_pending=2) as s:
        a = s.post_task(print, delay=60)
        b = s.post_task(print, delay=60)
        with pytest.raises(QueueFull):
            s.post_task(print, delay=60)
        a.cancel()
        c = s.post_task(print, delay=60)  # room again
        for h in (b, c):
            h.cancel()


def test_failing_callback_is_logged_once_and_the_worker_survives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom() -> None:
        raise KeyError("nope")

    with caplog.at_level(logging.ERROR, logger="wheeltask"), Scheduler(max_workers=1) as s:
        bad = s.post_task(boom)
        good = s.post_task(lambda: "fine")
        assert good.result(timeout=5) == "fine"
        assert isinstance(bad.exception(timeout=5), KeyError)
    records = [r for r in caplog.records if r.exc_info and r.exc_info[1] is bad.exception()]
    assert len(records) == 1


def test_wait_for_finished_wakes_promptly_and_times_out() -> None:
    with Scheduler() as s:
        h = s.post_task(time.sleep, 0.05)
        t0 = time.monotonic()
        assert h.wait_for_finished(timeout=0.01) is False
        assert 0.009 <= time.monotonic() - t0 < 0.5
        assert h.wait_for_finished(timeout=5) is True
        assert time.monotonic() - t0 < 1.0
        slow = s.post_task(time.sleep, 0.2)
        with pytest.raises(TimeoutError):
            slow.result(timeout=0.01)
        slow.wait_for_finished(5)


def test_many_threads_wait_on_one_handle() -> None:
    gate = threading.Event()
    with Scheduler() as s:
        h: TaskHandle = s.post_task(gate.wait, 5, delay=0.01)
        got: list[bool] = []
        waiters = [
            threading.Thread(target=lambda: got.append(h.wait_for_finished(5))) for _ in range(8)
        ]
        for t in waiters:
            t.start()
        time.sleep(0.02)
        gate.set()
        for t in waiters:
            t.join(5)
    assert got == [True] * 8


def test_earlier_deadline_wakes_the_sleeping_timer_thread() -> None:
    with Scheduler() as s:
        far = s.post_task(print, delay=60)
        time.sleep(0.02)  # the timer thread is now asleep until the far timer's slot
        t0 = time.monotonic()
        near = s.post_task(time.monotonic, delay=0.02)
        fired_at = near.result(timeout=5)
        assert 0.02 <= fired_at - t0 < 0.2
        far.cancel()


def test_done_callback_raising_systemexit_does_not_kill_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad(_: TaskHandle) -> None:
        raise SystemExit(3)

    with caplog.at_level(logging.ERROR, logger="wheeltask"), Scheduler(max_workers=1) as s:
        gate = threading.Event()
        first = s.post_task(gate.wait, 5)
        first.add_done_callback(bad)
        gate.set()
        assert first.wait_for_finished(5)
        assert s.post_task(lambda: "alive").result(timeout=5) == "alive"
    assert "SystemExit" in caplog.text


def test_a_thread_that_cannot_start_is_reported_and_counts_stay_right(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_start = WheeltaskThread.start
    allowed = {"n": 0}

    def start(self: WheeltaskThread) -> None:
        if "worker" in self.name and allowed["n"] <= 0:
            raise RuntimeError("can't start new thread")
        allowed["n"] -= 1
        real_start(self)

    monkeypatch.setattr(WheeltaskThread, "start", start)
    s = Scheduler(max_workers=2)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        s.post_task(print)
    assert s.stats().queued == 0 and s.stats().workers == 0 and s.stats().submitted == 0
    with caplog.at_level(logging.ERROR, logger="wheeltask"):
        timer = s.post_task(lambda: "ran", delay=0.01)  # the timer thread starts fine
        deadline = time.monotonic() + 5
        while s.stats().pending and time.monotonic() < deadline:
            time.sleep(0.005)
    assert "could not start a worker thread" in caplog.text
    assert s.stats().queued == 1  # queued, not dropped: it runs once a worker can start
    allowed["n"] = 10
    assert s.post_task(lambda: None).wait_for_finished(5)
    assert timer.result(timeout=5) == "ran"
    assert s.shutdown(timeout=5)


def test_a_timer_thread_that_cannot_start_refuses_the_post(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_start = WheeltaskThread.start

    def start(self: WheeltaskThread) -> None:
        if self.name.endswith("-timer"):
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(WheeltaskThread, "start", start)
    s = Scheduler()
    with pytest.raises(RuntimeError, match="can't start new thread"):
        s.post_task(print, delay=1)
    assert s.stats().pending == 0 and s.stats().submitted == 0
    monkeypatch.setattr(WheeltaskThread, "start", real_start)
    assert s.post_task(lambda: "ok", delay=0.01).result(timeout=5) == "ok"
    assert s.shutdown(timeout=5)


def test_a_timer_woken_late_within_the_tick_counts_no_missed_run() -> None:
    # A 5 ms interval whose deadline falls just after a tick boundary fires at the end
    # of that tick; a timer thread waking a little later than that is not a stall.
    clock = VirtualClock()
    with Scheduler(clock=clock, max_workers=1) as s:
        clock.advance(0.0031)
        h = s.post_task(lambda: None, interval=0.005)  # grid: 8.1, 13.1, 18.1 ms ...
        clock.advance(0.0109)  # now 14 ms: inside tick (10, 15], past the 13.1 ms point
        assert h.wait_for_runs(1, timeout=5)
        assert h.missed == 0 and h.next_run == pytest.approx(0.0131)
        clock.advance(0.001)  # 15 ms: the 13.1 ms point's tick
        assert h.wait_for_runs(2, timeout=5)
        assert h.missed == 0
        h.cancel()
