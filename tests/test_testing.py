"""wheeltask.testing: VirtualClock, manual_scheduler, FrozenClock, run_due, the fixture."""

from __future__ import annotations

import datetime
import threading

import pytest
from freezegun import freeze_time

import wheeltask
from wheeltask import TaskCancelled, _default
from wheeltask.testing import FrozenClock, VirtualClock, manual_scheduler


def test_manual_scheduler_starts_no_threads() -> None:
    before = threading.active_count()
    s = manual_scheduler()
    s.post_task(print, delay=1)
    s.post_task(print)
    assert threading.active_count() == before
    assert s.stats().workers == 0
    s.shutdown(cancel_pending=True)


def test_callbacks_run_on_the_advancing_thread() -> None:
    clock = VirtualClock()
    s = manual_scheduler(clock=clock)
    threads: list[threading.Thread] = []
    s.post_task(lambda: threads.append(threading.current_thread()), delay=0.3)
    clock.advance(1)
    assert threads == [threading.current_thread()]
    s.shutdown()


def test_advance_to_and_now() -> None:
    clock = VirtualClock(start=10.0)
    s = manual_scheduler(clock=clock)
    seen: list[float] = []
    s.post_task(lambda: seen.append(clock.now()), delay=2)
    clock.advance_to(11.999)
    assert seen == []
    clock.advance_to(12.0)
    assert seen == [12.0] and clock.now() == 12.0
    s.shutdown()


def test_run_until_idle_runs_everything_then_stops() -> None:
    clock = VirtualClock()
    s = manual_scheduler(clock=clock)
    done = [s.post_task(lambda: None, delay=d) for d in (5, 50, 500, 5000)]
    clock.run_until_idle()
    assert all(h.done() for h in done)
    assert 5000 <= clock.now() < 5000.005
    s.shutdown()


def test_run_until_idle_refuses_to_loop_forever_on_intervals() -> None:
    clock = VirtualClock()
    s = manual_scheduler(clock=clock)
    one = s.post_task(lambda: None, delay=1)
    tick = s.post_task(lambda: None, interval=0.1)
    with pytest.raises(RuntimeError, match=r"^run_until_idle\(\): only interval tasks are left"):
        clock.run_until_idle()
    assert one.done()  # what could finish did
    clock.run_until_idle(max_time=1.0)
    assert clock.now() == pytest.approx(2.0, abs=0.01)
    assert tick.runs >= 19
    tick.cancel()
    clock.run_until_idle()
    s.shutdown()


def test_advance_from_a_callback_is_refused() -> None:
    clock = VirtualClock()
    s = manual_scheduler(clock=clock)
    h = s.post_task(clock.advance, 1, delay=0.1)
    clock.advance(1)
    with pytest.raises(RuntimeError, match=r"^VirtualClock\.advance\(\) called from a callback"):
        h.result()
    s.shutdown()


def test_two_schedulers_on_one_clock_interleave_in_time() -> None:
    clock = VirtualClock()
    a, b = manual_scheduler(clock=clock), manual_scheduler(clock=clock)
    order: list[str] = []
    a.post_task(order.append, "a1", delay=0.1)
    b.post_task(order.append, "b1", delay=0.05)
    a.post_task(order.append, "a2", delay=0.2)
    b.post_task(order.append, "b2", delay=0.15)
    clock.advance(1)
    assert order == ["b1", "a1", "b2", "a2"]
    a.shutdown()
    b.shutdown()


def test_shutdown_waits_in_virtual_time() -> None:
    clock = VirtualClock()
    s = manual_scheduler(clock=clock)
    h = s.post_task(lambda: "late", delay=3600)
    assert s.shutdown(wait=True) is True
    assert h.result() == "late" and clock.now() >= 3600


def test_shutdown_timeout_in_virtual_time_cancels_what_did_not_start() -> None:
    clock = VirtualClock()
    s = manual_scheduler(clock=clock)
    early = s.post_task(lambda: 1, delay=1)
    late = s.post_task(lambda: 2, delay=100)
    assert s.shutdown(wait=True, timeout=10) is False
    assert early.result() == 1
    with pytest.raises(TaskCancelled, match=r"shutdown\(\) could not run it"):
        late.result()


def test_threaded_scheduler_on_a_virtual_clock() -> None:
    # A real scheduler (timer thread and workers) can run on virtual time too: its
    # timer thread waits for the clock to move instead of sleeping.
    clock = VirtualClock()
    with wheeltask.Scheduler(clock=clock, max_workers=2) as s:
        h = s.post_task(clock.now, delay=30)
        assert h.wait_for_finished(timeout=0.05) is False  # real seconds: time stands still
        clock.advance(30)
        assert h.result(timeout=5) == 30.0


