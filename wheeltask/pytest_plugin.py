"""pytest plugin (registered through the ``pytest11`` entry point): ``wheeltask_clock``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import _default
from ._default import _swap_default
from .testing import VirtualClock, manual_scheduler


@pytest.fixture
def wheeltask_clock() -> Iterator[VirtualClock]:
    """A ``VirtualClock`` driving the module-level default scheduler for one test.

    ``wheeltask.post_task`` (and ``get_scheduler()``) use a manual scheduler on this
    clock; ``wheeltask_clock.advance(seconds)`` runs what falls due. The previous default
    scheduler is put back afterwards and anything still pending is cancelled.
    """
    clock = VirtualClock()
    # What wheeltask.configure() set applies here too (task_defaults, queue_size ...).
    options = {k: v for k, v in _default._options.items() if k not in ("clock", "name")}
    scheduler = manual_scheduler(clock=clock, name="wheeltask-test", **options)
    previous = _swap_default(scheduler)
    try:
        yield clock
    finally:
        _swap_default(*previous)
        scheduler.shutdown(wait=False, cancel_pending=True)
