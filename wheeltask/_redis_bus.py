"""The ``redis://`` and ``rediss://`` bus: Redis Streams and consumer groups (issue 7).

A topic is the stream ``<prefix><topic>`` (``wheeltask:jobs`` by default); a message is
one entry with one field, ``data``. Consumers of a topic that share a group name share
its messages, each message going to one of them; a message stays pending in the group
until it is acknowledged, and the messages of a consumer that died are claimed by
another after ``claim_idle`` seconds: delivery is at least once.

Imported by :func:`wheeltask.bus.connect` only, so that the base install needs no
redis-py (``pip install 'wheeltask[redis]'``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import re
import secrets
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final, TypeVar, final
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._clock import real_monotonic
from .bus import _check_data, _check_topic

__all__ = ["RedisBus", "connect", "parse_url"]

logger = logging.getLogger("wheeltask")

T = TypeVar("T")

#: A blocking read waits at most this long at a time, so that a ``stop()`` from another
#: thread is seen within 0.1 s by every thread waiting in ``msg()``.
_CHUNK: Final = 0.1
#: Backoff between attempts after a lost connection: 0.05 s doubling up to 2 s, each
#: pause drawn in [half, whole] of that (jitter: restarted workers do not all retry at once).
_BACKOFF_FIRST: Final = 0.05
_BACKOFF_CAP: Final = 2.0
#: While Redis stays unreachable, a warning every this many seconds (not one per attempt).
_WARN_EVERY: Final = 30.0
#: A message fetched as ``stop()`` happens is put back within this much retrying.
_PUT_BACK_PATIENCE: Final = 2.0
_MIN_VERSION: Final = (6, 2)  # XPENDING ... IDLE
_ENTRY_ID: Final = re.compile(r"[0-9]+-[0-9]+\Z")
_CERT_REQS: Final = ("required", "optional", "none")
_TLS_OPTIONS: Final = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
_OPTIONS: Final = (
    "claim_idle",
    "group",
    "prefix",
    "connect_timeout",
    "reconnect_timeout",
    "delete_acked",
    *_TLS_OPTIONS,
)

# Lost connections, timeouts and a server still loading its data set are retried; a
# refused login (AuthenticationError is a ConnectionError too) is not.
_TRANSIENT: Final = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_LOGIN: Final = (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)

# Takes over the oldest message of the group idle for at least ARGV[3] ms (its consumer
# died, or lost its connection for that long), for consumer ARGV[2]. XPENDING ... IDLE
# looks at the whole pending list in one call; XCLAIM checks the idle time again and
# counts the delivery. An entry deleted from the stream meanwhile is dropped from the
# pending list and the next one is looked at.
_CLAIM_SCRIPT: Final = """
for _ = 1, 16 do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], '-', '+', 1)
  if #p == 0 then return false end
  local c = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], p[1][1])
  if #c > 0 and type(c[1]) == 'table' and type(c[1][2]) == 'table' then return c[1] end
  redis.call('XACK', KEYS[1], ARGV[1], p[1][1])
