"""Testing cache_app with freezegun: a manual scheduler reading the frozen clock."""

from __future__ import annotations

import datetime

from cache_app import ExpiringCache
from freezegun import freeze_time

from wheeltask.testing import FrozenClock, manual_scheduler


def test_entry_expires_with_frozen_time() -> None:
    with freeze_time("2026-11-22 09:00:00") as frozen:
        scheduler = manual_scheduler(clock=FrozenClock())
        cache = ExpiringCache(ttl=30, scheduler=scheduler)
        cache.set("a", 1)
        frozen.tick(datetime.timedelta(seconds=29))
        scheduler.run_due()
        assert cache.get("a") == 1
        frozen.tick(datetime.timedelta(seconds=1))
        scheduler.run_due()
        assert cache.get("a") is None
        scheduler.shutdown()
