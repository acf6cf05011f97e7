"""An open-loop HTTP load generator (asyncio + aiohttp), loopback only.

Request i is due at `start + i / rate` and is sent then, whether or not earlier requests have
been answered; its latency is measured from that due time, not from when the client got
round to sending it. A closed loop (send, wait, send) slows down with the server and hides the
queueing that real clients see ("coordinated omission"); this one does not.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from collections import deque
from urllib.parse import urlsplit

import aiohttp

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


async def _send(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    request: Request,
    due: float,
    loop: asyncio.AbstractEventLoop,
    progress: Progress,
) -> Answer:
    status, event_id = 0, ""
    try:
        async with session.post(url, data=request.body, headers=headers) as response:
            raw = await response.read()
            status = response.status
            if status in (200, 202):
                event_id = json.loads(raw).get("id", "")
    except (aiohttp.ClientError, TimeoutError, ValueError):
        status = 0
    latency_ms = (loop.time() - due) * 1000.0
    progress.answered += 1
    if status in (200, 202, 409):
        progress.recent.append(latency_ms)
    else:
        progress.errors += 1
    return Answer(status, event_id, latency_ms)


async def _replay(
    base_url: str, token: str, requests: list[Request], rate: float, label: str
) -> tuple[list[Answer | None], float]:
    url = f"{base_url}/api/v1/events"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    progress = Progress(total=len(requests), label=label)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def report() -> None:
            while True:
                progress.show()
                await asyncio.sleep(0.25)

        reporter = asyncio.create_task(report())
        start = loop.time() + 0.1
        tasks = []
        for index, request in enumerate(requests):
            due = start + index / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(
                asyncio.create_task(_send(session, url, headers, request, due, loop, progress))
            )
            progress.sent += 1
        sending_seconds = loop.time() - start
        progress.sending_done = time.monotonic()
        answers: list[Answer | None] = list(await asyncio.gather(*tasks))
        reporter.cancel()
        progress.show(final=True)
    return answers, sending_seconds


def replay(
    *, base_url: str, token: str, requests: list[Request], rate: float, label: str
) -> tuple[list[Answer | None], float]:
    """Send `requests` at `rate` per second; their answers and the seconds spent sending."""
    host = urlsplit(base_url).hostname or ""
    if host not in _LOOPBACK:
        raise SystemExit(f"the load generator sends to loopback only, not to {host!r}")
    return asyncio.run(_replay(base_url, token, requests, rate, label))
