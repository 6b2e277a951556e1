"""Bad input: a clear exception naming the argument, and nothing changes."""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wheeltask
from wheeltask import QueueFull, Scheduler, SchedulerShutdown
from wheeltask.testing import VirtualClock, manual_scheduler


@pytest.fixture
def sched() -> Iterator[Scheduler]:
    s = manual_scheduler(clock=VirtualClock(), queue_size=2, max_pending=3)
    s.post_task(print, delay=1)  # something to leave unchanged
    s.post_task(print)
    yield s
    s.shutdown(wait=False, cancel_pending=True)


def noop() -> None:
    pass


BAD_POSTS: list[tuple[str, Callable[[Scheduler], Any], type[Exception], str]] = [
    ("not callable", lambda s: s.post_task(42), TypeError, r"^cb must be callable, got 42$"),
    ("none cb", lambda s: s.post_task(None), TypeError, r"^cb must be callable"),
    (
        "negative delay",
        lambda s: s.post_task(noop, delay=-1),
        ValueError,
        r"^delay must be >= 0 seconds, got -1$",
    ),
    (
        "negative float delay",
        lambda s: s.post_task(noop, delay=-0.001),
        ValueError,
        r"^delay must be >= 0 seconds, got -0.001$",
    ),
    (
        "nan delay",
        lambda s: s.post_task(noop, delay=math.nan),
        ValueError,
        r"^delay must be a finite number of seconds, got nan$",
    ),
    (
        "inf delay",
        lambda s: s.post_task(noop, delay=math.inf),
        ValueError,
        r"^delay must be a finite number of seconds, got inf$",
    ),
    (
        "huge delay",
        lambda s: s.post_task(noop, delay=1e300),
        ValueError,
        r"^delay must be at most 3\.15576e\+09 seconds",
    ),
    (
        "bool delay",
        lambda s: s.post_task(noop, delay=True),
        TypeError,
        r"^delay must be a number of seconds or a datetime\.timedelta, got bool True$",
    ),
    ("str delay", lambda s: s.post_task(noop, delay="5"), TypeError, r"^delay must be a number"),
    (
        "negative timedelta",
        lambda s: s.post_task(noop, delay=datetime.timedelta(seconds=-1)),
        ValueError,
        r"^delay must be >= 0 seconds",
    ),
    (
        "zero interval",
        lambda s: s.post_task(noop, interval=0),
        ValueError,
        r"^interval must be at least 0\.005 seconds \(one 5 ms tick\), got 0$",
    ),
    (
        "negative interval",
        lambda s: s.post_task(noop, interval=-2.0),
        ValueError,
        r"^interval must be at least 0\.005 seconds",
    ),
    (
        "sub-tick interval",
        lambda s: s.post_task(noop, interval=0.001),
        ValueError,
        r"^interval must be at least 0\.005 seconds \(one 5 ms tick\), got 0\.001$",
    ),
    (
        "nan interval",
        lambda s: s.post_task(noop, interval=math.nan),
        ValueError,
        r"^interval must be a finite number of seconds, got nan$",
    ),
    (
        "inf interval",
        lambda s: s.post_task(noop, interval=math.inf),
        ValueError,
        r"^interval must be a finite number of seconds",
    ),
    (
        "bool interval",
        lambda s: s.post_task(noop, interval=False),
        TypeError,
        r"^interval must be a number of seconds",
    ),
    (
        "unknown option",
        lambda s: s.post_task(noop, color="red"),
        TypeError,
        r"^post_task\(\) got unknown option\(s\): color\. .*functools\.partial\(cb, color=\.\.\.\)",
    ),
    ("bad name", lambda s: s.post_task(noop, name=3), TypeError, r"^name must be a str, got 3$"),
    (
        "queue full",
        lambda s: s.post_task(noop) and s.post_task(noop),
        QueueFull,
        r"^run queue is full",
    ),
    (
        "too many timers",
        lambda s: [s.post_task(noop, delay=5) for _ in range(3)],
        QueueFull,
        r"^3 timers pending, max_pending=3",
    ),
]


@pytest.mark.parametrize(
    ("call", "exc", "message"),
    [pytest.param(c, e, m, id=i) for i, c, e, m in BAD_POSTS],
)
def test_bad_post_raises_and_changes_nothing(
    sched: Scheduler, call: Callable[[Scheduler], Any], exc: type[Exception], message: str
) -> None:
    if exc is QueueFull:
        sched._pool._on_full = "raise"  # type: ignore[union-attr]
    with pytest.raises(exc, match=message):
        call(sched)
    before = sched.stats()
    with pytest.raises(exc, match=message):
        call(sched)
    assert sched.stats() == before


def test_queue_full_raises_on_raise_policy() -> None:
    s = manual_scheduler(queue_size=1, on_full="raise")
    s.post_task(noop)
    before = s.stats()
    with pytest.raises(QueueFull, match=r"^run queue is full \(1 tasks waiting; on_full='raise'\)"):
        s.post_task(noop)
    assert s.stats() == before
    s.shutdown()


def test_post_after_shutdown_raises_and_changes_nothing() -> None:
    s = manual_scheduler()
    s.post_task(noop)
    assert s.shutdown()
    before = s.stats()
    with pytest.raises(SchedulerShutdown, match=r"^scheduler 'wheeltask' is shut down$"):
        s.post_task(noop)
    with pytest.raises(SchedulerShutdown):
        s.post_task(noop, delay=1)
    assert isinstance(SchedulerShutdown(), RuntimeError)
    assert s.stats() == before


