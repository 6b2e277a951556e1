"""A small application that uses wheeltask: a cache whose entries expire, and a
metrics report flushed every minute. Run it: ``python examples/cache_app.py``.

Its tests show the two ways to test such code without sleeping:
``test_cache_app_clock.py`` (the ``wheeltask_clock`` fixture) and
``test_cache_app_freezegun.py`` (freezegun with a ``FrozenClock``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import wheeltask
from wheeltask import Scheduler, TaskHandle


class ExpiringCache:
    """A dict whose entries disappear ``ttl`` seconds after they were last set.

    Args:
        ttl: seconds an entry lives.
        scheduler: where the expiry timers go; the module-level default if None.
    """

    def __init__(self, ttl: float, scheduler: Scheduler | None = None) -> None:
        self.ttl = ttl
        self._scheduler = scheduler
        self._lock = threading.Lock()
        self._data: dict[str, tuple[Any, int]] = {}
        self._timers: dict[str, TaskHandle] = {}
        self._generation = 0

    def _post(self) -> Scheduler:
        return self._scheduler or wheeltask.get_scheduler()

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self._generation += 1
            self._data[key] = (value, self._generation)
            old = self._timers.pop(key, None)
            if old is not None:
                old.cancel()  # if it is running right now, the generation check wins
            self._timers[key] = self._post().post_task(
                self._expire, key, self._generation, delay=self.ttl, name=f"expire {key}"
            )

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            entry = self._data.get(key)
        return default if entry is None else entry[0]

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def _expire(self, key: str, generation: int) -> None:
        with self._lock:
            entry = self._data.get(key)
            if entry is not None and entry[1] == generation:
                del self._data[key]
                del self._timers[key]


class MetricsReporter:
    """Flushes a snapshot of a cache's size every ``period`` seconds."""

    def __init__(
        self, cache: ExpiringCache, period: float = 60.0, scheduler: Scheduler | None = None
    ) -> None:
        self.reports: list[int] = []
        s = scheduler or wheeltask.get_scheduler()
        self._task = s.post_task(self._flush, cache, interval=period, name="metrics")

    def _flush(self, cache: ExpiringCache) -> None:
        self.reports.append(len(cache))

    def stop(self) -> None:
        self._task.cancel()


def main() -> None:
    cache = ExpiringCache(ttl=0.3)
    reporter = MetricsReporter(cache, period=0.1)
    cache.set("session:1", "alice")
    cache.set("session:2", "bob")
    time.sleep(0.2)
    cache.set("session:2", "bob again")  # refreshed: lives 0.3 s from now
    time.sleep(0.2)
    print("after 0.4 s:", cache.get("session:1"), cache.get("session:2"))
    time.sleep(0.2)
    print("after 0.6 s:", cache.get("session:1"), cache.get("session:2"))
    reporter.stop()
    print("sizes reported:", reporter.reports)
    wheeltask.wait_and_exit(timeout=5)


if __name__ == "__main__":
    main()
