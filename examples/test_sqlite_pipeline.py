"""The SQLite pipeline example in virtual time: every row processed exactly once."""

from __future__ import annotations

import sqlite_pipeline as app

from wheeltask.testing import VirtualClock, manual_scheduler


def test_every_row_is_processed_exactly_once_in_round_robin() -> None:
    clock = VirtualClock()
    scheduler = manual_scheduler(clock=clock)
    jobs = app.Jobs()
    jobs.add(app.ROWS)
    pipeline = app.make_pipeline(jobs, scheduler)
    pipeline.start()
    clock.advance(2.5)  # loads at 0, 1 and 2 s: 150 rows
    assert jobs.count("done") == 150
    clock.advance(1)  # the last 50
    assert pipeline.stop()
    assert jobs.count("done") == app.ROWS
    assert jobs.processed_more_than_once() == 0
    assert jobs.per_worker() == {"A": 100, "B": 100}
    st = pipeline.stats()
    assert (st.loaded, st.succeeded, st.failed, st.backlog) == (200, 200, 0, 0)
    clock.advance(5)  # nothing pending any more: loads find no rows
    assert pipeline.stats().loaded == 200
