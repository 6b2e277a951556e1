"""wheeltask.bus: task records and the bus contract (memory:// and file://)."""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from wheeltask import Scheduler
from wheeltask.bus import Bus, Launcher, TaskRecord, _StdioBus, connect


# ------------------------------------------------------------------- records
def test_record_json_field_order_times_and_omitted_empty_fields() -> None:
    t = datetime.datetime(2026, 11, 22, 16, 1, 2, 345678, tzinfo=datetime.timezone.utc)
    r = TaskRecord("resize", "s3://bucket/<a&b>.png", id="r1", created=t, meta={"k": "é"})
    assert r.to_json() == (
        '{"type":"resize","info":"s3://bucket/<a&b>.png","id":"r1",'
        '"created":"2026-11-22T16:01:02Z","meta":{"k":"é"}}'
    )
    done = TaskRecord("x", created=t, started=t, ended=t, result="complete", msg="ok", id="2")
    assert list(json.loads(done.to_json())) == [
        "type",
        "info",
        "id",
        "created",
        "started",
        "ended",
        "result",
        "msg",
    ]
    assert TaskRecord.from_json(done.to_json()) == done


def test_unknown_fields_are_ignored_as_in_the_go_original() -> None:
    record = TaskRecord.from_json(b'{"type":"t","info":"i","colour":"red","v":2}')
    assert (record.type, record.info) == ("t", "i")
    assert "colour" not in record.to_json()


def test_a_new_record_gets_an_id_and_created() -> None:
    r = TaskRecord("t")
    assert uuid.UUID(r.id)
    assert r.created is not None and r.created.tzinfo is datetime.timezone.utc
    assert r.created.microsecond == 0
    assert TaskRecord.from_json('{"type":"t","info":""}').id != ""


def test_times_in_other_zones_are_stored_in_utc() -> None:
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    r = TaskRecord.from_json('{"type":"t","created":"2026-01-01T02:00:00+02:00"}')
    assert r.created == datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    assert (
        TaskRecord("t", created=datetime.datetime(2026, 1, 1, 2, tzinfo=plus2)).to_dict()["created"]
        == "2026-01-01T00:00:00Z"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", r"^task record is not valid JSON"),
        (b'["type"]', r"^task record must be a JSON object, got list$"),
        (b'{"info":"x"}', r"^task record has no 'type'$"),
        (b'{"type":""}', r"^type must be a non-empty str"),
        (b'{"type":"t","result":"done"}', r"^result must be one of 'complete'"),
        (b'{"type":"t","created":"yesterday"}', r"^task record field 'created' must be an RFC"),
        (b'{"type":"t","meta":{"a":1}}', r"^meta must map str to str"),
        (b'{"type":3}', r"^task record field 'type' must be a string"),
        (b"\xff\xfe", r"^task record is not valid JSON"),
    ],
)
def test_from_json_rejects_bad_records_with_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskRecord.from_json(data)


# -------------------------------------------------------------- the contract
def _connect(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, redis_options: str = ""
) -> Bus:
    """memory:// and redis:// are endless; file:// consumers end at the end of the file."""
    if backend == "memory":
        return connect("memory://")
    if backend == "redis":  # the session's redis-server (skipped when there is none)
        return connect(request.getfixturevalue("redis_url") + redis_options)
    return connect(f"file://{tmp_path / 'spool'}")


@pytest.fixture(params=["memory", "file", "redis"])
def bus(request: pytest.FixtureRequest, tmp_path: Path) -> Bus:
    return _connect(request.param, request, tmp_path)


def _topic() -> str:
    return f"t{uuid.uuid4().hex}"  # memory:// topics live as long as the process


def test_messages_wait_for_a_consumer_created_later(bus: Bus) -> None:
    topic = _topic()
    producer = bus.producer()
    for i in range(3):
        producer.send(topic, f"m{i}".encode())
    producer.stop()
    consumer = bus.consumer(topic)
    got, refs = [], []
    for _ in range(3):
        got.append(consumer.msg(timeout=1))
        refs.append(consumer.last_ref)
    assert got == [(b"m0", False), (b"m1", False), (b"m2", False)]
    assert None not in refs
    consumer.ack(refs[0])  # a no-op on memory://, file:// and stdio://
    consumer.ack(refs[1])
    consumer.stop()
    assert consumer.msg() == (None, True)  # at once, never blocking
    consumer.ack()  # still valid after stop(): the last one returned


