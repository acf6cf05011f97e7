"""A generic real HTTP server on 127.0.0.1 with a free port that answers programmed
responses for any path and records every request: the far side for tests of the HTTP
wrapper and of HTTP-based providers without a dedicated test server (ESPs, JWKS, helpdesk)."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.support.loopback import LoopbackHandler, QuietServer


@dataclass(frozen=True)
class StubRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int


@dataclass(frozen=True)
class StubAnswer:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class HttpStub:
    """`respond()` queues answers used in order; once the queue is empty every request gets
    `default`. Bodies that are not bytes are sent as JSON."""

    def __init__(self, default: StubAnswer | None = None) -> None:
        self.requests: list[StubRequest] = []
        self.default = default or StubAnswer(200, {})
        self._answers: deque[StubAnswer] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        handler = type("StubHandler", (_Handler,), {"stub": self})
        self._server = QuietServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def respond(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        delay: float = 0.0,
    ) -> None:
        with self._lock:
            self._answers.append(StubAnswer(status, body, dict(headers or {}), delay))

    def _next(self, request: StubRequest) -> StubAnswer:
        with self._lock:
            self.requests.append(request)
            return self._answers.popleft() if self._answers else self.default


class _Handler(LoopbackHandler):
    stub: HttpStub

    def do_HEAD(self) -> None:
        self._handle()

    def _handle(self) -> None:
        body = self.read_body()
        request = StubRequest(
            self.command, self.path, dict(self.headers), body, self.client_address[1]
        )
        answer = self.stub._next(request)
        if answer.delay:
            self.stub._stopping.wait(answer.delay)
        if answer.body is None:
            payload = b""
        elif isinstance(answer.body, bytes):
            payload = answer.body
        else:
            payload = json.dumps(answer.body).encode()
        try:
            self.send_response(answer.status)
            if "Content-Type" not in answer.headers:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except OSError:
            self.close_connection = True