# ------------------------------------------------------------------ freezegun
def test_frozen_clock_with_freezegun_runs_what_is_due() -> None:
    with freeze_time("2026-01-01 12:00:00") as frozen:
        s = manual_scheduler(clock=FrozenClock())
        seen: list[int] = []
        s.post_task(seen.append, 1, delay=1.5)
        s.post_task(seen.append, 2, delay=3)
        frozen.tick(2)
        assert s.run_due() == 1
        assert seen == [1]
        frozen.tick(datetime.timedelta(seconds=1))
        s.run_due()
        assert seen == [1, 2]
        s.shutdown()


def test_frozen_clock_never_moves_backwards() -> None:
    with freeze_time("2026-01-01 12:00:00") as frozen:
        clock = FrozenClock()
        s = manual_scheduler(clock=clock)
        h = s.post_task(lambda: None, delay=10)
        t0 = clock.now()
        frozen.move_to("2025-06-01")  # freezegun's monotonic jumps back by months
        assert clock.now() == t0
        s.run_due()
        assert not h.done()  # and nothing fired early
        frozen.move_to("2026-01-01 12:00:10")
        s.run_due()
        assert h.done()
        s.shutdown()


def test_frozen_time_does_not_move_real_delays() -> None:
    # A user who freezes time in a test does not make a real scheduler fire early.
    with wheeltask.Scheduler() as s, freeze_time("2026-01-01") as frozen:
        h = s.post_task(lambda: None, delay=30)
        frozen.tick(datetime.timedelta(hours=1))
        assert h.wait_for_finished(timeout=0.05) is False
        h.cancel()


def test_run_due_only_on_manual_schedulers() -> None:
    with wheeltask.Scheduler() as s, pytest.raises(RuntimeError, match=r"^run_due\(\) is only"):
        s.run_due()


# -------------------------------------------------------------------- fixture
def test_fixture_swaps_and_restores_the_default(wheeltask_clock: VirtualClock) -> None:
    s = wheeltask.get_scheduler()
    assert s.clock is wheeltask_clock
    h = wheeltask.post_task(lambda: 7, delay=86400 * 2)
    assert h.result(timeout=86400 * 2) == 7


def test_fixture_is_registered_as_a_plugin(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("wheeltask")


def test_waiting_inside_a_manual_callback_without_timeout_raises() -> None:
    clock = VirtualClock()
    s = manual_scheduler(clock=clock)
    later = s.post_task(lambda: 1, delay=10)
    h = s.post_task(later.result)
    clock.advance(0)
    with pytest.raises(RuntimeError, match="without a timeout would block forever"):
        h.result()
    timed = s.post_task(later.wait_for_finished, 1)
    clock.advance(0)
    assert timed.result() is False  # with a timeout: time cannot move here
    s.shutdown(cancel_pending=True)


def test_advance_zero_runs_a_timer_due_now_mid_tick() -> None:
    clock = VirtualClock()
    s = manual_scheduler(clock=clock)
    clock.advance(0.0031)
    seen: list[float] = []
    h = s.post_task(lambda: seen.append(clock.now()), delay=0, interval=0.005)
    clock.advance(0)
    assert seen == [0.0031]
    clock.advance(0.005)
    assert seen == [0.0031, 0.0081]
    h.cancel()
    s.shutdown()


def test_manual_shutdown_timeout_runs_what_falls_due_within_it() -> None:
    clock = VirtualClock()
    s = manual_scheduler(clock=clock)
    h = s.post_task(lambda: "ran", delay=0.003)
    later = s.post_task(lambda: "late", delay=1)
    assert s.shutdown(timeout=0.004) is False
    assert h.result() == "ran" and later.cancelled()


@pytest.fixture
def configured_clock(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> VirtualClock:
    monkeypatch.setattr(_default, "_options", {"task_defaults": {"retries": 2}})
    clock: VirtualClock = request.getfixturevalue("wheeltask_clock")
    return clock


def test_fixture_applies_what_configure_set(configured_clock: VirtualClock) -> None:
    def always() -> None:
        raise wheeltask.Retry(delay=1)

    h = wheeltask.post_task(always)
    configured_clock.run_until_idle()
    assert h.attempts == 3  # retries=2 from configure(task_defaults=...)
