"""Sections 11-12 (issue 8): AsyncScheduler inside a running asyncio or uvloop loop.

11. The cost of ``AsyncScheduler.post_task`` with a delay against ``loop.call_later`` on
    the same kind of running loop, with 10^4 to 10^6 timers already pending.
12. How late coroutine tasks start: AsyncScheduler, a threaded ``Scheduler`` running
    ``async def`` tasks, and ``loop.call_later`` + ``loop.create_task``.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from common import (
    SEED,
    Config,
    Goal,
    Samples,
    Section,
    cell,
    clean_heap,
    interleaved,
    log,
    log_uniform_delays,
    median,
    num,
    ratio,
    table,
    times,
)
from firing import (
    HIST_BINS,
    HIST_LOW,
    HIST_WIDTH,
    LatenessRun,
    _loop_keys,
    _new_loop,
    lateness_column,
    lateness_rows,
)
from timer_peers import noop

import wheeltask
from wheeltask.aio import AsyncScheduler

REF = "wheeltask"
INLINE = "wheeltask-inline"
CALL_LATER = "call_later"
POST_PEERS = [REF, INLINE, CALL_LATER]
POST_LABELS = {
    REF: "AsyncScheduler.post_task(cb, delay=d)",
    INLINE: "AsyncScheduler.post_task(cb, delay=d, inline=True)",
    CALL_LATER: "loop.call_later(d, cb)",
}
CHEAP_GOAL = 1.0  # call_later ns / AsyncScheduler.post_task ns, at every N
FLAT_GOAL = 1.5  # post_task ns at the largest N / at the smallest N
SUB_BATCHES = 5  # timed batches per repetition; the repetition's figure is their median
# The timers already pending are due between these (seconds): none falls due while a
# repetition runs, so that the loop never fires one between the timed batches.
PREFILL_DELAYS = (60.0, 3600.0)

LATENESS_P99_GOAL = 10.0  # ms
# Seconds of posting allowed per task before the first deadline (Config.margin on top).
POST_BUDGET = 10e-6
AIO = "AsyncScheduler"
THREADED = "threaded"
SPAWN = "call_later+create_task"
NONE_UVLOOP = "uvloop is not installed: its rows are skipped"


def _delays(n: int, lo: float, hi: float, seed: int) -> list[float]:
    """``n`` delays log-uniform in [lo, hi] seconds, the same for a given seed."""
    rng = random.Random(seed)
    a, b = math.log(lo), math.log(hi)
    return [math.exp(rng.uniform(a, b)) for _ in range(n)]


# ------------------------------------------------------------------ post cost
async def _post_rep(
    peer: str, prefill: Sequence[float], timed: Sequence[float], out: list[float]
) -> None:
    """On the running loop: ``len(prefill)`` timers pending (not timed), then
    SUB_BATCHES times: post ``timed`` (timed, ns per post), cancel them, let the loop
    turn once. Appends the median batch's ns per post to ``out``."""
    loop = asyncio.get_running_loop()
    scheduler: AsyncScheduler | None = None
    # Each row's timed loop is written out, as a user would: no wrapper call in it.
    if peer == CALL_LATER:
        call_later = loop.call_later
        pending: list[Any] = [call_later(d, noop) for d in prefill]

        def timed_batch() -> list[Any]:
            handles: list[Any] = []
            append = handles.append
            for d in timed:
                append(call_later(d, noop))
            return handles

    else:
        scheduler = AsyncScheduler()
        post_task = scheduler.post_task
        inline = True if peer == INLINE else None
        pending = [post_task(noop, delay=d, inline=inline) for d in prefill]
        if peer == INLINE:

            def timed_batch() -> list[Any]:
                handles: list[Any] = []
                append = handles.append
                for d in timed:
                    append(post_task(noop, delay=d, inline=True))
                return handles

        else:

            def timed_batch() -> list[Any]:
                handles: list[Any] = []
                append = handles.append
                for d in timed:
                    append(post_task(noop, delay=d))
                return handles

    batches: list[float] = []
    for _ in range(SUB_BATCHES):
        clean_heap()
        t0 = time.perf_counter()
        handles = timed_batch()
        batches.append((time.perf_counter() - t0) * 1e9 / len(timed))
        for h in handles:
            h.cancel()
        del handles
        await asyncio.sleep(0)  # asyncio drops its cancelled timers when the loop turns
    out.append(median(batches))
    if scheduler is not None:
        await scheduler.shutdown(cancel_pending=True)
    else:
        for h in pending:
            h.cancel()
    del pending


def _post_once(loop_key: str, peer: str, prefill: Sequence[float], timed: Sequence[float]) -> float:
    loop = _new_loop(loop_key)
    out: list[float] = []
    try:
        loop.run_until_complete(_post_rep(peer, prefill, timed, out))
    finally:
        loop.close()
    clean_heap()
    return out[0]