end
return false
"""

# Resets the idle time of the messages ARGV[3..] that consumer ARGV[2] is working on,
# so that nobody claims them; returns those still its own (one claimed by another
# consumer meanwhile is not taken back: that would run it twice at once).
_REFRESH_SCRIPT: Final = """
local kept = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p > 0 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    kept[#kept + 1] = ARGV[i]
  end
end
return kept
"""

# A message fetched as stop() happened goes back to the stream: added again as a new
# entry (same data, at the end of the stream), the fetched one acknowledged and deleted,
# all at once. Leaving it pending for another consumer to claim would keep it waiting
# for claim_idle and leave it behind on a stopped consumer.
_PUT_BACK_SCRIPT: Final = """
local id = redis.call('XADD', KEYS[1], '*', 'data', ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return id
"""

# Acknowledges message ARGV[2], and deletes it from the stream if ARGV[3] is 1: one
# command (a MULTI/EXEC of the two costs redis-py about twice the time on the hot path).
_ACK_SCRIPT: Final = """
local n = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '1' then redis.call('XDEL', KEYS[1], ARGV[2]) end
return n
"""

# A stopped consumer leaves the group, unless messages are still pending on it (one
# whose delivery was lost with a connection): those wait there to be claimed.
_LEAVE_SCRIPT: Final = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return 0 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
"""


# ------------------------------------------------------------------ the URL
@final
@dataclasses.dataclass(frozen=True)
class RedisOptions:
    """What a ``redis://`` or ``rediss://`` URL says (``parse_url``)."""

    host: str = "localhost"
    port: int = 6379
    db: int = 0
    username: str | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)
    tls: bool = False
    claim_idle: float = 30.0
    group: str = "wheeltask"
    prefix: str = "wheeltask:"
    connect_timeout: float = 5.0
    reconnect_timeout: float = 30.0
    delete_acked: bool = True
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"

    @property
    def masked_url(self) -> str:
        """The URL without its password (``***`` instead) and without its options."""
        auth = ""
        if self.username is not None or self.password is not None:
            auth = quote(self.username or "", safe="")
            auth += ":***@" if self.password is not None else "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{auth}{host}:{self.port}/{self.db}"


def _seconds(name: str, value: str, *, least: float, strict: bool) -> float:
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not math.isfinite(x) or x < least or (strict and x == least):
        bound = f"> {least:g}" if strict else f">= {least:g}"
        raise ValueError(f"{name} must be a number of seconds {bound}, got {value!r}")
    return x


def _flag(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1/0 (true/false, yes/no), got {value!r}")


def parse_url(url: str) -> RedisOptions:
    """Read ``redis://[[user]:password@]host[:port][/db][?option=value&...]`` (or
    ``rediss://`` for TLS). Raises ValueError naming the part or option that is wrong;
    the password never appears in the message."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"a Redis bus URL starts with redis:// or rediss://, got {parts.scheme!r}")
    tls = parts.scheme == "rediss"
    try:
        port = 6379 if parts.port is None else parts.port
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        port_text = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        raise ValueError(f"port must be an int in 1-65535, got {port_text!r}")
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit() or not db_text.isascii():
        raise ValueError(f"db (the URL's path) must be a number >= 0, got {db_text!r}")
    fields: dict[str, Any] = {
        "host": parts.hostname or "localhost",
        "port": port,
        "db": int(db_text),
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password is not None else None,
        "tls": tls,
    }
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError("the URL's options must read name=value&name=value") from None
    for name, value in query:
        if name not in _OPTIONS:
            raise ValueError(f"unknown Redis bus option {name!r}: use {', '.join(_OPTIONS)}")
        if name in fields:
            raise ValueError(f"option {name!r} is given twice")
        if name in _TLS_OPTIONS and not tls:
            raise ValueError(f"option {name!r} needs a rediss:// (TLS) URL")
        if name == "claim_idle":  # the keeper refreshes every claim_idle / 3
            fields[name] = _seconds(name, value, least=0.1, strict=False)
        elif name == "connect_timeout":
            fields[name] = _seconds(name, value, least=0.0, strict=True)
        elif name == "reconnect_timeout":
            fields[name] = _seconds(name, value, least=0.0, strict=False)
        elif name == "delete_acked":
            fields[name] = _flag(name, value)
        elif name == "group" and not value:
            raise ValueError("group must be a non-empty name, got ''")
        elif name == "ssl_cert_reqs" and value not in _CERT_REQS:
            allowed = ", ".join(_CERT_REQS)
            raise ValueError(f"ssl_cert_reqs must be one of {allowed}, got {value!r}")
        elif name in _TLS_OPTIONS and name != "ssl_cert_reqs" and not value:
            raise ValueError(f"{name} must be a file path, got ''")
        else:
            fields[name] = value
    return RedisOptions(**fields)


# ----------------------------------------------------------------- retrying
class _Outage:
    """Retries of one operation while Redis cannot be reached: the backoff, and the
    warnings (one when it starts, then one every 30 s, never with the password)."""

    def __init__(self, bus: RedisBus, what: str) -> None:
        self._bus = bus
        self._what = what
        self._delay = _BACKOFF_FIRST
        self._started: float | None = None
        self._warned = 0.0

    def pause(self, exc: Exception) -> float:
        """Seconds to wait before the next attempt (and log the failure)."""
        now = real_monotonic()
        if self._started is None:
            self._started = self._warned = now
            logger.warning(
                "redis bus: %s: lost the connection to %s (%s: %s); reconnecting with backoff",
                self._what,
                self._bus.masked_url,
                type(exc).__name__,
                exc,
            )
        elif now - self._warned >= _WARN_EVERY:
            self._warned = now
            logger.warning(
                "redis bus: %s: %s still unreachable after %.0f s (%s)",
                self._what,
                self._bus.masked_url,
                now - self._started,
                exc,
            )
        delay = self._delay * random.uniform(0.5, 1.0)
        self._delay = min(self._delay * 2, _BACKOFF_CAP)
        return delay

    @property
    def elapsed(self) -> float:
        return 0.0 if self._started is None else real_monotonic() - self._started

    def over(self) -> None:
        """The operation went through: say so if it had failed."""
        if self._started is not None:
            logger.warning(
                "redis bus: %s: reconnected to %s after %.1f s",
                self._what,
                self._bus.masked_url,
                self.elapsed,
            )
            self._started = None
            self._delay = _BACKOFF_FIRST


def _nogroup(exc: Exception) -> bool:
    return isinstance(exc, redis.exceptions.ResponseError) and "NOGROUP" in str(exc)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------- bus
@final
class RedisBus:
    """Topics are Redis streams; consumers of a topic share it through a consumer group.

    Built by ``connect("redis://...")``, which reaches the server first (within
    ``connect_timeout``) so that a wrong address or password fails at once.
    """

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self.masked_url = options.masked_url
        self._scripts_client = self.client()
        # Script objects run EVALSHA, and load the script again after a server restart.
        register = self._scripts_client.register_script
        self.claim_script = register(_CLAIM_SCRIPT)
        self.refresh_script = register(_REFRESH_SCRIPT)
        self.put_back_script = register(_PUT_BACK_SCRIPT)
        self.ack_script = register(_ACK_SCRIPT)
        self.leave_script = register(_LEAVE_SCRIPT)

    def __repr__(self) -> str:
        o = self.options
        return (
            f"<RedisBus {self.masked_url} group={o.group!r} prefix={o.prefix!r} "
            f"claim_idle={o.claim_idle:g}>"
        )

    def client(self, name: str | None = None) -> redis.Redis:
        """A new client (its own connections). redis-py's own retries are off: the bus
        retries, with backoff and logging, where a retry is safe."""
        o = self.options
        kwargs: dict[str, Any] = {
            "host": o.host,
            "port": o.port,
            "db": o.db,
            "username": o.username,
            "password": o.password,
            "socket_connect_timeout": o.connect_timeout,
            # A reply to any command of the bus is small and quick; a blocking read adds
            # at most _CHUNK. A connection that went silent is given up after this.
            "socket_timeout": o.connect_timeout + 1.0,
            "socket_keepalive": True,
            "retry": Retry(NoBackoff(), 0),
            "client_name": name,
        }
        if o.tls:
            kwargs.update(
                ssl=True,
                ssl_ca_certs=o.ssl_ca_certs,
                ssl_certfile=o.ssl_certfile,
                ssl_keyfile=o.ssl_keyfile,
                ssl_cert_reqs=o.ssl_cert_reqs,
                ssl_check_hostname=o.ssl_cert_reqs == "required",
            )
        return redis.Redis(**kwargs)

    def check_server(self) -> None:
        """Reach the server once (PING, its version). Raises ConnectionError naming the
        masked URL within about ``connect_timeout`` seconds if it cannot."""
        client = self.client()
        try:
            client.ping()
            version = str(client.info("server").get("redis_version", "0"))
        except _LOGIN as exc:
            raise ConnectionError(f"Redis at {self.masked_url} refused the login: {exc}") from None
        except _TRANSIENT as exc:
            raise ConnectionError(
                f"cannot reach Redis at {self.masked_url} (connect_timeout="
                f"{self.options.connect_timeout:g} s): {exc}"
            ) from None
        except redis.exceptions.InvalidResponse as exc:
            raise ConnectionError(
                f"cannot reach Redis at {self.masked_url}: what answers there does not "
                f"speak Redis ({exc})"
            ) from None
        finally:
            client.connection_pool.disconnect()
        numbers = tuple(int(n) for n in re.findall(r"[0-9]+", version)[:2])
        if numbers < _MIN_VERSION:
            raise ConnectionError(
                f"Redis at {self.masked_url} is version {version}: the bus needs 6.2 or later"
            )

    def key(self, topic: str) -> str:
        return self.options.prefix + _check_topic(topic)

    def call(
        self,
        what: str,
        fn: Callable[[], T],
        *,
        patience: float | None = None,
        stopped: threading.Event | None = None,
    ) -> T:
        """``fn()``, retried with backoff while the connection is lost, for up to
        ``patience`` seconds (``reconnect_timeout`` by default), then ConnectionError.
        A refused login raises ConnectionError at once; ``stopped`` cuts the waits short
        (RuntimeError)."""
        limit = self.options.reconnect_timeout if patience is None else patience
        outage = _Outage(self, what)
        pause = threading.Event() if stopped is None else stopped
        while True:
            try:
                result = fn()
            except _LOGIN as exc:
                raise ConnectionError(
                    f"{what}: Redis at {self.masked_url} refused the login: {exc}"
                ) from None
            except _TRANSIENT as exc:
                delay = outage.pause(exc)
                if outage.elapsed + delay > limit:
                    raise ConnectionError(
                        f"{what}: Redis at {self.masked_url} unreachable for "
                        f"{outage.elapsed:.1f} s: {type(exc).__name__}: {exc}"
                    ) from None
                if pause.wait(delay):
                    raise RuntimeError(f"{what}: stopped while Redis was unreachable") from None
                continue
            outage.over()
            return result

    def consumer(self, topic: str) -> RedisConsumer:
        return RedisConsumer(self, topic)

    def producer(self) -> RedisProducer:
        return RedisProducer(self)


def connect(url: str) -> RedisBus:
    """A Redis bus from its URL, the server reached once (see ``RedisBus``)."""
    bus = RedisBus(parse_url(url))
    bus.check_server()
    return bus


# ----------------------------------------------------------------- producer
@final
class RedisProducer:
    """``send()`` is one XADD of the field ``data``."""

    def __init__(self, bus: RedisBus) -> None:
        self._bus = bus
        self._client = bus.client()
        self._stopped = threading.Event()

    def __repr__(self) -> str:
        state = " stopped" if self._stopped.is_set() else ""
        return f"<RedisProducer on {self._bus.masked_url}{state}>"

    def send(self, topic: str, data: bytes) -> None:
        """Add ``data`` to the topic's stream. A lost connection is retried for up to
        ``reconnect_timeout`` seconds, then ConnectionError (a retry after a reply that
        was lost may add the message twice: at least once)."""
        if self._stopped.is_set():
            raise RuntimeError("send() after stop(): this producer is stopped")
        payload = _check_data(data)
        key = self._bus.key(topic)
        self._bus.call(
            "send", lambda: self._client.xadd(key, {"data": payload}), stopped=self._stopped
        )

    def stop(self) -> None:
        """Idempotent and non-blocking; idle connections are closed."""
        self._stopped.set()
        self._client.connection_pool.disconnect(inuse_connections=False)


# ----------------------------------------------------------------- consumer
@final
class RedisConsumer:
    """A member of the topic's consumer group, with a name of its own
    (``host-pid-random``). ``msg()`` claims a message of a dead consumer if one is
    idle for ``claim_idle``, else reads a new one (XREADGROUP COUNT 1). A keeper thread
    keeps the messages it returned and that are not acknowledged yet from being claimed,
    and takes the consumer out of the group once it is stopped and has none left."""

    def __init__(self, bus: RedisBus, topic: str) -> None:
        self._bus = bus
        self.topic = topic
        self._key = bus.key(topic)
        self._group = bus.options.group
        self.name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._client = bus.client(self.name)
        self._claim_ms = max(1, round(bus.options.claim_idle * 1000))
        # With nothing to claim, the pending list is looked at again after this long.
        self._claim_every = min(bus.options.claim_idle / 2, 1.0)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._waiters = 0
        self._unacked: set[str] = set()
        self._keeper: threading.Thread | None = None
        self._wake = threading.Event()
        self._next_claim = 0.0
        self._claiming = False
        self._outage = _Outage(bus, f"consumer of {topic!r}")  # shared by its calls
        self.last_ref: object = None
        self._bus.call("consumer", self._ensure_group)

    def __repr__(self) -> str:
        state = " stopped" if self._stopped.is_set() else ""
        return (
            f"<RedisConsumer {self.topic!r} group={self._group!r} name={self.name!r} "
            f"on {self._bus.masked_url}{state}>"
        )

    def _ensure_group(self) -> None:
        # From id 0: the messages sent before the group existed are its messages too.
        try:
            self._client.xgroup_create(self._key, self._group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # ---------------------------------------------------------------- msg
    def msg(self, timeout: float | None = None) -> tuple[bytes | None, bool]:
        """The next message: one of a dead consumer idle for ``claim_idle`` first, else
        a new one. ``(None, False)`` after ``timeout`` seconds, ``(None, True)`` once
        stopped (within 0.1 s for threads waiting here). A lost connection is retried
        with backoff for as long as the timeout allows."""
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0
        ):
            raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout!r}")
        with self._lock:
            if self._stopped.is_set():
                return None, True
            self._waiters += 1
            if self._keeper is None:
                self._keeper = threading.Thread(
                    target=_keep,
                    args=(weakref.ref(self), self._wake, self._bus.options.claim_idle / 3),
                    name=f"redis-bus-keeper-{self.topic}",
                    daemon=True,
                )
                self._keeper.start()
        try:
            return self._take(timeout)
        finally:
            with self._lock:
                self._waiters -= 1
                if self._stopped.is_set() and self._waiters == 0:
                    self._wake.set()  # the keeper may finish now

    def _take(self, timeout: float | None) -> tuple[bytes | None, bool]:
        deadline = None if timeout is None else real_monotonic() + timeout
        outage = self._outage
        first = True
        while True:
            if self._stopped.is_set():
                return None, True
            left = _CHUNK if deadline is None else deadline - real_monotonic()
            if left <= 0 and not first:
                return None, False
            first = False
            try:
                entry = self._claim() or self._read(min(left, _CHUNK))
            except _LOGIN as exc:
                raise ConnectionError(
                    f"consumer of {self.topic!r}: Redis at {self._bus.masked_url} refused "
                    f"the login: {exc}"
                ) from None
            except _TRANSIENT as exc:
                delay = outage.pause(exc)
                if deadline is not None:
                    delay = min(delay, max(0.0, deadline - real_monotonic()))
                self._stopped.wait(delay)
                continue
            except redis.exceptions.ResponseError as exc:
                if not _nogroup(exc):
                    raise
                # The stream or the group went away (deleted, or a restarted server that
                # kept no data): make it again, empty, and go on.
                self._bus.call(f"consumer of {self.topic!r}", self._ensure_group)
                continue
            outage.over()
            if entry is not None:
                return self._deliver(*entry)

    def _claim(self) -> tuple[str, bytes] | None:
        """A message of a consumer that has not refreshed it for ``claim_idle``, taken
        over; None if there is none or the pending list was looked at a moment ago."""
        with self._lock:
            now = real_monotonic()
            if self._claiming or now < self._next_claim:
                return None
            self._claiming = True
        found: tuple[str, bytes] | None = None
        try:
            reply = self._bus.claim_script(
                keys=[self._key],
                args=[self._group, self.name, self._claim_ms],
                client=self._client,
            )
            if reply:
                found = _text(reply[0]), _data(reply[1])
                logger.info(
                    "redis bus: %s claimed message %s of topic %r (idle for %g s or more)",
                    self.name,
                    found[0],
                    self.topic,
                    self._bus.options.claim_idle,
                )
        finally:
            with self._lock:
                self._claiming = False
                # After a claim there may be more: look again at the next request.
                self._next_claim = now if found else now + self._claim_every
        return found

    def _read(self, seconds: float) -> tuple[str, bytes] | None:
        """One new message (XREADGROUP COUNT 1), waiting up to ``seconds`` for it."""
        block = round(seconds * 1000)
        reply: Any = self._client.xreadgroup(  # (RESP2: [[key, [(id, fields)]]])
            self._group,
            self.name,
            {self._key: ">"},
            count=1,
            block=block if block >= 1 else None,  # BLOCK 0 would wait forever
        )
        if not reply:
            return None
        entry_id, fields = reply[0][1][0]
        return _text(entry_id), _data(fields)

    def _deliver(self, entry_id: str, data: bytes) -> tuple[bytes | None, bool]:
        with self._lock:
            if not self._stopped.is_set():
                self._unacked.add(entry_id)
                self.last_ref = entry_id
                return data, False
        self._put_back(entry_id, data)
        return None, True

    def _put_back(self, entry_id: str, data: bytes) -> None:
        """Return a message fetched after ``stop()`` to the stream (see the script)."""
        try:
            self._bus.call(
                f"consumer of {self.topic!r}: put back",
                lambda: self._bus.put_back_script(
                    keys=[self._key], args=[self._group, entry_id, data], client=self._client
                ),
                patience=_PUT_BACK_PATIENCE,
            )
        except ConnectionError as exc:
            logger.warning(
                "redis bus: %s: message %s fetched at stop() could not be put back (%s); "
                "it stays pending until another consumer claims it after %g s",
                self.name,
                entry_id,
                exc,
                self._bus.options.claim_idle,
            )

    # ---------------------------------------------------------------- ack
    def ack(self, ref: object = None) -> None:
        """Acknowledge a message (its stream entry id; default: the last one returned),
        and delete it from the stream unless ``delete_acked=0``. Valid after ``stop()``.
        A lost connection is retried for up to ``reconnect_timeout`` seconds."""
        if ref is None:
            ref = self.last_ref
            if ref is None:
                return  # nothing returned yet: nothing to acknowledge
        if isinstance(ref, bytes):
            ref = ref.decode("ascii", "replace")
        if not isinstance(ref, str):
            raise TypeError(f"ref must be a stream entry id (str), got {ref!r}")
        if not _ENTRY_ID.match(ref):
            raise ValueError(f"ref must be a stream entry id like '1700000000000-0', got {ref!r}")
        entry_id = ref
        delete = 1 if self._bus.options.delete_acked else 0

        def acknowledge() -> None:
            try:
                self._bus.ack_script(
                    keys=[self._key], args=[self._group, entry_id, delete], client=self._client
                )
            except redis.exceptions.ResponseError as exc:
                if not _nogroup(exc):
                    raise  # (without the group, nothing is pending: nothing to do)

        with self._lock:  # the keeper leaves it alone from here: its ack is on its way
            ours = entry_id in self._unacked
            self._unacked.discard(entry_id)
        try:
            self._bus.call(f"ack on {self.topic!r}", acknowledge)
        except BaseException:
            if ours:  # not acknowledged: still in progress, still kept
                with self._lock:
                    self._unacked.add(entry_id)
            raise
        with self._lock:
            if self._stopped.is_set() and not self._unacked:
                self._wake.set()  # the keeper may finish now

    # --------------------------------------------------------------- stop
    def stop(self) -> None:
        """Non-blocking and idempotent. Threads waiting in ``msg()`` return done within
        0.1 s; a message fetched as this happens goes back to the stream. Messages
        already returned stay this consumer's (kept from being claimed) until
        acknowledged; then the consumer leaves the group."""
        with self._lock:
            self._stopped.set()
            self._wake.set()
            idle = self._keeper is None
        if idle:  # never read: no keeper to close the connection of __init__
            self._client.connection_pool.disconnect(inuse_connections=False)

    # ------------------------------------------------------------- keeper
    def _keep_once(self) -> bool:
        """One round of the keeper: refresh the messages in progress; True when the
        consumer is stopped and done with (then it leaves the group)."""
        with self._lock:
            ids = sorted(self._unacked)
            finished = self._stopped.is_set() and self._waiters == 0 and not ids
            if finished:
                self._keeper = None
        if ids:
            self._refresh(ids)
        if finished:
            try:
                self._bus.leave_script(
                    keys=[self._key], args=[self._group, self.name], client=self._client
                )
            except redis.exceptions.RedisError as exc:  # (a consumer entry is cheap)
                logger.debug("redis bus: %s could not leave its group: %s", self.name, exc)
            self._client.connection_pool.disconnect(inuse_connections=False)
        return finished

    def _refresh(self, ids: list[str]) -> None:
        try:
            kept = self._bus.refresh_script(
                keys=[self._key], args=[self._group, self.name, *ids], client=self._client
            )
        except _TRANSIENT as exc:
            logger.debug("redis bus: %s: refresh failed, next round retries: %s", self.name, exc)
            return
        except redis.exceptions.ResponseError as exc:
            if not _nogroup(exc):
                logger.warning("redis bus: %s: refresh failed: %s", self.name, exc)
                return
            kept = []  # the stream or the group is gone, and its pending list with it
        with self._lock:  # (one acknowledged meanwhile is not pending, and not lost)
            lost = (set(ids) - {_text(i) for i in kept}) & self._unacked
            self._unacked -= lost
        if lost:
            logger.warning(
                "redis bus: %s: %d message(s) of topic %r in progress are no longer its "
                "own (claimed by another consumer, or the stream is gone): they may run twice",
                self.name,
                len(lost),
                self.topic,
            )


def _keep(ref: weakref.ref[RedisConsumer], wake: threading.Event, period: float) -> None:
    """The keeper thread: every ``claim_idle / 3`` seconds (or when woken), refreshes its
    consumer's messages in progress. It holds the consumer weakly: a consumer dropped
    without ``stop()`` ends it, and its messages become claimable as a dead one's."""
    while True:
        wake.wait(period)
        wake.clear()
        consumer = ref()
        if consumer is None or consumer._keep_once():
            return
        del consumer


def _data(fields: Any) -> bytes:
    """The ``data`` field of an entry (a dict from XREADGROUP, a flat list from Lua)."""
    if isinstance(fields, dict):
        value = fields.get(b"data", b"")
    else:
        pairs = dict(zip(fields[::2], fields[1::2], strict=True))
        value = pairs.get(b"data", b"")
    return value if isinstance(value, bytes) else str(value).encode()
