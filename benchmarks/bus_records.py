"""Row 10: task records/s through a ``Launcher`` with a no-op worker: the memory bus in
this process, and Redis Streams with one and with three ``python -m wheeltask worker``
processes. The Redis rows need ``redis-server`` on PATH and redis-py (the ``redis``
extra); without them they are skipped with a note."""

from __future__ import annotations

import importlib.util
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from common import Config, Samples, Section, cell, interleaved, log, median, num, table

import wheeltask
from wheeltask.bus import Launcher, TaskRecord, connect

SLOTS = 4  # Launcher slots and scheduler workers, in every row
NOOP_MODULE = "def noop(record):\n    pass\n"


def _noop(record: TaskRecord) -> None:
    """The worker of every record: nothing to do, so the bus is what is measured."""


def _payloads(n: int) -> list[bytes]:
    return [TaskRecord("noop", str(i)).to_json().encode() for i in range(n)]


def _send(url: str, topic: str, n: int) -> float:
    """Put N records on the topic with ``producer.send()``; sends/s."""
    payloads = _payloads(n)
    producer = connect(url).producer()
    t0 = time.perf_counter()
    for payload in payloads:
        producer.send(topic, payload)
    rate = n / (time.perf_counter() - t0)
    producer.stop()
    return rate


def _memory(n: int) -> tuple[float, float]:
    """(records/s, sends/s): a Launcher on memory:// drains N records sent before."""
    bus = connect("memory://")
    topic, done_topic = f"bench-{uuid.uuid4().hex}", f"bench-done-{uuid.uuid4().hex}"
    send_rate = _send("memory://", topic, n)
    scheduler = wheeltask.Scheduler(max_workers=SLOTS, name="bench-bus")
    launcher = Launcher(
        bus, topic, done_topic, {"noop": _noop}, max_in_progress=SLOTS, scheduler=scheduler
    )
    pause = threading.Event()
    t0 = time.perf_counter()
    launcher.start()
    while launcher.published < n:
        pause.wait(0.0005)
    elapsed = time.perf_counter() - t0
    launcher.stop()
    scheduler.shutdown()
    drain = bus.consumer(done_topic)  # memory:// topics live as long as the process
    while drain.msg(timeout=0)[0] is not None:
        pass
    drain.stop()
    return n / elapsed, send_rate


