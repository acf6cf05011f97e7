"""The real web server for tests that go through HTTP: gunicorn with deploy/gunicorn.conf.py
against the test database, on a free loopback port, and a raw-socket client that sends bytes
no HTTP library would (bad framing, non-ASCII header bytes, chunked bodies)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The URL of the database the tests use (the test database, not the configured one)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_live(base: str, process: subprocess.Popen[bytes], *, timeout: float) -> None:
    """Until `base` answers /health/live; OSError once the process has exited or `timeout`
    seconds have passed. A probe that timed out is still served (and counted) later, so each
    probe waits long for its answer instead of being sent again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{base}/health/live", timeout=30)
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class WebServer:
    """gunicorn (or, with `server="granian"`, granian over RSGI as in production) serving
    comcenter; `env` overrides the environment it starts with. It shares the test process's
    SECRET_KEY, so tokens the test issues are valid there."""

    def __init__(
        self, tmp_path: Path, *, workers: int = 2, server: str = "gunicorn", **env: str
    ) -> None:
        self.server = server
        self.workers = workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "stdout.log"
        self.errors = tmp_path / "stderr.log"
        metrics_dir = tmp_path / "metrics"
        metrics_dir.mkdir(exist_ok=True)
        self.env = dict(os.environ)
        self.env.update(
            SECRET_KEY=settings.SECRET_KEY,
            DATABASE_URL=database_url(),
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
            GUNICORN_BIND=f"127.0.0.1:{self.port}",
            WEB_CONCURRENCY=str(workers),
            PYTHONUNBUFFERED="1",
        )
        self.env.update(env)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 60) -> WebServer:
        with self.log.open("ab") as log, self.errors.open("ab") as errors:
            self.process = subprocess.Popen(
                self._command(),
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=errors,
            )
        try:
            wait_live(self.base, self.process, timeout=timeout)
        except OSError:
            self.stop()
            raise
        return self

    def _command(self) -> list[str]:
        if self.server == "gunicorn":
            return [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "deploy/gunicorn.conf.py",
                "comcenter.wsgi:application",
            ]
        from comcenter.run import web_command

        bind = f"127.0.0.1:{self.port}"
        return web_command(server=self.server, target="comcenter", bind=bind, workers=self.workers)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def output(self) -> str:
        """What the server logged so far (stdout and stderr)."""
        return self.log.read_text(errors="replace") + self.errors.read_text(errors="replace")

    def send(self, raw: bytes, *, timeout: float = 10) -> RawResponse:
        """Send `raw` as is on a new connection and read the answer to its end."""
        return raw_exchange(self.port, raw, timeout=timeout)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def raw_exchange(port: int, raw: bytes, *, timeout: float = 10) -> RawResponse:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if _complete(b"".join(chunks)):
                break
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(status=status, headers=headers, body=body)


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def http_request(
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    chunked: bool = False,
) -> bytes:
    """The bytes of one HTTP/1.1 request (`Connection: close`); header values are sent as
    Latin-1, so a test can put any byte in one; a list of pairs may repeat a header."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    for name, value in pairs:
        lines.append(f"{name}: {value}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = b"".join(
            f"{len(part):x}\r\n".encode() + part + b"\r\n"
            for part in (body[i : i + 100] for i in range(0, len(body), 100))
        )
        payload += b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + payload
