"""Rows 5-7: how late timers fire, how fast a burst drains, what an idle scheduler costs."""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import importlib.util
import itertools
import random
import resource
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from common import (
    SEED,
    Config,
    Goal,
    Samples,
    Section,
    cell,
    clean_heap,
    count,
    interleaved,
    log,
    median,
    num,
    percentile,
    ratio,
    table,
)
from timer_peers import _apscheduler_3, noop

import wheeltask

WORKERS = 4
REF = "wheeltask"
LATENESS_P99_GOAL = 10.0  # ms
BURST_GOAL = 500_000.0  # callbacks/s
IDLE_GOAL = 1.0  # % of one core
IDLE_DELAY = 3600.0  # seconds: the idle scheduler's timers are an hour away
IDLE_SETTLE = 0.2  # seconds between posting and the idle window
# Seconds of posting allowed per timer before the first deadline (with Config.margin
# on top): generous, so that posting is over before anything falls due.
POST_BUDGET = {"wheeltask": 4e-6, "asyncio": 10e-6, "uvloop": 8e-6, "heapq-condition": 6e-6}
CONDITION = "heapq-condition"
# Lateness histogram bins (ms): 0.5 ms wide from -5 ms to 40 ms; what falls outside
# is counted in the first or last bin.
HIST_LOW, HIST_WIDTH, HIST_BINS = -5.0, 0.5, 90
SHUTDOWN_WAIT = "wheeltask-shutdown-wait"
LABELS = {
    "wheeltask": f"wheeltask Scheduler(max_workers={WORKERS})",
    SHUTDOWN_WAIT: f"wheeltask Scheduler(max_workers={WORKERS}), waiting in shutdown(wait=True)",
    "asyncio": "asyncio call_later (running default loop)",
    "uvloop": "uvloop call_later (running loop)",
    CONDITION: "heapq + threading.Condition scheduler (its own thread runs the callbacks)",
}


# How the main thread of a wheeltask row waits for the callbacks before it calls
# shutdown(wait=True): waiting in shutdown() itself is a separate burst row, because
# there every task that finishes wakes the waiting thread.
LATENESS_WAIT_NOTE = (
    "wheeltask's main thread waits on the handle due last, then calls `shutdown(wait=True)`"
)
BURST_WAIT_NOTE = (
    "wheeltask's main thread waits on an Event set by the last callback, then calls "
    "`shutdown(wait=True)`; the row *waiting in shutdown(wait=True)* calls it right "
    "after posting"
)


def _loop_keys() -> list[str]:
    keys = ["asyncio"]
    if importlib.util.find_spec("uvloop") is not None:
        keys.append("uvloop")
    return keys


def _new_loop(key: str) -> asyncio.AbstractEventLoop:
    if key == "uvloop":
        import uvloop  # noqa: PLC0415 - optional: only listed when importable

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


