"""Task records on a bus (pcelvng/task's bus and launcher, in Python): issue 7.

    from wheeltask.bus import TaskRecord, connect

    bus = connect("memory://")                  # or "file:///var/spool/tasks", "redis://h:6379/0"
    bus.producer().send("jobs", TaskRecord("resize", "s3://a.png").to_json().encode())
    consumer = bus.consumer("jobs")
    data, done = consumer.msg(timeout=1.0)      # one message per request, nothing prefetched
    record = TaskRecord.from_json(data)
    consumer.ack()                              # when its work is done

Records are JSON: nothing read from a bus is ever unpickled or evaluated. This module has
the record, the bus contract, the ``memory://``, ``file://`` and ``stdio://`` backends and
the ``Launcher``; the ``redis://`` / ``rediss://`` backend (Redis Streams and consumer
groups, several processes and machines) is in ``_redis_bus``, imported only when a Redis
URL is given (it needs redis-py: ``pip install 'wheeltask[redis]'``).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import logging
import os
import queue as queue_mod
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol, final
from urllib.parse import urlsplit

from ._clock import real_monotonic
from ._errors import QueueFull, SchedulerShutdown

__all__ = ["RESULTS", "Bus", "Consumer", "Launcher", "Producer", "TaskRecord", "connect"]

logger = logging.getLogger("wheeltask")

#: The values of ``TaskRecord.result`` (or "" before the task ended).
RESULTS: Final = ("complete", "error", "alert", "warn")
_FIELDS: Final = ("type", "info", "id", "created", "started", "ended", "result", "msg", "meta")
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _format_time(t: datetime.datetime) -> str:
    if t.tzinfo is not None:
        t = t.astimezone(datetime.timezone.utc)
    return f"{t.year:04d}{t.strftime(_TIME_FORMAT)[len(str(t.year)) :]}"  # 4-digit year


def _parse_time(name: str, value: object) -> datetime.datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"task record field {name!r} must be an RFC 3339 time, got {value!r}")
    problem = ValueError(f"task record field {name!r} must be an RFC 3339 time, got {value!r}")
    if len(value) < 20 or value[10] not in "Tt" or value[4] != "-":
        raise problem  # a date alone, or a compact form, is not RFC 3339
    try:
        t = datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if t.tzinfo is None:
            raise problem  # RFC 3339 requires an offset
        return t.astimezone(datetime.timezone.utc)
    except (ValueError, OverflowError):
        raise problem from None


@final
@dataclasses.dataclass
class TaskRecord:
    """A unit of work on a bus: what to do (``type``, ``info``) and how it went.

    A new record gets an ``id`` (a random UUID) and ``created`` (now, UTC) unless they
    are given. Times are UTC, to the second.
    """

    type: str
    info: str = ""
    id: str = ""
    created: datetime.datetime | None = None
    started: datetime.datetime | None = None
    ended: datetime.datetime | None = None
    result: str = ""
    msg: str = ""
    meta: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not self.type:
            raise ValueError(f"type must be a non-empty str, got {self.type!r}")
        if not isinstance(self.info, str):
            raise ValueError(f"info must be a str, got {self.info!r}")
        if self.result not in ("", *RESULTS):
            allowed = ", ".join(map(repr, RESULTS))
            raise ValueError(f"result must be one of {allowed} (or ''), got {self.result!r}")
        if not isinstance(self.meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.meta.items()
        ):
            raise ValueError(f"meta must map str to str, got {self.meta!r}")
        if not self.id:
            self.id = uuid.uuid4().hex
        if self.created is None:
            self.created = _utc_now()
        for name in ("created", "started", "ended"):
            t = getattr(self, name)
            if t is not None and not isinstance(t, datetime.datetime):
                raise ValueError(f"{name} must be a datetime or None, got {t!r}")
            if t is not None:
                if t.tzinfo is None:
                    t = t.replace(tzinfo=datetime.timezone.utc)
                setattr(self, name, t.astimezone(datetime.timezone.utc).replace(microsecond=0))

    def to_dict(self) -> dict[str, Any]:
        """The fields in their JSON order; empty optional fields left out."""
        out: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if isinstance(value, datetime.datetime):
                value = _format_time(value)
            if name in ("type", "info") or value not in (None, "", {}):
                out[name] = value
        return out

    def to_json(self) -> str:
        """Compact JSON, fields in order, UTF-8 kept as is, no HTML escaping."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: bytes | str) -> TaskRecord:
        """Parse a record. Raises ValueError naming the problem (not JSON, not an
        object, no ``type``, a field of the wrong kind)."""
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ValueError(f"task record is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ValueError(f"task record must be a JSON object, got {type(obj).__name__}")
        if "type" not in obj:
            raise ValueError("task record has no 'type'")
        # Fields this version does not know are ignored, as the Go original does: a
        # newer producer's records still run on older workers.
        for name in ("type", "info", "id", "result", "msg"):
            if name in obj and not isinstance(obj[name], str):
                raise ValueError(f"task record field {name!r} must be a string, got {obj[name]!r}")
        try:
            json.dumps(obj, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ValueError("task record holds text that is not valid UTF-8") from None
        if obj.get("meta") is None:
            obj["meta"] = {}
        return cls(
            type=obj["type"],
            info=obj.get("info", ""),
            id=obj.get("id", ""),
            created=_parse_time("created", obj.get("created")),
            started=_parse_time("started", obj.get("started")),
            ended=_parse_time("ended", obj.get("ended")),
            result=obj.get("result", ""),
            msg=obj.get("msg", ""),
            meta=obj.get("meta", {}),
        )


# ------------------------------------------------------------------- contract
class Consumer(Protocol):
    """Takes messages from one topic, one per request (nothing prefetched)."""

    last_ref: object

    def msg(self, timeout: float | None = None) -> tuple[bytes | None, bool]:
        """The next message and ``done``: ``(data, False)``; ``(None, False)`` if the
        timeout passed first; ``(None, True)`` once the topic is finished (a finite
        backend at its end) or the consumer stopped: at once, never blocking."""

    def ack(self, ref: object = None) -> None:
        """Acknowledge a message (default: the last one returned); a no-op where the
        backend has no acknowledgement. Valid after ``stop()`` too."""

    def stop(self) -> None:
        """Non-blocking, idempotent, safe from any thread while others wait in
        ``msg()`` (they return done)."""


class Producer(Protocol):
    def send(self, topic: str, data: bytes) -> None:
        """Put one message on a topic; raises RuntimeError after ``stop()``."""

    def stop(self) -> None:
        """Idempotent and non-blocking."""


class Bus(Protocol):
    """What ``connect()`` returns."""

    def consumer(self, topic: str) -> Consumer:
        """A consumer of ``topic`` (its own position on finite backends)."""

    def producer(self) -> Producer:
        """A producer (``send(topic, data)``) for any topic."""


def connect(url: str = "memory://") -> Bus:
    """A bus from a URL.

    - ``memory://``: topics shared by the whole process.
    - ``file:///path/dir``: a JSON-lines file per topic (finite consumers).
    - ``stdio://``: lines of stdin in, lines of stdout out.
    - ``redis://[[user]:password@]host[:port][/db][?option=value&...]``, or
      ``rediss://`` for TLS: Redis Streams with consumer groups (redis-py, the
      ``redis`` extra). Options: ``claim_idle`` (seconds, 30), ``group``
      (``wheeltask``), ``prefix`` (``wheeltask:``), ``connect_timeout`` (5),
      ``reconnect_timeout`` (30), ``delete_acked`` (1), and for TLS ``ssl_ca_certs``,
      ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` (required|optional|none).
      The server is reached once here.

    Raises:
        ValueError: an unknown scheme, or a malformed URL or option (named).
        ImportError: ``redis://`` without redis-py installed.
        ConnectionError: Redis cannot be reached (within ``connect_timeout``) or
            refuses the login; the message shows the URL with its password masked.
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return _MEMORY
    if parts.scheme == "stdio":
        return _StdioBus(sys.stdin.buffer, sys.stdout.buffer)
    if parts.scheme == "file":
        if not parts.path:
            raise ValueError(f"a file:// bus needs a directory: file:///path/dir, got {url!r}")
        return _FileBus(Path(parts.path))
    if parts.scheme in ("redis", "rediss"):
        try:
            from . import _redis_bus  # noqa: PLC0415 - redis-py is an optional extra
        except ModuleNotFoundError as exc:
            if exc.name != "redis" and not (exc.name or "").startswith("redis."):
                raise
            raise ImportError(
                f"a {parts.scheme}:// bus needs redis-py: pip install 'wheeltask[redis]'"
            ) from None
        return _redis_bus.connect(url)
    shown = url if parts.password is None else url.replace(f":{parts.password}@", ":***@", 1)
    raise ValueError(
        f"unknown bus URL scheme {parts.scheme!r} in {shown!r}: use memory://, stdio://, "
        "file:///dir, redis://host:port/db or rediss://"
    )


def _check_topic(topic: object) -> str:
    if not isinstance(topic, str) or not topic or "/" in topic or topic.startswith("."):
        raise ValueError(f"topic must be a non-empty name without '/', got {topic!r}")
    return topic


def _check_data(data: object) -> bytes:
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    return bytes(data)


# -------------------------------------------------------------------- memory://
class _MemoryBus:
    """Topics are deques shared by every ``connect("memory://")`` of the process; a
    message goes to exactly one consumer of its topic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._topics: dict[str, collections.deque[bytes]] = {}
        self._ready: dict[str, threading.Condition] = {}

    def _topic(self, topic: str) -> tuple[collections.deque[bytes], threading.Condition]:
        with self._lock:
            if topic not in self._topics:
                self._topics[topic] = collections.deque()
                self._ready[topic] = threading.Condition(threading.Lock())
            return self._topics[topic], self._ready[topic]

    def consumer(self, topic: str) -> Consumer:
        return _MemoryConsumer(*self._topic(_check_topic(topic)))

    def producer(self) -> Producer:
        return _MemoryProducer(self)


class _MemoryConsumer:
    def __init__(self, queue: collections.deque[bytes], ready: threading.Condition) -> None:
        self._queue = queue
        self._ready = ready
        self._stopped = False
        self.last_ref: object = None

    def msg(self, timeout: float | None = None) -> tuple[bytes | None, bool]:
        with self._ready:
            if not self._ready.wait_for(
                lambda: self._stopped or bool(self._queue), timeout=timeout
            ):
                return None, False
            if self._stopped:
                return None, True
            data = self._queue.popleft()
        self.last_ref = data
        return data, False

    def ack(self, ref: object = None) -> None:
        """Nothing to acknowledge in memory: a message is the consumer's once taken."""

    def stop(self) -> None:
        with self._ready:
            self._stopped = True
            self._ready.notify_all()


class _MemoryProducer:
    def __init__(self, bus: _MemoryBus) -> None:
        self._bus = bus
        self._stopped = False

    def send(self, topic: str, data: bytes) -> None:
        if self._stopped:
            raise RuntimeError("send() after stop(): this producer is stopped")
        payload = _check_data(data)
        queue, ready = self._bus._topic(_check_topic(topic))
        with ready:
            queue.append(payload)
            ready.notify()

    def stop(self) -> None:
        self._stopped = True


_MEMORY: Final = _MemoryBus()


# ---------------------------------------------------------------------- file://
class _FileBus:
    """A JSON-lines file per topic in a directory: producers append, consumers read
    from the start to the end (finite: "done" at the end of the file)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def _path(self, topic: str) -> Path:
        return self._folder / f"{_check_topic(topic)}.jsonl"

    def consumer(self, topic: str) -> Consumer:
        return _FileConsumer(self._path(topic))

    def producer(self) -> Producer:
        return _FileProducer(self)


class _FileConsumer:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: Any = None
        self._stopped = False
        self._lock = threading.Lock()
        self.last_ref: object = None

    def msg(self, timeout: float | None = None) -> tuple[bytes | None, bool]:
        with self._lock:
            if self._stopped:
                if self._file is not None:  # (a stop() that found the lock taken)
                    self._file.close()
                    self._file = None
                return None, True
            if self._file is None:
                try:
                    self._file = open(self._path, "rb")  # noqa: SIM115 - kept open across calls
                except FileNotFoundError:
                    return None, True  # no such topic: nothing to read
            start = self._file.tell()
            line = self._file.readline()  # one line per request: nothing read ahead
            if line and not line.endswith(b"\n"):  # a writer is still appending it
                self._file.seek(start)
                return None, False
            if not line:  # the end of the file: done for good
                self._stopped = True
                self._file.close()
                self._file = None
                return None, True
            self.last_ref = self._file.tell()
            return line.rstrip(b"\n"), False

    def ack(self, ref: object = None) -> None:
        """A file has no acknowledgement: nothing to do."""

    def stop(self) -> None:
        self._stopped = True
        if self._lock.acquire(blocking=False):  # non-blocking: a reader may hold it
            try:
                if self._file is not None:
                    self._file.close()
                    self._file = None
            finally:
                self._lock.release()


class _FileProducer:
    def __init__(self, bus: _FileBus) -> None:
        self._bus = bus
        self._stopped = False
        self._lock = threading.Lock()

    def send(self, topic: str, data: bytes) -> None:
        if self._stopped:
            raise RuntimeError("send() after stop(): this producer is stopped")
        payload = _check_data(data)
        if b"\n" in payload:
            raise ValueError("data for a file:// bus must not contain a newline")
        path = self._bus._path(topic)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, payload + b"\n")  # one write: lines from writers do not mix
            finally:
                os.close(fd)

    def stop(self) -> None:
        self._stopped = True


# --------------------------------------------------------------------- stdio://
class _StdioBus:
    """Lines of stdin in, lines of stdout out (one stream: the topic is not used)."""

    def __init__(self, stdin: BinaryIO, stdout: BinaryIO) -> None:
        self._stdin = stdin
        self._stdout = stdout
        self._write_lock = threading.Lock()

    def consumer(self, topic: str) -> Consumer:
        _check_topic(topic)
        return _StdioConsumer(self._stdin)

    def producer(self) -> Producer:
        return _StdioProducer(self)


class _StdioConsumer:
    """A reader thread reads one line per request (a read of stdin cannot be
    interrupted, so ``stop()`` and timeouts never wait for it); finite at EOF."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lines: queue_mod.SimpleQueue[bytes | None] = queue_mod.SimpleQueue()
        self._want = threading.Semaphore(0)
        self._requested = False  # a line has been asked for and not yet taken
        self._stopped = False
        self._eof = False
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last_ref: object = None

    def _read(self) -> None:
        while True:
            self._want.acquire()
            line = self._stream.readline()
            self._lines.put(line.rstrip(b"\n") if line else None)
            if not line:
                return

    def msg(self, timeout: float | None = None) -> tuple[bytes | None, bool]:
        with self._lock:
            if self._stopped or self._eof:
                return None, True
            if self._reader is None:
                self._reader = threading.Thread(target=self._read, name="stdio-bus", daemon=True)
                self._reader.start()
            if not self._requested:
                self._requested = True
                self._want.release()
        deadline = None if timeout is None else real_monotonic() + timeout
        while True:
            wait = 0.05 if deadline is None else max(0.0, min(0.05, deadline - real_monotonic()))
            try:
                line = self._lines.get(timeout=wait)
            except queue_mod.Empty:
                if self._stopped:
                    return None, True
                if deadline is not None and real_monotonic() >= deadline:
                    return None, False
                continue
            with self._lock:
                self._requested = False
                if line is None:
                    self._eof = True
                    return None, True
            self.last_ref = line
            return line, False

    def ack(self, ref: object = None) -> None:
        """stdin has no acknowledgement: nothing to do."""

    def stop(self) -> None:
        self._stopped = True


class _StdioProducer:
    def __init__(self, bus: _StdioBus) -> None:
        self._bus = bus
        self._stopped = False

    def send(self, topic: str, data: bytes) -> None:
        if self._stopped:
            raise RuntimeError("send() after stop(): this producer is stopped")
        _check_topic(topic)
        payload = _check_data(data)
        if b"\n" in payload:
            raise ValueError("data for a stdio:// bus must not contain a newline")
        with self._bus._write_lock:
            self._bus._stdout.write(payload + b"\n")
            self._bus._stdout.flush()

    def stop(self) -> None:
        self._stopped = True


# ---------------------------------------------------------------------- launcher
class Launcher:
    """Runs the records of a topic on a scheduler, at most ``max_in_progress`` at once,
    and publishes each finished record on ``done_topic`` (pcelvng/task's launcher).

    Args:
        bus: where records come from and go.
        topic: the topic to consume.
        done_topic: where finished records are published (also the rejected ones: a
            malformed message or an unknown type, with ``result="error"``).
        workers: record type -> ``worker(record)``; returning normally means
            ``result="complete"`` (a returned str becomes ``msg``), raising means
            ``result="error"`` with the exception as ``msg``.
        max_in_progress: slots; a message is requested only when one is free.
        scheduler: the scheduler that runs the workers (the default one).
        lifetime: seconds after which the launcher stops by itself (None: no limit).
        grace: seconds ``stop()`` lets work in flight finish; what is still running
            then is published with ``result="error"`` and a message saying so.
        **task_options: ``post_task`` options of every run (``retries``, ``timeout``...).
    """

    def __init__(
        self,
        bus: Bus,
        topic: str,
        done_topic: str,
        workers: dict[str, Any],
        *,
        max_in_progress: int = 1,
        scheduler: Any = None,
        lifetime: float | None = None,
        grace: float = 30.0,
        **task_options: Any,
    ) -> None:
        from ._default import get_scheduler  # noqa: PLC0415 - _default imports a lot
        from ._scheduler import _task_extra  # noqa: PLC0415

        _check_topic(topic)
        _check_topic(done_topic)
        if not isinstance(workers, dict) or not workers:
            raise ValueError(f"workers must be a non-empty dict of type -> worker, got {workers!r}")
        for name, fn in workers.items():
            if not isinstance(name, str) or not callable(fn):
                raise TypeError(
                    f"workers must map a type (str) to a callable, got {name!r}: {fn!r}"
                )
        if type(max_in_progress) is not int or max_in_progress < 1:
            raise ValueError(f"max_in_progress must be an int >= 1, got {max_in_progress!r}")
        if lifetime is not None and not (isinstance(lifetime, (int, float)) and lifetime > 0):
            raise ValueError(f"lifetime must be > 0 seconds or None, got {lifetime!r}")
        if not (isinstance(grace, (int, float)) and grace >= 0):
            raise ValueError(f"grace must be >= 0 seconds, got {grace!r}")
        _task_extra(None, None, dict(task_options))
        self._bus = bus
        self._topic = topic
        self._done_topic = done_topic
        self._workers = dict(workers)
        self._slots = threading.BoundedSemaphore(max_in_progress)
        self._sched = scheduler if scheduler is not None else get_scheduler()
        self._lifetime = lifetime
        self._grace = float(grace)
        self._options = task_options
        self._consumer: Consumer | None = None
        self._producer = bus.producer()
        self._lock = threading.Lock()
        self._in_flight: dict[int, tuple[Any, TaskRecord, object]] = {}  # id(handle) -> ...
        self._publishing: set[int] = set()  # handles whose record is being sent
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()
        self._stopping = False
        self.received = 0
        self.published = 0
        self.abandoned = 0  # records published as abandoned by a stop()

    def start(self) -> Launcher:
        """Start consuming (on a thread of its own). Returns the launcher."""
        if self._thread is not None:
            raise RuntimeError("this launcher was started already")
        self._consumer = self._bus.consumer(self._topic)
        self._thread = threading.Thread(
            target=self._loop, name=f"launcher-{self._topic}", daemon=True
        )
        self._thread.start()
        if self._lifetime is not None:
            timer = threading.Timer(self._lifetime, self.stop)
            timer.daemon = True
            timer.start()
        return self

    def _loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            while not self._stopping:
                if not self._slots.acquire(timeout=0.1):
                    continue
                data, done = consumer.msg(timeout=0.1)
                if done:
                    self._slots.release()
                    break
                if data is None:
                    self._slots.release()
                    continue
                self.received += 1
                try:
                    self._launch(data, consumer.last_ref)
                except Exception as exc:
                    logger.exception("launcher: could not run a message")
                    info = data.decode("utf-8", "replace")
                    self._publish(TaskRecord("invalid", info, result="error", msg=str(exc)), None)
        finally:
            self._finished.set()

    def _launch(self, data: bytes, ref: object) -> None:
        try:
            record = TaskRecord.from_json(data)
        except ValueError as exc:
            info = data.decode("utf-8", "replace")
            self._publish(TaskRecord("invalid", info, result="error", msg=str(exc)), ref)
            return
        worker = self._workers.get(record.type)
        if worker is None:
            record.result, record.msg = "error", f"no worker for type {record.type!r}"
            self._publish(record, ref)
            return
        record.started = _utc_now()
        record.ended, record.result, record.msg = None, "", ""  # a record run again
        try:
            h = self._sched.post_task(worker, record, name=f"record {record.type}", **self._options)
        except (SchedulerShutdown, QueueFull) as exc:  # refused: the record says so
            record.result, record.msg = "error", f"not run: {exc}"
            self._publish(record, ref)
            return
        with self._lock:
            self._in_flight[id(h)] = (h, record, ref)
        h.add_done_callback(self._finished_run)

    def _finished_run(self, h: Any) -> None:
        with self._lock:
            entry = self._in_flight.get(id(h))
            if entry is None or id(h) in self._publishing:
                return  # published already (abandoned at stop())
            self._publishing.add(id(h))  # still in flight until it has been sent
        _, record, ref = entry
        if h.cancelled():
            record.result, record.msg = "error", f"not run: {h._sched._cancel_reason(h)}"
        else:
            exc = h.exception()
            if exc is None:
                value = h.result()
                record.result = "complete"
                record.msg = value if isinstance(value, str) else record.msg
            else:
                record.result, record.msg = "error", f"{type(exc).__name__}: {exc}"
        try:
            self._publish(record, ref)
        finally:
            with self._lock:
                self._in_flight.pop(id(h), None)
                self._publishing.discard(id(h))

    def _publish(self, record: TaskRecord, ref: object) -> None:
        if record.ended is None:
            record.ended = _utc_now()
        try:
            try:
                payload = record.to_json().encode()
            except UnicodeEncodeError:  # (text from a worker that is not valid UTF-8)
                record.msg = record.msg.encode("utf-8", "replace").decode()
                record.info = record.info.encode("utf-8", "replace").decode()
                payload = record.to_json().encode("utf-8", "replace")
            self._producer.send(self._done_topic, payload)
            with self._lock:
                self.published += 1
        finally:
            if self._consumer is not None:
                self._consumer.ack(ref)
            self._slots.release()

    def stop(self, grace: float | None = None) -> bool:
        """Stop: the consumer first, then work in flight gets ``grace`` seconds (the
        launcher's by default) to finish, then what still runs is published as
        abandoned, and the producer stops last. Returns True if nothing was abandoned.
        Idempotent."""
        with self._lock:
            self._stopping = True
        if self._consumer is not None:
            self._consumer.stop()
        if self._thread is not None:
            self._thread.join()  # the loop leaves within 0.1 s of the consumer's stop
        end = real_monotonic() + (self._grace if grace is None else grace)
        while True:
            with self._lock:
                left = list(self._in_flight.values())
            if not left:
                break
            if real_monotonic() >= end:
                for h, record, ref in left:
                    with self._lock:
                        if id(h) in self._publishing or self._in_flight.pop(id(h), None) is None:
                            continue  # finished meanwhile: its own record goes out
                    h.cancel()
                    record.result = "error"
                    record.msg = "abandoned: still running when the launcher stopped"
                    with self._lock:
                        self.abandoned += 1
                    self._publish(record, ref)
                self._producer.stop()
                return False
            threading.Event().wait(0.01)
        self._producer.stop()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the consumer is done (a finite topic's end) and every record
        taken has been published; True then, False if the timeout passed first."""
        end = None if timeout is None else real_monotonic() + timeout
        if not self._finished.wait(timeout):
            return False
        while True:
            with self._lock:
                if not self._in_flight:
                    return True
            if end is not None and real_monotonic() >= end:
                return False
            threading.Event().wait(0.005)

    def __enter__(self) -> Launcher:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
