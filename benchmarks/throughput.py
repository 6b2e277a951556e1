"""Row 4: immediate tasks through a pool: post N tasks, then wait until all have run."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import itertools
import queue
import threading
import time
from collections.abc import Callable

from common import (
    Config,
    Goal,
    Samples,
    Section,
    cell,
    clean_heap,
    interleaved,
    log,
    median,
    num,
    ratio,
    table,
)
from timer_peers import noop

import wheeltask

WORKERS = 4
GOAL = 10.0  # wheeltask tasks/s / ThreadPoolExecutor tasks/s
WORK_S = 50e-6  # seconds of work per task in the second table
REF = "wheeltask"


def spin_50us() -> None:
    """50 us of CPU work (holding the GIL, as pure-Python work does)."""
    end = time.perf_counter() + WORK_S
    while time.perf_counter() < end:
        pass


Runner = Callable[[int, Callable[[], None]], None]


def run_wheeltask(n: int, cb: Callable[[], None]) -> None:
    """``queue_size=n``: no back-pressure, like the unbounded queues of the peers."""
    scheduler = wheeltask.Scheduler(max_workers=WORKERS, queue_size=n)
    post = scheduler.post_task
    for _ in range(n):
        post(cb)
    scheduler.shutdown(wait=True)


def run_wheeltask_default_queue(n: int, cb: Callable[[], None]) -> None:
    """The default ``queue_size=10_000`` with ``on_full="block"``: posting waits for room."""
    scheduler = wheeltask.Scheduler(max_workers=WORKERS)
    post = scheduler.post_task
    for _ in range(n):
        post(cb)
    scheduler.shutdown(wait=True)


def run_thread_pool_executor(n: int, cb: Callable[[], None]) -> None:
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS)
    submit = executor.submit
    for _ in range(n):
        submit(cb)
    executor.shutdown(wait=True)


def run_simple_queue_pool(n: int, cb: Callable[[], None]) -> None:
    """A hand-rolled pool: 4 threads on one ``SimpleQueue``. The floor, not a product."""
    work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()

    def worker() -> None:
        get = work.get
        while (item := get()) is not None:
            item()

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    put = work.put
    for _ in range(n):
        put(cb)
    for _ in threads:
        put(None)
    for t in threads:
        t.join()


def _run_loop(loop: asyncio.AbstractEventLoop, n: int, cb: Callable[[], None]) -> None:
    call_soon = loop.call_soon
    for _ in range(n):
        call_soon(cb)
    call_soon(loop.stop)
    loop.run_forever()
    loop.close()


def run_asyncio(n: int, cb: Callable[[], None]) -> None:
    _run_loop(asyncio.new_event_loop(), n, cb)


def run_uvloop(n: int, cb: Callable[[], None]) -> None:
    import uvloop  # noqa: PLC0415 - optional: only listed when importable

    _run_loop(uvloop.new_event_loop(), n, cb)


def _peers(n: int, n_tpe: int) -> list[tuple[str, str, int, Runner]]:
    peers: list[tuple[str, str, int, Runner]] = [
        (REF, f"wheeltask Scheduler({WORKERS}), queue_size=N", n, run_wheeltask),
        (
            "wheeltask-default",
            f"wheeltask Scheduler({WORKERS}), default queue_size (block when full)",
            n,
            run_wheeltask_default_queue,
        ),
        ("tpe", f"ThreadPoolExecutor({WORKERS}).submit", n_tpe, run_thread_pool_executor),
        ("asyncio", "asyncio call_soon (one thread, no pool)", n, run_asyncio),
    ]
    if importlib.util.find_spec("uvloop") is not None:
        peers.append(("uvloop", "uvloop call_soon (one thread, no pool)", n, run_uvloop))
    peers.append(
        ("floor", f"hand-rolled SimpleQueue pool({WORKERS}) (floor)", n, run_simple_queue_pool)
    )
    return peers


def _rates(peers: list[tuple[str, str, int, Runner]], cb: Callable[[], None], reps: int) -> Samples:
    samples = Samples()
    for rep, (key, _label, size, run) in interleaved(peers, reps, warmup=True):
        which = "warm-up" if rep < 0 else f"rep {rep + 1}/{reps}"
        log(f"pool: {which}: {key}, {size:,} tasks")
        clean_heap()
        t0 = time.perf_counter()
        run(size, cb)
        samples.add(key, "rate", size / (time.perf_counter() - t0))
    return samples


def _rows(peers: list[tuple[str, str, int, Runner]], samples: Samples) -> list[list[str]]:
    ref = samples.get(REF, "rate")
    rows = []
    for key, label, size, _run in peers:
        rates = samples.get(key, "rate")
        rows.append(
            [label, f"{size:,}", cell(rates), num(1e9 / median(rates)), num(ratio(ref, rates))]
        )
    return rows


def pool(cfg: Config) -> Section:
    """Row 4: tasks/s from the first post until every task has run: no-ops, then 50 us
    of CPU work each."""
    n, n_tpe, reps = cfg.pool_n, cfg.tpe_n, cfg.micro_reps
    peers = _peers(n, n_tpe)
    samples = _rates(peers, noop, reps)
    measured = ratio(samples.get(REF, "rate"), samples.get("tpe", "rate"))
    goal = Goal(
        f"wheeltask throughput at least {GOAL:g}x ThreadPoolExecutor's",
        f"{num(measured)}x (wheeltask tasks/s / ThreadPoolExecutor tasks/s)",
        measured >= GOAL,
    )
    work_peers = _peers(cfg.work_n, cfg.work_n)
    work = _rates(work_peers, spin_50us, reps)
    md = [
        f"## 4. Immediate tasks through the pool (tasks/s, median of {reps} reps (min-max); "
        "x wheeltask = wheeltask rate / peer rate)",
        "",
        "Post N no-op tasks, then wait until all have run (`shutdown(wait=True)`, "
        "`executor.shutdown(wait=True)`, the loop stopping after the last one). Timed from "
        "the first post, thread start-up included; gc on; a warm-up round first. "
        "ThreadPoolExecutor gets fewer tasks (it is ~10x slower); rates are per task, so "
        "the sizes compare.",
        "",
        table(["peer", "N", "tasks/s", "ns per task", "x wheeltask"], _rows(peers, samples)),
        "",
        goal.line(),
        "",
        f"### 4b. The same with {WORK_S * 1e6:g} us of CPU work per task",
        "",
        "Each task spins on `time.perf_counter()` for 50 us, holding the GIL as pure-Python "
        "work does: at most ~20,000 tasks/s whatever the pool, so what is left between "
        "the peers is each one's overhead on top of the work.",
        "",
        table(["peer", "N", "tasks/s", "ns per task", "x wheeltask"], _rows(work_peers, work)),
    ]
    data = {
        "noop_rate": {k: median(samples.get(k, "rate")) for k, *_ in peers},
        "work_rate": {k: median(work.get(k, "rate")) for k, *_ in work_peers},
    }
    return Section("\n".join(md), [goal], data)


PIPELINE_GOAL = 5.0  # Pipeline items/s / hand-written ThreadPoolExecutor loop items/s


def _pipeline_wheeltask(n: int) -> float:
    """A Pipeline whose source gives n items at its first load, one no-op consumer."""
    done = threading.Event()
    seen = itertools.count(1)

    def consume(item: object) -> None:
        if next(seen) == n:
            done.set()

    scheduler = wheeltask.Scheduler(max_workers=WORKERS, queue_size=n + 10)
    pipeline = wheeltask.Pipeline(
        [lambda: range(n)], [consume], every=3600, capacity=n, scheduler=scheduler
    )
    clean_heap()
    t0 = time.perf_counter()
    pipeline.start()
    done.wait()
    elapsed = time.perf_counter() - t0
    pipeline.stop()
    scheduler.shutdown()
    return n / elapsed


def _pipeline_executor(n: int) -> float:
    """The same written by hand: load the batch, submit each item, wait for them all."""
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS)

    def consume(item: object) -> None:
        pass

    clean_heap()
    t0 = time.perf_counter()
    futures = [executor.submit(consume, item) for item in range(n)]
    for f in futures:
        f.result()
    elapsed = time.perf_counter() - t0
    executor.shutdown()
    return n / elapsed


def pipeline(cfg: Config) -> Section:
    """Items/s from an in-memory source through one no-op consumer (issue 5)."""
    n, n_tpe, reps = cfg.pool_n, cfg.tpe_n, cfg.micro_reps
    peers: list[tuple[str, str, int, Callable[[int], float]]] = [
        (REF, f"wheeltask Pipeline on Scheduler({WORKERS})", n, _pipeline_wheeltask),
        ("tpe", f"hand-written ThreadPoolExecutor({WORKERS}) loop", n_tpe, _pipeline_executor),
    ]
    samples = Samples()
    for rep, (key, _label, size, run) in interleaved(peers, reps, warmup=True):
        which = "warm-up" if rep < 0 else f"rep {rep + 1}/{reps}"
        log(f"pipeline: {which}: {key}, {size:,} items")
        samples.add(key, "rate", run(size))
    ref = samples.get(REF, "rate")
    rows = [
        [label, f"{size:,}", cell(samples.get(k, "rate")), num(ratio(ref, samples.get(k, "rate")))]
        for k, label, size, _run in peers
    ]
    measured = ratio(ref, samples.get("tpe", "rate"))
    goal = Goal(
        f"Pipeline items/s at least {PIPELINE_GOAL:g}x a hand-written ThreadPoolExecutor loop",
        f"{num(measured)}x",
        measured >= PIPELINE_GOAL,
    )
    md = [
        f"## 9. Pipeline: items/s from an in-memory source through one no-op consumer "
        f"(median of {reps} reps (min-max); x wheeltask = wheeltask rate / peer rate)",
        "",
        "The source gives N items at its first load; timed from `start()` until the "
        "consumer has seen them all. The hand-written loop submits each item to a "
        "`ThreadPoolExecutor` and waits for every future.",
        "",
        table(["way", "N", "items/s", "x wheeltask"], rows),
        "",
        goal.line(),
    ]
    data = {"rate": {k: median(samples.get(k, "rate")) for k, *_ in peers}}
    return Section("\n".join(md), [goal], data)
