"""Row 4: immediate tasks through a pool: post N no-ops, then wait until all have run."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
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
REF = "wheeltask"


def run_wheeltask(n: int) -> None:
    """``queue_size=n``: no back-pressure, like the unbounded queues of the peers."""
    scheduler = wheeltask.Scheduler(max_workers=WORKERS, queue_size=n)
    post = scheduler.post_task
    for _ in range(n):
        post(noop)
    scheduler.shutdown(wait=True)


def run_wheeltask_default_queue(n: int) -> None:
    """The default ``queue_size=10_000`` with ``on_full="block"``: posting waits for room."""
    scheduler = wheeltask.Scheduler(max_workers=WORKERS)
    post = scheduler.post_task
    for _ in range(n):
        post(noop)
    scheduler.shutdown(wait=True)


def run_thread_pool_executor(n: int) -> None:
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS)
    submit = executor.submit
    for _ in range(n):
        submit(noop)
    executor.shutdown(wait=True)


def run_simple_queue_pool(n: int) -> None:
    """A hand-rolled pool: 4 threads on one ``SimpleQueue``. The floor, not a product."""
    work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()

    def worker() -> None:
        get = work.get
        while (cb := get()) is not None:
            cb()

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    put = work.put
    for _ in range(n):
        put(noop)
    for _ in threads:
        put(None)
    for t in threads:
        t.join()


def _run_loop(loop: asyncio.AbstractEventLoop, n: int) -> None:
    call_soon = loop.call_soon
    for _ in range(n):
        call_soon(noop)
    call_soon(loop.stop)
    loop.run_forever()
    loop.close()


def run_asyncio(n: int) -> None:
    _run_loop(asyncio.new_event_loop(), n)


def run_uvloop(n: int) -> None:
    import uvloop  # noqa: PLC0415 - optional: only listed when importable

    _run_loop(uvloop.new_event_loop(), n)


def pool(cfg: Config) -> Section:
    """Row 4: tasks/s from the first post until every task has run."""
    n, n_tpe = cfg.pool_n, cfg.tpe_n
    peers: list[tuple[str, str, int, Callable[[int], None]]] = [
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
    reps = cfg.micro_reps
    log(f"pool: {n:,} tasks ({n_tpe:,} for ThreadPoolExecutor) x {reps} reps")
    samples = Samples()
    for _, (key, _label, size, run) in interleaved(peers, reps):
        clean_heap()
        t0 = time.perf_counter()
        run(size)
        samples.add(key, "rate", size / (time.perf_counter() - t0))
    ref = samples.get(REF, "rate")
    rows = []
    for key, label, size, _run in peers:
        rates = samples.get(key, "rate")
        rows.append(
            [label, f"{size:,}", cell(rates), num(1e9 / median(rates)), num(ratio(ref, rates))]
        )
    measured = ratio(ref, samples.get("tpe", "rate"))
    goal = Goal(
        f"wheeltask throughput at least {GOAL:g}x ThreadPoolExecutor's",
        f"{num(measured)}x (wheeltask tasks/s / ThreadPoolExecutor tasks/s)",
        measured >= GOAL,
    )
    md = [
        f"## 4. Immediate tasks through the pool (tasks/s, median of {reps} reps (min-max); "
        "x wheeltask = wheeltask rate / peer rate)",
        "",
        "Post N no-op tasks, then wait until all have run (`shutdown(wait=True)`, "
        "`executor.shutdown(wait=True)`, the loop stopping after the last one). Timed from "
        "the first post, thread start-up included; gc on.",
        "",
        table(["peer", "N", "tasks/s", "ns per task", "x wheeltask"], rows),
        "",
        goal.line(),
    ]
    return Section("\n".join(md), [goal])