@pytest.mark.parametrize(
    ("options", "exc", "message"),
    [
        ({"max_workers": 0}, ValueError, r"^max_workers must be >= 1, got 0$"),
        ({"max_workers": 2.5}, TypeError, r"^max_workers must be an int, got float 2\.5$"),
        ({"max_workers": True}, TypeError, r"^max_workers must be an int"),
        ({"min_workers": -1}, ValueError, r"^min_workers must be >= 0"),
        ({"min_workers": 5, "max_workers": 2}, ValueError, r"^min_workers must be <= max_workers"),
        ({"queue_size": 0}, ValueError, r"^queue_size must be >= 1"),
        ({"idle_timeout": 0}, ValueError, r"^idle_timeout must be > 0 and finite"),
        ({"idle_timeout": "5"}, TypeError, r"^idle_timeout must be a number"),
        (
            {"on_full": "drop"},
            ValueError,
            r"^on_full must be one of 'block', 'raise', 'caller_runs'",
        ),
        ({"max_pending": 0}, ValueError, r"^max_pending must be >= 1"),
        ({"clock": object()}, TypeError, r"^clock must provide now\(\) and now_ns\(\)"),
        ({"name": 5}, TypeError, r"^name must be a str"),
    ],
)
def test_bad_scheduler_options(options: dict[str, Any], exc: type[Exception], message: str) -> None:
    with pytest.raises(exc, match=message):
        Scheduler(**options)
    with pytest.raises(exc, match=message):
        wheeltask.configure(**options)


def test_unknown_scheduler_option() -> None:
    with pytest.raises(TypeError):
        Scheduler(workers=3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda h: h.wait_for_finished(-1), r"^timeout must be >= 0 seconds or None, got -1$"),
        (lambda h: h.wait_for_finished(math.nan), r"^timeout must be >= 0 seconds or None"),
        (lambda h: h.result(timeout=-0.5), r"^timeout must be >= 0 seconds or None"),
        (lambda h: h.wait_for_runs(0), r"^n must be an int >= 1, got 0$"),
        (lambda h: h.wait_for_runs(1.5), r"^n must be an int >= 1, got 1\.5$"),
    ],
)
def test_bad_wait_arguments(sched: Scheduler, call: Callable[[Any], Any], message: str) -> None:
    h = sched.post_task(noop, delay=1)
    before = sched.stats()
    with pytest.raises(ValueError, match=message):
        call(h)
    assert sched.stats() == before and not h.done()


def test_bad_shutdown_timeout_changes_nothing(sched: Scheduler) -> None:
    with pytest.raises(ValueError, match=r"^timeout must be >= 0 seconds or None, got -3$"):
        sched.shutdown(timeout=-3)
    sched.post_task(noop, delay=2)  # still open


def test_add_done_callback_requires_callable(sched: Scheduler) -> None:
    h = sched.post_task(noop, delay=1)
    with pytest.raises(TypeError, match=r"^fn must be callable, got 'x'$"):
        h.add_done_callback("x")  # type: ignore[arg-type]


def test_virtual_clock_arguments() -> None:
    c = VirtualClock(5)
    with pytest.raises(ValueError, match=r"^seconds must be >= 0 and finite, got -1$"):
        c.advance(-1)
    with pytest.raises(ValueError, match=r"^t must be finite and >= now \(5\.0\), got 4$"):
        c.advance_to(4)
    with pytest.raises(TypeError, match=r"^start must be a number of seconds"):
        VirtualClock("0")  # type: ignore[arg-type]
    assert c.now() == 5.0


@pytest.mark.parametrize(
    ("options", "exc", "message"),
    [
        ({"retries": -1}, ValueError, r"^retries must be >= 0, got -1$"),
        ({"retries": 1.5}, TypeError, r"^retries must be an int"),
        ({"retries": True}, TypeError, r"^retries must be an int"),
        ({"retry_on": "ValueError"}, TypeError, r"^retry_on must be an exception type"),
        ({"retry_on": (ValueError, 3)}, TypeError, r"^retry_on must be an exception type"),
        ({"retry_on": int}, TypeError, r"^retry_on must be an exception type"),
        ({"backoff": -1}, ValueError, r"^backoff must be >= 0 seconds"),
        ({"backoff": "1s"}, TypeError, r"^backoff must be a number of seconds"),
        ({"retries": 1, "colour": 1}, TypeError, r"^post_task\(\) got unknown option\(s\): colour"),
        ({"key": ["unhashable"]}, TypeError, r"^key must be hashable, got \['unhashable'\]$"),
        ({"key": "k", "on_duplicate": "ignore"}, ValueError, r"^on_duplicate must be one of"),
        ({"on_success": 3}, TypeError, r"^on_success must be callable, got 3$"),
        ({"on_failure": 3}, TypeError, r"^on_failure must be callable, got 3$"),
        ({"on_retry": 3}, TypeError, r"^on_retry must be callable, got 3$"),
        ({"priority": 1.5}, TypeError, r"^priority must be an int, got float 1\.5$"),
        ({"priority": True}, TypeError, r"^priority must be an int, got bool True$"),
        ({"priority": "1"}, TypeError, r"^priority must be an int, got str '1'$"),
    ],
)
def test_bad_task_options(
    sched: Scheduler, options: dict[str, object], exc: type[Exception], message: str
) -> None:
    before = sched.stats()
    with pytest.raises(exc, match=message):
        sched.post_task(print, **options)
    assert sched.stats() == before
