"""An asyncio service (no web framework) that refreshes its data every second, retries
a failed refresh, and shuts down cleanly on SIGTERM.

    python examples/async_service.py                  # runs 3.5 s, then SIGTERMs itself
    python examples/async_service.py --run-for 0      # until SIGTERM or Ctrl-C

The refresh is an ``async def`` task on ``wheeltask.aio.AsyncScheduler``: every second,
with up to 3 retries (0.1 s apart) when the upstream fails. uvloop is used when installed.
``examples/test_async_service.py`` tests it in virtual time and as a process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable

from wheeltask.aio import AsyncScheduler, AsyncTaskHandle


class Upstream:
    """Stands in for a remote API: every third call fails once."""

    def __init__(self) -> None:
        self.calls = 0

    async def fetch(self) -> int:
        self.calls += 1
        await asyncio.sleep(0)  # a real client would await the network here
        if self.calls % 3 == 0:
            raise ConnectionError(f"upstream hiccup on call {self.calls}")
        return self.calls


class Service:
    """Holds the latest value; a scheduler keeps it fresh."""

    def __init__(self, scheduler: AsyncScheduler, upstream: Upstream, say: Callable[[str], None]):
        self.scheduler = scheduler
        self.upstream = upstream
        self.say = say
        self.value: int | None = None
        self.refreshes = 0
        self.retries = 0
        self.task: AsyncTaskHandle | None = None

    def start(self, every: float = 1.0) -> AsyncTaskHandle:
        self.task = self.scheduler.post_task(
            self.refresh,
            interval=every,
            delay=0,
            name="refresh",
            retries=3,
            retry_on=ConnectionError,
            backoff=0.1,
            on_retry=self._retrying,
        )
        return self.task

    async def refresh(self) -> int:
        value = await self.upstream.fetch()
        self.value = value
        self.refreshes += 1
        self.say(f"refreshed: value={value}")
        return value

    def _retrying(self, handle: AsyncTaskHandle, exc: BaseException, delay: float) -> None:
        self.retries += 1
        self.say(f"refresh failed ({exc}); retry in {delay:g} s")


async def main(run_for: float) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if run_for > 0:  # a demo run ends the way a real deployment would: with SIGTERM
        loop.call_later(run_for, os.kill, os.getpid(), signal.SIGTERM)

    async with AsyncScheduler(name="service") as scheduler:
        service = Service(scheduler, Upstream(), lambda line: print(line, flush=True))
        service.start(every=1.0)
        print("service: running (SIGTERM to stop)", flush=True)
        await stop.wait()
        print("service: SIGTERM, shutting down", flush=True)
        clean = await scheduler.shutdown(timeout=5)
        s = scheduler.stats()
    print(
        f"service: stopped cleanly={clean} refreshes={service.refreshes} "
        f"retries={s.retried} failed={s.failed}",
        flush=True,
    )
    return 0 if clean else 1


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-for", type=float, default=3.5, help="seconds, then SIGTERM (0: no)")
    args = parser.parse_args(argv)
    if args.run_for < 0:
        parser.error("--run-for must be >= 0")
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        return asyncio.run(main(args.run_for))
    return uvloop.run(main(args.run_for))


if __name__ == "__main__":
    sys.exit(run())
