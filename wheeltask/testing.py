"""Deterministic testing: virtual time, manual schedulers and freezegun support.

freezegun returns the *real* time to calls made near ``threading`` frames, so a
background timer thread cannot be trusted to see frozen time. A manual scheduler has no
timer thread and no workers: time is an injected clock, and callbacks run on the test's
own thread when the test moves time (``VirtualClock.advance``) or asks
(``Scheduler.run_due``).

    clock = VirtualClock()
    s = manual_scheduler(clock=clock)
    h = s.post_task(cb, delay=0.5)
    clock.advance(0.5)          # cb runs here, seeing clock.now() == 0.5
    assert h.done()

With pytest, the ``wheeltask_clock`` fixture (installed with wheeltask) does this for
the module-level API: ``wheeltask.post_task`` goes to a manual scheduler on the
``VirtualClock`` it returns.
"""

from __future__ import annotations

from typing import Any

from ._clock import Clock, FrozenClock, VirtualClock
from ._scheduler import Scheduler

__all__ = ["FrozenClock", "VirtualClock", "manual_scheduler"]


def manual_scheduler(clock: Clock | None = None, **options: Any) -> Scheduler:
    """A ``Scheduler`` with no timer thread and an inline pool, for tests.

    Args:
        clock: a ``VirtualClock`` (the default, a new one at 0.0), a ``FrozenClock``,
            or any clock with ``now()`` and ``now_ns()``.
        **options: other ``Scheduler`` options (``max_workers`` and ``idle_timeout``
            are accepted and have no effect: there are no threads).

    Nothing runs inside ``post_task``, not even an immediate task: callbacks run at the
    next ``clock.advance(...)`` (``advance(0)`` included) or ``run_due()``, on that
    thread, in deadline order. Waits (``wait_for_finished``, ``result``, a ``shutdown``
    with ``wait=True``) advance a ``VirtualClock`` instead of blocking: by at most their
    timeout, and with no timeout until the task is done (RuntimeError if nothing
    scheduled could ever finish it).
    """
    return Scheduler._new_manual(clock if clock is not None else VirtualClock(), **options)