# --------------------------------------------------------------------- lateness
@dataclasses.dataclass(frozen=True)
class LatenessRun:
    """One run's lateness figures (ms), from the callbacks' own clock readings."""

    p50: float
    p99: float
    max: float
    earliest: float
    early: int  # callbacks that started before their deadline
    posting: float  # seconds spent posting
    lead: float  # seconds from the start of posting to the first possible deadline
    hist: list[int]  # counts per HIST bin

    @classmethod
    def of(cls, late: list[float], posting: float, lead: float) -> LatenessRun:
        late.sort()
        hist = [0] * HIST_BINS
        for x in late:
            i = int((x * 1e3 - HIST_LOW) // HIST_WIDTH)
            hist[min(max(i, 0), HIST_BINS - 1)] += 1
        return cls(
            hist=hist,
            p50=percentile(late, 50) * 1e3,
            p99=percentile(late, 99) * 1e3,
            max=late[-1] * 1e3,
            earliest=late[0] * 1e3,
            early=bisect.bisect_left(late, 0.0),
            posting=posting,
            lead=lead,
        )


def lateness_wheeltask(offsets: Sequence[float], lead: float) -> tuple[LatenessRun, str]:
    """Post every timer upfront on a 4-worker Scheduler; each records how late it ran."""
    late: list[float] = []
    record = late.append
    mono = time.monotonic

    def on_fire(deadline: float) -> None:
        record(mono() - deadline)

    scheduler = wheeltask.Scheduler(max_workers=WORKERS)
    post = scheduler.post_task
    last = max(range(len(offsets)), key=offsets.__getitem__)
    last_handle = None
    clean_heap()
    t0 = mono()
    start = t0 + lead
    for i, offset in enumerate(offsets):
        deadline = start + offset
        handle = post(on_fire, deadline, delay=max(deadline - mono(), 0.0))
        if i == last:
            last_handle = handle
    posting = mono() - t0
    assert last_handle is not None
    # Not straight into shutdown(wait=True): see LATENESS_WAIT_NOTE.
    last_handle.wait_for_finished()
    scheduler.shutdown(wait=True)
    assert len(late) == len(offsets), (len(late), len(offsets))
    s = scheduler.stats()
    own = (
        f"p50 {num(s.lateness_p50 * 1e3)} ms, p99 {num(s.lateness_p99 * 1e3)} ms, "
        f"max {num(s.lateness_max * 1e3)} ms"
    )
    return LatenessRun.of(late, posting, lead), own


def lateness_condition(offsets: Sequence[float], lead: float) -> LatenessRun:
    """The same on the textbook heapq + Condition scheduler (one thread runs all)."""
    from timer_peers import ConditionScheduler  # noqa: PLC0415 - its peer only

    late: list[float] = []
    record = late.append
    mono = time.monotonic
    done = threading.Event()
    n = len(offsets)

    def on_fire(deadline: float) -> None:
        record(mono() - deadline)
        if len(late) == n:
            done.set()

    timers = ConditionScheduler()
    call_later = timers.call_later
    clean_heap()
    t0 = mono()
    start = t0 + lead
    for offset in offsets:
        deadline = start + offset
        call_later(max(deadline - mono(), 0.0), on_fire, deadline)
    posting = mono() - t0
    done.wait()
    timers.close()
    return LatenessRun.of(late, posting, lead)


def lateness_loop(key: str, offsets: Sequence[float], lead: float) -> LatenessRun:
    """The same on a running event loop: posted by one callback of the loop itself."""
    loop = _new_loop(key)
    late: list[float] = []
    record = late.append
    mono = time.monotonic  # asyncio's loop.time()
    n = len(offsets)
    posting = 0.0

    def on_fire(deadline: float) -> None:
        record(mono() - deadline)

    def stop_when_done() -> None:
        if len(late) < n:
            loop.call_later(0.001, stop_when_done)
        else:
            loop.stop()

    def post_all() -> None:
        nonlocal posting
        call_later = loop.call_later
        t0 = mono()
        start = t0 + lead
        for offset in offsets:
            deadline = start + offset
            call_later(max(deadline - mono(), 0.0), on_fire, deadline)
        posting = mono() - t0
        loop.call_at(start + max(offsets), stop_when_done)

    clean_heap()
    loop.call_soon(post_all)
    loop.run_forever()
    loop.close()
    return LatenessRun.of(late, posting, lead)


K = TypeVar("K")  # a row key of a lateness table


def lateness_column(runs: Mapping[K, list[LatenessRun]], key: K, field: str) -> list[float]:
    """One field of every repetition of one row."""
    return [float(getattr(r, field)) for r in runs[key]]


def lateness_rows(
    runs: Mapping[K, list[LatenessRun]], labels: Mapping[K, str], ref: K
) -> tuple[list[list[str]], list[str]]:
    """The rows of a lateness table (p50, p99, max, earliest, early, posting, p99 ratio
    to ``ref``), and the labels of the rows whose posting overran its lead."""
    rows = []
    for k in runs:

        def col(field: str, key: K = k) -> list[float]:
            return lateness_column(runs, key, field)

        rows.append(
            [
                labels[k],
                cell(col("p50")),
                cell(col("p99")),
                cell(col("max")),
                num(min(col("earliest"))),
                f"{sum(r.early for r in runs[k]):,}",
                cell(col("posting")),
                num(ratio(col("p99"), lateness_column(runs, ref, "p99"))),
            ]
        )
    overran = sorted({labels[k] for k in runs for r in runs[k] if r.posting > r.lead})
    return rows, overran


def lateness(cfg: Config) -> Section:
    """Row 5: timers spread uniformly over ``lateness_spread`` seconds, posted upfront."""
    n, spread, reps = cfg.lateness_n, cfg.lateness_spread, cfg.heavy_reps
    rng = random.Random(SEED)
    offsets = [rng.uniform(0.0, spread) for _ in range(n)]
    lead = cfg.margin + n * max(POST_BUDGET.values())
    keys = [REF, *_loop_keys(), CONDITION]
    runs: dict[str, list[LatenessRun]] = {k: [] for k in keys}
    own = ""
    for rep_, key in interleaved(keys, reps, warmup=not cfg.smoke):
        which = "warm-up" if rep_ < 0 else f"rep {rep_ + 1}/{reps}"
        log(f"lateness: {n:,} timers over {spread:g} s, {which}: {key}")
        if key == REF:
            run, own = lateness_wheeltask(offsets, lead)
        elif key == CONDITION:
            run = lateness_condition(offsets, lead)
        else:
            run = lateness_loop(key, offsets, lead)
        if rep_ >= 0:  # not the warm-up round
            runs[key].append(run)

    def col(key: str, field: str) -> list[float]:
        return lateness_column(runs, key, field)

    rows, overran = lateness_rows(runs, LABELS, REF)
    wt_p99, asyncio_p99 = median(col(REF, "p99")), median(col("asyncio", "p99"))
    early = sum(r.early for r in runs[REF])
    goals = [
        Goal(
            "no callback starts before its deadline",
            f"{early:,} early of {n * reps:,} (earliest {num(min(col(REF, 'earliest')))} ms)",
            early == 0,
        ),
        Goal(
            f"p99 lateness at most {LATENESS_P99_GOAL:g} ms",
            f"{num(wt_p99)} ms",
            wt_p99 <= LATENESS_P99_GOAL,
        ),
        Goal(
            "p99 lateness no worse than asyncio's in the same run",
            f"{num(wt_p99)} ms vs {num(asyncio_p99)} ms",
            wt_p99 <= asyncio_p99,
        ),
    ]
    md = [
        f"## 5. Firing lateness: {n:,} timers due uniformly within {spread:g} s (ms, median "
        f"of {reps} reps (min-max); negative = early; x wheeltask = peer p99 / wheeltask p99)",
        "",
        f"Deadline = start + U(0, {spread:g}) s, all posted upfront (start = {lead:.2f} s after "
        "posting begins, so that posting is over first: wheeltask holds them on level 1 and "
        "cascades each 1 s slot into level 0 as the hand reaches it); each callback records "
        "`time.monotonic() - deadline`. The event loops post from one of their own "
        "callbacks and run the callbacks on the loop thread; wheeltask runs them on 4 "
        "workers. Earliest is the minimum over all reps, early the count over all reps.",
        "",
        table(
            [
                "peer",
                "p50",
                "p99",
                "max",
                "earliest",
                "fired early",
                "posting s",
                "x wheeltask (p99)",
            ],
            rows,
        ),
        "",
        f"- {LATENESS_WAIT_NOTE}.",
        f"- wheeltask's own `stats()` in its last rep (deadline to hand-off to the pool): {own}.",
        *(f"- WARNING: posting outlasted the lead time for {label}." for label in overran),
    ]
    for goal in goals:
        md += ["", goal.line()]
    data = {
        "p50_ms": {k: median(col(k, "p50")) for k in keys},
        "p99_ms": {k: median(col(k, "p99")) for k in keys},
        "max_ms": {k: median(col(k, "max")) for k in keys},
        "early": {k: sum(r.early for r in runs[k]) for k in keys},
        # Lateness outside [-5, 40) ms is counted in the first or last bin.
        "hist_ms": {"low": HIST_LOW, "width": HIST_WIDTH, "bins": HIST_BINS},
        "hist": {k: [sum(c) for c in zip(*(r.hist for r in runs[k]), strict=True)] for k in keys},
        "labels": {k: LABELS[k] for k in keys},
    }
    return Section("\n".join(md), goals, data)


# ------------------------------------------------------------------------ burst
@dataclasses.dataclass(frozen=True)
class BurstRun:
    rate: float  # callbacks/s from the deadline (or the end of posting) to the last one
    posting: float  # seconds spent posting
    lead: float


def _counting_callback(
    n: int, finished: list[float], on_last: Callable[[], object] | None = None
) -> Callable[[], None]:
    """A trivial callback; the n-th call to run records the time and calls ``on_last``."""
    counter = itertools.count(1)
    mono = time.monotonic

    def hit() -> None:
        if next(counter) == n:
            finished.append(mono())
            if on_last is not None:
                on_last()

    return hit


def burst_wheeltask(n: int, lead: float, wait_in_shutdown: bool = False) -> BurstRun:
    """The main thread waits for the last callback (BURST_WAIT_NOTE), or in shutdown()."""
    finished: list[float] = []
    all_ran = threading.Event()
    hit = _counting_callback(n, finished, all_ran.set)
    scheduler = wheeltask.Scheduler(max_workers=WORKERS)
    post = scheduler.post_task
    mono = time.monotonic
    clean_heap()
    t0 = mono()
    deadline = t0 + lead
    for _ in range(n):
        post(hit, delay=max(deadline - mono(), 0.0))
    posted = mono()
    if not wait_in_shutdown:
        all_ran.wait()
    scheduler.shutdown(wait=True)
    return BurstRun(n / (finished[0] - max(deadline, posted)), posted - t0, lead)


def burst_loop(key: str, n: int, lead: float) -> BurstRun:
    loop = _new_loop(key)
    finished: list[float] = []
    hit = _counting_callback(n, finished, loop.stop)
    mono = time.monotonic
    marks: list[float] = []  # start of posting, deadline, end of posting

    def post_all() -> None:
        call_later = loop.call_later
        t0 = mono()
        deadline = t0 + lead
        for _ in range(n):
            call_later(max(deadline - mono(), 0.0), hit)
        marks.extend((t0, deadline, mono()))

    clean_heap()
    loop.call_soon(post_all)
    loop.run_forever()
    loop.close()
    t0, deadline, posted = marks
    return BurstRun(n / (finished[0] - max(deadline, posted)), posted - t0, lead)


def burst_condition(n: int, lead: float) -> BurstRun:
    """The textbook heapq + Condition scheduler: its one thread runs the callbacks."""
    from timer_peers import ConditionScheduler  # noqa: PLC0415 - its peer only

    finished: list[float] = []
    all_ran = threading.Event()
    hit = _counting_callback(n, finished, all_ran.set)
    timers = ConditionScheduler()
    call_later = timers.call_later
    mono = time.monotonic
    clean_heap()
    t0 = mono()
    deadline = t0 + lead
    for _ in range(n):
        call_later(max(deadline - mono(), 0.0), hit)
    posted = mono()
    all_ran.wait()
    timers.close()
    return BurstRun(n / (finished[0] - max(deadline, posted)), posted - t0, lead)


def burst(cfg: Config) -> Section:
    """Row 6: N timers with one deadline; callbacks/s from the deadline to the last one."""
    n, reps = cfg.burst_n, cfg.heavy_reps
    wt_lead = cfg.margin + n * POST_BUDGET[REF]
    peers: dict[str, Callable[[], BurstRun]] = {
        REF: lambda: burst_wheeltask(n, wt_lead),
        SHUTDOWN_WAIT: lambda: burst_wheeltask(n, wt_lead, wait_in_shutdown=True),
        "asyncio": lambda: burst_loop("asyncio", n, cfg.margin + n * POST_BUDGET["asyncio"]),
    }
    if "uvloop" in _loop_keys():
        peers["uvloop"] = lambda: burst_loop("uvloop", n, cfg.margin + n * POST_BUDGET["uvloop"])
    peers[CONDITION] = lambda: burst_condition(n, cfg.margin + n * POST_BUDGET[CONDITION])
    keys = list(peers)
    runs: dict[str, list[BurstRun]] = {k: [] for k in keys}
    for rep_, key in interleaved(keys, reps, warmup=not cfg.smoke):
        which = "warm-up" if rep_ < 0 else f"rep {rep_ + 1}/{reps}"
        log(f"burst: {n:,} timers with one deadline, {which}: {key}")
        run = peers[key]()
        if rep_ >= 0:  # not the warm-up round
            runs[key].append(run)
    samples = Samples()
    for key in keys:
        for run in runs[key]:
            samples.add(key, "rate", run.rate)
            samples.add(key, "posting", run.posting)
    ref = samples.get(REF, "rate")
    rows = [
        [
            LABELS[k],
            cell(samples.get(k, "rate")),
            num(1e9 / median(samples.get(k, "rate"))),
            cell(samples.get(k, "posting")),
            num(ratio(ref, samples.get(k, "rate"))),
        ]
        for k in keys
    ]
    overran = sorted({LABELS[k] for k in keys for r in runs[k] if r.posting > r.lead})
    rate = median(ref)
    goal = Goal(
        f"a burst reaches callbacks at {BURST_GOAL:,.0f}/s or more",
        f"{num(rate)}/s",
        rate >= BURST_GOAL,
    )
    md = [
        f"## 6. Burst: {n:,} timers with one identical deadline (callbacks/s, median of "
        f"{reps} reps (min-max); x wheeltask = wheeltask rate / peer rate)",
        "",
        "All timers are posted with the same deadline, set after the end of posting; the "
        "callback bumps a counter and the last one records the time. Rate = N / (time of "
        "the last callback - deadline), the 5 ms tick rounding included for wheeltask.",
        "",
        table(["peer", "callbacks/s", "ns per callback", "posting s", "x wheeltask"], rows),
        "",
        f"- {BURST_WAIT_NOTE}.",
        *(
            f"- WARNING: posting outlasted the lead time for {label}; its rate is counted "
            "from the end of posting."
            for label in overran
        ),
        "",
        goal.line(),
    ]
    data = {"rate": {k: median(samples.get(k, "rate")) for k in keys}}
    return Section("\n".join(md), [goal], data)


# ------------------------------------------------------------------------- idle
def percent(x: float) -> str:
    return f"{x:.3f}"


def _measure_idle(window: float) -> tuple[float, int]:
    """CPU share (% of one core) of the whole process over ``window`` s of wall time,
    and the context switches of all its threads meanwhile."""
    clean_heap()
    time.sleep(IDLE_SETTLE)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(window)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    switches = (usage1.ru_nvcsw - usage0.ru_nvcsw) + (usage1.ru_nivcsw - usage0.ru_nivcsw)
    return 100 * cpu / wall, switches


def idle_once(key: str, n: int, window: float) -> tuple[float, int]:
    """One idle measurement of one holder of ``n`` timers an hour away."""
    if key == REF:
        scheduler = wheeltask.Scheduler(max_workers=WORKERS)
        for _ in range(n):
            scheduler.post_task(noop, delay=IDLE_DELAY)
        try:
            return _measure_idle(window)
        finally:
            scheduler.shutdown(wait=True, cancel_pending=True)
    if key == CONDITION:
        from timer_peers import ConditionScheduler  # noqa: PLC0415 - its peer only

        timers = ConditionScheduler()
        for _ in range(n):
            timers.call_later(IDLE_DELAY, noop)
        try:
            return _measure_idle(window)
        finally:
            timers.close()
    if key == "apscheduler":
        from apscheduler.schedulers.background import (  # noqa: PLC0415 - optional
            BackgroundScheduler,
        )

        aps = BackgroundScheduler()
        aps.start()
        for _ in range(n):
            aps.add_job(noop, "interval", seconds=IDLE_DELAY)
        try:
            return _measure_idle(window)
        finally:
            aps.shutdown(wait=False)
    # An event loop running in a thread of its own, holding the timers.
    loop = _new_loop(key)
    for _ in range(n):
        loop.call_later(IDLE_DELAY, noop)
    thread = threading.Thread(target=loop.run_forever, name=f"idle-{key}")
    thread.start()
    try:
        return _measure_idle(window)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def idle(cfg: Config) -> Section:
    """Row 7: CPU share of a process whose scheduler holds timers an hour away."""
    n, window, reps = cfg.idle_n, cfg.idle_window, cfg.heavy_reps
    keys = [REF, *_loop_keys(), CONDITION]
    sizes = dict.fromkeys(keys, n)
    if importlib.util.find_spec("apscheduler") is not None and _apscheduler_3():
        keys.append("apscheduler")
        sizes["apscheduler"] = cfg.apscheduler_n
    samples = Samples()
    for rep_, key in interleaved(keys, reps):
        log(f"idle: {sizes[key]:,} timers 1 h away, {window:g} s, rep {rep_ + 1}/{reps}: {key}")
        share, switches = idle_once(key, sizes[key], window)
        samples.add(key, "cpu", share)
        samples.add(key, "switches", switches)
    cpu = median(samples.get(REF, "cpu"))
    goal = Goal(f"idle CPU under {IDLE_GOAL:g}% of a core", f"{percent(cpu)}%", cpu < IDLE_GOAL)
    labels = {**LABELS, "apscheduler": "APScheduler 3 BackgroundScheduler (interval jobs)"}
    rows = [
        [
            labels[k],
            f"{sizes[k]:,}",
            cell(samples.get(k, "cpu"), percent),
            cell(samples.get(k, "switches"), count),
        ]
        for k in keys
    ]
    md = [
        f"## 7. Idle: holding timers 1 h away (median of {reps} reps (min-max))",
        "",
        f"`time.process_time()` of the whole process over {window:g} s of wall time while "
        "the main thread sleeps, and the context switches of all its threads (the main "
        "thread's own sleep accounts for about 1). The event loops run in a thread of "
        "their own. No ratio column: the figures are near zero, so ratios of them would "
        "be noise.",
        "",
        table(["holder", "N", "CPU % of one core", "context switches"], rows),
        "",
        goal.line(),
    ]
    data = {"cpu_percent": {k: median(samples.get(k, "cpu")) for k in keys}}
    return Section("\n".join(md), [goal], data)
