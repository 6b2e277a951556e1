"""A private ``redis-server`` for the tests: 127.0.0.1, a free port, no persistence.

The fixtures in ``conftest.py`` skip the Redis tests when ``redis-server`` or redis-py
is missing, unless ``WHEELTASK_REQUIRE_REDIS=1`` (CI sets it): then they fail.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

REQUIRED = os.environ.get("WHEELTASK_REQUIRE_REDIS") == "1"


def missing() -> str | None:
    """Why the Redis tests cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not on PATH (apt-get install redis-server)"
    if importlib.util.find_spec("redis") is None:
        return "redis-py is not installed (pip install -e '.[dev]')"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip, or fail when ``WHEELTASK_REQUIRE_REDIS=1``: CI never skips silently."""
    if REQUIRED:
        pytest.fail(f"{reason}, and WHEELTASK_REQUIRE_REDIS=1")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """``redis-server`` in a folder of its own; ``start()``, ``stop()``, ``restart()``
    (same port, data lost: nothing is saved)."""

    def __init__(
        self, folder: Path, *, password: str | None = None, tls: Path | None = None
    ) -> None:
        self.folder = folder
        self.password = password
        self.tls = tls  # a folder with ca.crt, server.crt, server.key (make_certificates)
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls / 'ca.crt'}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis  # noqa: PLC0415 - only when redis-py is there

        kwargs: dict[str, object] = {"password": self.password, "socket_timeout": 5}
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=str(self.tls / "ca.crt"))
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls:
            args += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls / "server.crt"),
                "--tls-key-file", str(self.tls / "server.key"),
                "--tls-ca-cert-file", str(self.tls / "ca.crt"),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        else:
            args += ["--port", str(self.port)]
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - the server keeps it
        self._proc = subprocess.Popen(args, cwd=self.folder, stdout=log, stderr=log)
        log.close()
        end = time.monotonic() + 10
        while True:
            if self._proc.poll() is not None:
                text = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}: {text}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > end:
                    raise RuntimeError("redis-server did not listen within 10 s") from None
                threading.Event().wait(0.01)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()


def make_certificates(folder: Path) -> None:
    """A throw-away CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=wheeltask test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.cnf")  # fmt: skip