class _Redis:
    """A private redis-server (127.0.0.1, a free port, nothing saved) in a temp dir."""

    def __init__(self, folder: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        end = time.perf_counter() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.perf_counter() > end or self._proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                threading.Event().wait(0.01)
        import redis  # noqa: PLC0415 - optional: only when the Redis rows run

        self.client: Any = redis.Redis(host="127.0.0.1", port=self.port)

    def stop(self) -> None:
        self.client.close()
        self._proc.terminate()
        self._proc.wait(10)


def _redis(server: _Redis, folder: Path, n: int, processes: int) -> tuple[float, float]:
    """(records/s, sends/s): ``processes`` workers (``--slots 4`` each) wait on an empty
    topic; N records land on it in one pipelined batch; timed until all are done."""
    topic = f"bench-{uuid.uuid4().hex[:12]}"
    key, done_key = f"wheeltask:{topic}", f"wheeltask:{topic}-done"
    send_rate = _send(server.url, f"{topic}-sends", n)  # the producer alone, for its column
    server.client.delete(f"{key}-sends")
    payloads = _payloads(n)
    command = [
        sys.executable, "-m", "wheeltask", "worker", "--bus", server.url, "--topic", topic,
        "--done-topic", f"{topic}-done", "--module", "bench_noop", "--slots", str(SLOTS),
    ]  # fmt: skip
    workers = [
        subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(processes)
    ]
    pause = threading.Event()
    try:
        # Start-up is not timed: every worker's consumer is connected (its client name
        # is host-pid-random) and waits before the first record lands. The batch is
        # the bus's own format (field `data`), written ~10x faster than it drains.
        end = time.perf_counter() + 60
        while not _connected(server, workers):
            if time.perf_counter() > end or any(w.poll() is not None for w in workers):
                raise RuntimeError("the worker processes did not start")
            pause.wait(0.01)
        t0 = time.perf_counter()
        for start in range(0, n, 1000):
            batch = server.client.pipeline(transaction=False)
            for payload in payloads[start : start + 1000]:
                batch.xadd(key, {"data": payload})
            batch.execute()
        while server.client.xlen(done_key) < n:
            pause.wait(0.01)  # (a tighter poll takes CPU from the workers on 2 cores)
        elapsed = time.perf_counter() - t0
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            _, err = w.communicate(timeout=60)
            if w.returncode != 0:
                raise RuntimeError(f"a worker exited with {w.returncode}: {err[-2000:]!r}")
    server.client.delete(key, done_key)
    return n / elapsed, send_rate


def _connected(server: _Redis, workers: list[subprocess.Popen[bytes]]) -> bool:
    names = [str(c.get("name", "")) for c in server.client.client_list()]
    return all(any(f"-{w.pid}-" in name for name in names) for w in workers)


def _redis_missing() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server is not on PATH (apt-get install redis-server)"
    if importlib.util.find_spec("redis") is None:
        return "redis-py is not installed (pip install -e '.[redis]')"
    return None


def bus(cfg: Config) -> Section:
    """Row 10: records/s of launchers draining a topic of N records, until the last one
    is on the done topic; and the producer's sends/s that filled it."""
    n, reps = cfg.bus_n, cfg.heavy_reps
    rows: list[tuple[str, str]] = [
        ("memory", f"memory://, a Launcher in this process ({SLOTS} slots)")
    ]
    missing = _redis_missing()
    if missing is None:
        rows += [
            ("redis-1", f"redis://, 1 worker process ({SLOTS} slots)"),
            ("redis-3", f"redis://, 3 worker processes ({SLOTS} slots each)"),
        ]
    samples = Samples()
    with tempfile.TemporaryDirectory(prefix="wheeltask-bench-bus-") as tmp:
        folder = Path(tmp)
        (folder / "bench_noop.py").write_text(NOOP_MODULE)
        server = _Redis(folder) if missing is None else None
        try:
            keys = [key for key, _ in rows]
            for rep, key in interleaved(keys, reps, warmup=not cfg.smoke):
                which = "warm-up" if rep < 0 else f"rep {rep + 1}/{reps}"
                log(f"bus: {which}: {key}, {n:,} records")
                if key == "memory":
                    rate, send_rate = _memory(n)
                else:
                    assert server is not None
                    rate, send_rate = _redis(server, folder, n, int(key.split("-")[1]))
                samples.add(key, "rate", rate)
                samples.add(key, "send", send_rate)
        finally:
            if server is not None:
                server.stop()
    memory = samples.get("memory", "rate")
    table_rows = []
    for key, label in rows:
        rates = samples.get(key, "rate")
        share = [r / m for r, m in zip(rates, memory, strict=True)]
        table_rows.append(
            [label, f"{n:,}", cell(rates), num(1e6 / median(rates)),
             cell(samples.get(key, "send")), num(median(share))]
        )  # fmt: skip
    md = [
        f"## 10. Task records through a Launcher (records/s, median of {reps} reps (min-max))",
        "",
        f"A no-op worker; {SLOTS} slots per launcher. records/s: from the moment N records "
        "are there to take until the last one is on the done topic (received, run, "
        "published, acknowledged). memory://: the records are sent first, then the "
        "launcher starts. redis://: `python -m wheeltask worker` processes against a "
        "private `redis-server` on 127.0.0.1 (nothing saved) start and wait on the empty "
        "topic (start-up not timed), then the N records land on it in one pipelined "
        "batch, timed (it writes ~10x faster than the workers drain). `sends/s` is "
        "`producer.send()` alone: one thread sending N records, nothing consuming. "
        "`vs memory`: records/s over the memory bus's in the same repetition.",
        "",
        table(["bus", "N", "records/s", "us per record", "sends/s", "vs memory"], table_rows),
    ]
    if missing is not None:
        md += ["", f"Redis rows skipped: {missing}."]
    data = {
        "rate": {key: median(samples.get(key, "rate")) for key, _ in rows},
        "send_rate": {key: median(samples.get(key, "send")) for key, _ in rows},
        "redis_skipped": missing,
    }
    return Section("\n".join(md), [], data)
