"""The asyncio service example: in virtual time (no sleeping), and as a process that
stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import async_service as app

from wheeltask.aio import AsyncScheduler
from wheeltask.testing import VirtualClock


def test_refresh_every_second_with_retries_in_virtual_time() -> None:
    async def main() -> None:
        clock = VirtualClock()
        scheduler = AsyncScheduler(clock=clock)
        lines: list[str] = []
        service = app.Service(scheduler, app.Upstream(), lines.append)
        task = service.start(every=1.0)
        await clock.advance_async(0)  # the first refresh is due at once
        assert service.refreshes == 1 and service.value == 1
        await clock.advance_async(1)  # call 2 succeeds
        await clock.advance_async(1)  # call 3 fails; its retry is due 0.1 s later
        assert service.refreshes == 2 and service.retries == 1
        await clock.advance_async(0.1)  # call 4: the retry succeeds
        assert service.refreshes == 3 and service.value == 4
        assert task.runs == 3 and task.attempts == 2
        await clock.advance_async(7)
        assert service.refreshes == 10
        assert scheduler.stats().failed == 0
        assert any("retry in 0.1 s" in line for line in lines)
        assert await scheduler.shutdown(timeout=1)
        assert task.cancelled()

    asyncio.run(main())


def test_the_service_stops_cleanly_on_sigterm() -> None:
    script = Path(__file__).with_name("async_service.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--run-for", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("service: running")
        assert proc.stdout.readline().startswith("refreshed: value=1")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "service: SIGTERM, shutting down" in out
    assert "service: stopped cleanly=True" in out
    assert not err