def post_cost(cfg: Config) -> Section:
    """Section 11: ns per ``post_task(delay)`` against ``call_later``, N pending."""
    sizes = cfg.timer_sizes
    batch = cfg.async_batch
    loops = _loop_keys()
    timed = log_uniform_delays(batch, SEED + 1)
    samples = Samples()
    for n in sizes:
        prefill = _delays(n, *PREFILL_DELAYS, seed=SEED)
        reps = cfg.reps_for_size(n)
        for loop_key in loops:
            log(f"async post: {loop_key}, {n:,} pending, {reps} reps: {', '.join(POST_PEERS)}")
            for _, peer in interleaved(POST_PEERS, reps, warmup=n == sizes[0]):
                samples.add(peer, (loop_key, n), _post_once(loop_key, peer, prefill, timed))
    del timed

    def ns(peer: str, loop_key: str, n: int) -> list[float]:
        return samples.get(peer, (loop_key, n))

    rows = []
    goals: list[Goal] = []
    for loop_key in loops:
        for peer in POST_PEERS:
            ratios = [ratio(ns(peer, loop_key, n), ns(REF, loop_key, n)) for n in sizes]
            rows.append(
                [
                    loop_key,
                    POST_LABELS[peer],
                    *(cell(ns(peer, loop_key, n)) for n in sizes),
                    " / ".join(num(r) for r in ratios),
                ]
            )
        cheap = [ratio(ns(CALL_LATER, loop_key, n), ns(REF, loop_key, n)) for n in sizes]
        first, last = median(ns(REF, loop_key, sizes[0])), median(ns(REF, loop_key, sizes[-1]))
        goals += [
            Goal(
                f"AsyncScheduler.post_task(delay) at least as cheap as {loop_key} "
                f"loop.call_later (at {' / '.join(f'{n:,}' for n in sizes)} pending)",
                " / ".join(times(r) for r in cheap) + " (call_later ns / post_task ns)",
                min(cheap) >= CHEAP_GOAL,
            ),
            Goal(
                f"AsyncScheduler.post_task(delay) on {loop_key} flat: at {sizes[-1]:,} pending "
                f"at most {FLAT_GOAL:g}x its cost at {sizes[0]:,}",
                f"{times(last / first)} ({num(last)} ns / {num(first)} ns)",
                last / first <= FLAT_GOAL,
            ),
        ]
    reps_text = "/".join(str(cfg.reps_for_size(n)) for n in sizes)
    md = [
        f"## 11. AsyncScheduler.post_task with a delay vs loop.call_later on the same "
        f"running loop (ns per post; median of {reps_text} reps (min-max); x wheeltask = "
        "row / AsyncScheduler.post_task(cb, delay=d) on the same loop in the same rep, "
        "per column)",
        "",
        f"Each repetition runs a fresh loop and, inside a coroutine on it, puts N timers "
        f"pending with the row's own call (not timed; due in {PREFILL_DELAYS[0]:g} s to "
        f"{PREFILL_DELAYS[1] / 3600:g} h, log-uniform, so none falls due meanwhile), then "
        f"{SUB_BATCHES} times: `gc.collect()`, {batch:,} posts timed (delays log-uniform "
        "in [1 ms, 1 h], handles kept in a list), those cancelled and the loop let turn "
        f"once. A repetition's figure is the median of its {SUB_BATCHES} batches, so N "
        "stays the pending count while it is timed. The callback is a plain no-op; gc on.",
        "",
        table(["loop", "call", *(f"{n:,} pending" for n in sizes), "x wheeltask"], rows, left=2),
        "",
        "- `AsyncScheduler()` is made inside the loop (default `inline=False`); "
        "`inline=True` per post wraps the plain callback to run on the loop (it checks "
        "that it is not a coroutine function), which a scheduler made with "
        "`AsyncScheduler(inline=True)` does not need: it posts as the first row.",
        "- `loop.call_later` is the loop's own timer heap (asyncio: `heapq` in Python, "
        "cancelled entries dropped lazily when the loop turns; uvloop: libuv's timers).",
    ]
    for goal in goals:
        md += ["", goal.line()]
    data = {
        "sizes": list(sizes),
        "batch": batch,
        "post_ns": {
            loop_key: {peer: [median(ns(peer, loop_key, n)) for n in sizes] for peer in POST_PEERS}
            for loop_key in loops
        },
        "labels": POST_LABELS,
    }
    if "uvloop" not in loops:
        md += ["", f"- {NONE_UVLOOP}."]
    return Section("\n".join(md), goals, data)