def test_stop_is_safe_many_times_before_any_request_and_while_others_wait(bus: Bus) -> None:
    topic = _topic()
    consumer = bus.consumer(topic)
    consumer.stop()
    consumer.stop()
    assert consumer.msg() == (None, True)
    waiting = bus.consumer(topic)
    results: list[tuple[bytes | None, bool]] = []
    threads = [
        threading.Thread(target=lambda: results.append(waiting.msg(timeout=10))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    threading.Event().wait(0.05)
    waiting.stop()
    for t in threads:
        t.join(10)
    assert sorted(results, key=repr) == [(None, True)] * 3


def test_send_after_stop_raises_and_stop_is_idempotent(bus: Bus) -> None:
    producer = bus.producer()
    producer.stop()
    producer.stop()
    with pytest.raises(RuntimeError, match=r"^send\(\) after stop\(\)"):
        producer.send(_topic(), b"x")


def test_records_round_trip_through_the_bus(bus: Bus) -> None:
    topic = _topic()
    records = [TaskRecord("job", str(i)) for i in range(5)]
    producer = bus.producer()
    for r in records:
        producer.send(topic, r.to_json().encode())
    consumer = bus.consumer(topic)
    back = []
    for _ in records:
        back.append(TaskRecord.from_json(consumer.msg(timeout=1)[0] or b""))
        consumer.ack()
    consumer.stop()
    assert back == records


def test_memory_topics_are_shared_and_each_message_goes_to_one_consumer() -> None:
    topic = _topic()
    a = connect("memory://").consumer(topic)
    b = connect("memory://").consumer(topic)
    producer = connect("memory://").producer()
    for i in range(100):
        producer.send(topic, str(i).encode())
    got: list[bytes] = []
    for c in (a, b) * 50:
        data, done = c.msg(timeout=1)
        assert not done and data is not None
        got.append(data)
    assert sorted(got, key=int) == [str(i).encode() for i in range(100)]
    assert a.msg(timeout=0.01) == (None, False)  # empty, not done: memory is endless


def test_file_consumers_are_finite_and_lines_are_single(tmp_path: Path) -> None:
    bus = connect(f"file://{tmp_path}")
    topic = _topic()
    with pytest.raises(ValueError, match="must not contain a newline"):
        bus.producer().send(topic, b"a\nb")
    bus.producer().send(topic, b"one")
    consumer = bus.consumer(topic)
    assert consumer.msg() == (b"one", False)
    assert consumer.msg() == (None, True)  # the end of the file: done
    assert bus.consumer("nothing-sent").msg() == (None, True)


@pytest.mark.parametrize(
    ("url", "exc", "message"),
    [
        ("kafka://host", ValueError, r"^unknown bus URL scheme 'kafka'"),
        ("file://", ValueError, r"^a file:// bus needs a directory"),
        (3, TypeError, r"^url must be a str"),
    ],
)
def test_bad_urls(url: object, exc: type[Exception], message: str) -> None:
    with pytest.raises(exc, match=message):
        connect(url)  # type: ignore[arg-type]


def test_bad_topics_and_data() -> None:
    bus = connect("memory://")
    with pytest.raises(ValueError, match=r"^topic must be a non-empty name"):
        bus.consumer("a/b")
    with pytest.raises(TypeError, match=r"^data must be bytes, got str$"):
        bus.producer().send(_topic(), "text")  # type: ignore[arg-type]


# ------------------------------------------------------------------ launcher
def _work(record: TaskRecord) -> str | None:
    n = int(record.info)
    if n % 10 == 3:
        raise ValueError(f"bad input {n}")
    return f"did {n}" if n % 2 else None


@pytest.mark.parametrize("backend", ["memory", "file", "redis"])
def test_a_thousand_records_through_four_slots_each_published_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wheeltask")
    # redis: the keeper refreshes the messages in progress every 0.1 s while acks land.
    bus = _connect(backend, request, tmp_path, "?claim_idle=0.3")
    topic, done_topic = _topic(), _topic()
    producer = bus.producer()
    for i in range(1000):
        producer.send(topic, TaskRecord("work", str(i), id=f"r{i}").to_json().encode())
    producer.send(topic, b"{not json")
    producer.send(topic, TaskRecord("nobody", "x", id="orphan").to_json().encode())
    with Scheduler(max_workers=4) as s:
        launcher = Launcher(bus, topic, done_topic, {"work": _work}, max_in_progress=4, scheduler=s)
        launcher.start()
        if backend == "file":
            assert launcher.wait(30)  # a file topic is finite
        else:
            for _ in range(3000):  # an endless topic: wait for the 1,002 outcomes
                if launcher.published >= 1002:
                    break
                threading.Event().wait(0.01)
        assert launcher.stop(grace=5)
    consumer = bus.consumer(done_topic)
    records: list[TaskRecord] = []
    while True:
        data, _ = consumer.msg(timeout=0.5)
        if data is None:
            break
        records.append(TaskRecord.from_json(data))
        consumer.ack()
    consumer.stop()
    by_id = {r.id: r for r in records}
    assert len(records) == len(by_id) == 1002  # each exactly once
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == []
    if backend == "redis":  # every message acknowledged (and deleted): none pending
        client = request.getfixturevalue("redis_server").client()
        assert client.xpending(f"wheeltask:{topic}", "wheeltask")["pending"] == 0
        assert client.xlen(f"wheeltask:{topic}") == 0
        client.close()
    for i in range(1000):
        r = by_id[f"r{i}"]
        assert r.started is not None and r.ended is not None
        if i % 10 == 3:
            assert (r.result, r.msg) == ("error", f"ValueError: bad input {i}")
        else:
            assert r.result == "complete"
            assert r.msg == (f"did {i}" if i % 2 else "")
    assert by_id["orphan"].result == "error"
    assert by_id["orphan"].msg == "no worker for type 'nobody'"
    invalid = [r for r in records if r.type == "invalid"]
    assert len(invalid) == 1 and invalid[0].result == "error"
    assert invalid[0].info == "{not json"


def test_launcher_stop_publishes_work_still_running_as_abandoned() -> None:
    gate = threading.Event()
    bus = connect("memory://")
    topic, done_topic = _topic(), _topic()
    bus.producer().send(topic, TaskRecord("slow", "1", id="s").to_json().encode())
    with Scheduler(max_workers=2) as s:
        launcher = Launcher(
            bus, topic, done_topic, {"slow": lambda r: gate.wait(10)}, scheduler=s, grace=0.1
        ).start()
        while launcher.received < 1:
            threading.Event().wait(0.01)
        assert launcher.stop() is False
        gate.set()
    data, _ = bus.consumer(done_topic).msg(timeout=1)
    assert data is not None
    r = TaskRecord.from_json(data)
    assert (r.id, r.result) == ("s", "error")
    assert r.msg == "abandoned: still running when the launcher stopped"


def test_launcher_bad_arguments() -> None:
    bus = connect("memory://")
    with pytest.raises(ValueError, match=r"^workers must be a non-empty dict"):
        Launcher(bus, "a", "b", {})
    with pytest.raises(ValueError, match=r"^max_in_progress must be an int >= 1"):
        Launcher(bus, "a", "b", {"t": print}, max_in_progress=0)
    with pytest.raises(ValueError, match=r"^retries must be >= 0"):
        Launcher(bus, "a", "b", {"t": print}, retries=-1)


# ------------------------------------------------------ python -m wheeltask worker
WORKER_MODULE = """
def double(record):
    return str(int(record.info) * 2)


def fail(record):
    raise RuntimeError("no luck " + record.info)


def _helper():
    pass
"""


def _run_worker(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    (tmp_path / "jobs_mod.py").write_text(WORKER_MODULE)
    return subprocess.Popen(
        [sys.executable, "-m", "wheeltask", "worker", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=None if env is None else {**os.environ, **env},
    )


def test_worker_command_takes_the_bus_url_from_wheeltask_bus(tmp_path: Path) -> None:
    """A URL with a password need not appear on the command line (``ps`` shows it)."""
    spool = tmp_path / "spool"
    bus = connect(f"file://{spool}")
    bus.producer().send("jobs", TaskRecord("double", "4", id="j").to_json().encode())
    proc = _run_worker(
        tmp_path,
        *("--topic", "jobs", "--done-topic", "done", "--module", "jobs_mod"),
        env={"WHEELTASK_BUS": f"file://{spool}"},
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    consumer = bus.consumer("done")
    data, _ = consumer.msg()
    consumer.stop()
    assert data is not None and TaskRecord.from_json(data).msg == "8"


def test_worker_command_runs_a_file_topic_to_its_end(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    bus = connect(f"file://{spool}")
    producer = bus.producer()
    for i in range(20):
        kind = "double" if i % 4 else "fail"
        producer.send("jobs", TaskRecord(kind, str(i), id=f"j{i}").to_json().encode())
    producer.send("jobs", TaskRecord("_helper", "x", id="private").to_json().encode())
    proc = _run_worker(
        tmp_path,
        "--bus",
        f"file://{spool}",
        "--topic",
        "jobs",
        "--done-topic",
        "done",
        "--module",
        "jobs_mod",
        "--slots",
        "3",
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "21 record(s) received, 21 published" in err
    consumer = bus.consumer("done")
    results: dict[str, TaskRecord] = {}
    while (data := consumer.msg()[0]) is not None:
        r = TaskRecord.from_json(data)
        results[r.id] = r
    assert len(results) == 21
    for i in range(20):
        r = results[f"j{i}"]
        if i % 4:
            assert (r.result, r.msg) == ("complete", str(i * 2))
        else:
            assert (r.result, r.msg) == ("error", f"RuntimeError: no luck {i}")
    assert results["private"].msg == "no worker for type '_helper'"


def test_worker_command_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc = _run_worker(tmp_path, "--topic", "jobs", "--done-topic", "done", "--module", "jobs_mod")
    threading.Event().wait(1.0)  # started, waiting on an empty memory:// topic
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "0 record(s) received, 0 published" in err


def test_worker_command_bad_arguments(tmp_path: Path) -> None:
    proc = _run_worker(
        tmp_path, "--bus", "kafka://x", "--topic", "a", "--done-topic", "b", "--module", "jobs_mod"
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "unknown bus URL scheme 'kafka'" in err
    proc = _run_worker(tmp_path, "--topic", "a", "--done-topic", "b", "--module", "nope_mod")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "No module named 'nope_mod'" in err


# ------------------------------------------------------------------ stdio://
STDIO_ECHO = """
import sys
from wheeltask.bus import TaskRecord, connect
bus = connect("stdio://")
consumer, producer = bus.consumer("in"), bus.producer()
while True:
    data, done = consumer.msg(timeout=5)
    if done:
        break
    r = TaskRecord.from_json(data)
    r.result, r.msg = "complete", r.info.upper()
    producer.send("out", r.to_json().encode())
consumer.stop()
consumer.stop()
assert consumer.msg() == (None, True)
producer.stop()
print("eof", file=sys.stderr)
"""


def test_stdio_bus_reads_lines_until_eof_and_writes_lines() -> None:
    records = [TaskRecord("up", word, id=word) for word in ("a", "b", "c")]
    proc = subprocess.run(
        [sys.executable, "-c", STDIO_ECHO],
        input="".join(r.to_json() + "\n" for r in records),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = [TaskRecord.from_json(line) for line in proc.stdout.splitlines()]
    assert [(r.id, r.result, r.msg) for r in out] == [
        ("a", "complete", "A"),
        ("b", "complete", "B"),
        ("c", "complete", "C"),
    ]
    assert proc.stderr.strip() == "eof"


def test_stdio_consumer_stop_does_not_wait_for_a_blocked_read() -> None:
    read_end, write_end = os.pipe()
    try:
        with open(read_end, "rb", closefd=False) as stream:
            bus = _StdioBus(stream, io.BytesIO())
            consumer = bus.consumer("in")
            assert consumer.msg(timeout=0.05) == (None, False)  # nothing yet
            results: list[tuple[bytes | None, bool]] = []
            waiter = threading.Thread(target=lambda: results.append(consumer.msg()))
            waiter.start()
            threading.Event().wait(0.05)
            consumer.stop()
            waiter.join(5)
            assert results == [(None, True)]
            with pytest.raises(ValueError, match="must not contain a newline"):
                bus.producer().send("out", b"a\nb")
            os.close(write_end)  # EOF: the reader thread leaves before the stream closes
            write_end = -1
            threading.Event().wait(0.05)
    finally:
        if write_end >= 0:
            os.close(write_end)
        os.close(read_end)


# ------------------------------------------------------ regressions (review)
@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"t","created":"9999-12-31T23:59:59-01:00"}',  # overflows in UTC
        b"[" * 100_000,  # too deep for the parser
        b'{"type":"t","info":"\\ud800"}',  # a lone surrogate: not valid UTF-8 text
        b'{"type":"t","created":"2026-01-01"}',  # a date alone is not RFC 3339
    ],
)
def test_poison_messages_are_published_as_errors_and_the_launcher_goes_on(data: bytes) -> None:
    bus = connect("memory://")
    topic, done_topic = _topic(), _topic()
    producer = bus.producer()
    producer.send(topic, data)
    producer.send(topic, TaskRecord("ok", "after", id="after").to_json().encode())
    with Scheduler(max_workers=2) as s:
        launcher = Launcher(bus, topic, done_topic, {"ok": lambda r: "fine"}, scheduler=s)
        launcher.start()
        for _ in range(500):
            if launcher.published >= 2:
                break
            threading.Event().wait(0.01)
        assert launcher.stop(grace=5)
    consumer = bus.consumer(done_topic)
    out = [TaskRecord.from_json(consumer.msg(timeout=1)[0] or b"") for _ in range(2)]
    consumer.stop()
    assert sorted(r.result for r in out) == ["complete", "error"]
    assert [r.id for r in out if r.result == "complete"] == ["after"]


def test_records_run_again_start_afresh_and_years_have_four_digits() -> None:
    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    bus = connect("memory://")
    topic, done_topic = _topic(), _topic()
    again = TaskRecord("t", "x", id="again", ended=old, result="error", msg="old")
    bus.producer().send(topic, again.to_json().encode())
    with Scheduler(max_workers=1) as s:
        launcher = Launcher(bus, topic, done_topic, {"t": lambda r: None}, scheduler=s).start()
        for _ in range(500):
            if launcher.published:
                break
            threading.Event().wait(0.01)
        launcher.stop()
    r = TaskRecord.from_json(bus.consumer(done_topic).msg(timeout=1)[0] or b"")
    assert (r.result, r.msg) == ("complete", "")
    assert r.ended is not None and r.ended > old
    y999 = datetime.datetime(999, 1, 1, tzinfo=datetime.timezone.utc)
    assert TaskRecord("t", created=y999).to_dict()["created"] == "0999-01-01T00:00:00Z"
    with pytest.raises(ValueError, match=r"^created must be a datetime or None"):
        TaskRecord("t", created="2026-01-01T00:00:00Z")  # type: ignore[arg-type]


def test_a_file_consumer_does_not_return_a_line_still_being_written(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_bytes(b"whole\nhalf")
    consumer = connect(f"file://{tmp_path}").consumer("t")
    assert consumer.msg() == (b"whole", False)
    assert consumer.msg() == (None, False)  # "half" has no newline yet
    with open(tmp_path / "t.jsonl", "ab") as f:
        f.write(b" done\n")
    assert consumer.msg() == (b"half done", False)
    assert consumer.msg() == (None, True)


def test_worker_command_refuses_bad_slots_and_a_module_that_fails(tmp_path: Path) -> None:
    proc = _run_worker(
        tmp_path, "--topic", "a", "--done-topic", "b", "--module", "jobs_mod", "--slots", "0"
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "--slots must be >= 1" in err
    (tmp_path / "broken_mod.py").write_text("1 / 0\n")
    proc = _run_worker(tmp_path, "--topic", "a", "--done-topic", "b", "--module", "broken_mod")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "ZeroDivisionError" in err
