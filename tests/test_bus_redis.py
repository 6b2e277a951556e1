"""The redis:// bus against a real redis-server: groups, acknowledgement, claiming,
stop, reconnection, passwords and TLS (the bus contract itself is in test_bus.py)."""

from __future__ import annotations

import gc
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from helpers import wait_until
from redis_server import REQUIRED, RedisServer, free_port, make_certificates, missing, skip_or_fail

import wheeltask
from wheeltask.bus import connect

try:
    import redis
except ImportError:
    if REQUIRED:  # WHEELTASK_REQUIRE_REDIS=1: a collection error, never a silent skip
        raise
    pytest.skip("redis-py is not installed (pip install -e '.[dev]')", allow_module_level=True)

from wheeltask._redis_bus import RedisBus, parse_url

GROUP = "wheeltask"
PASSWORD = "s3cret/pw@for:tests"  # characters a URL must escape


def _topic() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def raw(redis_server: RedisServer, redis_url: str) -> Iterator[Any]:
    """A plain redis-py client of the session's server (its database emptied)."""
    client = redis_server.client()
    yield client
    client.close()


def _pending(raw: Any, topic: str, consumer: str | None = None) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = raw.xpending_range(
        f"wheeltask:{topic}", GROUP, "-", "+", 100, consumername=consumer
    )
    return entries


def _consumers(raw: Any, topic: str) -> set[str]:
    return {c["name"].decode() for c in raw.xinfo_consumers(f"wheeltask:{topic}", GROUP)}


# ---------------------------------------------------------------- the URL
def test_url_parts_and_options_are_read() -> None:
    o = parse_url(
        "rediss://me:p%40ss@cache.local:6380/3?claim_idle=2.5&group=g&prefix=&"
        "connect_timeout=1&reconnect_timeout=0&delete_acked=no&ssl_ca_certs=/ca.pem&"
        "ssl_cert_reqs=optional"
    )
    assert (o.host, o.port, o.db, o.username, o.password, o.tls) == (
        "cache.local", 6380, 3, "me", "p@ss", True
    )  # fmt: skip
    assert (o.claim_idle, o.group, o.prefix, o.connect_timeout, o.reconnect_timeout) == (
        2.5, "g", "", 1.0, 0.0
    )  # fmt: skip
    assert (o.delete_acked, o.ssl_ca_certs, o.ssl_cert_reqs) == (False, "/ca.pem", "optional")
    assert o.masked_url == "rediss://me:***@cache.local:6380/3"
    d = parse_url("redis://")
    assert (d.host, d.port, d.db, d.claim_idle, d.group, d.prefix) == (
        "localhost", 6379, 0, 30.0, "wheeltask", "wheeltask:"
    )  # fmt: skip
    assert parse_url("redis://:pw@[::1]:7000").masked_url == "redis://:***@[::1]:7000/0"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h/x", r"^db \(the URL's path\) must be a number >= 0, got 'x'$"),
        ("redis://h:99999/0", r"^port must be an int in 1-65535, got '99999'$"),
        ("redis://u:pw@h:0/0", r"^port must be an int in 1-65535, got '0'$"),
        ("redis://h?claim_idle=0", r"^claim_idle must be a number of seconds >= 0.1, got '0'$"),
        ("redis://h?claim_idle=nan", r"^claim_idle must be a number of seconds"),
        ("redis://h?connect_timeout=0", r"^connect_timeout must be a number of seconds > 0"),
        ("redis://h?reconnect_timeout=-1", r"^reconnect_timeout must be a number of seconds >= 0"),
        ("redis://h?delete_acked=maybe", r"^delete_acked must be 1/0"),
        ("redis://h?group=", r"^group must be a non-empty name"),
        ("redis://h?claim_idle=1&claim_idle=2", r"^option 'claim_idle' is given twice$"),
        ("redis://h?password=x", r"^unknown Redis bus option 'password': use claim_idle, "),
        ("redis://h?ssl_ca_certs=/ca.pem", r"^option 'ssl_ca_certs' needs a rediss:// \(TLS\) URL"),
        ("rediss://h?ssl_cert_reqs=maybe", r"^ssl_cert_reqs must be one of required, optional"),
        ("rediss://h?ssl_ca_certs=", r"^ssl_ca_certs must be a file path, got ''$"),
        ("redis://h?claim_idle", r"^the URL's options must read name=value"),
    ],
)
def test_bad_urls_name_the_part_or_option(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        connect(url)


def test_a_password_in_a_bad_url_never_shows() -> None:
    for url in ("redis://u:hunter22@h:99999/0", "kafka://u:hunter22@h", "redis://u:hunter22@h/x"):
        with pytest.raises(ValueError) as info:
            connect(url)
        assert "hunter22" not in str(info.value)


def test_rediss_builds_tls_connections() -> None:
    bus = RedisBus(parse_url("rediss://127.0.0.1:1/0?ssl_cert_reqs=none&ssl_ca_certs=/x.pem"))
    client = bus.client()
    pool = client.connection_pool
    assert issubclass(pool.connection_class, redis.SSLConnection)
    assert pool.connection_kwargs["ssl_cert_reqs"] == "none"
    assert pool.connection_kwargs["ssl_ca_certs"] == "/x.pem"
    assert pool.connection_kwargs["ssl_check_hostname"] is False
    plain = RedisBus(parse_url("redis://127.0.0.1:1/0")).client()
    assert not issubclass(plain.connection_pool.connection_class, redis.SSLConnection)


def test_without_redis_py_the_error_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis -> ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "wheeltask._redis_bus")
    monkeypatch.delattr(wheeltask, "_redis_bus")  # (else `from . import` finds it there)
    with pytest.raises(ImportError, match=r"needs redis-py: pip install 'wheeltask\[redis\]'$"):
        connect("redis://127.0.0.1:1/0")


