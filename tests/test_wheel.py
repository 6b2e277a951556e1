"""The wheel alone: placement, cascades, overflow, removal, ordering, idle jumps."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wheeltask._wheel import L0_SLOTS, TICK_NS, Wheel

TICK = TICK_NS
HOUR = 3600 * 1_000_000_000
DAY = 24 * HOUR


class Entry:
    __slots__ = ("_deadline", "_id", "_wslot")

    def __init__(self, deadline: int, id_: int) -> None:
        self._deadline = deadline
        self._id = id_
        self._wslot = None

    def __repr__(self) -> str:
        return f"Entry({self._deadline}, {self._id})"


def step_all(w: Wheel, until_tick: int) -> list[tuple[int, Entry]]:
    """Advance one non-empty tick at a time; return (tick fired, entry) pairs."""
    fired: list[tuple[int, Entry]] = []
    steps = 0
    while True:
        nd = w.next_deadline()
        if nd is None or nd > until_tick:
            break
        out = w.advance(nd)
        fired += [(nd, e) for e in out]
        steps += 1
        if out or steps % 16 == 0:  # every step of an early cascade would be slow
            w._check()
    w.advance(until_tick)
    return fired


# Delays crossing every level and the overflow: sub-tick, level 0 (< 1 s), level 1
# (< 120 s), level 2 (< 24 h) and beyond 24 h, plus exact boundaries.
_boundaries = [
    0,
    1,
    TICK - 1,
    TICK,
    TICK + 1,
    L0_SLOTS * TICK,
    120 * 10**9,
    DAY - TICK,
    DAY,
    DAY + 1,
]
delays = st.one_of(
    st.sampled_from(_boundaries),
    st.integers(0, L0_SLOTS * TICK),
    st.integers(0, 120 * 10**9),
    st.integers(0, DAY),
    st.integers(DAY, 3 * DAY),
)


# Early (chunked) cascades start at 256 entries in a level-1 slot; smaller thresholds
# make the properties below exercise them with a handful of entries.
pre_mins = st.sampled_from([1, 2, 5, 256])


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(0, 10**6),
    batches=st.lists(st.lists(delays, min_size=1, max_size=12), min_size=1, max_size=4),
    gaps=st.lists(st.integers(0, 2 * DAY // TICK), min_size=4, max_size=4),
    pre_min=pre_mins,
)
def test_fires_exactly_in_its_tick_never_early(
    start: int, batches: list[list[int]], gaps: list[int], pre_min: int
) -> None:
    w = Wheel(start_tick=start, precascade_min=pre_min)
    now = start
    n = 0
    for batch, gap in zip(batches, gaps[: len(batches)], strict=True):
        added = []
        for d in batch:
            n += 1
            e = Entry(now * TICK + d, n)
            w.add(e)
            added.append(e)
        w._check()
        fired = step_all(w, now + gap)
        for tick, e in fired:
            due = w.tick_of(e._deadline)
            # Never early: the tick's time is at or after the deadline.
            assert tick * TICK >= e._deadline
            # At most one tick late: it fires in its own tick (or the first tick that
            # was still open when it was added).
            assert tick == max(due, now), (tick, due, now)
        now += gap + 1
    fired = step_all(w, now + 4 * DAY // TICK)
    assert len(w) == 0


@settings(max_examples=200, deadline=None)
@given(
    deadlines=st.lists(st.integers(0, 3 * L0_SLOTS * TICK), min_size=2, max_size=40),
)
def test_within_a_tick_deadline_order_then_fifo(deadlines: list[int]) -> None:
    w = Wheel()
    entries = [Entry(d, i) for i, d in enumerate(deadlines)]
    for e in entries:
        w.add(e)
    out = w.advance(10**9)
    assert len(out) == len(entries)
    keys = [(w.tick_of(e._deadline), e._deadline, e._id) for e in out]
    assert keys == sorted(keys)


def test_equal_deadlines_fifo_across_levels() -> None:
    # A far timer cascades down into the slot that a nearer one, posted later, went
    # into directly: posting order still wins on ties.
    w = Wheel()
    deadline = 250 * TICK
    first = Entry(deadline, 1)
    w.add(first)  # 250 ticks away: level 1
    w.advance(190)
    second = Entry(deadline, 2)
    w.add(second)  # 60 ticks away: level 0
    w._check()
    assert [e._id for e in w.advance(300)] == [1, 2]


@settings(max_examples=200, deadline=None)
@given(
    deadlines=st.lists(delays, min_size=1, max_size=30),
    data=st.data(),
)
def test_remove_removes_exactly_that_entry(deadlines: list[int], data: st.DataObject) -> None:
    w = Wheel()
    entries = [Entry(d, i) for i, d in enumerate(deadlines)]
    for e in entries:
        w.add(e)
    victim = data.draw(st.sampled_from(entries))
    assert w.remove(victim)
    assert not w.remove(victim)
    w._check()
    out = w.advance(10 * DAY // TICK)
    assert victim not in out
    assert sorted(e._id for e in out) == sorted(e._id for e in entries if e is not victim)


def test_removed_then_readded_fires_once() -> None:
    w = Wheel()
    e = Entry(10 * TICK, 1)
    w.add(e)
    w.remove(e)
    w.add(e)  # same slot list: two cells, one live entry
    w._check()
    assert w.advance(20) == [e]
    w._check()


@pytest.mark.parametrize("pre_min", [3, 256])
def test_seeded_stress_with_invariants(pre_min: int) -> None:
    rng = random.Random(20261122)
    w = Wheel(precascade_min=pre_min)
    live: dict[int, Entry] = {}
    now = 0
    next_id = 0
    for step in range(100_000):
        op = rng.random()
        if op < 0.5:
            next_id += 1
            e = Entry(now * TICK + int(10 ** rng.uniform(0, 14.5)), next_id)
            w.add(e)
            live[next_id] = e
        elif op < 0.7 and live:
            key = rng.choice(list(live)) if len(live) < 64 else next(iter(live))
            assert w.remove(live.pop(key))
        else:
            now += int(10 ** rng.uniform(0, 7.5))
            for e in w.advance(now):
                assert e._deadline <= now * TICK
                del live[e._id]
        if step % 97 == 0:
            w._check()
    w._check()
    assert len(w) == len(live)


def test_long_idle_stretch_is_skipped_not_stepped() -> None:
    w = Wheel()
    entries = [Entry(i * 3 * DAY, i) for i in range(1, 11)]  # every 3 days for 30 days
    for e in entries:
        w.add(e)
    t0 = time.perf_counter()
    out = w.advance(31 * DAY // TICK)  # 535 million ticks
    elapsed = time.perf_counter() - t0
    assert out == entries
    assert elapsed < 0.5, elapsed  # stepping every tick would take minutes


def test_next_deadline_is_first_firing_or_cascade() -> None:
    w = Wheel()
    assert w.next_deadline() is None
    w.add(Entry(7 * TICK, 1))
    assert w.next_deadline() == 7
    w.add(Entry(90 * 10**9, 2))  # level 1: cascade at its 1 s block
    assert w.next_deadline() == 7
    w.advance(7)
    assert w.next_deadline() == 90 * 200  # block start of 90 s
    w.advance(90 * 200 - 1)
    assert w.next_deadline() == 90 * 200


def test_past_deadline_fires_at_next_tick() -> None:
    w = Wheel(start_tick=100)
    e = Entry(3 * TICK, 1)
    w.add(e)
    w._check()
    assert w.next_deadline() == 100
    assert w.advance(100) == [e]


def test_many_removals_keep_memory_bounded() -> None:
    w = Wheel()
    for i in range(50_000):
        e = Entry((1000 + i) * TICK * 7, i)
        w.add(e)
        w.remove(e)
    w._check()
    cells = sum(len(s) for s in w._all_lists())
    assert cells < 10_000
    assert len(w) == 0


def test_drain_returns_live_entries_in_order() -> None:
    w = Wheel()
    es = [Entry(d, i) for i, d in enumerate([5 * DAY, 10, 3 * 10**9, 10])]
    for e in es:
        w.add(e)
    w.remove(es[2])
    assert w.drain() == [es[1], es[3], es[0]]
    assert len(w) == 0
    assert w.next_deadline() is None


@settings(max_examples=200, deadline=None)
@given(
    deadlines=st.lists(st.integers(0, 3 * L0_SLOTS * TICK), min_size=1, max_size=40),
    cutoff=st.integers(0, 3 * L0_SLOTS * TICK),
    pre_min=pre_mins,
)
def test_cutoff_returns_exactly_what_is_due_by_then(
    deadlines: list[int], cutoff: int, pre_min: int
) -> None:
    w = Wheel(precascade_min=pre_min)
    entries = [Entry(d, i) for i, d in enumerate(deadlines)]
    for e in entries:
        w.add(e)
    out = w.advance(cutoff // TICK, cutoff=cutoff)
    w._check()
    assert sorted(e._id for e in out) == [e._id for e in entries if e._deadline <= cutoff]
    rest = w.advance(10**9)
    assert sorted(e._id for e in out + rest) == list(range(len(entries)))


def test_crowded_slot_is_cascaded_in_chunks_during_the_second_before() -> None:
    w = Wheel()
    n = 20_000
    # All due within the second starting at tick 400, posted from tick 0: level 1.
    entries = [Entry((400 + i % 200) * TICK - i % 7, i) for i in range(n)]
    for e in entries:
        w.add(e)
    w._check()
    assert w.next_deadline() == 200  # not 400: the early cascade starts a second before
    fired: list[Entry] = []
    moved_per_tick = []
    for t in range(200, 400):
        before = w._pre_pos if w._pre is not None else 0
        fired += w.advance(t)
        if w._pre is not None:
            moved_per_tick.append(w._pre_pos - before)
        if t % 37 == 0:
            w._check()
    assert fired == []
    assert max(moved_per_tick) <= 2 * n // 200  # spread over the second, no big stall
    left = len(w._pre) - w._pre_pos if w._pre is not None else 0
    assert left <= 2 * n // 200  # little is left for the boundary tick itself
    for t in range(400, 600):
        out = w.advance(t)
        assert all(w.tick_of(e._deadline) == t for e in out)
        fired += out
    w._check()
    assert sorted(e._id for e in fired) == list(range(n))
    assert len(w) == 0


def test_a_spent_early_cascade_stops_waking_the_timer() -> None:
    w = Wheel()
    crowd = [Entry((400 + i % 200) * TICK, i) for i in range(300)]
    for e in crowd:
        w.add(e)
    far = Entry(100_000 * TICK, 999)
    w.add(far)
    for e in crowd:
        w.remove(e)
    wakeups = 0
    while (nd := w.next_deadline()) is not None and nd < 90_000:
        w.advance(nd)
        wakeups += 1
        assert wakeups < 20, "an early cascade of removed entries kept the wheel busy"
    w._check()
    assert w.advance(100_000) == [far]
