"""Rows from an SQLite table, loaded in batches every second, processed by two consumers.

    python examples/sqlite_pipeline.py

A ``jobs`` table is filled with 200 pending rows. A ``wheeltask.Pipeline`` loads up to
50 pending rows per second (never more than 100 unfinished at once), marking each row
``taken`` as it loads it so that no later load sees it again; two consumers, in
round-robin, process the rows and mark them ``done``. Once every row is done the
pipeline stops cleanly.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable

import wheeltask

BATCH = 50
ROWS = 200


class Jobs:
    """The table, shared by the loader and the consumers (one connection, a lock)."""

    def __init__(self, path: str = ":memory:") -> None:
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.lock = threading.Lock()
        with self.lock, self.db:
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, payload TEXT, "
                "state TEXT NOT NULL DEFAULT 'pending', done_by TEXT, runs INTEGER DEFAULT 0)"
            )

    def add(self, n: int) -> None:
        with self.lock, self.db:
            self.db.executemany(
                "INSERT INTO jobs (payload) VALUES (?)", [(f"job {i}",) for i in range(n)]
            )

    def take_batch(self) -> list[tuple[int, str]]:
        """The source: up to BATCH pending rows, marked taken in the same transaction."""
        with self.lock, self.db:
            rows = self.db.execute(
                "SELECT id, payload FROM jobs WHERE state = 'pending' ORDER BY id LIMIT ?",
                (BATCH,),
            ).fetchall()
            self.db.executemany(
                "UPDATE jobs SET state = 'taken' WHERE id = ?", [(r[0],) for r in rows]
            )
        return rows

    def mark_done(self, row_id: int, worker: str) -> None:
        with self.lock, self.db:
            self.db.execute(
                "UPDATE jobs SET state = 'done', done_by = ?, runs = runs + 1 WHERE id = ?",
                (worker, row_id),
            )

    def count(self, state: str) -> int:
        with self.lock:
            (n,) = self.db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,)).fetchone()
        return int(n)

    def per_worker(self) -> dict[str, int]:
        with self.lock:
            rows = self.db.execute(
                "SELECT done_by, COUNT(*) FROM jobs GROUP BY done_by ORDER BY done_by"
            ).fetchall()
        return {str(w): int(n) for w, n in rows}

    def processed_more_than_once(self) -> int:
        with self.lock:
            (n,) = self.db.execute("SELECT COUNT(*) FROM jobs WHERE runs != 1").fetchone()
        return int(n)


def consumer(jobs: Jobs, name: str) -> Callable[[tuple[int, str]], None]:
    def process(row: tuple[int, str]) -> None:
        row_id, _payload = row
        jobs.mark_done(row_id, name)

    process.__qualname__ = f"consumer {name}"
    return process


def make_pipeline(jobs: Jobs, scheduler: wheeltask.Scheduler) -> wheeltask.Pipeline:
    return wheeltask.Pipeline(
        [jobs.take_batch],
        [consumer(jobs, "A"), consumer(jobs, "B")],
        mode="round_robin",
        every=1.0,
        capacity=100,
        key=lambda row: row[0],
        retries=2,
        retry_on=sqlite3.OperationalError,
        scheduler=scheduler,
    )


def run(jobs: Jobs, scheduler: wheeltask.Scheduler, wait: float = 10.0) -> wheeltask.PipelineStats:
    """Process every pending row, then stop; return the pipeline's counters."""
    pipeline = make_pipeline(jobs, scheduler)
    with pipeline:  # start() now; stop() (waiting for deliveries) on the way out
        end = time.monotonic() + wait
        while jobs.count("done") < ROWS and time.monotonic() < end:
            time.sleep(0.05)
    return pipeline.stats()


def main() -> None:
    jobs = Jobs()
    jobs.add(ROWS)
    with wheeltask.Scheduler(max_workers=4, name="sqlite") as scheduler:
        t0 = time.monotonic()
        stats = run(jobs, scheduler)
    print(f"processed {jobs.count('done')} of {ROWS} rows in {time.monotonic() - t0:.1f} s")
    print(f"per consumer: {jobs.per_worker()}")
    print(f"rows processed more or less than once: {jobs.processed_more_than_once()}")
    print(f"pipeline: {stats}")


if __name__ == "__main__":
    main()