@pytest.mark.parametrize("listener", ["none", "silent", "http"])
def test_an_unreachable_redis_is_a_clear_error_in_bounded_time(listener: str) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        if listener != "none":  # else nothing listens: refused at once
            server.listen()  # connections complete, and nothing answers them...
        if listener == "http":  # ...or something that is not Redis does

            def answer() -> None:
                conn, _ = server.accept()
                with conn:
                    conn.recv(100)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

            threading.Thread(target=answer, daemon=True).start()
        t0 = time.monotonic()
        masked = r"^cannot reach Redis at redis://user:\*\*\*@"
        with pytest.raises(ConnectionError, match=masked) as info:
            connect(f"redis://user:hunter22@127.0.0.1:{port}/0?connect_timeout=0.5")
        assert time.monotonic() - t0 < 5  # connect_timeout + 1 s for a reply at most
        assert "hunter22" not in str(info.value)


# ------------------------------------------------------- consumer groups
def test_consumers_of_a_group_share_a_topic_each_message_once(redis_url: str) -> None:
    bus = connect(redis_url)
    topic = _topic()
    a, b = bus.consumer(topic), bus.consumer(topic)
    producer = bus.producer()
    for i in range(40):
        producer.send(topic, str(i).encode())
    got: dict[str, list[int]] = {"a": [], "b": []}
    for name, c in [("a", a), ("b", b)] * 20:
        data, done = c.msg(timeout=1)
        assert not done and data is not None
        got[name].append(int(data))
        c.ack()
    assert sorted(got["a"] + got["b"]) == list(range(40))
    assert len(got["a"]) == len(got["b"]) == 20
    assert a.msg(timeout=0.01) == (None, False)  # endless: empty, not done
    a.stop()
    b.stop()


def test_a_message_stays_pending_until_acked(redis_url: str, raw: Any) -> None:
    topic = _topic()
    bus = connect(redis_url + "?delete_acked=0")
    bus.producer().send(topic, b"work")
    consumer = bus.consumer(topic)
    assert consumer.msg(timeout=1) == (b"work", False)
    ref = consumer.last_ref
    assert isinstance(ref, str)
    [entry] = _pending(raw, topic, consumer.name)
    assert entry["message_id"].decode() == ref
    consumer.ack()
    assert _pending(raw, topic) == []
    assert raw.xlen(f"wheeltask:{topic}") == 1  # delete_acked=0: kept in the stream
    consumer.ack(ref)  # twice: harmless
    consumer.stop()
    deleting = connect(redis_url).consumer(topic)  # default delete_acked=1, a new message
    bus.producer().send(topic, b"again")
    assert deleting.msg(timeout=1) == (b"again", False)
    deleting.ack()
    deleting.stop()
    assert raw.xlen(f"wheeltask:{topic}") == 1  # "work" is still there, "again" is gone


