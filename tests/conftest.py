"""Shared fixtures: every test must leave no wheeltask thread behind; a redis-server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis_server import RedisServer, missing, skip_or_fail

from wheeltask import Scheduler
from wheeltask._pool import WheeltaskThread
from wheeltask.testing import VirtualClock, manual_scheduler


def _ours() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, WheeltaskThread)]


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    """Fail a test that leaves wheeltask threads running (shut your schedulers down)."""
    before = set(_ours())
    yield
    # A worker told to stop by a shutdown(wait=False) exits a moment later.
    deadline = time.monotonic() + 2.0
    for t in _ours():
        if t not in before:
            t.join(max(0.0, deadline - time.monotonic()))
    leaked = [t for t in _ours() if t not in before and t.is_alive()]
    assert not leaked, f"wheeltask threads left running: {[t.name for t in leaked]}"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One ``redis-server`` for the session (skipped, or failed under
    ``WHEELTASK_REQUIRE_REDIS=1``, when redis-server or redis-py is missing)."""
    reason = missing()
    if reason:
        skip_or_fail(reason)
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, its database emptied first."""
    client: Any = redis_server.client()
    client.flushdb()
    client.close()
    return redis_server.url


@pytest.fixture
def clock() -> VirtualClock:
    """A virtual clock at 0.0."""
    return VirtualClock()


@pytest.fixture
def sched(clock: VirtualClock) -> Iterator[Scheduler]:
    """A manual scheduler on ``clock``; whatever is left is cancelled afterwards."""
    s = manual_scheduler(clock=clock)
    yield s
    s.shutdown(wait=False, cancel_pending=True)