# ------------------------------------------------------------------- lateness
class _Recorder:
    """What each coroutine task does: record ``monotonic_ns() - deadline`` at its start;
    the n-th one calls ``on_last``."""

    def __init__(self, n: int, on_last: Callable[[], object]) -> None:
        self.late: list[int] = []
        self.n = n
        self.on_last = on_last

    def coroutine_function(self) -> Callable[[int], Coroutine[Any, Any, None]]:
        late = self.late
        record = late.append
        mono_ns = time.monotonic_ns
        n, on_last = self.n, self.on_last

        async def on_fire(deadline_ns: int) -> None:
            record(mono_ns() - deadline_ns)
            if len(late) == n:
                on_last()

        return on_fire

    def run(self, posting: float, lead: float) -> LatenessRun:
        assert len(self.late) == self.n, (len(self.late), self.n)
        return LatenessRun.of([x / 1e9 for x in self.late], posting, lead)


def _post_all(
    post: Callable[[int, float], object], offsets_ns: Sequence[int], lead_ns: int
) -> float:
    """Post one task per offset, due at start + offset (start = now + lead); the delay
    is computed against ``time.monotonic_ns()`` read just before each post. Returns the
    seconds spent posting."""
    mono_ns = time.monotonic_ns
    t0 = mono_ns()
    start = t0 + lead_ns
    for offset in offsets_ns:
        deadline = start + offset
        post(deadline, max(deadline - mono_ns(), 0) / 1e9)
    return (mono_ns() - t0) / 1e9


def lateness_aio(loop_key: str, offsets_ns: Sequence[int], lead_ns: int) -> tuple[LatenessRun, str]:
    """``AsyncScheduler.post_task(async_fn, deadline, delay=...)`` inside the loop."""
    loop = _new_loop(loop_key)
    result: list[tuple[LatenessRun, str]] = []

    async def main() -> None:
        done = asyncio.Event()
        rec = _Recorder(len(offsets_ns), done.set)
        on_fire = rec.coroutine_function()
        s = AsyncScheduler()
        post_task = s.post_task

        def post(deadline: int, delay: float) -> object:
            return post_task(on_fire, deadline, delay=delay)

        clean_heap()
        posting = _post_all(post, offsets_ns, lead_ns)
        await done.wait()
        await s.shutdown()
        st = s.stats()
        own = (
            f"p50 {num(st.lateness_p50 * 1e3)} ms, p99 {num(st.lateness_p99 * 1e3)} ms, "
            f"max {num(st.lateness_max * 1e3)} ms"
        )
        result.append((rec.run(posting, lead_ns / 1e9), own))

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return result[0]


def lateness_spawn(loop_key: str, offsets_ns: Sequence[int], lead_ns: int) -> LatenessRun:
    """``loop.call_later(delay, spawn, deadline)``: ``spawn`` does ``loop.create_task``."""
    loop = _new_loop(loop_key)
    result: list[LatenessRun] = []

    async def main() -> None:
        done = asyncio.Event()
        rec = _Recorder(len(offsets_ns), done.set)
        on_fire = rec.coroutine_function()
        tasks: set[asyncio.Task[None]] = set()
        create_task = loop.create_task
        call_later = loop.call_later

        def spawn(deadline: int) -> None:
            task = create_task(on_fire(deadline))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        def post(deadline: int, delay: float) -> object:
            return call_later(delay, spawn, deadline)

        clean_heap()
        posting = _post_all(post, offsets_ns, lead_ns)
        await done.wait()
        result.append(rec.run(posting, lead_ns / 1e9))

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return result[0]


def lateness_threaded(loop_key: str, offsets_ns: Sequence[int], lead_ns: int) -> LatenessRun:
    """A threaded ``Scheduler`` whose ``async def`` tasks run on its own loop thread."""
    done = threading.Event()
    rec = _Recorder(len(offsets_ns), done.set)
    on_fire = rec.coroutine_function()
    scheduler = wheeltask.Scheduler(max_workers=4, loop=loop_key)
    post_task = scheduler.post_task

    def post(deadline: int, delay: float) -> object:
        return post_task(on_fire, deadline, delay=delay)

    clean_heap()
    posting = _post_all(post, offsets_ns, lead_ns)
    done.wait()
    scheduler.shutdown(wait=True)
    return rec.run(posting, lead_ns / 1e9)