def test_bad_refs_and_timeouts_are_refused(redis_url: str) -> None:
    consumer = connect(redis_url).consumer(_topic())
    consumer.ack()  # nothing returned yet: nothing to acknowledge
    with pytest.raises(TypeError, match=r"^ref must be a stream entry id \(str\), got 3$"):
        consumer.ack(3)
    with pytest.raises(ValueError, match=r"^ref must be a stream entry id like"):
        consumer.ack("not-an-id")
    for bad in (-1, float("nan"), "1", True):
        with pytest.raises(ValueError, match=r"^timeout must be >= 0 seconds or None"):
            consumer.msg(timeout=bad)  # type: ignore[arg-type]
    consumer.stop()


# --------------------------------------------------------------- claiming
def test_the_message_of_a_dead_consumer_is_claimed_after_claim_idle(
    redis_url: str, raw: Any
) -> None:
    topic = _topic()
    bus = connect(redis_url + "?claim_idle=0.5")
    consumer = bus.consumer(topic)  # the group exists from here
    bus.producer().send(topic, b"orphan")
    # A consumer of another process takes it and dies: nobody refreshes it any more.
    raw.xreadgroup(GROUP, "dead-one", {f"wheeltask:{topic}": ">"}, count=1)
    t0 = time.monotonic()
    assert consumer.msg(timeout=0.2) == (None, False)  # not idle for 0.5 s yet
    assert consumer.msg(timeout=5) == (b"orphan", False)
    assert 0.45 <= time.monotonic() - t0 < 3
    [entry] = _pending(raw, topic)
    assert entry["consumer"].decode() == consumer.name
    assert entry["times_delivered"] == 2
    consumer.ack()
    consumer.stop()
    assert _pending(raw, topic) == []


def test_a_consumer_dropped_without_stop_is_a_dead_one(redis_url: str, raw: Any) -> None:
    topic = _topic()
    bus = connect(redis_url + "?claim_idle=0.5")
    bus.producer().send(topic, b"dropped")
    first = bus.consumer(topic)
    assert first.msg(timeout=1) == (b"dropped", False)
    name = first.name
    del first
    gc.collect()  # its keeper holds it weakly: it ends, and nobody refreshes the message
    second = bus.consumer(topic)
    assert second.msg(timeout=5) == (b"dropped", False)
    [entry] = _pending(raw, topic)
    assert entry["consumer"].decode() == second.name != name
    second.ack()
    second.stop()


@pytest.mark.slow
def test_a_live_consumer_keeps_its_message_in_progress(redis_url: str, raw: Any) -> None:
    topic = _topic()
    bus = connect(redis_url + "?claim_idle=0.5")
    bus.producer().send(topic, b"long job")
    worker, other = bus.consumer(topic), bus.consumer(topic)
    assert worker.msg(timeout=1) == (b"long job", False)
    t0 = time.monotonic()
    assert other.msg(timeout=1.5) == (None, False)  # 3x claim_idle: not claimed
    [entry] = _pending(raw, topic)
    assert entry["consumer"].decode() == worker.name
    assert entry["times_delivered"] == 1
    assert entry["time_since_delivered"] < 500  # refreshed every claim_idle / 3
    assert time.monotonic() - t0 >= 1.5
    worker.ack()
    assert other.msg(timeout=0.6) == (None, False)
    assert _pending(raw, topic) == []
    worker.stop()
    other.stop()


