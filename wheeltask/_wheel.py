"""Three cascading timing wheels with an overflow list: a pure data structure.

No threads, no clock reads, no logging. Deadlines come in as integer nanoseconds,
ticks are integers, and :meth:`Wheel.advance` hands back the entries whose tick has
been reached, in (tick, deadline, id) order. The scheduler supplies the time.

Geometry (``tick_ns`` = 5 ms in production):

* level 0: 200 slots of one tick each       (1 s of range)
* level 1: 120 slots of 200 ticks each      (120 s)
* level 2: 720 slots of 24,000 ticks each   (24 h)
* overflow: a ``SortedKeyList`` for deadlines 24 h or more away; entries move into
  the wheels at the level-2 boundary that brings them within range.

An entry is bucketed by its absolute tick ``ceil(deadline / tick_ns)`` and placed by
its distance from the wheel's current tick. When the hand enters a level-1 block (or a
level-2 block), that block's slot is cascaded: its entries are placed again, nearer.
Every entry therefore fires in exactly its own tick, whatever level it started on.

Cascading a crowded slot in one tick stalls that tick (about 0.2 us an entry: 10 ms for
50,000 timers due in the same second). So a level-1 slot holding many entries is
cascaded early, in chunks, during the second before its own: level 0 has a second bank
of 200 slots for entries due 200 to 399 ticks ahead, and as the hand passes a slot its
second-bank list becomes its first-bank list (a list moved, not its entries).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Final, Protocol

from sortedcontainers import SortedKeyList

__all__ = ["L0_SLOTS", "L1_SLOTS", "L2_SLOTS", "TICK_NS", "TimerEntry", "Wheel"]

TICK_NS: Final = 5_000_000
L0_SLOTS: Final = 200
L1_SLOTS: Final = 120
L2_SLOTS: Final = 720
# Ticks covered by one slot of each level, and by a whole level.
_L1_SPAN: Final = L0_SLOTS  # 200 ticks = 1 s
_L2_SPAN: Final = L0_SLOTS * L1_SLOTS  # 24,000 ticks = 120 s
_RANGE: Final = _L2_SPAN * L2_SLOTS  # 17,280,000 ticks = 24 h
_FULL0: Final = (1 << L0_SLOTS) - 1
_FULL1: Final = (1 << L1_SLOTS) - 1
_FULL2: Final = (1 << L2_SLOTS) - 1
# Lazily removed entries stay in their slot list until it is processed; once there are
# more of them than live entries (and at least this many) every list is compacted, so
# memory stays O(live) at an amortised O(1) per removal.
_COMPACT_MIN: Final = 4096
# A level-1 slot with at least this many entries is cascaded early, in chunks.
_PRECASCADE_MIN: Final = 256
_CHUNK_MIN: Final = 64


class TimerEntry(Protocol):
    """What the wheel needs from an entry (the scheduler's task handles provide it).

    ``_deadline`` (int ns) and ``_id`` (int, posting order) are set by the owner and not
    changed while the entry is in the wheel; ``_wslot`` belongs to the wheel.
    """

    _deadline: int
    _id: int
    _wslot: list[TimerEntry] | None


_order = attrgetter("_deadline", "_id")
_by_deadline = attrgetter("_deadline")
_by_id = attrgetter("_id")


def _lowest_bit(x: int) -> int:
    return (x & -x).bit_length() - 1


class Wheel:
    """Hierarchical timing wheel keyed by absolute tick.

    Args:
        tick_ns: length of one level-0 tick in nanoseconds (5 ms by default).
        start_tick: the first tick not yet processed.

    ``add`` and ``remove`` are O(1) (removal is lazy: the entry is unlinked at once and
    its slot cell is reclaimed when the slot is next processed or compacted), except for
    entries 24 h or more away, which cost O(log n) in the overflow list.
    """

    __slots__ = (
        "_count",
        "_dead",
        "_l0",
        "_l0b",
        "_l1",
        "_l2",
        "_m0",
        "_m0b",
        "_m1",
        "_m2",
        "_overflow",
        "_ovf_tag",
        "_pre",
        "_pre_block",
        "_pre_min",
        "_pre_pos",
        "_tick",
        "_tick_ns",
    )

    def __init__(
        self, tick_ns: int = TICK_NS, start_tick: int = 0, precascade_min: int = _PRECASCADE_MIN
    ) -> None:
        if tick_ns <= 0:
            raise ValueError(f"tick_ns must be > 0, got {tick_ns!r}")
        self._tick_ns = tick_ns
        self._tick = start_tick
        self._l0: list[list[TimerEntry]] = [[] for _ in range(L0_SLOTS)]
        # Second bank of level 0: entries 200..399 ticks ahead, filled only by early
        # cascades; bit i of _m0b set <=> _l0b[i] may hold entries.
        self._l0b: list[list[TimerEntry]] = [[] for _ in range(L0_SLOTS)]
        self._m0b = 0
        # The level-1 list being cascaded early, its block, and how far it has got.
        self._pre: list[TimerEntry] | None = None
        self._pre_block = 0
        self._pre_pos = 0
        self._pre_min = precascade_min
        self._l1: list[list[TimerEntry]] = [[] for _ in range(L1_SLOTS)]
        self._l2: list[list[TimerEntry]] = [[] for _ in range(L2_SLOTS)]
        # Bit i set <=> slot i of that level may hold entries (live or lazily removed).
        self._m0 = 0
        self._m1 = 0
        self._m2 = 0
        self._overflow: SortedKeyList = SortedKeyList(key=_order)
        # Marks entries held by the overflow list (compared by identity only).
        self._ovf_tag: list[TimerEntry] = []
        self._count = 0
        self._dead = 0

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return self._count

    def tick_of(self, deadline_ns: int) -> int:
        """The tick in which a deadline fires: ``ceil(deadline / tick)``, never earlier."""
        return -(-deadline_ns // self._tick_ns)

    def next_deadline(self) -> int | None:
        """The next tick at which :meth:`advance` has work, or None if empty.

        That is the earliest of: the next occupied level-0 slot, the next level-1 or
        level-2 cascade, and the boundary that moves the first overflow entry in. It
        uses occupancy bitmaps, never a scan of the slots. The answer may be a tick at
        which only a cascade (or a lazily removed entry) is found, never a tick later
        than the next real firing.
        """
        if not self._count:
            return None
        now = self._tick
        if self._pre is not None:
            return now  # an early cascade is under way: a chunk at every tick
        best: int | None = None
        m = self._m0 | self._m0b  # a second-bank slot moves up when the hand passes it
        if m:
            p = now % L0_SLOTS
            r = ((m >> p) | (m << (L0_SLOTS - p))) & _FULL0
            best = now + _lowest_bit(r)
        m = self._m1
        if m:
            b0 = -(-now // _L1_SPAN)
            p = b0 % L1_SLOTS
            r = ((m >> p) | (m << (L1_SLOTS - p))) & _FULL1
            b = b0 + _lowest_bit(r)
            t = b * _L1_SPAN
            if len(self._l1[b % L1_SLOTS]) >= self._pre_min:
                t = max(now, t - _L1_SPAN)  # crowded: cascade it during the second before
            if best is None or t < best:
                best = t
        m = self._m2
        if m:
            d0 = -(-now // _L2_SPAN)
            p = d0 % L2_SLOTS
            r = ((m >> p) | (m << (L2_SLOTS - p))) & _FULL2
            t = (d0 + _lowest_bit(r)) * _L2_SPAN
            if best is None or t < best:
                best = t
        if self._overflow:
            first: TimerEntry = self._overflow[0]
            t = self._overflow_boundary(self.tick_of(first._deadline))
            if best is None or t < best:
                best = t
        return best

    def _overflow_boundary(self, tick: int) -> int:
        # The first level-2 boundary at or after now from which `tick` is in range.
        d = max(-(-self._tick // _L2_SPAN), -(-(tick - _RANGE + 1) // _L2_SPAN))
        return d * _L2_SPAN

    # ---------------------------------------------------------------- mutation
    def add(self, entry: TimerEntry) -> None:
        """Insert an entry, due in the tick of ``entry._deadline``. O(1).

        A deadline in a tick already processed fires at the next tick processed.
        The entry must not be in the wheel already.
        """
        # Cascades re-place entries through here too (and take the count back).
        self._count += 1
        t = -(-entry._deadline // self._tick_ns)
        now = self._tick
        d = t - now
        if d < L0_SLOTS:
            i = (t if d >= 0 else now) % L0_SLOTS
            slot = self._l0[i]
            if not slot:
                self._m0 |= 1 << i
        elif d < _L2_SPAN:
            i = (t // _L1_SPAN) % L1_SLOTS
            slot = self._l1[i]
            if not slot:
                self._m1 |= 1 << i
        elif d < _RANGE:
            i = (t // _L2_SPAN) % L2_SLOTS
            slot = self._l2[i]
            if not slot:
                self._m2 |= 1 << i
        else:
            entry._wslot = self._ovf_tag
            self._overflow.add(entry)
            return
        slot.append(entry)
        entry._wslot = slot

    def remove(self, entry: TimerEntry) -> bool:
        """Unlink an entry; True if it was in the wheel. O(1) (overflow: O(log n)).

        The entry is never returned by :meth:`advance` afterwards.
        """
        slot = entry._wslot
        if slot is None:
            return False
        entry._wslot = None
        self._count -= 1
        if slot is self._ovf_tag:
            self._overflow.remove(entry)
            return True
        self._dead += 1
        if self._dead > _COMPACT_MIN and self._dead > self._count:
            self._compact()
        return True

    def advance(self, to_tick: int, cutoff: int | None = None) -> list[TimerEntry]:
        """Process every tick up to and including ``to_tick``; return what fell due.

        Entries come out in tick order, and within a tick by (deadline, id). Empty
        stretches are skipped using the bitmaps, so a 30-day jump over a handful of
        timers costs a handful of steps, not 500 million.

        Args:
            to_tick: the last tick to process.
            cutoff: also return the entries of the next tick whose deadline is at or
                before ``cutoff`` (a time inside that tick), leaving the others in it.
                Virtual clocks use it to stop between two ticks.
        """
        due: list[TimerEntry] = []
        while True:
            nd = self.next_deadline()
            if nd is None or nd > to_tick:
                break
            if nd > self._tick:
                self._tick = nd
            self._process_tick(due)
        if to_tick >= self._tick:
            self._tick = to_tick + 1
        if cutoff is not None and self._count:
            self._process_tick(due, cutoff)
        if not self._count and (self._dead or self._pre is not None):
            self._clear_lists()  # only garbage (or an early cascade's spent list) is left
        return due

    def _process_tick(self, due: list[TimerEntry], cutoff: int | None = None) -> None:
        # With a cutoff the tick is only partly done: its cascades happen (they are
        # idempotent) and its entries up to the cutoff fire; the tick stays current.
        t = self._tick
        if t % _L2_SPAN == 0:
            i = (t // _L2_SPAN) % L2_SLOTS
            if self._m2 >> i & 1:
                self._m2 &= ~(1 << i)
                self._cascade(self._l2, i)
            ovf = self._overflow
            while ovf:
                first: TimerEntry = ovf[0]
                if self.tick_of(first._deadline) - t >= _RANGE:
                    break
                ovf.pop(0)
                self.add(first)
                self._count -= 1
        if t % _L1_SPAN == 0:
            i = (t // _L1_SPAN) % L1_SLOTS
            if self._pre is not None and self._pre_block == t // _L1_SPAN:
                self._cascade(self._l1, i, self._pre_pos)  # the rest of an early one
                self._m1 &= ~(1 << i)
                self._pre = None
            elif self._m1 >> i & 1:
                self._m1 &= ~(1 << i)
                self._cascade(self._l1, i)
        if cutoff is None:
            self._precascade(t)
        i = t % L0_SLOTS
        if self._m0 >> i & 1:
            self._m0 &= ~(1 << i)
            slot = self._l0[i]
            self._l0[i] = []
            n0 = len(due)
            for e in slot:
                if e._wslot is not slot:
                    self._dead -= 1
                elif cutoff is not None and e._deadline > cutoff:
                    e._wslot = None
                    self._count -= 1
                    self.add(e)  # not yet: back into this tick's slot
                else:
                    e._wslot = None
                    due.append(e)
            fired = len(due) - n0
            self._count -= fired
            if fired > 1:
                # (deadline, id) order by two stable sorts on int keys: cheaper than
                # one sort on tuples, and nearly free on a slot filled in order.
                part = due[n0:]
                part.sort(key=_by_id)
                part.sort(key=_by_deadline)
                due[n0:] = part
        if cutoff is None:
            if self._m0b >> i & 1:
                # The hand has passed slot i: its second-bank entries are now due in the
                # first bank's window (200 ticks ahead). The list moves as it is, so its
                # entries' _wslot stays right.
                assert not self._l0[i], "first-bank slot refilled within its own tick"
                self._m0b &= ~(1 << i)
                self._l0[i] = self._l0b[i]
                self._l0b[i] = []
                self._m0 |= 1 << i
            self._tick = t + 1

    def _precascade(self, t: int) -> None:
        """At tick t, move a chunk of the next block's crowded level-1 slot down."""
        b = t // _L1_SPAN + 1
        pre = self._pre
        if pre is None:
            i = b % L1_SLOTS
            if not (self._m1 >> i & 1) or len(self._l1[i]) < self._pre_min:
                return
            pre = self._pre = self._l1[i]
            self._pre_block = b
            self._pre_pos = 0
        # Spread what is left over the ticks left before the block starts.
        pos = self._pre_pos
        left = b * _L1_SPAN - t
        end = min(len(pre), pos + max(_CHUNK_MIN, -(-(len(pre) - pos) // left)))
        tick_ns = self._tick_ns
        for k in range(pos, end):
            e = pre[k]
            if e._wslot is not pre:
                self._dead -= 1
                continue
            due = -(-e._deadline // tick_ns)  # in block b: 1 to 399 ticks ahead of t
            j = due % L0_SLOTS
            if due - t < L0_SLOTS:
                slot = self._l0[j]
                if not slot:
                    self._m0 |= 1 << j
            else:
                slot = self._l0b[j]
                if not slot:
                    self._m0b |= 1 << j
            slot.append(e)
            e._wslot = slot
        self._pre_pos = end
        if end == len(pre):
            # All moved down: the list is spent. Emptied in place (entries added to
            # this block later find it empty and set its bit again), so nothing wakes
            # the timer for it any more.
            pre.clear()
            self._m1 &= ~(1 << (b % L1_SLOTS))
            self._pre = None

    def _cascade(self, level: list[list[TimerEntry]], i: int, start: int = 0) -> None:
        slot = level[i]
        level[i] = []
        add = self.add
        moved = 0
        for k in range(start, len(slot)):
            e = slot[k]
            if e._wslot is slot:
                add(e)
                moved += 1
            else:
                self._dead -= 1
        self._count -= moved

    def drain(self) -> list[TimerEntry]:
        """Remove and return every live entry, in (deadline, id) order."""
        out = self.entries()
        for e in out:
            e._wslot = None
        self._overflow.clear()
        self._clear_lists()
        self._count = 0
        out.sort(key=_order)
        return out

    def entries(self) -> list[TimerEntry]:
        """Every live entry, in no particular order, without removing any. O(n)."""
        out: list[TimerEntry] = []
        seen: set[int] = set()
        for slot in self._all_lists():
            for e in slot:
                if e._wslot is slot and id(e) not in seen:
                    seen.add(id(e))
                    out.append(e)
        out.extend(self._overflow)
        return out

    # ----------------------------------------------------------------- upkeep
    def _all_lists(self) -> list[list[TimerEntry]]:
        return self._l0 + self._l0b + self._l1 + self._l2

    def _clear_lists(self) -> None:
        for level in (self._l0, self._l0b, self._l1, self._l2):
            for i in range(len(level)):
                if level[i]:
                    level[i] = []
        self._m0 = self._m0b = self._m1 = self._m2 = 0
        self._dead = 0
        self._pre = None

    def _compact(self) -> None:
        levels = (
            (self._l0, "_m0"),
            (self._l0b, "_m0b"),
            (self._l1, "_m1"),
            (self._l2, "_m2"),
        )
        for level, attr in levels:
            mask = 0
            for i, slot in enumerate(level):
                if slot:
                    # Keep each live entry once (a removed-then-re-added entry can have
                    # two cells in one list); the cells an early cascade has done with
                    # go too.
                    start = self._pre_pos if slot is self._pre else 0
                    slot[:] = {id(e): e for e in slot[start:] if e._wslot is slot}.values()
                    if slot is self._pre:
                        self._pre_pos = 0
                    if slot:
                        mask |= 1 << i
            setattr(self, attr, mask)
        self._dead = 0

    def _check(self) -> None:
        """Assert every invariant; O(n). For tests."""
        now = self._tick
        live: set[int] = set()
        dead = 0
        b0 = -(-now // _L1_SPAN)
        d0 = -(-now // _L2_SPAN)
        levels = (
            ("0", self._l0, self._m0),
            ("0b", self._l0b, self._m0b),
            ("1", self._l1, self._m1),
            ("2", self._l2, self._m2),
        )
        if self._pre is not None:
            assert self._pre is self._l1[self._pre_block % L1_SLOTS]
            assert self._pre_block == now // _L1_SPAN + 1 or (
                now % _L1_SPAN == 0 and self._pre_block == now // _L1_SPAN
            ), ("early cascade of the wrong block", self._pre_block, now)
        for lvl, level, mask in levels:
            for i, slot in enumerate(level):
                assert bool(mask >> i & 1) or not slot, (lvl, i, "entries in a slot marked empty")
                start = self._pre_pos if slot is self._pre else 0  # cells done with
                for e in slot[start:]:
                    if e._wslot is not slot or id(e) in live:
                        dead += 1
                        continue
                    live.add(id(e))
                    t = self.tick_of(e._deadline)
                    if lvl == "0":
                        assert i == max(t, now) % L0_SLOTS, ("level-0 slot", t, now)
                        # Fires in the first tick >= now with this slot index.
                        assert t < now + L0_SLOTS, ("level-0 too far", t, now)
                    elif lvl == "0b":
                        assert i == t % L0_SLOTS, ("second-bank slot", t, now)
                        assert now + L0_SLOTS <= t < now + 2 * L0_SLOTS, ("second bank", t, now)
                    elif lvl == "1":
                        b = t // _L1_SPAN
                        assert b % L1_SLOTS == i, ("level-1 slot", t)
                        assert b0 <= b < b0 + L1_SLOTS, ("level-1 block", b, b0)
                    else:
                        d = t // _L2_SPAN
                        assert d % L2_SLOTS == i, ("level-2 slot", t)
                        assert d0 <= d < d0 + L2_SLOTS, ("level-2 block", d, d0)
        last_boundary = (d0 - 1) * _L2_SPAN
        for e in self._overflow:
            assert e._wslot is self._ovf_tag
            live.add(id(e))
            # Moved in at a boundary before its level-2 block comes round.
            assert self.tick_of(e._deadline) - last_boundary >= _RANGE, "overflow entry missed"
        assert len(live) == self._count, (len(live), self._count)
        assert dead == self._dead, (dead, self._dead)
        nd = self.next_deadline()
        assert (nd is None) == (self._count == 0)
        if nd is not None:
            assert nd >= now
