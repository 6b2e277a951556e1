"""Redis, several processes: one producer, three ``python -m wheeltask worker``
processes, one killed with SIGKILL in the middle of a task; nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from redis_server import RedisServer

from wheeltask.bus import TaskRecord, connect

pytestmark = pytest.mark.slow

# Each task leaves a marker "<pid>-<record id>" as it starts, then takes 0.2 s.
SLOW_JOBS = """
import os
import pathlib
import time

MARKS = pathlib.Path(os.environ["WHEELTASK_TEST_MARKS"])


def job(record):
    (MARKS / f"{os.getpid()}-{record.id}").touch()
    time.sleep(0.2)
    return f"done by {os.getpid()}"
"""


def _started(marks: Path) -> dict[int, set[str]]:
    """Record ids each process started, by pid."""
    out: dict[int, set[str]] = {}
    for mark in marks.iterdir():
        pid, _, record_id = mark.name.partition("-")
        out.setdefault(int(pid), set()).add(record_id)
    return out


def test_a_worker_killed_mid_task_loses_nothing_and_the_others_stop_cleanly(
    redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "slow_jobs.py").write_text(SLOW_JOBS)
    url = redis_url + "?claim_idle=1"
    producer = connect(url).producer()
    ids = [f"r{i}" for i in range(60)]
    for record_id in ids:
        producer.send("jobs", TaskRecord("job", record_id, id=record_id).to_json().encode())
    producer.stop()
    command = [sys.executable, "-m", "wheeltask", "worker", "--bus", url, "--topic", "jobs",
               "--done-topic", "done", "--module", "slow_jobs", "--slots", "2",
               "--grace", "5"]  # fmt: skip
    env = {**os.environ, "WHEELTASK_TEST_MARKS": str(marks)}
    pipe = subprocess.PIPE
    procs = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=pipe, stderr=pipe, text=True)
        for _ in range(3)
    ]
    victim, survivors = procs[0], procs[1:]
    raw: Any = redis_server.client()

    def done_ids() -> list[str]:
        return [TaskRecord.from_json(f[b"data"]).id for _, f in raw.xrange("wheeltask:done")]

    try:
        wait_until(lambda: len(_started(marks).get(victim.pid, ())) >= 3, 30)
        seen = len(_started(marks)[victim.pid])
        # Kill it as it starts a task: that one is in progress (0.2 s), never acknowledged.
        wait_until(lambda: len(_started(marks)[victim.pid]) > seen, 10)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        taken = _started(marks)[victim.pid]
        wait_until(lambda: set(ids) <= set(done_ids()), 30)
        for proc in survivors:
            proc.send_signal(signal.SIGTERM)
        for proc in survivors:
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err  # stopped cleanly: nothing abandoned
            assert "record(s) received" in err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)
    done = done_ids()
    assert set(done) == set(ids)  # every record reached the done topic: none lost
    duplicates = {i for i in done if done.count(i) > 1}
    assert duplicates <= taken  # run twice only if the killed worker had taken it
    started = _started(marks)
    rerun = {i for pid, run in started.items() if pid != victim.pid for i in run & taken}
    assert rerun  # its task in progress was claimed and run by a survivor
    records = [TaskRecord.from_json(f[b"data"]) for _, f in raw.xrange("wheeltask:done")]
    assert all(r.result == "complete" for r in records)
    assert {r.msg for r in records if r.id in rerun} - {f"done by {victim.pid}"}
    assert raw.xpending("wheeltask:jobs", "wheeltask")["pending"] == 0  # none left behind
    assert raw.xlen("wheeltask:jobs") == 0  # each acknowledged and deleted
    raw.close()
