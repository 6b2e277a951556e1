"""Testing cache_app with the ``wheeltask_clock`` fixture: virtual time, no sleeping."""

from __future__ import annotations

from cache_app import ExpiringCache, MetricsReporter

from wheeltask.testing import VirtualClock


def test_entry_expires_after_its_ttl(wheeltask_clock: VirtualClock) -> None:
    cache = ExpiringCache(ttl=30)
    cache.set("a", 1)
    wheeltask_clock.advance(29.99)
    assert cache.get("a") == 1
    wheeltask_clock.advance(0.01)
    assert cache.get("a") is None


def test_setting_again_restarts_the_ttl(wheeltask_clock: VirtualClock) -> None:
    cache = ExpiringCache(ttl=30)
    cache.set("a", 1)
    wheeltask_clock.advance(20)
    cache.set("a", 2)
    wheeltask_clock.advance(20)
    assert cache.get("a") == 2
    wheeltask_clock.advance(10)
    assert cache.get("a") is None and len(cache) == 0


def test_metrics_flush_every_minute(wheeltask_clock: VirtualClock) -> None:
    cache = ExpiringCache(ttl=90)
    reporter = MetricsReporter(cache, period=60)
    cache.set("a", 1)
    cache.set("b", 2)
    wheeltask_clock.advance(60 * 3)
    assert reporter.reports == [2, 0, 0]  # both expired at 90 s
    reporter.stop()
