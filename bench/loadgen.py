"""An open-loop HTTP load generator (asyncio, plain non-blocking sockets), loopback only.

Request i is due at `start + i / rate` and is sent then, whether or not earlier requests have
been answered; its latency is measured from that due time, not from when the client got
round to sending it. A closed loop (send, wait, send) slows down with the server and hides the
queueing that real clients see ("coordinated omission"); this one does not.

The generator shares the two cores with the server, so every cycle it spends is taken from
what it measures. Each request is therefore bytes built once, written on its own connection
(gunicorn's sync workers close after every response anyway) by a few readiness callbacks on a
non-blocking socket, and of the answer only the status line, the headers that delimit the body
and the body are read: about half the CPU per request of the aiohttp client it replaced.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import math
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from bench.checks import Answer
from bench.workload import Request

# A request unanswered after this long counts as an error (BENCH_REQUEST_TIMEOUT).
REQUEST_TIMEOUT = float(os.environ.get("BENCH_REQUEST_TIMEOUT", "30"))
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def nearest_rank(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


class Progress:
    """A progress bar with the live P95 of the last 1,000 answers, on stderr."""

    def __init__(self, *, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self.sent = 0
        self.answered = 0
        self.errors = 0
        self.recent: deque[float] = deque(maxlen=1000)
        self.started = time.monotonic()
        self.sending_done: float | None = None
        self.tty = sys.stderr.isatty()
        self._last_line = 0.0

    def line(self) -> str:
        width = 30
        done = int(width * self.answered / max(1, self.total))
        p95 = nearest_rank(list(self.recent), 0.95)
        elapsed = max(0.001, (self.sending_done or time.monotonic()) - self.started)
        return (
            f"{self.label} [{'#' * done}{'.' * (width - done)}] "
            f"{self.answered}/{self.total} answered, {self.sent / elapsed:6.1f} req/s sent, "
            f"P95 {'-' if p95 is None else f'{p95:.1f}'} ms, errors {self.errors}"
        )

    def show(self, *, final: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            sys.stderr.write("\r" + self.line() + ("\n" if final else ""))
            sys.stderr.flush()
        elif final or now - self._last_line >= 5:
            self._last_line = now
            sys.stderr.write(self.line() + "\n")
            sys.stderr.flush()


def parse_response(data: bytes, *, closed: bool) -> tuple[int, bytes] | None:
    """The status and body of the HTTP/1.x response in `data`; None while it is incomplete and
    the connection still open. A body is delimited by Content-Length, by chunked encoding, or
    else by the server closing the connection. Raises ValueError for a malformed response or
    one cut short by the close."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        if closed:
            raise ValueError("connection closed inside the response headers")
        return None
    status_line, *header_lines = data[:head_end].split(b"\r\n")
    version, status, *_ = status_line.split(b" ", 2)
    if not version.startswith(b"HTTP/1."):
        raise ValueError("not an HTTP/1.x response")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    body = data[head_end + 4 :]
    if headers.get(b"transfer-encoding", b"").lower().endswith(b"chunked"):
        payload = _dechunk(body)
    elif b"content-length" in headers:
        length = int(headers[b"content-length"])
        payload = body[:length] if len(body) >= length else None
    else:
        payload = body if closed else None
    if payload is None and closed:
        raise ValueError("connection closed inside the response body")
    return None if payload is None else (int(status), payload)


def _dechunk(body: bytes) -> bytes | None:
    """The payload of a chunked body, None until its last chunk has arrived (trailers are
    not waited for: nothing here reads them)."""
    chunks = []
    position = 0
    while (line_end := body.find(b"\r\n", position)) >= 0:
        size = int(body[position:line_end].partition(b";")[0], 16)
        if size == 0:
            return b"".join(chunks)
        start = line_end + 2
        if len(body) < start + size + 2:
            return None
        if body[start + size : start + size + 2] != b"\r\n":
            raise ValueError("malformed chunk")
        chunks.append(body[start : start + size])
        position = start + size + 2
    return None


