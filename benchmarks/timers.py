"""Rows 1-3: posting delayed timers, cancelling them, memory per pending timer."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from common import (
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
from timer_peers import (
    FAST_KEYS,
    JOB_KEYS,
    MEMORY_KEYS,
    PEERS,
    SLOW_MEMORY_KEYS,
    THREAD_KEYS,
    available,
)

from wheeltask import MonotonicClock
from wheeltask.testing import manual_scheduler

PROBE = Path(__file__).with_name("memory_probe.py")
REF = "wheeltask"
INSERT_GOAL = 2.0  # asyncio call_later cost / wheeltask post cost, at every N
SCALING_GOAL = 1.6  # wheeltask post cost at the largest N / at the smallest N
CANCEL_GOAL = 5.0  # asyncio cancel cost / wheeltask cancel cost, at every N
MEMORY_GOAL = 200.0  # bytes per pending timer


def _measure_once(key: str, delays: Sequence[float], samples: Samples) -> None:
    """Insert every delay into a fresh peer, then cancel them all: ns per timer."""
    n = len(delays)
    offset = PEERS[key].insert_delay_offset
    if offset:
        delays = [d + offset for d in delays]
    peer = PEERS[key]()
    try:
        clean_heap()
        t0 = time.perf_counter()
        handles = peer.post_all(delays)
        samples.add(key, ("insert", n), (time.perf_counter() - t0) * 1e9 / n)
        if peer.cancel_note is None:
            clean_heap()
            t0 = time.perf_counter()
            peer.cancel_all(handles)
            samples.add(key, ("cancel", n), (time.perf_counter() - t0) * 1e9 / n)
        del handles
    finally:
        peer.close()
    del peer
    clean_heap()


def _measure(keys: Sequence[str], sizes: Sequence[int], cfg: Config) -> Samples:
    samples = Samples()
    for n in sizes:
        delays = log_uniform_delays(n)
        reps = cfg.reps_for_size(n)
        log(f"post/cancel: {n:,} timers x {reps} reps: {', '.join(keys)}")
        for _, key in interleaved(keys, reps, warmup=n == sizes[0]):  # warm up once
            _measure_once(key, delays, samples)
    return samples


def _op_table(op: str, keys: Sequence[str], sizes: Sequence[int], samples: Samples) -> str:
    headers = ["peer", *(f"{n:,} timers" for n in sizes), "x wheeltask"]
    rows = []
    for key in keys:
        if not samples.get(key, (op, sizes[0])):
            continue
        ratios = [ratio(samples.get(key, (op, n)), samples.get(REF, (op, n))) for n in sizes]
        rows.append(
            [
                PEERS[key].label,
                *(cell(samples.get(key, (op, n))) for n in sizes),
                " / ".join(num(r) for r in ratios),
            ]
        )
    return table(headers, rows)


def _not_measured(keys: Sequence[str]) -> list[str]:
    return [
        f"- {PEERS[k].label}: not measured: {PEERS[k].cancel_note}."
        for k in keys
        if PEERS[k].cancel_note
    ]


def post_cancel(cfg: Config) -> Section:
    """Rows 1 and 2, and the peers that only a small N is affordable for."""
    sizes = cfg.timer_sizes
    keys = available(FAST_KEYS)
    samples = _measure(keys, sizes, cfg)
    slow_groups = [
        (available(THREAD_KEYS), cfg.slow_peer_n),
        (available(JOB_KEYS), cfg.apscheduler_n),
    ]
    slow_groups = [(keys_, n) for keys_, n in slow_groups if len(keys_) > 1]
    slow = [(keys_, n, _measure(keys_, [n], cfg)) for keys_, n in slow_groups]
    reps = "/".join(str(cfg.reps_for_size(n)) for n in sizes)

    def wt(op: str, n: int) -> list[float]:
        return samples.get(REF, (op, n))

    def vs_asyncio(op: str) -> list[float]:
        return [ratio(samples.get("asyncio", (op, n)), wt(op, n)) for n in sizes]

    insert_ratios = vs_asyncio("insert")
    cancel_ratios = vs_asyncio("cancel")
    scaling = median(wt("insert", sizes[-1])) / median(wt("insert", sizes[0]))
    goals = [
        Goal(
            f"post_task at least {INSERT_GOAL:g}x cheaper than asyncio call_later "
            f"(at {' / '.join(f'{n:,}' for n in sizes)})",
            " / ".join(times(r) for r in insert_ratios) + " (asyncio ns / wheeltask ns)",
            min(insert_ratios) >= INSERT_GOAL,
        ),
        Goal(
            f"post_task cost at {sizes[-1]:,} at most {SCALING_GOAL:g}x its cost at {sizes[0]:,}",
            f"{times(scaling)} ({num(median(wt('insert', sizes[-1])))} ns / "
            f"{num(median(wt('insert', sizes[0])))} ns)",
            scaling <= SCALING_GOAL,
        ),
        Goal(
            f"cancel at least {CANCEL_GOAL:g}x cheaper than asyncio TimerHandle.cancel "
            f"(at {' / '.join(f'{n:,}' for n in sizes)})",
            " / ".join(times(r) for r in cancel_ratios) + " (asyncio ns / wheeltask ns)",
            min(cancel_ratios) >= CANCEL_GOAL,
        ),
    ]

    slow_rows = []
    for slow_keys, n_slow, got in slow:
        for key in slow_keys:
            insert = got.get(key, ("insert", n_slow))
            cancel = got.get(key, ("cancel", n_slow))
            r_insert = ratio(insert, got.get(REF, ("insert", n_slow)))
            r_cancel = ratio(cancel, got.get(REF, ("cancel", n_slow)))
            slow_rows.append(
                [
                    PEERS[key].label,
                    f"{n_slow:,}",
                    cell(insert),
                    cell(cancel),
                    f"{num(r_insert)} / {num(r_cancel)}",
                ]
            )

    md = [
        f"## 1. Posting a delayed timer (ns per timer; median of {reps} reps (min-max); "
        "x wheeltask = peer / wheeltask in the same rep, per column)",
        "",
        "N timers are inserted into a fresh structure and the time is divided by N. Delays "
        "are log-uniform in [1 ms, 1 h], the same list for every peer; gc on, "
        "`gc.collect()` before each timed loop. The caller keeps every handle in a list.",
        "",
        _op_table("insert", keys, sizes, samples),
        "",
        "- wheeltask post_task: `manual_scheduler(clock=MonotonicClock())`, the same "
        "`post_task` code as a threaded Scheduler with no timer thread, so nothing fires "
        "while timing, as for a loop that is not running. The live row is a "
        "`Scheduler(max_workers=4)` whose timer thread and workers fire the short timers "
        "meanwhile.",
        "- heapq minimal: `[deadline, seq, cb, args]` list entries in a `heapq`, no lock, "
        "no thread: the floor for a heap.",
        "- Each column is the whole insert of N timers into an empty structure divided by "
        "N: the average cost while the pending count grows from 0 to N.",
        "",
        goals[0].line(),
        "",
        goals[1].line(),
        "",
        f"## 2. Cancelling a pending timer (ns per cancel of all N pending timers, in "
        f"posting order; median of {reps} reps (min-max); x wheeltask = peer / wheeltask)",
        "",
        _op_table("cancel", keys, sizes, samples),
        "",
        *_not_measured(keys),
        "- asyncio, uvloop and heapq cancel lazily (a flag; the heap entry stays until "
        "the loop pops it, a cost these measurements never pay); wheeltask unlinks the "
        "timer from its wheel at once and releases the callback.",
        "",
        goals[2].line(),
        "",
        "### 1-2b. Peers with a thread or a job per timer, at a small N, wheeltask "
        f"beside them at the same N (ns per timer; median of {cfg.micro_reps} reps "
        "(min-max))",
        "",
        table(["peer", "N", "insert", "cancel", "x wheeltask (insert / cancel)"], slow_rows),
        "",
        "- threading.Timer: a thread per timer, so at most "
        f"{cfg.slow_peer_n:,}. APScheduler 3: a `BackgroundScheduler` (started, paused) "
        f"with `date` or `interval` jobs, at most {cfg.apscheduler_n:,}.",
    ]
    data = {
        "sizes": list(sizes),
        "insert_ns": {k: [median(samples.get(k, ("insert", n))) for n in sizes] for k in keys},
        "cancel_ns": {
            k: [median(samples.get(k, ("cancel", n))) for n in sizes]
            for k in keys
            if samples.get(k, ("cancel", sizes[0]))
        },
        "labels": {k: PEERS[k].label for k in keys},
        "slow": [
            {
                "peer": key,
                "label": PEERS[key].label,
                "n": n_slow,
                "insert_ns": median(got.get(key, ("insert", n_slow))),
                "cancel_ns": median(got.get(key, ("cancel", n_slow))),
            }
            for slow_keys, n_slow, got in slow
            for key in slow_keys
            if key != REF
        ],
    }
    return Section("\n".join(md), goals, data)


def _probe(key: str, n: int, how: str) -> float:
    out = subprocess.run(
        [sys.executable, str(PROBE), key, str(n), how],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


def memory(cfg: Config) -> Section:
    """Row 3: tracemalloc bytes per pending timer, each in a fresh process."""
    reps = cfg.heavy_reps
    jobs = [(k, cfg.memory_n) for k in available(MEMORY_KEYS)]
    slow_n = {"threading.Timer": cfg.slow_peer_n, "apscheduler": cfg.apscheduler_n}
    slow_jobs = [(k, slow_n[k]) for k in available(SLOW_MEMORY_KEYS)]
    jobs += slow_jobs
    samples = Samples()
    for i, (key, n) in enumerate(x for _, x in interleaved(jobs, reps)):
        log(f"memory: {i + 1}/{len(jobs) * reps} probes ({key}), one process each")
        samples.add(key, "bytes", _probe(key, n, "tracemalloc"))
        samples.add(key, "rss", _probe(key, n, "rss"))
    ref = samples.get(REF, "bytes")
    rows = [
        [
            PEERS[k].label,
            f"{n:,}",
            cell(samples.get(k, "bytes")),
            cell(samples.get(k, "rss")),
            num(ratio(samples.get(k, "bytes"), ref)),
        ]
        for k, n in jobs
    ]
    wt = median(ref)
    goal = Goal(
        f"at most {MEMORY_GOAL:g} B per pending timer (handle list included)",
        f"{num(wt)} B",
        wt <= MEMORY_GOAL,
    )
    md = [
        f"## 3. Memory per pending timer (bytes per timer, a fresh process per "
        f"measurement; median of {reps} reps (min-max); x wheeltask = peer / wheeltask, "
        "traced bytes)",
        "",
        "Bytes added by posting N timers (log-uniform delays, nothing fires), after "
        "`gc.collect()`, divided by N: traced by `tracemalloc`, and, in another process "
        "without tracemalloc, the growth of the resident set (RSS: allocator slack and "
        "whole pages included). Both include the caller's list of handles (~8 B a timer), "
        "as in the baseline (asyncio: 216 B there).",
        "",
        table(["peer", "N", "traced B per timer", "RSS B per timer", "x wheeltask"], rows),
        "",
        f"- {' and '.join(f'{PEERS[k].label} at N = {n:,}' for k, n in slow_jobs)}: "
        "a thread or a job store entry per timer. threading.Timer's delays are moved 1 h "
        "later, so that its threads keep them pending; its thread stacks are in RSS only.",
        "",
        goal.line(),
    ]
    data = {
        "traced_bytes": {k: median(samples.get(k, "bytes")) for k, _ in jobs},
        "rss_bytes": {k: median(samples.get(k, "rss")) for k, _ in jobs},
    }
    return Section("\n".join(md), [goal], data)


RESCHEDULE_GOAL = 1.5  # reschedule cost / (cancel + post_task) cost, at most


def noop() -> None:
    pass


def _reschedule_once(op: str, delays: Sequence[float], samples: Samples) -> None:
    """Post N timers, then move each one: by reschedule(), or by cancel() and a new
    post_task() (what a user without reschedule does). ns per moved timer."""
    n = len(delays)
    s = manual_scheduler(clock=MonotonicClock())
    try:
        handles = [s.post_task(noop, delay=d) for d in delays]
        later = [d * 1.5 for d in delays]
        clean_heap()
        if op == "reschedule":
            t0 = time.perf_counter()
            for h, d in zip(handles, later, strict=True):
                h.reschedule(d)
            elapsed = time.perf_counter() - t0
        else:
            post = s.post_task
            t0 = time.perf_counter()
            for i, d in enumerate(later):
                handles[i].cancel()
                handles[i] = post(noop, delay=d)
            elapsed = time.perf_counter() - t0
        samples.add(op, n, elapsed * 1e9 / n)
        del handles
    finally:
        s.shutdown(wait=False, cancel_pending=True)
    clean_heap()


def reschedule(cfg: Config) -> Section:
    """Moving a pending timer: reschedule() against cancel() + post_task()."""
    sizes = cfg.timer_sizes[:2]
    ops = ["reschedule", "cancel + post"]
    samples = Samples()
    for n in sizes:
        delays = log_uniform_delays(n)
        reps = cfg.micro_reps
        log(f"reschedule: {n:,} timers x {reps} reps")
        for _, op in interleaved(ops, reps, warmup=True):
            _reschedule_once(op, delays, samples)
    ratios = [ratio(samples.get("reschedule", n), samples.get("cancel + post", n)) for n in sizes]
    goal = Goal(
        f"reschedule at most {RESCHEDULE_GOAL:g}x a cancel plus a post_task "
        f"(at {' / '.join(f'{n:,}' for n in sizes)})",
        " / ".join(times(r) for r in ratios) + " (reschedule ns / cancel + post ns)",
        max(ratios) <= RESCHEDULE_GOAL,
    )
    rows = [[op, *(cell(samples.get(op, n)) for n in sizes)] for op in ops]
    md = [
        f"## 3b. Moving a pending timer (ns per timer; median of {cfg.micro_reps} reps (min-max))",
        "",
        "N timers are posted on a `manual_scheduler(clock=MonotonicClock())`, then each "
        "is moved to 1.5x its delay: with `handle.reschedule(delay)`, or with "
        "`handle.cancel()` and a new `post_task` (a new handle).",
        "",
        table(["way", *(f"{n:,} timers" for n in sizes)], rows),
        "",
        goal.line(),
    ]
    data = {
        "sizes": list(sizes),
        "ns": {op: [median(samples.get(op, n)) for n in sizes] for op in ops},
    }
    return Section("\n".join(md), [goal], data)