def lateness(cfg: Config) -> Section:
    """Section 12: coroutine tasks due uniformly over ``lateness_spread`` seconds."""
    n, spread, reps = cfg.lateness_n, cfg.lateness_spread, cfg.heavy_reps
    rng = random.Random(SEED)
    offsets_ns = [round(rng.uniform(0.0, spread) * 1e9) for _ in range(n)]
    lead = cfg.margin + n * POST_BUDGET
    lead_ns = round(lead * 1e9)
    loops = _loop_keys()
    goal_loop = loops[-1]  # uvloop when installed
    threaded_loop = goal_loop
    keys = [(AIO, k) for k in reversed(loops)]
    keys += [(THREADED, threaded_loop)]
    keys += [(SPAWN, k) for k in reversed(loops)]
    labels = {
        **{(AIO, k): f"AsyncScheduler.post_task(async_fn), {k}" for k in loops},
        (THREADED, threaded_loop): f"Scheduler(max_workers=4, loop={threaded_loop!r}) "
        "post_task(async_fn) from the main thread",
        **{(SPAWN, k): f"{k} loop.call_later + loop.create_task" for k in loops},
    }
    runs: dict[tuple[str, str], list[LatenessRun]] = {k: [] for k in keys}
    own: dict[str, str] = {}
    for rep_, key in interleaved(keys, reps, warmup=not cfg.smoke):
        which = "warm-up" if rep_ < 0 else f"rep {rep_ + 1}/{reps}"
        log(f"async lateness: {n:,} coroutine tasks over {spread:g} s, {which}: {labels[key]}")
        kind, loop_key = key
        if kind == AIO:
            run, own[loop_key] = lateness_aio(loop_key, offsets_ns, lead_ns)
        elif kind == THREADED:
            run = lateness_threaded(loop_key, offsets_ns, lead_ns)
        else:
            run = lateness_spawn(loop_key, offsets_ns, lead_ns)
        if rep_ >= 0:  # not the warm-up round
            runs[key].append(run)

    def col(key: tuple[str, str], field: str) -> list[float]:
        return lateness_column(runs, key, field)

    ref = (AIO, goal_loop)
    rows, overran = lateness_rows(runs, labels, ref)
    early = sum(r.early for r in runs[ref])
    p99 = median(col(ref, "p99"))
    goals = [
        Goal(
            f"no coroutine task of AsyncScheduler on {goal_loop} starts before its deadline",
            f"{early:,} early of {n * reps:,} (earliest {num(min(col(ref, 'earliest')))} ms)",
            early == 0,
        ),
        Goal(
            f"p99 lateness of AsyncScheduler coroutine tasks on {goal_loop} at most "
            f"{LATENESS_P99_GOAL:g} ms",
            f"{num(p99)} ms",
            p99 <= LATENESS_P99_GOAL,
        ),
    ]
    md = [
        f"## 12. Coroutine task lateness: {n:,} `async def` tasks due uniformly within "
        f"{spread:g} s (ms, median of {reps} reps (min-max); negative = early; "
        f"x wheeltask = row p99 / AsyncScheduler on {goal_loop} p99)",
        "",
        f"Deadline = start + U(0, {spread:g}) s in integer ns of `time.monotonic_ns()`, all "
        f"posted upfront (start = {lead:.2f} s after posting begins), each with "
        "`delay = deadline - time.monotonic_ns()` read just before its post; each "
        "coroutine records `time.monotonic_ns() - deadline` when it starts. AsyncScheduler "
        "and call_later rows post from a coroutine on the loop that runs the tasks; "
        "the threaded Scheduler's tasks run on its own loop thread. Earliest is the "
        "minimum over all reps, early the count over all reps.",
        "",
        table(
            [
                "tasks",
                "p50",
                "p99",
                "max",
                "earliest",
                "started early",
                "posting s",
                "x wheeltask (p99)",
            ],
            rows,
        ),
        "",
        "- call_later + create_task: the timer callback does `loop.create_task(fn(deadline))`; "
        "uvloop computes `call_later` deadlines from its cached, millisecond `loop.time()` "
        "and may fire timers up to ~1 ms early.",
        *(
            f"- AsyncScheduler's own `stats()` on {k} in its last rep (deadline to hand-off): {v}."
            for k, v in own.items()
        ),
        *(f"- WARNING: posting outlasted the lead time for {label}." for label in overran),
    ]
    if "uvloop" not in loops:
        md += [f"- {NONE_UVLOOP}; the goals are checked on asyncio."]
    for goal in goals:
        md += ["", goal.line()]
    names = {k: f"{k[0]}@{k[1]}" for k in keys}
    data = {
        "p50_ms": {names[k]: median(col(k, "p50")) for k in keys},
        "p99_ms": {names[k]: median(col(k, "p99")) for k in keys},
        "max_ms": {names[k]: median(col(k, "max")) for k in keys},
        "early": {names[k]: sum(r.early for r in runs[k]) for k in keys},
        "hist_ms": {"low": HIST_LOW, "width": HIST_WIDTH, "bins": HIST_BINS},
        "labels": {names[k]: labels[k] for k in keys},
    }
    return Section("\n".join(md), goals, data)