# -------------------------------------------------------------------- stop
def test_a_message_fetched_as_stop_happens_goes_back_to_the_stream(
    redis_url: str, raw: Any
) -> None:
    topic = _topic()
    bus = connect(redis_url)
    consumer = bus.consumer(topic)
    real_read = consumer._client.xreadgroup

    def read_then_stop(*args: Any, **kwargs: Any) -> Any:
        reply = real_read(*args, **kwargs)
        if reply:
            consumer.stop()  # stop() from elsewhere lands while the reply is on its way
        return reply

    consumer._client.xreadgroup = read_then_stop  # type: ignore[method-assign]
    bus.producer().send(topic, b"not yours")
    assert consumer.msg(timeout=2) == (None, True)  # never a message after stop
    assert _pending(raw, topic) == []  # nothing left behind
    wait_until(lambda: consumer.name not in _consumers(raw, topic), 5)  # it left the group
    second = bus.consumer(topic)
    assert second.msg(timeout=1) == (b"not yours", False)  # delivered again, at once
    second.ack()
    second.stop()
    assert raw.xlen(f"wheeltask:{topic}") == 0


def test_stop_racing_deliveries_loses_and_leaves_nothing(redis_url: str, raw: Any) -> None:
    topic = _topic()
    bus = connect(redis_url)
    producer = bus.producer()
    got: list[bytes] = []
    for i in range(15):
        consumer = bus.consumer(topic)
        results: list[tuple[bytes | None, bool]] = []
        waiter = threading.Thread(
            target=lambda c=consumer, out=results: out.append(c.msg(timeout=5))
        )
        waiter.start()
        producer.send(topic, f"m{i}".encode())
        threading.Event().wait(0.001 * (i % 4))
        consumer.stop()
        waiter.join(5)
        data, _ = results[0]
        if data is not None:
            got.append(data)
            consumer.ack()
        assert _pending(raw, topic, consumer.name) == []
    drain = bus.consumer(topic)
    while (data := drain.msg(timeout=0.2)[0]) is not None:
        got.append(data)
        drain.ack()
    drain.stop()
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(15))  # each exactly once
    assert _pending(raw, topic) == []


def test_after_stop_messages_in_progress_stay_until_acked(redis_url: str, raw: Any) -> None:
    topic = _topic()
    bus = connect(redis_url + "?claim_idle=0.3")
    bus.producer().send(topic, b"in flight")
    consumer, other = bus.consumer(topic), bus.consumer(topic)
    assert consumer.msg(timeout=1) == (b"in flight", False)
    keeper = consumer._keeper
    assert keeper is not None and keeper.daemon
    consumer.stop()  # as a launcher does, then lets the work finish within its grace
    assert consumer.msg() == (None, True)
    assert other.msg(timeout=1) == (None, False)  # 3x claim_idle: still the stopped one's
    assert [e["consumer"].decode() for e in _pending(raw, topic)] == [consumer.name]
    consumer.ack()  # valid after stop(): the work is done
    assert _pending(raw, topic) == []
    keeper.join(5)  # the keeper ends, and the consumer leaves the group
    assert not keeper.is_alive()
    assert consumer.name not in _consumers(raw, topic)
    other.stop()


