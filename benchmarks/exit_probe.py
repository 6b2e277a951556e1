"""Child process of the exit section: shut down with N tasks pending, then exit.

Usage: ``python benchmarks/exit_probe.py PEER N``. Prints ``time.monotonic()`` when the
shutdown call starts and how long the call took (seconds), as JSON; the parent notes
when the process has exited (the monotonic clock is system-wide on Linux and macOS).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sys
import threading
import time

from common import log_uniform_delays
from timer_peers import ConditionScheduler, noop

import wheeltask


def main(argv: list[str]) -> None:
    key, n = argv[1], int(argv[2])
    delays = [3600.0 + d for d in log_uniform_delays(n)]  # all pending at exit
    if key == "wheeltask":
        wheeltask.configure(max_workers=4)
        for d in delays:
            wheeltask.post_task(noop, delay=d)
        t0 = time.monotonic()
        wheeltask.wait_and_exit(timeout=0)  # cancels what has not started, joins threads
    elif key == "asyncio":
        loop = asyncio.new_event_loop()
        handles = [loop.call_later(d, noop) for d in delays]
        t0 = time.monotonic()
        for h in handles:
            h.cancel()
        loop.close()
    elif key == "heapq-condition":
        timers = ConditionScheduler()
        for d in delays:
            timers.call_later(d, noop)
        t0 = time.monotonic()
        timers.close()
    elif key == "apscheduler":
        from apscheduler.schedulers.background import (  # noqa: PLC0415 - optional
            BackgroundScheduler,
        )

        aps = BackgroundScheduler()
        aps.start()
        for d in delays:
            aps.add_job(noop, "interval", seconds=d)
        t0 = time.monotonic()
        aps.shutdown(wait=True)
    elif key == "tpe":
        gate = threading.Event()
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=4)
        for _ in range(4):
            executor.submit(gate.wait)
        for _ in range(n):
            executor.submit(noop)
        t0 = time.monotonic()
        gate.set()
        executor.shutdown(wait=True, cancel_futures=True)
    else:
        raise SystemExit(f"unknown peer {key!r}")
    took = time.monotonic() - t0
    print(json.dumps({"start": t0, "call": took}), flush=True)


if __name__ == "__main__":
    main(sys.argv)
