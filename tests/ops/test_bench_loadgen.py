"""The replay's load generator against real loopback servers: what it sends, how it reads an
answer (status, event id, a body in pieces, chunked or ended by the close, an answer sent
before the request was read), and that every failure comes back as a status 0 answer in
request order instead of stopping the replay."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bench import loadgen
from bench.workload import Request
from tests.support.loopback import LoopbackHandler, QuietServer

RATE = 50.0  # requests per second: a handful of requests takes a fraction of a second


def _request(index: int, **script: Any) -> Request:
    """A request whose body tells the scripted server how to answer it."""
    body = json.dumps({"index": index, **script}).encode()
    return Request(index, "new", f"key-{index}", "k1", index + 1, body)


def _replay(base_url: str, requests: list[Request]) -> list[tuple[int, str] | None]:
    answers, _ = loadgen.replay(
        base_url=base_url, token="tok-alice", requests=requests, rate=RATE, label="test"
    )
    return [(a.status, a.event_id) if a else None for a in answers]


class _ScriptedHandler(LoopbackHandler):
    """Answers as the request body says: {"status", "answer" (a JSON body), "delay"}."""

    received: list[tuple[str, dict[str, str], bytes]]

    def _handle(self) -> None:
        body = self.read_body()
        self.received.append((self.path, dict(self.headers), body))
        script = json.loads(body)
        time.sleep(script.get("delay", 0))
        payload = json.dumps(script.get("answer", {})).encode()
        self.send_response(script.get("status", 202))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class ScriptedServer:
    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        handler = type("Handler", (_ScriptedHandler,), {"received": self.received})
        self._server = QuietServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    try:
        yield server
    finally:
        server.stop()


Script = Callable[[socket.socket], None]


@pytest.fixture
def raw_server() -> Iterator[Callable[[Script], str]]:
    """Starts a server that runs `script(connection)` on each connection it accepts and then
    closes it, for answers no well-behaved HTTP server sends; returns its base URL."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []
    stop = threading.Event()

    def serve(listener: socket.socket, script: Script) -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(5)
                script(connection)

    def start(script: Script) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        thread = threading.Thread(target=serve, args=(listener, script), daemon=True)
        thread.start()
        listeners.append(listener)
        threads.append(thread)
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=5)
    for listener in listeners:
        listener.close()


def _read_request(connection: socket.socket) -> bytes:
    received = b""
    while b"\r\n\r\n" not in received:
        received += connection.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += connection.recv(65536)
    return received


def _answer_in(*pieces: bytes) -> Script:
    """Reads the request, then sends `pieces` one by one with a pause between them, so the
    client gets them in separate reads."""

    def script(connection: socket.socket) -> None:
        _read_request(connection)
        for piece in pieces:
            connection.sendall(piece)
            time.sleep(0.05)

    return script


def test_it_sends_the_event_and_reads_the_status_and_event_id(
    scripted: ScriptedServer,
) -> None:
    requests = [
        _request(0, status=202, answer={"id": "e1"}),
        _request(1, status=200, answer={"id": "e1"}),
    ]

    assert _replay(scripted.url, requests) == [(202, "e1"), (200, "e1")]

    received = {body: (path, headers) for path, headers, body in scripted.received}
    path, headers = received[requests[0].body]
    assert path == "/api/v1/events"
    assert headers["Authorization"] == "Bearer tok-alice"
    assert headers["Content-Type"] == "application/json"
    assert headers["Connection"] == "close"
    assert headers["Host"] == scripted.url.removeprefix("http://")
    assert set(received) == {r.body for r in requests}


def test_it_returns_409_and_other_statuses_as_they_are(scripted: ScriptedServer) -> None:
    statuses = [409, 400, 401, 429, 500, 503]
    requests = [
        _request(i, status=status, answer={"id": "not-an-event"})
        for i, status in enumerate(statuses)
    ]

    assert _replay(scripted.url, requests) == [(status, "") for status in statuses]


def test_it_answers_in_request_order_whatever_order_the_server_answers_in(
    scripted: ScriptedServer,
) -> None:
    requests = [
        _request(0, answer={"id": "first"}, delay=0.5),
        _request(1, answer={"id": "second"}, delay=0.25),
        _request(2, answer={"id": "third"}),
    ]

    assert _replay(scripted.url, requests) == [(202, "first"), (202, "second"), (202, "third")]


def test_it_counts_a_server_that_never_answers_as_status_0(
    silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loadgen, "REQUEST_TIMEOUT", 0.2)

    assert _replay(f"http://127.0.0.1:{silent_port}", [_request(0)]) == [(0, "")]


def test_it_counts_a_refused_connection_as_status_0(closed_port: int) -> None:
    assert _replay(f"http://127.0.0.1:{closed_port}", [_request(0), _request(1)]) == [
        (0, ""),
        (0, ""),
    ]


def test_it_refuses_a_base_url_that_is_not_loopback() -> None:
    for base_url in ("http://example.org", "http://10.0.0.1:8000", "http://127.0.0.2"):
        with pytest.raises(SystemExit, match="loopback only"):
            loadgen.replay(
                base_url=base_url, token="t", requests=[_request(0)], rate=RATE, label="x"
            )


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param(
            (b"HTTP/1.1 202 Acc", b"epted\r\nContent-Le", b'ngth: 11\r\n\r\n{"id":', b'"e1"}'),
            id="content-length",
        ),
        pytest.param(
            (
                b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n",
                b'5\r\n{"id"\r\n',
                b'6\r\n:"e1"}\r\n0\r\n\r\n',
            ),
            id="chunked",
        ),
        pytest.param(
            (b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n\r\n", b'{"id":"e1"}'),
            id="ended-by-the-close",
        ),
    ],
)
def test_it_reads_an_answer_in_pieces_however_its_body_is_delimited(
    raw_server: Callable[[Script], str], pieces: tuple[bytes, ...]
) -> None:
    assert _replay(raw_server(_answer_in(*pieces)), [_request(0)]) == [(202, "e1")]


def test_it_takes_an_answer_sent_before_the_request_was_read(
    raw_server: Callable[[Script], str],
) -> None:
    def refuse_early(connection: socket.socket) -> None:
        connection.recv(100)
        connection.sendall(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
        # Closed with most of the request unread: the server's kernel resets the connection.

    big = Request(0, "new", "key-0", "k1", 1, b"x" * 4_000_000)

    assert _replay(raw_server(refuse_early), [big]) == [(413, "")]


def _reset(connection: socket.socket) -> None:
    _read_request(connection)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(_answer_in(), id="closed-without-an-answer"),
        pytest.param(_reset, id="reset"),
        pytest.param(_answer_in(b"HTTP/1.1 202 Accepted\r\nContent-Le"), id="cut-in-headers"),
        pytest.param(
            _answer_in(b'HTTP/1.1 202 Accepted\r\nContent-Length: 50\r\n\r\n{"id":'),
            id="cut-in-body",
        ),
        pytest.param(_answer_in(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"), id="not-http"),
        pytest.param(
            _answer_in(b"HTTP/1.1 202 Accepted\r\nContent-Length: 9\r\n\r\nnot json!"),
            id="accepted-without-json",
        ),
    ],
)
def test_it_counts_a_broken_answer_as_status_0_and_goes_on(
    raw_server: Callable[[Script], str], script: Script
) -> None:
    assert _replay(raw_server(script), [_request(0), _request(1)]) == [(0, ""), (0, "")]
