"""The scheduler against a model, in virtual time: random posts, cancels and advances."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from wheeltask import TaskHandle
from wheeltask.testing import VirtualClock, manual_scheduler

TICK = 0.005
NS = 1_000_000_000

delays = st.one_of(
    st.none(),
    st.just(0.0),
    st.floats(0.0001, 0.02),
    st.floats(0.02, 3.0),
    st.sampled_from([0.005, 0.01, 1.0, 1.005, 2.0]),
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("post"), delays),
        st.tuples(st.just("every"), st.floats(0.005, 0.5), delays),
        st.tuples(st.just("cancel"), st.integers(0, 40)),
        st.tuples(st.just("advance"), st.one_of(st.floats(0, 1.5), st.sampled_from([0, TICK]))),
    ),
    max_size=60,
)


@dataclass
class Task:
    handle: TaskHandle
    deadline: float  # first (or only) due time, seconds
    interval: float | None
    seen: list[float] = field(default_factory=list)
    cancelled_at: float | None = None  # clock time of a successful cancel()


@settings(max_examples=300, deadline=None)
@given(ops=ops)
def test_scheduler_matches_the_model(ops: list[tuple[object, ...]]) -> None:
    clock = VirtualClock(start=100.0)
    s = manual_scheduler(clock=clock)
    tasks: list[Task] = []
    order: list[float] = []

    def make_cb(task_list: list[Task], i: int) -> object:
        def cb() -> None:
            now = clock.now()
            task_list[i].seen.append(now)
            order.append(now)

        return cb

    for op in ops:
        kind = op[0]
        if kind in ("post", "every"):
            interval = op[1] if kind == "every" else None
            delay = op[-1]
            i = len(tasks)
            h = s.post_task(make_cb(tasks, i), delay=delay, interval=interval)  # type: ignore[arg-type]
            now = clock.now()
            if interval is None:
                first = now + (delay or 0.0)
            else:
                first = now + (interval if delay is None else delay)  # type: ignore[operator]
            tasks.append(Task(h, first, interval))  # type: ignore[arg-type]
        elif kind == "cancel" and tasks:
            t = tasks[int(op[1]) % len(tasks)]  # type: ignore[call-overload]
            ran_before = len(t.seen)
            was_done = t.handle.done()
            ok = t.handle.cancel()
            if t.interval is None:
                # True iff the callback never ran; a finished one-shot answers False.
                assert ok == (ran_before == 0), (ok, ran_before)
            else:
                assert ok == (not was_done or t.handle.cancelled())
            if ok and t.cancelled_at is None:
                t.cancelled_at = clock.now()
        elif kind == "advance":
            clock.advance(op[1])  # type: ignore[arg-type]
    clock.advance(0)  # immediate tasks run at the next advance, never inside post_task
    end = clock.now()

    # Callbacks saw time move forward only.
    assert order == sorted(order)
    for t in tasks:
        limit = end if t.cancelled_at is None else t.cancelled_at
        if t.interval is None:
            due = t.deadline
            # A successful cancel() means it never runs; otherwise it ran iff it was due.
            expected = 0 if t.cancelled_at is not None else int(due <= limit + 1e-9)
            assert len(t.seen) == expected, (t, end)
            for seen in t.seen:
                assert due - 1e-9 <= seen < due + TICK + 1e-9, (seen, due)
        else:
            # Every grid point up to the end (or the cancel) ran, each within its tick.
            grid = [t.deadline + k * t.interval for k in range(len(t.seen) + 2)]
            for k, seen in enumerate(t.seen):
                assert grid[k] - 1e-6 <= seen < grid[k] + TICK + 1e-6, (k, seen, grid[k])
            if t.cancelled_at is None:
                nxt = grid[len(t.seen)]
                assert nxt > end - 1e-6, ("grid point skipped", nxt, end)
            assert t.handle.missed == 0  # virtual time never stalls
    st_ = s.stats()
    assert st_.submitted == len(tasks)
    assert st_.succeeded == sum(len(t.seen) for t in tasks)
    assert st_.cancelled == sum(t.handle.cancelled() for t in tasks)
    s.shutdown(wait=False, cancel_pending=True)