class _Exchange:
    """One request on its own non-blocking socket, driven by the event loop's readiness
    callbacks: no task, transport or future per request, which is what keeps it cheap.
    Calls `done(status, body)` exactly once: with the response, or with (0, b"") after a
    refused, reset or timed-out connection or a malformed or truncated response."""

    sock: socket.socket
    fd: int  # what the loop's callbacks are keyed by: cheaper than the socket object
    timer: asyncio.TimerHandle

    def __init__(
        self, loop: asyncio.AbstractEventLoop, request: bytes, done: Callable[[int, bytes], None]
    ) -> None:
        self.loop = loop
        self.unsent = memoryview(request)
        self.received = b""
        self.done = done
        self.connected = False

    def start(self, family: socket.AddressFamily, address: tuple[Any, ...]) -> None:
        try:
            self.sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # out of file descriptors: an error answer, not the end of the replay
            self.done(0, b"")
            return
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        self.timer = self.loop.call_later(REQUEST_TIMEOUT, self._finish, 0, b"")
        if self.sock.connect_ex(address) in (0, errno.EINPROGRESS):
            self.loop.add_writer(self.fd, self._writable)
        else:
            self._finish(0, b"")

    def _writable(self) -> None:
        if not self.connected:
            if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._finish(0, b"")
                return
            self.connected = True
            self.loop.add_reader(self.fd, self._readable)
        try:
            sent = self.sock.send(self.unsent)
        except BlockingIOError:
            return
        except OSError:
            # The server answered and closed before reading the whole request: its answer,
            # or the reset that replaced it, is for the reader to see.
            self.loop.remove_writer(self.fd)
            return
        self.unsent = self.unsent[sent:]
        if not self.unsent:
            self.loop.remove_writer(self.fd)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._finish(0, b"")
            return
        self.received += data
        try:
            response = parse_response(self.received, closed=not data)
        except ValueError:
            self._finish(0, b"")
            return
        if response is not None:
            self._finish(*response)

    def _finish(self, status: int, body: bytes) -> None:
        # Cancelling the timer and removing the callbacks also cancels any of them already
        # due in this turn of the loop: nothing of this exchange runs after this.
        self.timer.cancel()
        self.loop.remove_reader(self.fd)
        self.loop.remove_writer(self.fd)
        self.sock.close()
        self.done(status, body)


async def _replay(
    family: socket.AddressFamily,
    address: tuple[Any, ...],
    head: bytes,
    requests: list[Request],
    rate: float,
    label: str,
) -> tuple[list[Answer | None], float]:
    loop = asyncio.get_running_loop()
    progress = Progress(total=len(requests), label=label)
    answers: list[Answer | None] = [None] * len(requests)
    all_answered = loop.create_future()
    # BENCH_TRACE=path: each answer's wall-clock time and latency, appended to `path` at the
    # end, to line a stall up with the servers' logs (kept in memory until then).
    trace_path = os.environ.get("BENCH_TRACE")
    trace: list[str] | None = [] if trace_path else None

    def record(index: int, due: float, status: int, body: bytes) -> None:
        latency_ms = (loop.time() - due) * 1000.0
        event_id = ""
        if status in (200, 202):
            try:
                event_id = json.loads(body).get("id", "")
            except (ValueError, AttributeError):
                status = 0
        answers[index] = Answer(status, event_id, latency_ms)
        if trace is not None:
            trace.append(f"{time.time():.3f} {latency_ms:.2f} {label.strip()}\n")
        progress.answered += 1
        if status in (200, 202, 409):
            progress.recent.append(latency_ms)
        else:
            progress.errors += 1
        if progress.answered == len(requests):
            all_answered.set_result(None)

    async def report() -> None:
        while True:
            progress.show()
            await asyncio.sleep(0.25)

    reporter = asyncio.create_task(report())
    start = loop.time() + 0.1
    for index, request in enumerate(requests):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        payload = b"%s%d\r\n\r\n%s" % (head, len(request.body), request.body)
        _Exchange(loop, payload, functools.partial(record, index, due)).start(family, address)
        progress.sent += 1
    sending_seconds = loop.time() - start
    progress.sending_done = time.monotonic()
    if progress.answered < len(requests):
        await all_answered
    reporter.cancel()
    progress.show(final=True)
    if trace_path and trace:
        with open(trace_path, "a") as out:
            out.writelines(trace)
    return answers, sending_seconds


def replay(
    *, base_url: str, token: str, requests: list[Request], rate: float, label: str
) -> tuple[list[Answer | None], float]:
    """Send `requests` at `rate` per second; their answers and the seconds spent sending."""
    url = urlsplit(base_url)
    host = url.hostname or ""
    if host not in _LOOPBACK:
        raise SystemExit(f"the load generator sends to loopback only, not to {host!r}")
    # Resolved once here rather than for every request.
    port = url.port or 80
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    head = (
        f"POST {url.path}/api/v1/events HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        "Connection: close\r\nContent-Length: "
    ).encode()
    return asyncio.run(_replay(family, address, head, requests, rate, label))