# --------------------------------------------------- servers of their own
@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test (restarted, or with a password), sharing nothing."""
    if reason := missing():
        skip_or_fail(reason)
    server = RedisServer(tmp_path / "redis", password=PASSWORD)
    server.start()
    yield server
    server.stop()


def _url(server: RedisServer, options: str = "") -> str:
    return f"redis://default:{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}/0{options}"


@pytest.mark.slow
def test_the_consumer_and_producer_reconnect_after_a_server_restart(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bus = connect(_url(own_server))
    topic = _topic()
    consumer, producer = bus.consumer(topic), bus.producer()
    got: list[bytes] = []
    running = threading.Event()
    running.set()

    def consume() -> None:
        while running.is_set():
            data, done = consumer.msg(timeout=0.2)
            if done:
                return
            if data is not None:
                got.append(data)
                consumer.ack()

    reader = threading.Thread(target=consume)
    reader.start()
    try:
        producer.send(topic, b"before")
        wait_until(lambda: got == [b"before"], 5)
        own_server.stop()  # the data go with it (nothing is saved): the group is remade
        threading.Event().wait(0.3)  # the consumer meets a refused connection, backs off
        own_server.start()
        producer.send(topic, b"after")  # its pooled connection is dead: retried
        wait_until(lambda: got == [b"before", b"after"], 10)
    finally:
        running.clear()
        reader.join(5)
        consumer.stop()
        producer.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    masked = f"redis://default:***@127.0.0.1:{own_server.port}/0"
    assert any("lost the connection to " + masked in w for w in warnings), warnings
    assert any("reconnected to " + masked in w for w in warnings), warnings
    assert PASSWORD not in caplog.text and quote(PASSWORD, safe="") not in caplog.text


def test_a_killed_connection_is_reopened(redis_url: str, raw: Any) -> None:
    bus = connect(redis_url)
    topic = _topic()
    consumer = bus.consumer(topic)
    assert consumer.msg(timeout=0.05) == (None, False)
    raw.client_kill_filter(_type="normal", skipme=True)  # every other client's connection
    bus.producer().send(topic, b"still here")
    assert consumer.msg(timeout=5) == (b"still here", False)
    consumer.ack()
    consumer.stop()


def test_a_password_never_shows_in_reprs_errors_or_logs(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bus = connect(_url(own_server))
    topic = _topic()
    consumer, producer = bus.consumer(topic), bus.producer()
    producer.send(topic, b"authenticated")
    assert consumer.msg(timeout=1) == (b"authenticated", False)
    consumer.ack()
    shown = [repr(bus), repr(consumer), repr(producer), str(bus.options)]
    consumer.stop()
    producer.stop()
    assert all("***" in s for s in shown[:3]), shown
    wrong = f"redis://default:wrong-{quote(PASSWORD, safe='')}@127.0.0.1:{own_server.port}/0"
    with pytest.raises(ConnectionError, match=r"refused the login") as info:
        connect(wrong)
    shown.append(str(info.value))
    assert info.value.__suppress_context__  # redis-py's own error is not chained
    with pytest.raises(ConnectionError, match=r"refused the login"):
        connect(f"redis://127.0.0.1:{own_server.port}/0")  # no password at all
    for text in [*shown, caplog.text]:
        assert PASSWORD not in text and quote(PASSWORD, safe="") not in text, text


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if reason := missing():
        skip_or_fail(reason)
    if shutil.which("openssl") is None:
        skip_or_fail("the openssl command is missing (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    make_certificates(folder / "certs")
    server = RedisServer(folder / "redis", tls=folder / "certs")
    try:
        server.start()
    except RuntimeError as exc:  # a redis-server built without TLS
        skip_or_fail(f"redis-server does not start with TLS: {exc}")
    yield server
    server.stop()


def test_rediss_talks_tls_and_checks_the_certificate(tls_server: RedisServer) -> None:
    assert tls_server.tls is not None
    ca = tls_server.tls / "ca.crt"
    base = f"rediss://127.0.0.1:{tls_server.port}/0"
    for url in (f"{base}?ssl_ca_certs={ca}", f"{base}?ssl_cert_reqs=none"):
        bus = connect(url)
        topic = _topic()
        bus.producer().send(topic, b"over tls")
        consumer = bus.consumer(topic)
        assert consumer.msg(timeout=1) == (b"over tls", False)
        consumer.ack()
        consumer.stop()
    with pytest.raises(ConnectionError, match=r"certificate verify failed"):
        connect(f"{base}?connect_timeout=2")  # the test CA is not a trusted one
    with pytest.raises(ConnectionError, match=r"^cannot reach Redis at redis://"):
        connect(f"redis://127.0.0.1:{tls_server.port}/0?connect_timeout=1")  # not TLS


# ------------------------------------------------------------ the command
def test_worker_command_reports_an_unreachable_redis_without_a_traceback(
    tmp_path: Path,
) -> None:
    (tmp_path / "noop_mod.py").write_text("def noop(record):\n    pass\n")
    url = f"redis://u:hunter22@127.0.0.1:{free_port()}/0"
    proc = subprocess.run(
        [sys.executable, "-m", "wheeltask", "worker", "--bus", url, "--topic", "t",
         "--done-topic", "d", "--module", "noop_mod"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("worker: cannot reach Redis at redis://u:***@127.0.0.1:")
    assert "Traceback" not in proc.stderr and "hunter22" not in proc.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "wheeltask", "worker", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "redis://user:password@host:port/db" in help_text and "rediss://" in help_text
